"""NCE: negative conditional entropy of target labels given hard source labels (docs/methods.md#nce).

Tran, Nguyen & Hassner, "Transferability and Hardness of Supervised Classification Tasks", ICCV 2019.

With the source classifier's hard predictions ``z_i = argmax theta_i`` and the empirical joint of the counts,
``NCE = sum_{y, z} P(y, z) log P(y | z) = -H(Y | Z)``; source classes never predicted are ignored.
Streaming: one pass (a ``K x C_src`` count table).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nctransfer.exceptions import InputValueError, ShapeError
from nctransfer.transferability._common import check_probs_for, blas_limited
from nctransfer.transferability.base import register
from nctransfer.transferability.leep import _ws_for_probs
from nctransfer.utils.validation import to_numpy


def nce_from_labels(codes: np.ndarray, K: int, z: np.ndarray) -> float:
    """NCE of class codes ``[N]`` and hard source labels ``z [N]`` (non-negative integers; no checks)."""
    n = len(codes)
    _, zc = np.unique(z, return_inverse=True)
    Z = int(zc.max()) + 1
    joint = np.zeros((K, Z))
    np.add.at(joint, (codes, zc.reshape(-1)), 1.0 / n)
    pz = joint.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = joint / pz
        terms = np.where(joint > 0, joint * np.log(cond), 0.0)
    return float(terms.sum())


@blas_limited
def nce(X: Any, y: Any = None, probs: Any = None, *, source_labels: Any = None) -> float:
    """NCE score (docs/methods.md#nce): ``-H(Y | Z)`` with ``Z`` the source classifier's argmax prediction.

    Args:
        X: features ``[N, d]`` (unused except for validation) or ``None``.
        y: target labels ``[N]``.
        probs: source-classifier probabilities ``[N, C_src]``; the hard label is their argmax.
        source_labels: alternatively the hard source labels ``[N]`` directly (then ``probs`` may be ``None``).

    Returns:
        NCE in ``[-log K, 0]`` (higher = better; 0 when the source prediction determines the target label).

    Raises:
        InputValueError: neither ``probs`` nor ``source_labels``; ``probs`` not probabilities; NaN/Inf.
        ShapeError: mismatched lengths.

    Cost: ``O(N C_src)``.

    Examples:
        >>> import numpy as np
        >>> nce(None, [0, 0, 1, 1], source_labels=[5, 5, 7, 7])  # Z determines Y
        0.0
        >>> round(nce(None, [0, 1, 0, 1], source_labels=[5, 5, 7, 7]), 6)  # independent: -log 2
        -0.693147
    """
    if source_labels is not None:
        z = np.asarray(to_numpy(source_labels)).reshape(-1)
        ws = _ws_for_probs(X, y, np.zeros((len(z), 1)) if X is None else None, "nce")
        if len(z) != ws.n:
            raise ShapeError(f"nce: y has {ws.n} labels but source_labels has {len(z)}.")
        if z.dtype.kind == "f" and not np.all(np.isfinite(z)):
            raise InputValueError("nce: source_labels contain NaN or Inf.")
        return nce_from_labels(ws.codes, ws.K, z)
    ws = _ws_for_probs(X, y, probs, "nce")
    P = check_probs_for(ws, probs, "nce")
    return nce_from_labels(ws.codes, ws.K, np.argmax(P, axis=1))


nce = register("nce", title="NCE", spec="docs/methods.md#nce", reference="Tran, Nguyen & Hassner, ICCV 2019",
         needs_probs=True, passes=1, inputs="y, probs [N, C_src] (argmax)", cost="O(N C)")(nce)

__all__ = ["nce", "nce_from_labels"]
