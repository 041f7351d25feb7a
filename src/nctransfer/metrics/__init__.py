"""Neural-collapse metrics (docs/methods.md#collapse-metrics) as pure functions of ``FeatureStats`` or ``(X, y)``.

Every metric accepts features ``X [N, d]`` with labels ``y [N]``, a :class:`~nctransfer.stats.FeatureStats`
(where the streaming statistics suffice), or a :class:`PreparedFeatures` from :func:`prepare` (shares the work
between several metrics). :func:`compute_all` returns every applicable metric as a dict; :data:`METRICS` holds
each metric's direction, range, reference and needs.

Examples:
    >>> import numpy as np
    >>> from nctransfer import FeatureStats, metrics
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), 50); X = rng.normal(size=(150, 8)) + 4 * np.eye(8)[y]
    >>> stats = FeatureStats().update(X, y)
    >>> bool(abs(metrics.nc1(stats) - metrics.nc1(X, y)) < 1e-12)
    True
"""

from nctransfer.metrics._prepare import PreparedFeatures, prepare
from nctransfer.metrics.collapse import (
    CosineSimilarityResult,
    NC2Result,
    cdnv,
    cdnv_matrix,
    class_separation,
    cosine_similarity,
    cosine_within_distance,
    etf_distance,
    fuzziness,
    nc1,
    nc2,
    nc2_equiangularity,
    nc2_equinorm,
    nc2_max_angle,
    nc3,
    nc4,
    ncc_accuracy,
    ncc_predict,
    numerical_rank,
    squared_distance,
    vci,
)
from nctransfer.metrics.probe import ProbeResult, pack_correct, probe_accuracy, unpack_correct
from nctransfer.metrics.registry import METRICS, MetricInfo, compute_all, get_metric, list_metrics, register_metric
from nctransfer.metrics.table import format_table

__all__ = [
    "METRICS", "MetricInfo", "register_metric", "list_metrics", "get_metric", "compute_all", "format_table",
    "PreparedFeatures", "prepare",
    "nc1", "fuzziness", "nc2", "NC2Result", "nc2_equinorm", "nc2_equiangularity", "nc2_max_angle", "etf_distance",
    "nc3", "nc4", "ncc_accuracy", "ncc_predict", "cdnv", "cdnv_matrix", "numerical_rank", "vci",
    "squared_distance", "cosine_similarity", "CosineSimilarityResult", "cosine_within_distance",
    "class_separation", "probe_accuracy", "ProbeResult", "pack_correct", "unpack_correct",
]
