"""PED: potential energy decline (optional extra of the transferability scores).

Li, Hu, Ge, Shan & Duan, "Exploring Model Transferability through the Lens of Potential Energy", ICCV 2023.

PED simulates a few steps of the fine-tuning dynamics before scoring: classes whose feature clouds overlap repel
each other, like charged spheres, and a static score (SFDA by default) is computed on the moved features. The
formulas and defaults below follow the authors' released code (its evaluation script's settings):

1. **Rescaling.** Features are standardised per dimension, ``z = (x - m) / max(s, 1e-3)``, with the mean ``m``
   and standard deviation ``s`` of a *reference* feature set -- in the authors' code the same model's features of
   the source dataset (the ImageNet validation images). Pass them as ``reference=``; without them the target
   features' own mean and standard deviation are used (the code has no such fallback: it requires the source
   features).
2. **One step** (in standardised units). Per class ``k``: mean ``mu_k``, per-dimension population variances
   ``v_k`` and radius ``r_k = sqrt(sum_j v_kj)``. For each pair of classes ``a != b`` with distance
   ``D_ab = ||mu_a - mu_b||`` the overlap is ``o_ab = max(sigma (r_a + r_b) - D_ab, 0)`` (``sigma = nsigma``);
   the "force" ``c o_ab`` (``c = constant``) moves class ``a`` away from ``b`` by
   ``min(t^2 c o_ab / 2, o_ab)`` (``t = time_step``) along ``(mu_a - mu_b) / D_ab``. Every sample of class ``a``
   moves by the sum of these displacements ``delta_a``; the step's *change* is ``sum_a sum_j |delta_aj|``.
3. **Exit rule.** At most ``max_steps = 6`` steps; step ``n`` is applied only while
   ``change_n / change_0 > exit_ratio`` (0.5); the first step is applied unless no pair overlaps.
4. **Score**: the base score (``"sfda"``; the code also offers NLEEP and LogME) of the moved features mapped back
   to the original units, ``x' = z' s + m``.

Defaults (the authors' evaluation script): ``time_step = 0.1``, ``nsigma = 0.6``, ``constant = 1``,
``exit_ratio = 0.5``. Two classes with coinciding means have no direction to move in and do not push each other
(the code divides by zero there). Higher = better, like the base score.

Examples:
    >>> import numpy as np
    >>> from nctransfer.transferability import ped_motion
    >>> X = np.array([[-1.0], [1.0], [1.0], [3.0]]); y = [0, 0, 1, 1]
    >>> m = ped_motion(X, y, reference=np.array([[-1.0], [1.0]]), nsigma=2.0)
    >>> m.steps, round(float(m.X[2, 0] - m.X[0, 0]), 6)  # the gap 2 grew by 2 (1 - 0.99**6)
    (6, 2.11704)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from nctransfer.exceptions import InputValueError
from nctransfer.transferability._common import (
    blas_limited,
    check_positive_float,
    check_positive_int,
    workspace,
)
from nctransfer.transferability.base import get_method, register
from nctransfer.utils.validation import to_numpy


@dataclass
class PEDMotion:
    """The simulated motion: moved features ``X [N, d]`` (original units), the number of applied ``steps``, the
    ``changes`` of every evaluated step (``sum |delta|`` in standardised units) and the total class displacement
    ``shift [K, d]`` (standardised units, sorted class order)."""

    X: np.ndarray
    steps: int
    changes: list[float] = field(default_factory=list)
    shift: np.ndarray | None = None


@dataclass
class PEDResult:
    """Detailed PED output: ``score`` (the base score of the moved features), ``base`` (its name), the base score
    of the unmoved features ``static`` and the :class:`PEDMotion`."""

    score: float
    base: str
    static: float
    motion: PEDMotion


def _step(M: np.ndarray, radius: np.ndarray, *, time_step: float, nsigma: float,
          constant: float) -> np.ndarray:
    """Displacement ``[K, d]`` of every class mean in one step (see the module docstring)."""
    diff = M[:, None, :] - M[None, :, :]  # [K, K, d]: mu_a - mu_b
    dist = np.sqrt(np.einsum("abd,abd->ab", diff, diff))
    overlap = np.maximum(nsigma * (radius[:, None] + radius[None, :]) - dist, 0.0)
    np.fill_diagonal(overlap, 0.0)
    move = np.minimum(0.5 * time_step ** 2 * constant * overlap, overlap)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = np.where(dist[..., None] > 0, diff / dist[..., None], 0.0)
    return np.einsum("ab,abd->ad", move, unit)


@blas_limited
def ped_motion(X: Any, y: Any = None, *, reference: Any = None, time_step: float = 0.1, nsigma: float = 0.6,
               constant: float = 1.0, exit_ratio: float = 0.5, max_steps: int = 6,
               eps: float = 1e-3) -> PEDMotion:
    """Simulate PED's potential-energy descent on features ``X [N, d]`` with labels ``y [N]``.

    Args:
        reference: features ``[M, d]`` fixing the standardisation (the authors use the model's features of the
            source dataset); ``None``: the target features themselves.
        time_step, nsigma, constant: ``t``, ``sigma`` and ``c`` of the module docstring (0.1, 0.6, 1).
        exit_ratio: a step is applied while its change exceeds this fraction of the first step's (0.5).
        max_steps: at most this many steps (6).
        eps: floor of the reference standard deviations (1e-3).

    Returns:
        :class:`PEDMotion`.
    """
    fname = "ped"
    time_step = check_positive_float(time_step, "time_step", fname)
    nsigma = check_positive_float(nsigma, "nsigma", fname)
    constant = check_positive_float(constant, "constant", fname)
    exit_ratio = check_positive_float(exit_ratio, "exit_ratio", fname, allow_zero=True)
    max_steps = check_positive_int(max_steps, "max_steps", fname, minimum=0)
    eps = check_positive_float(eps, "eps", fname)
    ws = workspace(X, y, fname)
    if reference is None:
        R = ws.X
    else:
        R = np.asarray(to_numpy(reference), dtype=np.float64)
        if R.ndim != 2 or R.shape[1] != ws.d or R.shape[0] < 1 or not np.all(np.isfinite(R)):
            raise InputValueError(f"ped: reference must be a finite feature matrix [M, d] with d = {ws.d} (the "
                                  f"same model's features of the source data); got shape {R.shape}.")
    m = R.mean(0)
    s = np.maximum(R.std(0), eps)
    Z = (ws.X - m) / s
    M = ws.class_sum(Z) / ws.counts[:, None]
    resid = Z - M[ws.codes]
    var = ws.class_sum(resid * resid) / ws.counts[:, None]
    radius = np.sqrt(var.sum(1))
    total = np.zeros_like(M)
    changes: list[float] = []
    steps = 0
    first = 0.0
    for n in range(max_steps):
        delta = _step(M + total, radius, time_step=time_step, nsigma=nsigma, constant=constant)
        change = float(np.abs(delta).sum())
        changes.append(change)
        if n == 0:
            first = change
        if first <= 0.0 or not change / first > exit_ratio:
            break
        total += delta
        steps += 1
    moved = (Z + total[ws.codes]) * s + m
    return PEDMotion(moved, steps, changes, total)


@blas_limited
def ped(X: Any, y: Any = None, *, base: str = "sfda", reference: Any = None, time_step: float = 0.1,
        nsigma: float = 0.6, constant: float = 1.0, exit_ratio: float = 0.5, max_steps: int = 6,
        eps: float = 1e-3, base_options: Mapping[str, Any] | None = None,
        return_details: bool = False) -> float | PEDResult:
    """PED score: the ``base`` score of the features after the simulated potential-energy descent.

    Args:
        X: features ``[N, d]`` (not modified); y: labels ``[N]``.
        base: a registered per-model score that needs only ``(X, y)`` (``"sfda"``, the authors' default;
            ``"nleep"`` and ``"logme"`` are the code's other choices).
        reference, time_step, nsigma, constant, exit_ratio, max_steps, eps: see :func:`ped_motion`.
        base_options: keyword arguments of the base score.
        return_details: return a :class:`PEDResult` (also holds the static base score).

    Returns:
        PED (the base score's range; higher = better).

    Cost: the base score's, plus ``O(N d + steps K^2 d)``.
    """
    info = get_method(base)
    if info.pool_relative or info.needs_probs or info.name == "ped":
        raise InputValueError(f"ped: base must be a per-model score of (X, y) such as 'sfda', 'logme' or "
                              f"'nleep'; got {base!r}.")
    motion = ped_motion(X, y, reference=reference, time_step=time_step, nsigma=nsigma, constant=constant,
                        exit_ratio=exit_ratio, max_steps=max_steps, eps=eps)
    ws = workspace(X, y, "ped")
    opts = dict(base_options or {})
    value = float(info.fn(motion.X, ws.codes, **opts))
    if return_details:
        static = float(info.fn(ws.X, ws.codes, **opts))
        return PEDResult(value, info.name, static, motion)
    return value


ped = register("ped", title="PED", spec="docs/methods.md#parc",
         reference="Li, Hu, Ge, Shan & Duan, ICCV 2023",
         passes=4, expensive=True, cost="base score (SFDA: O(N d^2 + d^3/3) x 2) + O(N d + K^2 d)")(ped)

__all__ = ["ped", "ped_motion", "PEDMotion", "PEDResult"]
