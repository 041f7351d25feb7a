"""LEEP: log expected empirical prediction (docs/methods.md#leep).

Nguyen, Hassner, Seeger & Archambeau, "LEEP: A New Measure to Evaluate Transferability of Learned
Representations", ICML 2020.

With the source classifier's probabilities ``theta [N, Z]`` on the target data, the empirical joint
``P(y, z) = (1/N) sum_{i: y_i = y} theta_i(z)``, the marginal ``P(z) = sum_y P(y, z)`` and the conditional
``P(y | z) = P(y, z) / P(z)``, LEEP is the average log-likelihood of the "expected empirical predictor"::

    LEEP = (1/N) sum_i log sum_z P(y_i | z) theta_i(z)

Some public copies (e.g. the SFDA and ETran repositories) return the mean *probability* instead of the mean
log-probability; that is a different quantity (it is available here as ``log=False`` for comparison only).
Streaming: two passes (the joint table, then the per-sample log-likelihood).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from nctransfer.exceptions import InputValueError
from nctransfer.stats.labelled import LabelledFeatures
from nctransfer.transferability._common import blas_limited, check_probs_for, Workspace, workspace
from nctransfer.transferability.base import register


def leep_from_probs(codes: np.ndarray, K: int, P: np.ndarray, *, log: bool = True) -> float:
    """LEEP of class codes ``[N]`` in ``0..K-1`` and probabilities ``P [N, Z]`` (no input checks)."""
    n = P.shape[0]
    ind = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(K, n))
    joint = np.asarray(ind @ P) / n  # [K, Z]
    pz = joint.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = np.where(pz > 0, joint / pz, 0.0)  # P(y | z); empty source classes contribute nothing
    eep = np.minimum(np.einsum("nz,nz->n", P, cond[codes]), 1.0)  # sum_z P(y_i | z) theta_i(z) <= 1
    if not log:
        return float(eep.mean())
    with np.errstate(divide="ignore"):
        return float(np.mean(np.log(eep)))


@blas_limited
def leep(X: Any, y: Any = None, probs: Any = None, *, log: bool = True) -> float:
    """LEEP score (docs/methods.md#leep). Needs the source classifier's probabilities; ``X`` is only used for its
    length (pass ``None`` to score from ``y`` and ``probs`` alone).

    Args:
        X: features ``[N, d]`` (unused except for validation) or ``None``.
        y: target labels ``[N]``.
        probs: source-classifier softmax probabilities ``theta [N, C_src]`` (rows sum to one).
        log: True (default): the paper's mean log-likelihood. False: the mean probability computed by some
            public copies (a different quantity, for comparison only).

    Returns:
        LEEP in ``(-inf, 0]`` (higher = better); ``log=False``: in ``[0, 1]``.

    Raises:
        InputValueError: ``probs`` missing, not probabilities (rows not summing to one, negative), NaN/Inf.
        ShapeError: mismatched lengths.

    Cost: ``O(N C_src)``.

    Examples:
        >>> import numpy as np
        >>> theta = np.array([[1.0, 0.0], [0.0, 1.0]]); y = [0, 1]
        >>> leep(None, y, theta)  # a perfect source classifier: P(y|z) one-hot, log 1 = 0
        0.0
    """
    ws = _ws_for_probs(X, y, probs, "leep")
    P = check_probs_for(ws, probs, "leep")
    return leep_from_probs(ws.codes, ws.K, P, log=log)


def _ws_for_probs(X: Any, y: Any, probs: Any, fname: str) -> Workspace:
    if isinstance(X, LabelledFeatures):
        return workspace(X, y, fname)
    if X is None:
        if probs is None:
            raise InputValueError(f"{fname} needs the source classifier's probabilities: pass probs=[N, C_src].")
        n = np.shape(probs)[0] if np.ndim(probs) >= 1 else 0
        return Workspace(np.zeros((n, 1)), y, fname)
    return workspace(X, y, fname)


leep = register("leep", title="LEEP", spec="docs/methods.md#leep",
         reference="Nguyen, Hassner, Seeger & Archambeau, ICML 2020",
         needs_probs=True, passes=2, inputs="y, probs [N, C_src]", cost="O(N C)")(leep)

__all__ = ["leep", "leep_from_probs"]
