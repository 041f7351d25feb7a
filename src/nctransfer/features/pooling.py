"""Reducing a layer's output to one vector per sample (docs/methods.md#layer-wise).

Automatic (``pool="auto"``, the default), by the output's shape:

- conv maps ``[B, C, H, W]`` (and ``[B, C, D, H, W]``): adaptive average pooling to ``[B, C]``;
- token sequences ``[B, T, C]``: mean over tokens (default) or the class token (``token_pool="cls"``, token 0);
- ``[B, C]`` (already-flat vectors): unchanged.

Overrides (``pool=``): ``"avg"`` (mean over every axis after the channel axis of a map / over tokens),
``"max"`` (maximum over the same axes), ``"cls"`` (token 0 of ``[B, T, C]``), ``"flatten"`` (``[B, -1]``: every
value kept), or a callable ``f(tensor) -> [B, D]``.
"""

from __future__ import annotations

from typing import Any

import torch

from nctransfer.exceptions import InputValueError, ShapeError

TOKEN_POOLS = ("mean", "cls")
POOLS = ("auto", "avg", "max", "cls", "flatten")


def check_pool(pool: Any) -> Any:
    if callable(pool) or pool in POOLS:
        return pool
    raise InputValueError(f"pool must be one of {POOLS} or a callable tensor -> [B, D]; got {pool!r}.")


def pool_key(pool: Any) -> str:
    """Text identity of a pooling choice (part of feature-cache keys)."""
    if callable(pool):
        return f"callable:{getattr(pool, '__module__', '')}.{getattr(pool, '__qualname__', repr(pool))}"
    return str(pool)


def check_token_pool(token_pool: str) -> str:
    if token_pool not in TOKEN_POOLS:
        raise InputValueError(f"token_pool must be one of {TOKEN_POOLS}; got {token_pool!r}.")
    return token_pool


def first_tensor(output: Any) -> Any:
    """The tensor in a module output (tensor, tuple/list whose first item is a tensor, or a HF ``ModelOutput``)."""
    if torch.is_tensor(output):
        return output
    if isinstance(output, (tuple, list)) and output:
        return first_tensor(output[0])
    for attr in ("last_hidden_state", "hidden_states", "logits"):
        val = getattr(output, attr, None)
        if torch.is_tensor(val):
            return val
    if isinstance(output, dict) and output:
        return first_tensor(next(iter(output.values())))
    raise ShapeError(f"cannot find a tensor in a module output of type {type(output).__name__}.")


def pool_features(t: Any, token_pool: str = "mean", *, name: str = "feature", pool: Any = "auto") -> Any:
    """Pool one layer output ``t`` to ``[B, C]`` (see module docstring); float32 or float64 out.

    Args:
        t: tensor ``[B, C]``, ``[B, T, C]``, ``[B, C, H, W]`` or ``[B, C, D, H, W]``.
        token_pool: ``"mean"`` or ``"cls"`` for ``[B, T, C]`` (with ``pool="auto"``).
        name: used in error messages.
        pool: ``"auto"`` or an override (module docstring).
    """
    if pool != "auto":
        out = _pool_override(t, pool, name)
        if out.dtype not in (torch.float32, torch.float64):
            out = out.float()
        return out
    if t.ndim == 2:
        out = t.clone()  # a copy: the module's own tensor may be modified in place later (inplace ReLU, ...)
    elif t.ndim == 3:
        out = t.mean(1) if token_pool == "mean" else t[:, 0].clone()
    elif t.ndim >= 4:
        out = t.mean(dim=tuple(range(2, t.ndim)))
    else:
        raise ShapeError(f"{name}: cannot pool an output of shape {tuple(t.shape)}; expected [B, C], [B, T, C] or "
                         "[B, C, H, W].")
    if out.dtype not in (torch.float32, torch.float64):
        out = out.float()
    return out


def _pool_override(t: Any, pool: Any, name: str) -> Any:
    if callable(pool):
        out = pool(t)
        if getattr(out, "ndim", None) != 2 or out.shape[0] != t.shape[0]:
            raise ShapeError(f"{name}: the pooling callable must return [B, D]; got shape "
                             f"{tuple(getattr(out, 'shape', ()))} from input {tuple(t.shape)}.")
        return out if out is not t else out.clone()
    if t.ndim < 2:
        raise ShapeError(f"{name}: cannot pool an output of shape {tuple(t.shape)}; expected [B, ...].")
    if pool == "flatten":
        return t.reshape(t.shape[0], -1).clone()
    if pool == "cls":
        if t.ndim != 3:
            raise ShapeError(f"{name}: pool='cls' needs a token sequence [B, T, C]; got {tuple(t.shape)}.")
        return t[:, 0].clone()
    if t.ndim == 2:
        return t.clone()
    dims = (1,) if t.ndim == 3 else tuple(range(2, t.ndim))
    if pool == "avg":
        return t.mean(dim=dims)
    return t.amax(dim=dims)  # "max"
