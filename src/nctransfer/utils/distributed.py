"""``torch.distributed`` helpers for runs launched by ``torchrun``.

``torchrun --nproc_per_node=P`` starts P processes with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``
and ``MASTER_PORT`` in their environment. :func:`init_from_env` turns that into a process group (``nccl`` when
CUDA is available, else ``gloo``), :func:`rank_and_world` reports where a process stands (``(0, 1)`` without a
process group), and :func:`is_main` is true on the one process that writes reports.

Examples:
    >>> rank_and_world()        # no process group in a plain Python process
    (0, 1)
    >>> is_main()
    True
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any


def _dist() -> Any:
    """``torch.distributed``, or None without torch (or a torch built without it)."""
    try:
        import torch.distributed as dist  # deferred: nctransfer.utils is imported by the core, which needs no torch
    except ImportError:  # torch not installed: never distributed
        return None
    return dist if dist.is_available() else None


def is_initialized() -> bool:
    """Whether a default ``torch.distributed`` process group exists."""
    dist = _dist()
    return bool(dist is not None and dist.is_initialized())  # type: ignore[attr-defined]


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process in the default process group; ``(0, 1)`` without one."""
    if not is_initialized():
        return 0, 1
    dist = _dist()
    return int(dist.get_rank()), int(dist.get_world_size())


def is_main() -> bool:
    """True on rank 0 (and in every non-distributed process): the process that writes outputs."""
    return rank_and_world()[0] == 0


def launched_by_torchrun() -> bool:
    """Whether the environment describes a multi-process launch (``WORLD_SIZE`` > 1 with ``RANK`` set)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ
    except ValueError:
        return False


def local_device() -> str | None:
    """``"cuda:<LOCAL_RANK>"`` when CUDA is available in a distributed run, else ``None`` (the default device)."""
    import torch  # deferred: nctransfer.utils is imported by the core, which needs no torch

    if not torch.cuda.is_available():
        return None
    local = int(os.environ.get("LOCAL_RANK", rank_and_world()[0]))
    return f"cuda:{local % torch.cuda.device_count()}"


def init_from_env(backend: str | None = None, timeout_s: float | None = None) -> bool:
    """Create the default process group from ``torchrun``'s environment.

    Args:
        backend: ``"gloo"``, ``"nccl"``; default ``nccl`` when CUDA is available, else ``gloo``.
        timeout_s: collective timeout in seconds (default ``$NCTRANSFER_DIST_TIMEOUT`` or 1800).

    Returns:
        True when this call created the group (the caller should :func:`shutdown` it), False when not launched by
        ``torchrun`` or a group already existed.
    """
    if not launched_by_torchrun() or is_initialized():
        return False
    import torch  # deferred: nctransfer.utils is imported by the core, which needs no torch
    import torch.distributed as dist

    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    seconds = float(timeout_s if timeout_s is not None else os.environ.get("NCTRANSFER_DIST_TIMEOUT", 1800))
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=seconds))
    return True


def shutdown() -> None:
    """Destroy the default process group if there is one."""
    if is_initialized():
        _dist().destroy_process_group()


def all_gather_object(obj: object) -> list[object]:
    """``[obj of rank 0, obj of rank 1, ...]``; ``[obj]`` without a process group."""
    if not is_initialized():
        return [obj]
    dist = _dist()
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
