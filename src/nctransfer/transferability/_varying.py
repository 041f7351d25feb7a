"""Exact reductions of a candidate's features to the columns that vary, and the top scatter eigenpairs of the
PCA-based scores (GBC, NCTI) from one product when that is cheaper than Krylov iteration on the samples.

Features that are constant on the target set centre to exact zero columns (see
:func:`nctransfer.transferability._linalg.varying_columns`): the scatter ``Xc^T Xc`` is then block diagonal with
an exact zero block, so its nonzero eigenpairs, its pseudo-inverse and its quadratic forms with the class means
(which vanish on those columns too) come from the ``m x m`` scatter of the ``m`` varying columns. Real network
features have many: 606, 290 and 1 195 of the 1 280 penultimate units of EfficientNet-Lite0/1/2 on 3 000
Fashion-MNIST images at 32 px never activate. On such a tap the reduced scatter costs ``N m^2`` instead of
``N d^2`` and its eigendecomposition ``m^3`` instead of ``d^3``.

Everything here fills the workspace's own caches (``scatter_T_varying``, ``top_eigh_T``), so the scores that read
them (``Workspace.pca``) and a ranking run that shares one workspace between scores see one computation.
"""

from __future__ import annotations

import numpy as np

from nctransfer.transferability._common import Workspace, _gram_operator
from nctransfer.transferability._linalg import (
    block_krylov_top,
    dense_top_eigh,
    lapack_threads,
    varying_columns,
)


def varying(ws: Workspace) -> np.ndarray | None:
    """Sorted indices of the varying columns of ``ws``'s centred features, or ``None`` when every column varies
    (and for features on the GPU, whose scatter is formed there)."""
    if ws.on_gpu:
        return None
    return ws.cached("varying_columns", lambda: varying_columns(ws.Xc))


def varying_scatter(ws: Workspace) -> tuple[np.ndarray | None, np.ndarray]:
    """``(live, S)``: the varying columns and their scatter ``Xc[:, live]^T Xc[:, live]`` ``[m, m]`` (the whole
    ``scatter_T`` with ``live = None`` when every column varies). Taken from the cached ``d x d`` scatter when
    another score already formed it."""
    live = varying(ws)
    if live is None:
        return None, ws.scatter_T

    def compute() -> np.ndarray:
        if "scatter_T" in ws._cache:
            return ws.scatter_T[np.ix_(live, live)]
        Xl = np.take(ws.Xc, live, axis=1)
        with lapack_threads(len(live)):
            S = Xl.T @ Xl
        return (S + S.T) * 0.5
    return live, ws.cached("scatter_T_varying", compute)


def seed_top_eigh(ws: Workspace, k: int) -> None:
    """Fill ``ws``'s top-eigenpair cache with the top ``k`` eigenpairs of the total scatter computed on the varying
    columns, when that is cheaper than the workspace's own route (block Krylov on ``Xc^T (Xc V)``).

    - Some columns constant (``m < d`` varying): the eigenpairs of the ``m x m`` scatter, the eigenvectors padded
      with exact zeros on the constant columns -- formed by one product when ``N >= 2 m``, else block Krylov on
      ``Xc[:, live]``.
    - Every column varying and ``N >= 2 d``: the ``d x d`` scatter by one product (a matrix-matrix product at full
      speed; at ``N = 3 000, d = 1 280`` this plus the eigenpairs of the formed matrix took 0.2 s against 0.3 s for
      Krylov on the samples), then its top eigenpairs.

    Nothing happens on the GPU, in the Gram domain (``N < d``), when the workspace would use its full
    eigendecomposition anyway (``k > d / 3`` or already computed), when enough eigenpairs are cached, or when
    ``k`` exceeds the number of varying columns (the remaining eigenvalues are 0 and their eigenvectors arbitrary:
    the workspace's route chooses them as before).
    """
    d = ws.d
    if ws.on_gpu or ws.gram_domain or k < 1 or k > d // 3 or "eigh_T" in ws._cache:
        return
    best = ws._cache.get("top_eigh_T")
    if best is not None and best[0].shape[0] >= k:
        return
    live = varying(ws)
    m = d if live is None else len(live)
    if k > m or (live is None and (ws.n < 2 * d or "scatter_T" in ws._cache)):
        return  # the workspace's own route: Krylov on the samples, or on the scatter another score formed
    top = None
    if live is not None and ws.n < 2 * m and "scatter_T" not in ws._cache and m >= 400 and 6 * k <= m:
        with lapack_threads(m):
            top = block_krylov_top(_gram_operator(np.take(ws.Xc, live, axis=1)), m, k)
    if top is None:
        _, S = varying_scatter(ws)
        with lapack_threads(m):
            top = dense_top_eigh(S, k)
    w, V = top
    if live is not None:
        full = np.zeros((d, V.shape[1]))
        full[live] = V
        V = full
    ws._cache["top_eigh_T"] = (w, V)
