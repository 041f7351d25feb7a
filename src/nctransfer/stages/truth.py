"""Stage 4 of a run: the ground truth by linear probe (docs/methods.md#finetuning): the test accuracy of a
multinomial logistic regression fitted on each candidate's training features, its L2 strength chosen on a
stratified validation share of them (:func:`nctransfer.metrics.probe_accuracy`).

- :func:`probe_candidate`: one candidate's probe (what ``layers.analyze`` reports per tap);
- :func:`truth_by_probe`: the pool's accuracies and details, cached, with each candidate's per-test-sample
  correctness (:func:`nctransfer.metrics.pack_correct`) for the bootstrap of the evaluation;
- :func:`truth_samples`: those per-sample results when every candidate has them on one shared test set.

The ground truth by fine-tuning needs :mod:`nctransfer.finetune` (a layer above) and lives in
:mod:`nctransfer.pipeline.stages`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from nctransfer.metrics import pack_correct, probe_accuracy, unpack_correct
from nctransfer.stages.cache import ResultCache
from nctransfer.stages.candidates import Candidate, Run
from nctransfer.stages.settings import PROBE_VAL_FRACTION, ProbeSettings


def probe_candidate(c: Candidate, settings: ProbeSettings) -> Any:
    """The linear probe of one candidate: a :class:`~nctransfer.metrics.probe.ProbeResult` (``accuracy``, ``C``,
    ``train_accuracy``, ``val_accuracy``, ``correct``)."""
    s = settings
    return probe_accuracy(c.X_train, c.y_train, c.X_test, c.y_test,
                          C_grid=list(s.C_grid) if s.C_grid else None, val_fraction=s.val_fraction,
                          max_iter=s.max_iter, seed=s.seed)


def truth_by_probe(cands: list[Candidate], settings: ProbeSettings, cache: ResultCache, run: Run
                   ) -> tuple[dict[str, float], dict[str, Any]]:
    """``({candidate: test accuracy}, {candidate: {"C", "train_accuracy", "correct"}})`` (cached under the
    candidate's digest and the probe settings)."""
    acc, details = {}, {}
    grid = list(settings.C_grid) if settings.C_grid else None
    for c in run.bar(cands, "ground truth: linear probe"):
        key: dict[str, Any] = {"features": c.digest, "C_grid": grid, "max_iter": settings.max_iter,
                               "seed": settings.seed}
        if settings.val_fraction != PROBE_VAL_FRACTION:
            key["val_fraction"] = settings.val_fraction
        hit = cache.get("probe", key)
        if hit is None:
            r = probe_candidate(c, settings)
            hit = cache.put("probe", key, {"accuracy": float(r.accuracy), "C": float(r.C),
                                           "train_accuracy": float(r.train_accuracy),
                                           "correct": pack_correct(r.correct)})
        acc[c.name] = float(hit["accuracy"])
        details[c.name] = {"C": hit["C"], "train_accuracy": hit["train_accuracy"]}
        if "correct" in hit:  # per-test-sample correctness (metrics.pack_correct); older cache entries lack it
            details[c.name]["correct"] = hit["correct"]
    return acc, details


def truth_samples(details: Mapping[str, Any], names: Sequence[str]) -> dict[str, np.ndarray] | None:
    """``{candidate: per-test-sample correctness}`` when every candidate has it on one shared test set (then the
    bootstrap resamples the test samples, the same draw for every candidate), else ``None``."""
    packed = [(details.get(n) or {}).get("correct") for n in names]
    if not names or any(p is None for p in packed):
        return None
    out = {n: unpack_correct(p) for n, p in zip(names, packed)}
    return out if len({len(v) for v in out.values()}) == 1 else None


__all__ = ["probe_candidate", "truth_by_probe", "truth_samples"]
