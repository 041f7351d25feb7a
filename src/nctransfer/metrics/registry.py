"""Registry of collapse metrics: the single source of truth for names, direction, range, reference and needs.

Each entry is a :class:`MetricInfo`. ``needs`` is ``"stats"`` (computable from a
:class:`~nctransfer.stats.FeatureStats`) or ``"samples"`` (per-sample features required); ``requires`` lists
extra inputs (``"W"``: a classifier). :func:`compute_all` evaluates every applicable metric, sharing the
intermediate work through one :class:`~nctransfer.metrics.PreparedFeatures`.

Examples:
    >>> from nctransfer.metrics import METRICS, list_metrics
    >>> list_metrics("nc2_*")
    ['nc2_equinorm', 'nc2_equiangularity', 'nc2_max_angle', 'nc2_etf_distance']
    >>> METRICS["vci"].direction
    'lower = more collapsed'
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from nctransfer.exceptions import InputValueError, NotFoundError
from nctransfer.metrics import collapse as C
from nctransfer.metrics._prepare import PreparedFeatures, prepare

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_NEEDS = ("stats", "samples")
_DIRECTIONS = ("lower", "higher")


@dataclass(frozen=True)
class MetricInfo:
    """Metadata of a registered metric.

    Attributes:
        name: lowercase snake_case key (also the key in :func:`compute_all`'s output).
        fn: ``fn(X_or_stats, y=None, **options) -> float``; receives a ``PreparedFeatures`` from ``compute_all``.
        more_collapsed: ``"lower"`` or ``"higher"`` values mean more collapsed features.
        range: ``(low, high)`` bounds of the value (``math.inf`` when unbounded).
        needs: ``"stats"`` or ``"samples"``.
        reference: paper, and the section of docs/methods.md with the formula.
        description: one line.
        requires: extra keyword inputs needed (e.g. ``("W",)``); ``compute_all`` skips the metric without them.
    """

    name: str
    fn: Callable[..., float]
    more_collapsed: str
    range: tuple[float, float]
    needs: str
    reference: str
    description: str = ""
    requires: tuple[str, ...] = field(default_factory=tuple)

    @property
    def higher_is_more_collapsed(self) -> bool:
        return self.more_collapsed == "higher"

    @property
    def direction(self) -> str:
        return f"{self.more_collapsed} = more collapsed"

    def range_str(self) -> str:
        def fmt(v: float) -> str:
            return "inf" if v == math.inf else "-inf" if v == -math.inf else f"{v:g}"
        return f"[{fmt(self.range[0])}, {fmt(self.range[1])}]"


METRICS: dict[str, MetricInfo] = {}


def register_metric(name: str, *, more_collapsed: str, range: tuple[float, float], needs: str, reference: str,
                    description: str = "", requires: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Decorator registering ``fn(X_or_stats, y=None, **options) -> float`` under ``name``.

    Raises:
        InputValueError: a name that is not lowercase snake_case or already registered, or bad metadata.
    """
    if not _NAME.match(name):
        raise InputValueError(f"metric name must be lowercase snake_case; got {name!r}.")
    if name in METRICS:
        raise InputValueError(f"metric {name!r} is already registered.")
    if more_collapsed not in _DIRECTIONS:
        raise InputValueError(f"more_collapsed must be one of {_DIRECTIONS}; got {more_collapsed!r}.")
    if needs not in _NEEDS:
        raise InputValueError(f"needs must be one of {_NEEDS}; got {needs!r}.")
    lo, hi = range
    if not lo <= hi:
        raise InputValueError(f"range must be (low, high) with low <= high; got {range!r}.")

    def decorator(fn: Callable) -> Callable:
        METRICS[name] = MetricInfo(name, fn, more_collapsed, (float(lo), float(hi)), needs, reference,
                                   description, tuple(requires))
        return fn
    return decorator


def list_metrics(pattern: str = "*", *, needs: str | None = None) -> list[str]:
    """Registered metric names matching a shell-style ``pattern`` (registration order), optionally by ``needs``."""
    if needs is not None and needs not in _NEEDS:
        raise InputValueError(f"needs must be one of {_NEEDS} or None; got {needs!r}.")
    return [n for n, m in METRICS.items() if fnmatch.fnmatchcase(n, pattern) and (needs is None or m.needs == needs)]


def get_metric(name: str) -> MetricInfo:
    """The :class:`MetricInfo` of ``name``; unknown names raise :class:`NotFoundError` with suggestions."""
    try:
        return METRICS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(METRICS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise NotFoundError(f"unknown metric {name!r}.{hint} Available: {', '.join(METRICS)}.") from None


def compute_all(X_or_stats: Any, y: Any = None, *, metrics: Any = None, W: Any = None, b: Any = None,
                predictions: Any = None, options: Mapping[str, Mapping[str, Any]] | None = None,
                domain: str = "auto") -> dict[str, float]:
    """Every applicable registered metric of ``(X, y)`` or a ``FeatureStats``, as ``{name: value}``.

    Metrics that need samples are skipped when only statistics are given, and those requiring a classifier
    (``nc3``) are skipped without ``W``. ``nc4`` compares the nearest-class-mean rule with ``predictions`` or the
    classifier ``(W, b)`` when given, else with the labels. Intermediate results (SVD of the class means, the
    factorisation of ``Sigma_T``...) are computed once.

    Args:
        X_or_stats, y: features ``[N, d]`` and labels ``[N]``, or a ``FeatureStats`` / ``PreparedFeatures``.
        metrics: names or shell patterns to compute (default: all registered). Naming a metric whose needs are
            not met raises instead of skipping it.
        W, b: classifier weights ``[K, d]`` (sorted class order) and bias ``[K]`` for ``nc3`` / ``nc4``.
        predictions: classifier predictions ``[N]`` (labels) for ``nc4``.
        options: per-metric keyword options, e.g. ``{"vci": {"ridge": 1e-3}, "nc1": {"rank": 5}}``.
        domain: see :func:`~nctransfer.metrics.prepare`.

    Returns:
        Ordered ``dict`` of float values (NaN where a metric is undefined, with a warning).

    Examples:
        >>> import numpy as np
        >>> from nctransfer.metrics import compute_all
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(200, 5)); y = np.arange(200) % 4; X[:, 0] += 3 * y
        >>> values = compute_all(X, y)
        >>> sorted(values)[:4]
        ['cdnv', 'class_separation', 'cosine_d_within', 'fuzziness']
    """
    p = prepare(X_or_stats, y, domain=domain)
    options = dict(options or {})
    unknown = [k for k in options if k not in METRICS]
    if unknown:
        raise NotFoundError(f"options given for unknown metric(s) {unknown}; available: {', '.join(METRICS)}.")
    if metrics is None:
        names, explicit = list(METRICS), False
    else:
        wanted = [metrics] if isinstance(metrics, str) else list(metrics)
        names = []
        for pat in wanted:
            found = list_metrics(pat)
            if not found:
                get_metric(pat)  # raises with suggestions
            names += [n for n in found if n not in names]
        explicit = True
    extra = {"W": W}
    out: dict[str, float] = {}
    for name in names:
        info = METRICS[name]
        if info.needs == "samples" and not p.has_samples:
            if explicit:
                p.require_samples(name)
            continue
        missing = [r for r in info.requires if extra.get(r) is None]
        if missing:
            if explicit:
                raise InputValueError(f"metric {name!r} requires {missing}; pass them to compute_all.")
            continue
        kwargs = dict(options.get(name, {}))
        kwargs.update({r: extra[r] for r in info.requires})
        if name == "nc4":
            kwargs.setdefault("W", W)
            kwargs.setdefault("b", b)
            kwargs.setdefault("predictions", predictions)
        out[name] = float(info.fn(p, **kwargs))
    return out


# ---------------------------------------------------------------------------------------- built-in metrics
register_metric("nc1", more_collapsed="lower", range=(0, math.inf), needs="stats",
                reference="Papyan et al. 2020 (PNAS); Li et al., TMLR 2024, eq. 4; docs/methods.md#nc1",
                description="(1/K) tr(Sigma_W Sigma_B^+), top min(d, K-1) eigenpairs of Sigma_B")(C.nc1)
register_metric("nc2_equinorm", more_collapsed="lower", range=(0, math.inf), needs="stats",
                reference="Papyan et al. 2020; docs/methods.md#nc2",
                description="std/mean of the centred class-mean norms")(C.nc2_equinorm)
register_metric("nc2_equiangularity", more_collapsed="lower", range=(0, 1), needs="stats",
                reference="Papyan et al. 2020; docs/methods.md#nc2",
                description="std of the cosines between centred class means")(C.nc2_equiangularity)
register_metric("nc2_max_angle", more_collapsed="lower", range=(0, 2), needs="stats",
                reference="Papyan et al. 2020; docs/methods.md#nc2",
                description="mean |cos + 1/(K-1)| between centred class means")(C.nc2_max_angle)
register_metric("nc2_etf_distance", more_collapsed="lower", range=(0, 2), needs="stats",
                reference="Papyan et al. 2020; docs/methods.md#nc2",
                description="Frobenius distance of the normalised means' Gram to a simplex ETF")(C.etf_distance)
register_metric("nc3", more_collapsed="lower", range=(0, 4), needs="stats", requires=("W",),
                reference="Papyan et al. 2020; docs/methods.md#nc3",
                description="||W/||W|| - M/||M||||_F^2, classifier vs centred means")(C.nc3)
register_metric("nc4", more_collapsed="lower", range=(0, 1), needs="samples",
                reference="Papyan et al. 2020; docs/methods.md#nc4",
                description="disagreement of the nearest-class-mean rule with the classifier (or the labels)")(C.nc4)
register_metric("ncc_accuracy", more_collapsed="higher", range=(0, 1), needs="samples",
                reference="Papyan et al. 2020; Li et al., TMLR 2024, section 2; docs/methods.md#nc4",
                description="nearest-class-mean accuracy")(C.ncc_accuracy)
register_metric("cdnv", more_collapsed="lower", range=(0, math.inf), needs="stats",
                reference="Galanti et al. 2022 (ICLR); Li et al., TMLR 2024, appendix A; docs/methods.md#cdnv",
                description="mean over class pairs of (Var_i + Var_j) / (2 ||mu_i - mu_j||^2)")(C.cdnv)
register_metric("numerical_rank", more_collapsed="lower", range=(1, math.inf), needs="samples",
                reference="Li et al., TMLR 2024, appendix A; docs/methods.md#numerical-rank",
                description="mean over classes of ||H_k||_F^2 / ||H_k||_2^2 (raw features)")(C.numerical_rank)
register_metric("vci", more_collapsed="lower", range=(0, 1), needs="stats",
                reference="Xu & Liu, ICML 2023, def. 5.3; docs/methods.md#vci",
                description="1 - tr(Sigma_T^+ Sigma_Bw) / min(d, K-1); invariant to invertible linear maps")(C.vci)
register_metric("fuzziness", more_collapsed="lower", range=(0, math.inf), needs="stats",
                reference="Xu & Liu, ICML 2023, section 3.2; docs/methods.md#other-metrics",
                description="tr(Sigma_W Sigma_B^+) = K * NC1")(C.fuzziness)
register_metric("squared_distance", more_collapsed="lower", range=(0, math.inf), needs="stats",
                reference="Hui et al. 2022; Xu & Liu, ICML 2023, eq. 4; docs/methods.md#other-metrics",
                description="tr(Sigma_W) / tr(Sigma_Bw)")(C.squared_distance)
register_metric("cosine_d_within", more_collapsed="lower", range=(0, 2), needs="stats",
                reference="Kornblith et al. 2021 (NeurIPS); Xu & Liu, ICML 2023; docs/methods.md#other-metrics",
                description="mean within-class cosine distance")(C.cosine_within_distance)
register_metric("class_separation", more_collapsed="higher", range=(-math.inf, 1), needs="stats",
                reference="Kornblith et al. 2021 (NeurIPS); Xu & Liu, ICML 2023; docs/methods.md#other-metrics",
                description="1 - d_within / d_total (cosine distances)")(C.class_separation)

__all__ = ["MetricInfo", "METRICS", "register_metric", "list_metrics", "get_metric", "compute_all",
           "PreparedFeatures"]
