"""Collapse-based transferability scores (docs/methods.md#collapse-scores): collapse metrics of ``nctransfer.metrics`` turned
so that higher = predicted to transfer better.

- ``neg_nc1 = -NC1``, ``neg_log_nc1 = -log NC1`` (Li et al., TMLR 2024, eq. 4; docs/methods.md#nc1),
- ``neg_vci = -VCI`` (Xu & Liu, ICML 2023, def. 5.3; docs/methods.md#vci),
- ``neg_cdnv = -CDNV`` (Galanti et al. 2022; docs/methods.md#cdnv),
- ``ncc_accuracy``: nearest-class-centre accuracy on the target data (docs/methods.md#nc4).

The first four accept a :class:`~nctransfer.stats.FeatureStats` (one pass over the data). All accept a
:class:`~nctransfer.stats.LabelledFeatures` workspace (e.g. the ``Workspace`` of :func:`~nctransfer.transferability.rank`)
as the metrics do: its validated arrays, class means and centring are reused, and the metrics' summary is cached
in it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nctransfer.metrics import cdnv, nc1, vci
from nctransfer.metrics import ncc_accuracy as _ncc
from nctransfer.transferability._common import blas_limited
from nctransfer.transferability.base import register


@blas_limited
def neg_nc1(X_or_stats: Any, y: Any = None, **options: Any) -> float:
    """``-NC1`` (options of :func:`nctransfer.metrics.nc1`: ``rank``, ``rtol``). Range ``(-inf, 0]``."""
    return -nc1(X_or_stats, y, **options)


@blas_limited
def neg_log_nc1(X_or_stats: Any, y: Any = None, **options: Any) -> float:
    """``-log NC1`` (``+inf`` for perfectly collapsed features). Options as :func:`nctransfer.metrics.nc1`."""
    v = nc1(X_or_stats, y, **options)
    with np.errstate(divide="ignore"):
        return float(-np.log(v))


@blas_limited
def neg_vci(X_or_stats: Any, y: Any = None, **options: Any) -> float:
    """``-VCI`` (options of :func:`nctransfer.metrics.vci`: ``ridge``, ``rtol``, ``warn_ratio``). Range ``[-1, 0]``."""
    return -vci(X_or_stats, y, **options)


@blas_limited
def neg_cdnv(X_or_stats: Any, y: Any = None) -> float:
    """``-CDNV`` (mean over ordered class pairs). Range ``(-inf, 0]``."""
    return -cdnv(X_or_stats, y)


@blas_limited
def ncc_accuracy(X: Any, y: Any = None) -> float:
    """Nearest-class-centre accuracy of the target data on itself, in ``[0, 1]`` (needs per-sample features)."""
    return _ncc(X, y)


_REF_NC1 = "Papyan, Han & Donoho, PNAS 2020 (NC1); Li et al., TMLR 2024, eq. 4"
neg_nc1 = register("neg_nc1", title="-NC1", spec="docs/methods.md#collapse-scores", reference=_REF_NC1, accepts_stats=True,
         cost="O(N d r)")(neg_nc1)
neg_log_nc1 = register("neg_log_nc1", title="-log NC1", spec="docs/methods.md#collapse-scores", reference=_REF_NC1, accepts_stats=True,
         cost="O(N d r)")(neg_log_nc1)
neg_vci = register("neg_vci", title="-VCI", spec="docs/methods.md#collapse-scores", reference="Xu & Liu, ICML 2023, def. 5.3",
         accepts_stats=True, cost="O(N d^2 + d^3)")(neg_vci)
neg_cdnv = register("neg_cdnv", title="-CDNV", spec="docs/methods.md#collapse-scores", reference="Galanti, Gyorgy & Hutter, ICLR 2022",
         accepts_stats=True, cost="O(N d + K^2 d)")(neg_cdnv)
ncc_accuracy = register("ncc_accuracy", title="NCC accuracy", spec="docs/methods.md#collapse-scores",
         reference="Papyan, Han & Donoho, PNAS 2020 (NC4); Galanti et al. 2022", passes=2,
         cost="O(N d K)")(ncc_accuracy)

__all__ = ["neg_nc1", "neg_log_nc1", "neg_vci", "neg_cdnv", "ncc_accuracy"]
