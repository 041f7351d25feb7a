"""Up-front check of a ``--device`` / ``device=`` argument: a request for a device that does not exist fails at once,
naming the devices that do, instead of a driver traceback after models and data were loaded."""

from __future__ import annotations

from typing import Any

from nctransfer.exceptions import InputValueError


def available_devices() -> list[str]:
    """``["cpu", "cuda:0", ...]`` (plus ``"mps"`` on Apple silicon); only ``["cpu"]`` without torch."""
    out = ["cpu"]
    try:
        import torch  # deferred: the CLI checks --device at start-up, also in the core install
    except ImportError:  # pragma: no cover - the core install has no torch
        return out
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def check_device(device: Any, name: str = "--device") -> None:
    """Raise :class:`InputValueError` when ``device`` names a CUDA/MPS device this machine does not have.

    ``None``, ``"auto"`` and ``"cpu"`` always pass; ``"cuda"`` needs at least one CUDA device, ``"cuda:N"``
    needs ``N < torch.cuda.device_count()``.
    """
    if device is None:
        return
    text = str(device).strip().lower()
    if text in ("", "auto", "cpu"):
        return
    kind, _, index = text.partition(":")
    if kind not in ("cuda", "mps"):
        return  # other torch device strings are left to torch
    devices = available_devices()
    have = [d for d in devices if d.startswith(kind)]
    ok = bool(have) and (not index or (index.isdigit() and f"{kind}:{int(index)}" in have))
    if not ok:
        why = (f"no {kind.upper()} device is available" if not have
               else f"{text!r} does not exist ({len(have)} {kind.upper()} device(s))")
        raise InputValueError(f"{name} {device!r}: {why}; devices on this machine: {', '.join(devices)}. Use "
                              f"{name} cpu{' or ' + have[0] if have else ''}.")
