"""Static baselines every transferability score must beat, evaluated like the scores themselves.

A score earns its cost only if it ranks the candidates better than what a user knows without computing anything:

- ``depth``: relative depth of the tap, ``tap_index / (n_taps - 1)`` (1 = penultimate; deeper taps first);
- ``width``: the feature width ``d`` of the candidate;
- ``params``: the parameter count of the candidate's model (larger first);
- ``source_accuracy``: the model's accuracy on its pre-training task where known (the bundled EfficientNet-Lite
  ImageNet top-1 accuracies; a randomly initialised control gets chance, 1/1000);
- ``random``: a random score -- the distribution of its weighted tau, Spearman and regret over 1 000 random
  orders (:func:`nctransfer.transferability.uncertainty.random_score_baseline`).

:func:`baseline_verdicts` says, for every score, which baselines it does not beat (its weighted tau is not above
theirs) and whether it beats the random score (its weighted tau above the random score's 97.5% quantile).
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from nctransfer.transferability import evaluate
from nctransfer.transferability.uncertainty import random_score_baseline

#: ImageNet top-1 accuracy of bundled models, as published with the weights (efficientnet-lite release notes)
SOURCE_ACCURACY: dict[str, float] = {
    "efficientnet_lite0": 0.751,
    "efficientnet_lite1": 0.767,
    "efficientnet_lite2": 0.776,
}
#: chance accuracy of a randomly initialised ImageNet classifier (1000 classes)
CHANCE_IMAGENET = 1.0 / 1000
STATIC_BASELINES = ("depth", "width", "params", "source_accuracy")


def source_accuracy(model: str, control: bool = False) -> float:
    """Known source accuracy of ``model`` (``random:`` prefix or ``control``: chance), NaN when unknown."""
    name = str(model)
    base = name.split(":", 1)[1] if name.startswith("random:") else name
    if base not in SOURCE_ACCURACY:
        return float("nan")
    return CHANCE_IMAGENET if (control or name.startswith("random:")) else SOURCE_ACCURACY[base]


def static_baseline_scores(candidates: Sequence[Mapping[str, Any]],
                           params: Mapping[str, int] | None = None) -> "Any":
    """``pandas.DataFrame`` ``[candidate, baseline]`` of the static baselines.

    Args:
        candidates: dicts with ``name``, ``model``, ``tap_index``, ``n_taps``, ``dim`` and optionally ``control``
            (the ``candidates`` of a results structure) and ``source_accuracy`` (when known for the candidate,
            e.g. a pre-training study's checkpoint; else looked up by model name).
        params: ``{model: parameter count}``; missing models get NaN.
    """
    rows = {}
    for c in candidates:
        n_taps = int(c.get("n_taps") or 1)
        rows[str(c["name"])] = {
            "depth": float(c.get("tap_index", 0)) / (n_taps - 1) if n_taps > 1 else 1.0,
            "width": float(c.get("dim") or np.nan),
            "params": float((params or {}).get(str(c.get("model")), np.nan)),
            "source_accuracy": (float(c["source_accuracy"]) if c.get("source_accuracy") is not None
                                else source_accuracy(str(c.get("model")), bool(c.get("control")))),
        }
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(STATIC_BASELINES), dtype=float)


def evaluate_baselines(candidates: Sequence[Mapping[str, Any]], truth: Mapping[str, float], *,
                       params: Mapping[str, int] | None = None, truth_se: Mapping[str, float] | None = None,
                       n_boot: int = 1000, seed: int = 0,
                       truth_samples: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Scores and evaluation of every static baseline, and the random-score distribution.

    ``truth_samples`` / ``truth_se``: the ground truth's noise, as in :func:`nctransfer.transferability.evaluate`.

    Returns:
        ``{"scores": {candidate: {baseline: value}}, "evaluation": {baseline: evaluate(...)},
        "random": random_score_baseline(...)}``; a baseline that is constant or unknown on the pool is left out
        of ``evaluation``.
    """
    df = static_baseline_scores(candidates, params)
    names = [n for n in df.index if n in truth]
    df = df.loc[names]
    usable = [b for b in df.columns if df[b].notna().sum() >= 2 and np.ptp(df[b].dropna().to_numpy()) > 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ev = evaluate(df[usable], {n: truth[n] for n in names}, intervals=True, truth_se=truth_se,
                      truth_samples=truth_samples, n_boot=n_boot, seed=seed) \
            if usable and len(names) >= 2 else {}
    rnd = random_score_baseline([truth[n] for n in names], seed=seed) if len(names) >= 2 else {}
    scores = {n: {b: (None if not np.isfinite(v) else float(v)) for b, v in df.loc[n].items()} for n in names}
    return {"scores": scores, "evaluation": ev, "random": rnd}


def baseline_verdicts(evaluation: Mapping[str, Mapping[str, Any]], baselines: Mapping[str, Any]
                      ) -> dict[str, dict[str, Any]]:
    """For every score: ``{"beats_random": bool | None, "not_beaten": [static baselines whose weighted tau is
    >= the score's], "verdict": one sentence}``."""
    def num(v: Any) -> bool:
        return isinstance(v, (int, float)) and np.isfinite(v)

    bev = baselines.get("evaluation") or {}
    rnd = baselines.get("random") or {}
    out = {}
    for m, e in evaluation.items():
        tau = e.get("weighted_tau")
        if not num(tau):
            out[m] = {"beats_random": None, "not_beaten": [], "verdict": "no weighted tau (too few scored models)."}
            continue
        not_beaten = [b for b, be in bev.items() if num(be.get("weighted_tau")) and be["weighted_tau"] >= tau]
        hi = rnd.get("weighted_tau_hi")
        beats_random = bool(tau > hi) if num(hi) else None
        parts = []
        if beats_random is False:
            parts.append(f"does not beat a random score (weighted tau {tau:+.3f} within the random score's 95% "
                         f"range up to {hi:+.3f})")
        if not_beaten:
            parts.append("does not beat the static baseline(s) " + ", ".join(
                f"{b} ({bev[b]['weighted_tau']:+.3f})" for b in not_beaten))
        verdict = "; ".join(parts) + "." if parts else "beats every static baseline and the random score."
        out[m] = {"beats_random": beats_random, "not_beaten": not_beaten, "verdict": verdict}
    return out


__all__ = ["CHANCE_IMAGENET", "SOURCE_ACCURACY", "STATIC_BASELINES", "source_accuracy", "static_baseline_scores",
           "evaluate_baselines", "baseline_verdicts"]
