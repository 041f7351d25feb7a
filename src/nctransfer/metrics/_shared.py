"""Helpers shared by the collapse metrics: the undefined-metric convention (a warning and NaN), the ``rtol``
check, and the per-sample requirement."""

from __future__ import annotations

import warnings
from typing import Any

from nctransfer.exceptions import InputValueError, UndefinedMetricWarning
from nctransfer.metrics._prepare import PreparedFeatures, prepare
from nctransfer.stats.feature_stats import FeatureStats

NAN = float("nan")


def _undefined(message: str) -> float:
    warnings.warn(message, UndefinedMetricWarning, stacklevel=3)
    return NAN


def _check_rtol(rtol: float | None, default: float) -> float:
    if rtol is None:
        return default
    rtol = float(rtol)
    if not (0.0 <= rtol < 1.0):
        raise InputValueError(f"rtol must be in [0, 1); got {rtol!r}.")
    return rtol


def _samples(X: Any, y: Any, metric: str) -> PreparedFeatures:
    if isinstance(X, FeatureStats):
        PreparedFeatures().require_samples(metric)  # raises the explanatory error
    p = prepare(X, y)
    p.require_samples(metric)
    return p
