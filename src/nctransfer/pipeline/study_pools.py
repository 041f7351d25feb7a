"""Benchmark pools from a pre-training study, and the evaluation of one pool with intervals and baselines.

A pre-training study (:func:`nctransfer.pretrain.run_study`, ``nctransfer study``: recipes x seeds pre-trained on a
source, each transferred to one or more targets) is a set of model pools: per target, the candidates are the
study's checkpoints, their scores are the transferability scores the study computed on the target's training
features (pool-relative scores combined across the recipes), and the ground truth is

- ``"probe"``: the study's linear-probe test accuracy of the frozen encoder (its per-test-sample correctness, kept
  by the study, lets the bootstrap resample the shared test set; older results fall back to the binomial standard
  error ``sqrt(p (1 - p) / n_test)``);
- ``"finetune"``: the test accuracy after fine-tuning each checkpoint's encoder with a new linear classifier
  (:func:`nctransfer.finetune.finetune`; full FT by default, or SCL FT at one of the encoder's blocks), averaged
  over ``seeds`` fine-tuning seeds, with the standard error of that mean
  ``se = sqrt(p (1 - p) / n_test + s^2 / k)`` (binomial test-set term; ``s``: the standard deviation of the ``k``
  seeds' accuracies, 0 for one seed).

Static baselines of a study pool: feature width, encoder parameter count and the checkpoint's own source test
accuracy (known for every checkpoint).
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from nctransfer.exceptions import InputValueError, NotFoundError
from nctransfer.finetune import finetune
from nctransfer.metrics import unpack_correct
from nctransfer.pipeline.baselines import baseline_verdicts, evaluate_baselines
from nctransfer.pretrain.datasets import load_study_data
from nctransfer.pretrain.study import StudyConfig, combine_pool_scores, run_study
from nctransfer.pretrain.trainer import load_pretrained
from nctransfer.transferability import evaluate
from nctransfer.transferability.ranking import EVALUATION_KEYS

TRUTH_KINDS = ("probe", "finetune")
#: fine-tuning options of ``truth="finetune"`` on a study pool when not given (small CNNs, small targets)
STUDY_FINETUNE_DEFAULTS: dict[str, Any] = {"method": "full_ft", "epochs": 5, "lr": 0.01, "batch_size": 32,
                                           "eval_every": 0}


@dataclass(frozen=True)
class StudyPoolSpec:
    """Model pools from a pre-training study: one pool ``<name>/<target>`` per target of ``config``.

    Attributes:
        name: prefix of the pool names.
        config: the study's :class:`~nctransfer.pretrain.study.StudyConfig` (its ``out`` holds the study).
        grid: a study grid (:class:`~nctransfer.pretrain.grid.StudyGrid`, mapping or YAML path) to run first --
            finished recipes are skipped, so an existing study is reused; ``None``: read ``config.out/study.json``.
        description: one line for the tables.
    """

    name: str = "study"
    config: Any = None
    grid: Any = None
    description: str = "checkpoints of a pre-training study (recipes x seeds) on its targets"


def split_evaluation(full: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``evaluate(..., intervals=True)`` output -> (point measures, intervals and coverage), JSON-safe (NaN -> None)."""
    ev = {m: {k: _clean(v) for k, v in e.items() if k in EVALUATION_KEYS} for m, e in full.items()}
    iv = {m: {k: _clean(v) for k, v in e.items() if k not in EVALUATION_KEYS} for m, e in full.items()}
    return ev, iv


def _clean(v: Any) -> Any:
    return float(v) if isinstance(v, (int, float)) and np.isfinite(v) else None


