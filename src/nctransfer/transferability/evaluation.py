"""Evaluating a ranking against ground-truth transfer accuracies (docs/methods.md#transferability).

:func:`evaluate` compares scores with the true accuracies by weighted Kendall tau (hyperbolic weights,
``scipy.stats.weightedtau`` defaults -- the main figure of Wang et al., ICCV 2023), Kendall tau, Spearman, Pearson
and top-1 regret, optionally with bootstrap intervals over the candidates and the truth's noise.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

from nctransfer.exceptions import InputValueError
from nctransfer.stats.correlation import spearman
from nctransfer.transferability.uncertainty import bootstrap_intervals

EVALUATION_KEYS = ("weighted_tau", "kendall", "spearman", "pearson", "top1_regret")
#: keys added by ``evaluate(..., intervals=True)``: 95% bootstrap intervals and the pool coverage of the score
INTERVAL_KEYS = ("weighted_tau_lo", "weighted_tau_hi", "spearman_lo", "spearman_hi", "top1_regret_lo",
                 "top1_regret_hi", "n_scored", "n_pool", "coverage")


def _as_series(obj: Any, what: str) -> "Any":
    if isinstance(obj, pd.Series):
        s = obj.copy()
    elif isinstance(obj, pd.DataFrame) and {"model", "accuracy"} <= set(obj.columns):
        s = pd.Series(obj["accuracy"].to_numpy(), index=obj["model"].astype(str))
    elif isinstance(obj, Mapping):
        s = pd.Series(dict(obj))
    else:
        raise InputValueError(f"evaluate: {what} must be a mapping model -> value or a pandas Series; "
                              f"got {type(obj).__name__}.")
    s.index = s.index.map(str)
    try:
        return s.astype(float)
    except (TypeError, ValueError):
        raise InputValueError(f"evaluate: {what} must hold numbers.") from None


def _evaluate_one(score: "Any", truth: "Any", method: str, noise: "Any" = None,
                  boot: Mapping[str, Any] | None = None) -> dict[str, float]:
    missing = [m for m in score.index if m not in truth.index]
    if missing:
        raise InputValueError(f"evaluate: the ground truth has no accuracy for {len(missing)} scored model(s): "
                              f"{missing[:10]}; truth covers {list(truth.index)[:10]}"
                              f"{' ...' if len(truth) > 10 else ''}.")
    t = truth.loc[score.index]
    if not np.all(np.isfinite(t.to_numpy())):
        raise InputValueError("evaluate: the ground truth contains NaN or Inf.")
    ok = np.isfinite(score.to_numpy())
    if not ok.all():
        warnings.warn(f"evaluate[{method}]: ignoring {int((~ok).sum())} model(s) with a non-finite score.",
                      RuntimeWarning, stacklevel=3)
    s, t = score[ok], t[ok]
    out = dict.fromkeys(EVALUATION_KEYS + INTERVAL_KEYS, float("nan"))
    out["n_scored"], out["n_pool"] = int(ok.sum()), int(len(ok))
    out["coverage"] = float(ok.sum() / len(ok)) if len(ok) else float("nan")
    if len(s) < 2:
        return out
    if boot and int(boot.get("n_boot", 0)) > 0:
        samples, se = (None, None) if noise is None else noise(list(s.index))
        ci = bootstrap_intervals(s.to_numpy(dtype=float), t.to_numpy(dtype=float), samples=samples, se=se,
                                 n_boot=int(boot["n_boot"]), level=float(boot.get("level", 0.95)),
                                 seed=int(boot.get("seed", 0)))
        for k, (lo, hi) in ci.items():
            out[f"{k}_lo"], out[f"{k}_hi"] = lo, hi
    a, b = s.to_numpy(dtype=float), t.to_numpy(dtype=float)
    if np.ptp(a) <= 1e-9 * max(1.0, float(np.abs(a).max())):
        # a (numerically) constant score carries no ranking information: scipy's weightedtau would still return
        # a value (e.g. 0.94 for 4 tied models), and rounding noise would decide the order; correlations are NaN
        out["top1_regret"] = float(b.max() - b.mean())
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["weighted_tau"] = float(st.weightedtau(b, a).statistic)
        out["kendall"] = float(st.kendalltau(a, b).statistic)
        out["spearman"] = spearman(a, b, min_pairs=2)[0]
        out["pearson"] = float(st.pearsonr(a, b).statistic) if np.ptp(a) > 0 and np.ptp(b) > 0 else float("nan")
    top = a == a.max()
    out["top1_regret"] = float(b.max() - b[top].mean())
    return out


def evaluate(scores: Any, truth: Any, *, intervals: bool = False, truth_samples: Mapping[str, Any] | None = None,
             truth_se: Mapping[str, float] | None = None, n_boot: int = 1000, level: float = 0.95,
             seed: int = 0) -> dict[str, Any]:
    """Compare transferability scores with ground-truth transfer accuracies (docs/methods.md#transferability), with intervals.

    Args:
        scores: ``{model: score}`` or a ``pandas.Series`` indexed by model -- or a DataFrame from :func:`rank`
            (one column per method).
        truth: ``{model: accuracy}``, a Series, or a DataFrame with columns ``model`` and ``accuracy`` (and
            optionally ``se``, the accuracy's standard error). Must cover every scored model (extra models are
            ignored).
        intervals: also return the bootstrap intervals and the coverage (the keys of ``INTERVAL_KEYS``).
        truth_samples: ``{model: per-test-sample correctness [n_test]}`` (0/1, same test set for every model):
            the bootstrap resamples the test samples (paired across models).
        truth_se: ``{model: standard error of its accuracy}`` (used when ``truth_samples`` is not given).
        n_boot: bootstrap replicates of the intervals (1000; 0 disables them).
        level: coverage of the intervals (0.95).
        seed: seed of the bootstrap (same seed, same intervals).

    Returns:
        For one ranking: ``{"weighted_tau", "kendall", "spearman", "pearson", "top1_regret"}`` where
        ``weighted_tau`` is ``scipy.stats.weightedtau`` with its defaults (hyperbolic weigher, additive, rank by
        both orders -- as the published tables), and ``top1_regret = max accuracy - accuracy of the top-scored
        model`` (mean over ties for the top score; 0 is best). With ``intervals=True`` also
        ``<stat>_lo, <stat>_hi`` for weighted_tau,
        spearman and top1_regret: the percentile bootstrap interval that resamples the candidates and the ground
        truth's noise (:mod:`nctransfer.transferability.uncertainty`); ``n_scored`` (models with a finite score),
        ``n_pool`` (models in the ranking) and ``coverage = n_scored / n_pool`` -- a score computed on only part
        of the pool (``coverage < 1``, e.g. LEEP without source probabilities for most candidates) is judged on
        that part only. For a DataFrame: ``{method: that dict}``.
        Correlations are NaN when fewer than two models have finite scores (or a constant input).

    Raises:
        InputValueError: truth misses scored models, non-numeric values, NaN truth.

    Examples:
        >>> evaluate({"a": 3.0, "b": 2.0, "c": 1.0}, {"a": 0.9, "b": 0.8, "c": 0.7})["kendall"]
        1.0
    """
    if truth_se is None and isinstance(truth, pd.DataFrame) and "se" in truth.columns and "model" in truth.columns:
        truth_se = dict(zip(truth["model"].astype(str), truth["se"].astype(float)))
    t = _as_series(truth, "truth")
    noise = _truth_noise(truth_samples, truth_se)
    boot = {"n_boot": int(n_boot) if intervals else 0, "level": float(level), "seed": int(seed)}
    keys = EVALUATION_KEYS + (INTERVAL_KEYS if intervals else ())

    def one(s: Any, name: str) -> dict[str, float]:
        e = _evaluate_one(s, t, name, noise, boot)
        return {k: e[k] for k in keys}

    if isinstance(scores, pd.DataFrame):
        return {str(c): one(_as_series(scores[c], "scores"), str(c)) for c in scores.columns}
    return one(_as_series(scores, "scores"), "scores")


def _truth_noise(samples: Mapping[str, Any] | None, se: Mapping[str, float] | None) -> Any:
    """``models -> (samples list | None, se array | None)`` for the bootstrap, checking coverage."""
    if samples is None and se is None:
        return None

    def pick(models: list[str]) -> tuple[Any, Any]:
        if samples is not None:
            miss = [m for m in models if str(m) not in {str(k) for k in samples}]
            if miss:
                raise InputValueError(f"evaluate: truth_samples has no per-sample correctness for {miss[:10]}.")
            lut = {str(k): v for k, v in samples.items()}
            return [np.asarray(lut[m], dtype=np.float64) for m in models], None
        lut = {str(k): float(v) for k, v in se.items()}  # type: ignore[union-attr]
        miss = [m for m in models if m not in lut]
        if miss:
            raise InputValueError(f"evaluate: truth_se has no standard error for {miss[:10]}.")
        return None, np.array([lut[m] for m in models])
    return pick


__all__ = ["EVALUATION_KEYS", "INTERVAL_KEYS", "evaluate"]
