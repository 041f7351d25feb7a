"""Stage 3 of a run: the collapse metrics of every candidate (docs/methods.md#collapse-metrics), and the
layer-wise curves built from them (Li et al., "Understanding and Improving Transfer Learning of Deep Models via
Neural Collapse", TMLR 2024, figure 9: deeper taps are more collapsed and transfer better).

- :func:`collapse_values`: every metric of :func:`nctransfer.metrics.compute_all` on one candidate's training
  features (what ``layers.analyze`` tabulates per tap);
- :func:`collapse_metrics`: the same for a pool, cached, JSON-able (non-finite values as ``None``);
- :func:`layer_curves`: per model, its taps in forward order with their metrics and accuracy, and the Spearman
  correlation of NC1 with accuracy across taps.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from nctransfer.metrics import compute_all
from nctransfer.stages.cache import ResultCache
from nctransfer.stages.candidates import Candidate, Model, Run
from nctransfer.stages.settings import CollapseSettings
from nctransfer.stats.correlation import spearman

#: the metrics a layer-wise curve keeps per tap
CURVE_METRICS = ("nc1", "vci", "cdnv", "ncc_accuracy", "numerical_rank")


def collapse_values(c: Candidate, settings: CollapseSettings | None = None) -> dict[str, float]:
    """Every collapse metric ``settings`` asks for on the candidate's training features ``X_train [N, d]``,
    ``y_train [N]`` (:func:`nctransfer.metrics.compute_all`; NaN where a metric is undefined, with a warning)."""
    s = settings or CollapseSettings()
    return compute_all(c.X_train, c.y_train, metrics=s.metrics, options=s.options)


def collapse_metrics(cands: list[Candidate], cache: ResultCache, run: Run,
                     settings: CollapseSettings | None = None) -> dict[str, dict[str, float | None]]:
    """``{candidate: {metric: value or None}}`` of :func:`collapse_values` (cached under the candidate's digest)."""
    s = settings or CollapseSettings()
    out = {}
    for c in run.bar(cands, "collapse metrics"):
        key: dict[str, Any] = {"features": c.digest}
        if not s.is_default():
            key.update(metrics=s.metrics, options=s.options)
        hit = cache.get("collapse", key)
        if hit is None:
            vals = collapse_values(c, s)
            hit = cache.put("collapse", key, {k: (float(v) if np.isfinite(v) else None) for k, v in vals.items()
                                              if isinstance(v, (int, float, np.floating))})
        out[c.name] = hit
    return out


def layer_curves(models: list[Model], cands: list[Candidate], collapse: Mapping[str, Any],
                 truth: Mapping[str, Any]) -> dict[str, Any]:
    """``{model: {"taps": [{tap, index, dim, metrics..., accuracy}], "correlations":
    {"spearman_nc1_accuracy": rho}}}`` for every model with two taps or more (rho with three or more pairs)."""
    out: dict[str, Any] = {}
    acc = truth.get("accuracy") or {}
    acc_key = "probe_accuracy" if truth.get("kind") == "probe" else "accuracy"
    for m in models:
        rows = []
        for c in cands:
            if c.model is not m:
                continue
            col = collapse.get(c.name) or {}
            row = {"tap": c.tap, "index": c.tap_index, "dim": c.dim}
            for k in CURVE_METRICS:
                if k in col:
                    row[k] = col[k]
            if c.name in acc:
                row[acc_key] = acc[c.name]
            rows.append(row)
        if len(rows) < 2:
            continue
        corr: dict[str, float | None] = {}
        rho, _, n_pairs = spearman([r.get("nc1") for r in rows], [r.get(acc_key) for r in rows])
        if n_pairs >= 3:
            corr["spearman_nc1_accuracy"] = rho if np.isfinite(rho) else None
        out[m.label] = {"taps": rows, "correlations": corr}
    return out


__all__ = ["CURVE_METRICS", "collapse_metrics", "collapse_values", "layer_curves"]