def evaluate_pool(scores: Mapping[str, Mapping[str, Any]], truth: Mapping[str, float],
                  candidates: Sequence[Mapping[str, Any]], *, params: Mapping[str, int] | None = None,
                  truth_samples: Mapping[str, Any] | None = None, truth_se: Mapping[str, float] | None = None,
                  seed: int = 0) -> dict[str, Any]:
    """Every score of one pool against its truth, with 95% bootstrap intervals, the static baselines and the random
    score (the per-pool entry of :class:`~nctransfer.pipeline.benchmark.SuiteResult`).

    Args:
        scores: ``{candidate: {method: score or None}}``.
        truth: ``{candidate: accuracy}``.
        candidates: candidate metadata for the static baselines (see
            :func:`~nctransfer.pipeline.baselines.static_baseline_scores`).
        params: ``{model: parameter count}``.
        truth_samples, truth_se: the truth's noise (:func:`nctransfer.transferability.evaluate`).
        seed: seed of the bootstrap.

    Returns:
        ``{"evaluation", "intervals", "baselines", "n_candidates"}``.
    """
    names = [str(c["name"]) for c in candidates]
    missing = [n for n in names if n not in truth]
    if missing:
        raise InputValueError(f"evaluate_pool: truth has no accuracy for {missing[:10]}.")
    methods = sorted({m for n in names for m in (scores.get(n) or {})})
    df = pd.DataFrame({m: [(scores.get(n) or {}).get(m) for n in names] for m in methods}, index=names, dtype=float)
    df = df[[m for m in methods if df[m].notna().any()]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        full = evaluate(df, dict(truth), intervals=True, truth_samples=truth_samples, truth_se=truth_se,
                        seed=seed) if len(names) >= 2 and len(df.columns) else {}
    evaluation, intervals = split_evaluation(full)
    baselines = evaluate_baselines(candidates, truth, params=params, truth_se=truth_se, truth_samples=truth_samples,
                                   seed=seed) if len(names) >= 2 else {}
    if baselines:
        baselines["evaluation"] = {b: {k: _clean(v) for k, v in e.items()}
                                   for b, e in baselines["evaluation"].items()}
        baselines["verdicts"] = baseline_verdicts(evaluation, baselines)
    return {"evaluation": evaluation, "intervals": intervals, "baselines": baselines, "n_candidates": len(names)}


def combine_seeds(accs: Sequence[Mapping[str, float]], n_test: int | Mapping[str, int]
                  ) -> tuple[dict[str, float], dict[str, float]]:
    """Mean accuracy over ``k`` seeds and its standard error ``sqrt(p (1 - p) / n_test + s^2 / k)`` per candidate
    (``s``: sample standard deviation over the seeds, ``ddof=1``; 0 for one seed)."""
    if not accs:
        raise InputValueError("combine_seeds: no seed results.")
    k = len(accs)
    mean, se = {}, {}
    for name in accs[0]:
        v = np.array([float(a[name]) for a in accs], dtype=np.float64)
        p = float(v.mean())
        n = int(n_test[name] if isinstance(n_test, Mapping) else n_test)
        if n < 1:
            raise InputValueError(f"combine_seeds: n_test must be >= 1; got {n} for {name!r}.")
        s2 = float(v.var(ddof=1)) if k > 1 else 0.0
        mean[name], se[name] = p, float(np.sqrt(max(p * (1 - p), 0.0) / n + s2 / k))
    return mean, se


# ------------------------------------------------------------------------------------------- study pools
def study_records(spec: StudyPoolSpec, *, progress: bool = True) -> tuple[list[dict[str, Any]], Any]:
    """The study's records (one per recipe, pool-relative scores combined) and its config: run (or resume) the
    study when ``spec.grid`` is given, else read ``spec.config.out/study.json``."""
    cfg = spec.config
    if isinstance(cfg, Mapping):
        cfg = StudyConfig(**cfg)
    if not isinstance(cfg, StudyConfig):
        raise InputValueError(f"StudyPoolSpec.config must be a StudyConfig (or its dict); got {type(cfg).__name__}.")
    if spec.grid is not None:
        return run_study(spec.grid, cfg, progress=progress).records, cfg
    path = Path(cfg.out) / "study.json"
    if not path.is_file():
        raise NotFoundError(f"StudyPoolSpec: no study at {str(path)!r}; run `nctransfer study` first or give grid=.")
    records = json.loads(path.read_text())["recipes"]
    combine_pool_scores(records)
    return records, cfg


def _encoder_classifier(model: Any, num_classes: int) -> Any:
    """A ``torch.nn.Module``: a copy of the study checkpoint's encoder behind its input normalisation, then a new
    linear classifier (the module :func:`nctransfer.finetune.finetune` trains)."""
    class EncoderClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(model.mean, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(model.std, dtype=torch.float32).view(1, -1, 1, 1))
            self.encoder = copy.deepcopy(model.encoder)
            self.classifier = nn.Linear(int(model.encoder.num_features), num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.encoder((x - self.mean) / self.std))

    return EncoderClassifier()


class _Images:
    """Map-style dataset of ``(image [C, S, S] in [0, 1], label)`` with ``targets`` (labels ``0..k-1``)."""

    def __init__(self, X: Any, y: np.ndarray, classes: Sequence[int]) -> None:
        lut = {int(c): i for i, c in enumerate(classes)}
        self.X, self.targets = X, np.array([lut[int(v)] for v in y], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.X[i], int(self.targets[i])


def _study_finetune(records: list[dict[str, Any]], cfg: Any, target_index: int, options: Mapping[str, Any],
                    seeds: int, progress: bool) -> tuple[dict[str, float], dict[str, float], dict[str, Any]]:
    spec = cfg.targets[target_index]
    data = load_study_data(spec, image_size=cfg.image_size, train_per_class=cfg.target_train_per_class,
                           test_per_class=cfg.target_test_per_class, seed=cfg.seed, root=cfg.data_root)
    train, test = _Images(data.X_train, data.y_train, data.classes), _Images(data.X_test, data.y_test, data.classes)
    opts = {**STUDY_FINETUNE_DEFAULTS, **dict(options or {})}
    base_seed = int(opts.pop("seed", 0))
    accs: list[dict[str, float]] = [{} for _ in range(seeds)]
    details: dict[str, Any] = {}
    for r in records:
        pm = load_pretrained(cfg.checkpoint_path(r["name"]))
        for s in range(seeds):
            net = _encoder_classifier(pm, len(data.classes))
            res = finetune(net, train, test, seed=base_seed + s, progress=progress, device=cfg.device, **opts)
            accs[s][r["name"]] = float(res.test_accuracy)
            details.setdefault(r["name"], {"method": res.method, "unit": res.unit, "epochs": res.epochs_completed,
                                           "seed_accuracies": []})["seed_accuracies"].append(float(res.test_accuracy))
    mean, se = combine_seeds(accs, len(data.y_test))
    return mean, se, details


def run_study_pools(spec: StudyPoolSpec, *, truth: str = "probe", finetune: Mapping[str, Any] | None = None,
                    seeds: int = 1, seed: int = 0, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Evaluate every score on the study's pools (one per target); see the module docstring.

    Args:
        spec: the study.
        truth: ``"probe"`` (the study's linear probe) or ``"finetune"``.
        finetune: options of :func:`nctransfer.finetune.finetune` for ``truth="finetune"`` (defaults
            ``STUDY_FINETUNE_DEFAULTS``: full FT, 5 epochs, lr 0.01; ``method="scl_ft", unit="block2"`` for SCL FT).
        seeds: fine-tuning seeds per checkpoint (``truth="finetune"``).
        seed: seed of the bootstrap.

    Returns:
        ``{"<name>/<target>": {"spec", "n_candidates", "evaluation", "intervals", "baselines", "truth",
        "seconds"}}``.
    """
    if truth not in TRUTH_KINDS:
        raise InputValueError(f"run_study_pools: truth must be one of {list(TRUTH_KINDS)}; got {truth!r}.")
    if int(seeds) != seeds or seeds < 1:
        raise InputValueError(f"run_study_pools: seeds must be a positive integer; got {seeds!r}.")
    t0 = time.perf_counter()
    records, cfg = study_records(spec, progress=progress)
    if len(records) < 2:
        raise InputValueError(f"run_study_pools: a pool needs at least 2 checkpoints; the study has {len(records)}.")
    names = [r["name"] for r in records]  # the same candidates on every target
    cands = [{"name": r["name"], "model": r["name"], "tap_index": 0, "n_taps": 1, "dim": r.get("feature_dim"),
              "control": False, "source_accuracy": r["source"].get("test_accuracy")} for r in records]
    params = {r["name"]: int(r["n_parameters_encoder"]) for r in records if r.get("n_parameters_encoder")}
    out: dict[str, dict[str, Any]] = {}
    for i, target in enumerate(records[0]["targets"]):
        t1 = time.perf_counter()
        scores = {r["name"]: dict(r["targets"][i]["scores"]) for r in records}
        samples = se = None
        if truth == "probe":
            acc = {r["name"]: float(r["targets"][i]["probe_accuracy"]) for r in records}
            packed = [r["targets"][i].get("probe_correct") for r in records]
            if all(p is not None for p in packed):
                samples = {n: unpack_correct(p) for n, p in zip(names, packed)}
                noise = "per-sample (test set resampled, paired across candidates)"
            else:
                se = {r["name"]: float(np.sqrt(acc[r["name"]] * (1 - acc[r["name"]]) / r["targets"][i]["n_test"]))
                      for r in records}
                noise = "binomial standard error"
            details: dict[str, Any] = {}
        else:
            acc, se, details = _study_finetune(records, cfg, i, finetune or {}, int(seeds), progress)
            noise = f"standard error of the mean over {seeds} seed(s) and the test set"
        pool = evaluate_pool(scores, acc, cands, params=params, truth_samples=samples, truth_se=se, seed=seed)
        name = f"{spec.name}/{target['target']}"
        out[name] = {"spec": {"name": name, "models": list(names), "data": target["target"], "taps": "penultimate",
                              "description": spec.description, "study": str(cfg.out)},
                     **pool, "truth": {"kind": truth, "accuracy": acc, "se": se, "noise": noise, "details": details},
                     "seconds": time.perf_counter() - (t0 if i == 0 else t1)}  # the first pool: study included
    return out


__all__ = ["StudyPoolSpec", "STUDY_FINETUNE_DEFAULTS", "combine_seeds", "evaluate_pool", "run_study_pools",
           "split_evaluation", "study_records"]
