"""Layer-wise collapse and transfer (Li et al., TMLR 2024, section 2.4 / 3.2, figure 9; docs/methods.md#layer-wise #finetuning).

For every tap of a pre-trained model (each block's output, pooled per docs/methods.md#layer-wise, and the penultimate
feature), through the shared stages of :mod:`nctransfer.stages` (the extraction, collapse and probe steps that
``rank_models`` runs on every candidate, here on the taps of one model):

- every collapse metric of :mod:`nctransfer.metrics` on the **training** features (``compute_all``);
- the linear-probe **test** accuracy (multinomial logistic regression, L2 strength chosen on a validation split
  of the training features; :func:`nctransfer.metrics.probe.probe_accuracy`, docs/methods.md#finetuning);
- the nearest-class-mean test accuracy (class means from the training features);

and, across taps, the Spearman rank correlation between each metric and the probe accuracy. Li et al., TMLR 2024 (fig. 9)
reports that deeper layers are more collapsed (lower NC1) and transfer better: a negative NC1-accuracy
correlation.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from nctransfer.exceptions import InputValueError
from nctransfer.layers.config import LayersConfig
from nctransfer.layers.plot import plot_layers
from nctransfer.metrics import ncc_accuracy
from nctransfer.metrics.probe import DEFAULT_C_GRID
from nctransfer.stages import Model, candidates_of, collapse_values, extract_splits, probe_candidate
from nctransfer.stages.settings import PROBE_VAL_FRACTION
from nctransfer.stats.correlation import spearman  # (rho, p, n) of the finite pairs; public here too
from nctransfer.utils.threads import limit_threads

CORRELATED = ("nc1", "vci", "cdnv")


@dataclass
class LayerAnalysis:
    """Result of :func:`analyze`.

    Attributes:
        rows: one dict per tap, in forward order: ``tap``, ``index``, ``dim``, every metric, ``probe_accuracy``,
            ``probe_C``, ``probe_val_accuracy``, ``ncc_test_accuracy``.
        correlations: ``spearman_<metric>_accuracy`` (rho across taps) for NC1, VCI and CDNV, and
            ``p_value_nc1`` / ``n_taps``.
        metric_correlations: ``{metric: {"spearman": rho, "p_value": p}}`` for every metric.
        info: model, dataset and run details (sizes, cache hits, timings).
    """

    rows: list[dict[str, Any]]
    correlations: dict[str, float]
    metric_correlations: dict[str, dict[str, float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def taps(self) -> list[str]:
        return [r["tap"] for r in self.rows]

    def column(self, key: str) -> list[float]:
        return [float(r.get(key, float("nan"))) for r in self.rows]

    def to_dict(self) -> dict[str, Any]:
        """The ``layers.json`` content: ``{"taps": [...], "correlations": {...}, "metric_correlations": {...},
        "info": {...}}``."""
        return {"taps": self.rows, "correlations": self.correlations,
                "metric_correlations": self.metric_correlations, "info": self.info}

    def to_dataframe(self) -> Any:
        return pd.DataFrame(self.rows)

    def table(self, columns: Sequence[str] = ("dim", "nc1", "vci", "cdnv", "numerical_rank", "ncc_test_accuracy",
                                                "probe_accuracy"), digits: int = 4) -> str:
        """Plain-text table (one line per tap) followed by the correlations."""
        cols = [c for c in columns if any(c in r for r in self.rows)]
        head = ["#", "tap", *cols]
        body = []
        for r in self.rows:
            cells = [str(r["index"]), str(r["tap"])]
            for c in cols:
                v = r.get(c)
                if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
                    cells.append(str(v))
                elif v is None or (isinstance(v, float) and math.isnan(v)):
                    cells.append("nan")
                elif c.endswith("accuracy"):
                    cells.append(f"{100 * v:.1f}%")
                else:
                    cells.append(f"{v:.{digits}g}")
            body.append(cells)
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
        right = [True] + [False] + [True] * len(cols)

        def line(cells: list[str]) -> str:
            return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right))

        out = [line(head), line(["-" * w for w in widths])] + [line(b) for b in body]
        corr = ", ".join(f"{k} = {v:.3f}" if isinstance(v, float) else f"{k} = {v}"
                         for k, v in self.correlations.items())
        return "\n".join(out) + ("\n" + corr if corr else "")

    def plot(self, path: Any = None, title: str | None = None, dpi: int = 120) -> Any:
        """Two panels: NC1 (log scale) and probe accuracy per tap; probe accuracy against NC1 across taps.
        Saves a PNG when ``path`` is given; returns the matplotlib figure."""
        return plot_layers(self, path=path, title=title, dpi=dpi)


def analyze(
    model: Any,
    train: Any,
    test: Any,
    taps: Any = "all",
    *,
    metrics: Sequence[str] | None = None,
    metric_options: dict[str, dict[str, Any]] | None = None,
    probe: bool = True,
    C_grid: Sequence[float] | None = DEFAULT_C_GRID,
    probe_val_fraction: float = PROBE_VAL_FRACTION,
    probe_max_iter: int = 500,
    seed: int = 0,
    batch_size: int = 64,
    device: str | None = None,
    dtype: str | None = None,
    token_pool: str = "mean",
    cache_dir: Any = None,
    no_cache: bool = False,
    progress: bool = True,
    threads: int | None = None,
    pool: Any = "auto",
    config: LayersConfig | None = None,
) -> LayerAnalysis:
    """Layer-wise collapse metrics and linear-probe accuracy of ``model`` on ``(train, test)``.

    Args:
        model: a model from :func:`nctransfer.models.load_model` (any ``nn.Module`` with discoverable taps works).
        train, test: datasets from :func:`nctransfer.data.load_dataset` (with the model's transform), or anything
            :func:`nctransfer.extract.extract` takes as given (a Dataset, a DataLoader, a Hugging Face dataset).
        taps: tap selector (default every unit and ``penultimate``); see :func:`nctransfer.features.select_taps`:
            also any module path (``"layer3.1.conv2"``) or a comma-separated list of them.
        metrics: metric names/patterns for ``compute_all`` (default every applicable one).
        metric_options: per-metric options for ``compute_all`` (e.g. ``{"vci": {"ridge": 1e-3}}``).
        probe: fit the linear probe (``False``: collapse metrics and NCC accuracy only).
        C_grid, probe_val_fraction, probe_max_iter, seed: probe settings (docs/methods.md#finetuning).
        batch_size, device, dtype, token_pool, cache_dir, no_cache, progress: extraction settings
            (:func:`nctransfer.extract.extract`); features of both splits are cached when ``cache_dir`` is given.
        pool: pooling of each tap's output (``"auto"`` by shape, or ``"avg"``, ``"max"``, ``"cls"``,
            ``"flatten"``, a callable); see :mod:`nctransfer.features.pooling`.
        threads: if given, the number of torch intra-op and BLAS threads during the analysis (restored after).
            The probes and metrics are small problems: on a busy machine one thread is often much faster.
        config: a :class:`~nctransfer.layers.config.LayersConfig` holding every setting above (keywords that
            differ from their defaults are applied on top of it).

    Returns:
        :class:`LayerAnalysis` (``rows``, ``correlations``, ``table()``, ``plot()``, ``to_dict()``).

    Examples:
        >>> model = load_model("efficientnet_lite0")                                    # doctest: +SKIP
        >>> tr = load_dataset("fashion-mnist", "train", model=model, image_size=64, per_class=50)  # doctest: +SKIP
        >>> te = load_dataset("fashion-mnist", "test", model=model, image_size=64, per_class=50)   # doctest: +SKIP
        >>> print(analyze(model, tr, te).table())                                       # doctest: +SKIP
    """
    s = LayersConfig.from_call(  # every setting typed and validated in one place
        config, taps=taps, metrics=metrics, metric_options=metric_options, probe=probe, C_grid=C_grid,
        probe_val_fraction=probe_val_fraction, probe_max_iter=probe_max_iter, seed=seed, batch_size=batch_size,
        device=device, dtype=dtype, token_pool=token_pool, cache_dir=cache_dir, no_cache=no_cache, progress=progress,
        threads=threads, pool=pool)
    with limit_threads(s.threads):
        return _analyze(model, train, test, s)


def _analyze(model: Any, train: Any, test: Any, s: LayersConfig) -> LayerAnalysis:
    """The analysis of :func:`analyze` under settings ``s``: the shared stages (extract both splits, then per tap
    the collapse metrics and the linear probe) and the correlations across taps."""
    t0 = time.perf_counter()
    tr, te = extract_splits(model, train, test, s.taps, s.extraction_settings(),
                            desc=("layers: train", "layers: test"))
    t_extract = time.perf_counter() - t0
    if len(np.unique(train.targets)) < 2:
        raise InputValueError("analyze: the training set needs at least 2 classes.")
    info = getattr(model, "nctransfer_info", None)
    label = info.name if info is not None else type(model).__name__
    m = Model(label=label, spec=model, pretrained=getattr(info, "pretrained", None), control=False, module=model,
              taps=list(tr.taps))
    collapse, probe_settings = s.collapse_settings(), s.probe_settings()
    rows: list[dict[str, Any]] = []
    for c in candidates_of(m, tr, te, "all", probs=False, digest=False):  # one candidate per tap
        c.X_train, c.y_train = np.asarray(c.X_train, dtype=np.float64), np.asarray(c.y_train)
        c.X_test, c.y_test = np.asarray(c.X_test, dtype=np.float64), np.asarray(c.y_test)
        row: dict[str, Any] = {"tap": c.tap, "index": c.tap_index, "dim": int(c.X_train.shape[1])}
        with warnings.catch_warnings(record=True) as caught:  # kept per tap, as notes of its row
            warnings.simplefilter("always")
            values = collapse_values(c, collapse)
        row.update({k: float(v) for k, v in values.items()})
        notes = sorted({str(w.message).split(":")[0] for w in caught})
        if notes:
            row["warnings"] = notes
        row["ncc_test_accuracy"] = float(ncc_accuracy(c.X_test, c.y_test, means=c.stats))
        if s.probe:
            p = probe_candidate(c, probe_settings)
            row["probe_accuracy"] = p.accuracy
            row["probe_C"] = p.C
            row["probe_train_accuracy"] = p.train_accuracy
            row["probe_val_accuracy"] = max(p.val_accuracy.values()) if p.val_accuracy else float("nan")
        rows.append(row)
    target = "probe_accuracy" if s.probe else "ncc_test_accuracy"
    metric_names = [k for k in rows[0] if k not in ("tap", "index", "dim", "warnings") and not k.startswith("probe")
                    and k != "ncc_test_accuracy"]
    acc = [r[target] for r in rows]
    metric_corr = {}
    for m in metric_names:
        rho, p, n = spearman([r.get(m, float("nan")) for r in rows], acc)
        metric_corr[m] = {"spearman": rho, "p_value": p, "n_taps": n}
    suffix = "accuracy" if s.probe else "ncc_accuracy"
    correlations: dict[str, Any] = {}
    for m in CORRELATED:
        if m in metric_corr:
            correlations[f"spearman_{m}_{suffix}"] = metric_corr[m]["spearman"]
    if "nc1" in metric_corr:
        correlations["p_value_nc1"] = metric_corr["nc1"]["p_value"]
    correlations["n_taps"] = len(rows)
    run = {
        "model": label,
        "train": getattr(train, "describe", lambda: {"n": len(train)})(),
        "test": getattr(test, "describe", lambda: {"n": len(test)})(),
        "accuracy_target": target,
        "extract_seconds": round(t_extract, 3),
        "analysis_seconds": round(time.perf_counter() - t0 - t_extract, 3),
        "train_from_cache": tr.from_cache,
        "test_from_cache": te.from_cache,
        "token_pool": s.token_pool,
    }
    for d in (run["train"], run["test"]):
        if isinstance(d, dict) and len(d.get("classes", [])) > 50:
            d.pop("classes")
    return LayerAnalysis(rows=rows, correlations=correlations, metric_correlations=metric_corr, info=run)
