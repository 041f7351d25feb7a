"""Stage 5 of a run: how well each score ranks the pool against the ground truth
(:func:`nctransfer.transferability.evaluate`: weighted Kendall tau, Kendall, Spearman, Pearson, top-1 regret, with
seeded 95% bootstrap intervals), and the static baselines every score must beat (:mod:`nctransfer.stages.baselines`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from nctransfer.stages.baselines import baseline_verdicts, evaluate_baselines
from nctransfer.stages.candidates import Candidate, Model
from nctransfer.stages.truth import truth_samples
from nctransfer.transferability import METHODS, evaluate

#: the point measures of an evaluation (results.json "evaluation"); the rest are its intervals
POINT_KEYS = ("weighted_tau", "kendall", "spearman", "pearson", "top1_regret")


def evaluate_candidates(cands: list[Candidate], models: list[Model], sc: Mapping[str, Any], acc: Mapping[str, float],
                        details: Mapping[str, Any], truth_info: dict[str, Any], truth_arg: str, n_test: int,
                        seed: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Evaluation of every score against the ground truth (:func:`nctransfer.transferability.evaluate`, with
    bootstrap intervals) and of the baselines (:mod:`nctransfer.stages.baselines`).

    Args:
        cands, models: the pool and its models.
        sc: the scores stage's output (:func:`nctransfer.stages.scoring.score_candidates`).
        acc, details: the ground truth ``{candidate: accuracy}`` and its details (per-sample correctness of a
            probe).
        truth_info: the results' ``"truth"`` entry; ``truth_info["noise"]`` records how the truth's noise entered
            the intervals.
        truth_arg: ``"probe"``, ``"finetune"`` or the truth CSV's path.
        n_test: test images (the binomial standard error of an accuracy without per-sample results).
        seed: seed of the bootstrap.

    Returns:
        ``(evaluation, intervals, baselines)``: the five point measures per score, their intervals and coverage,
        and the baselines' evaluation and verdicts (empty with fewer than two candidates).
    """
    df = pd.DataFrame({m: [sc["scores"][c.name].get(m) for c in cands] for m in sc["columns"]},
                      index=[c.name for c in cands], dtype=float)
    # the truth's noise: with the probe's per-sample correctness, the bootstrap resamples the shared test set
    # (one draw for every candidate: their errors are paired); otherwise the binomial standard error of each
    # accuracy on the n_test test images (independent across candidates -- conservative)
    samples = truth_samples(details, [c.name for c in cands]) if truth_arg == "probe" else None
    truth_se = ({n: float(np.sqrt(max(a * (1 - a), 0.0) / max(n_test, 1))) for n, a in acc.items()}
                if truth_arg in ("probe", "finetune") and samples is None else None)
    truth_info["noise"] = ("per-sample (test set resampled, paired across candidates)" if samples
                           else "binomial standard error" if truth_se else "none")
    full = {m: {k: (float(v) if np.isfinite(v) else None) for k, v in e.items()}
            for m, e in evaluate(df, acc, intervals=True, truth_samples=samples, truth_se=truth_se,
                                 seed=seed).items()} if len(cands) >= 2 else {}
    # results.json keeps the five point measures in "evaluation" and the 95% bootstrap intervals and the
    # coverage (models scored / pool) beside them in "evaluation_intervals"
    evaluation = {m: {k: v for k, v in e.items() if k in POINT_KEYS} for m, e in full.items()}
    intervals = {m: {k: v for k, v in e.items() if k not in POINT_KEYS} for m, e in full.items()}
    cand_meta = [{"name": c.name, "model": c.model.label, "tap_index": c.tap_index, "n_taps": c.n_taps,
                  "dim": c.dim, "control": c.model.control} for c in cands]
    params = {m.label: int(sum(p.numel() for p in m.module.parameters())) for m in models
              if m.module is not None and hasattr(m.module, "parameters")}
    baselines = evaluate_baselines(cand_meta, acc, params=params, truth_se=truth_se,
                                   truth_samples=samples, seed=seed) \
        if len(cands) >= 2 else {}
    if baselines:
        baselines["evaluation"] = {b: {k: (float(v) if np.isfinite(v) else None) for k, v in e.items()}
                                   for b, e in baselines["evaluation"].items()}
        baselines["verdicts"] = baseline_verdicts(evaluation, baselines)
    return evaluation, intervals, baselines


def method_meta(columns: Sequence[str]) -> dict[str, Any]:
    """``{method: {"label", "higher_is_better", "pool_relative", "needs_probs", "reference"}}`` of the
    registered methods among ``columns`` (the results' ``"methods"``)."""
    out = {}
    for m in columns:
        info = METHODS.get(m)
        if info is None:
            continue
        out[m] = {"label": info.title, "higher_is_better": info.higher_is_better,
                  "pool_relative": info.pool_relative, "needs_probs": info.needs_probs, "reference": info.reference}
    return out


__all__ = ["POINT_KEYS", "evaluate_candidates", "method_meta"]
