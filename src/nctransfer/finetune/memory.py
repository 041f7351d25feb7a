"""Peak memory of a training run (docs/methods.md#finetuning: "report ... peak memory").

The trainer measures each epoch's *training pass* (forward, backward, optimiser step; evaluation excluded) and
reports the largest value over the epochs as ``peak_memory_mb``.

- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the memory allocated when
  the run started (method ``"cuda_max_allocated"``).
- CPU with glibc: a daemon thread samples the bytes currently allocated through ``malloc`` (``mallinfo2()``:
  in-use heap bytes of the main arena plus all ``mmap``-ed blocks, where PyTorch's large CPU tensors live) every
  ``interval`` seconds; the peak is the highest sample minus the value at the start (method
  ``"malloc_in_use_sampled"``). Unlike the RSS it falls when tensors are freed, so repeated runs in one process
  are measured correctly. Allocations made by other threads' malloc arenas are not seen (PyTorch allocates tensors
  from the calling thread).
- Other CPUs: the same sampling of the resident set size (``/proc/self/statm``, method ``"rss_sampled"``), which
  only sees growth beyond memory the process already holds; without ``/proc``, ``resource.getrusage``
  (``ru_maxrss`` high-water mark, method ``"ru_maxrss"``).

The CPU figure is the memory the run *added* to the process: activations, gradients, optimiser state and batches.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from typing import Any

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]


def _load_mallinfo2() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError, TypeError):
        return None
    fn.restype = _MallInfo2
    fn.argtypes = []
    return fn


_MALLINFO2 = _load_mallinfo2()


def _malloc_in_use_bytes() -> int | None:
    """Bytes currently allocated by malloc (main arena in-use + mmap-ed blocks), or None without glibc >= 2.33."""
    if _MALLINFO2 is None:
        return None
    m = _MALLINFO2()
    return int(m.uordblks) + int(m.hblkhd)


def _maxrss_bytes() -> int:
    import resource  # deferred: a POSIX-only module, reached only where malloc and /proc statistics are missing

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024


def memory_method(device: Any = "cpu") -> str:
    """The method :class:`PeakMemory` uses on ``device`` in this process."""
    if str(device).startswith("cuda"):
        return "cuda_max_allocated"
    if _malloc_in_use_bytes() is not None:
        return "malloc_in_use_sampled"
    return "rss_sampled" if _rss_bytes() is not None else "ru_maxrss"


class PeakMemory:
    """Context manager measuring the peak memory added during its block (module docstring).

    Examples:
        >>> with PeakMemory() as pm:
        ...     x = bytearray(50_000_000)
        >>> pm.peak_mb >= 0
        True
    """

    def __init__(self, device: Any = "cpu", interval: float = 0.005) -> None:
        self.device = str(device)
        self.interval = float(interval)
        self.peak_bytes = 0
        self.method = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def peak_mb(self) -> float:
        """Peak added memory in MiB."""
        return self.peak_bytes / 2**20

    def __enter__(self) -> "PeakMemory":
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "cuda_max_allocated"
            return self
        base = _malloc_in_use_bytes()
        self._read = _malloc_in_use_bytes
        self.method = "malloc_in_use_sampled"
        if base is None:
            base = _rss_bytes()
            self._read = _rss_bytes
            self.method = "rss_sampled"
        if base is None:
            self._base = _maxrss_bytes()
            self.method = "ru_maxrss"
            return self
        self._base = base
        self._max = base
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="nctransfer-peak-memory", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            r = self._read()
            if r is not None and r > self._max:
                self._max = r

    def update(self) -> None:
        """Take one sample now (also done by the background thread)."""
        if self.method in ("rss_sampled", "malloc_in_use_sampled"):
            r = self._read()
            if r is not None and r > self._max:
                self._max = r

    def __exit__(self, *exc: Any) -> None:
        if self.method == "cuda_max_allocated":
            self.peak_bytes = max(0, int(torch.cuda.max_memory_allocated(self.device)) - int(self._base))
        elif self.method == "ru_maxrss":
            self.peak_bytes = max(0, _maxrss_bytes() - int(self._base))
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self.update()
            self.peak_bytes = max(0, int(self._max) - int(self._base))
