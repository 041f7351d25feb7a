"""Reading checkpoints written by nctransfer with PyTorch's restricted unpickler: tensors, containers, numbers,
strings and the few numpy types a checkpoint holds (NumPy's RNG state, numpy scalars) load; anything else is
refused, so no code runs from a tampered file. Every failure is one :class:`InputValueError`."""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np

from nctransfer.exceptions import InputValueError


def first_sentence(exc: BaseException, limit: int = 160) -> str:
    """The first sentence of an exception's message (torch's loader errors run to several sentences)."""
    text = " ".join(str(exc).split())
    if not text:
        return type(exc).__name__
    head = text.split(". ")[0].rstrip(".")
    return head if len(head) <= limit else head[: limit - 3] + "..."


def checkpoint_safe_globals() -> list[Any]:
    """The numpy types allowed in a checkpoint besides what ``torch.load(weights_only=True)`` accepts."""
    mr = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray  # numpy 2 / numpy 1
    dtypes = [type(np.dtype(t)) for t in (np.uint32, np.int32, np.int64, np.float32, np.float64, np.bool_)]
    return [mr._reconstruct, mr.scalar, np.ndarray, np.dtype, *dtypes]


def safe_torch_load(path: str | os.PathLike, what: str = "checkpoint", hint: str = "") -> Any:
    """``torch.load(path, weights_only=True)`` with :func:`checkpoint_safe_globals` allowed.

    Raises:
        InputValueError: the file is truncated or corrupt, or holds objects a checkpoint never contains (they are
        not unpickled); ``hint`` (e.g. "delete it to start over") is appended to the message.
    """
    import torch  # deferred: nctransfer.utils is imported by the core, which needs no torch

    tail = f" {hint}" if hint else ""
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise InputValueError(f"{what} {str(path)!r} holds objects an nctransfer checkpoint never contains "
                              f"({first[:160]}); it is not unpickled.{tail}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:  # truncated / corrupt zip archive
        first = first_sentence(exc)
        raise InputValueError(f"{what} {str(path)!r} cannot be read (truncated or corrupt: {first[:160]}).{tail}"
                              ) from None
