"""Peak memory of a training run (spec section 3: "report ... peak memory").

The trainer measures each epoch's *training pass* (forward, backward, optimiser step; evaluation excluded) and
reports the largest value over the epochs as ``peak_memory_mb``.

- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the memory allocated when
  the run started (method ``"cuda_max_allocated"``).
- CPU: a daemon thread samples the resident set size (``/proc/self/statm``) every ``interval`` seconds; the
  reported peak is the highest sample minus the RSS when the run started (method ``"rss_sampled"``). Where
  ``/proc`` is missing it falls back to ``resource.getrusage`` (``ru_maxrss`` high-water mark, method
  ``"ru_maxrss"``), which can only see growth beyond the process's earlier peak.

The CPU figure is the memory the run *added* to the process: activations, gradients, optimiser state and data.
Memory freed by an earlier run in the same process can be reused without raising the RSS, so compare methods in
fresh processes (as ``benchmarks/finetune_fashion_mnist.py`` does).
"""

from __future__ import annotations

import os
import threading
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _maxrss_bytes() -> int:
    import resource
    import sys

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024


class PeakMemory:
    """Context manager measuring the peak memory added during its block (module docstring).

    Example:
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
            import torch

            torch.cuda.synchronize(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "cuda_max_allocated"
            return self
        base = _rss_bytes()
        if base is None:
            self._base = _maxrss_bytes()
            self.method = "ru_maxrss"
            return self
        self._base = base
        self._max = base
        self.method = "rss_sampled"
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="nctransfer-peak-memory", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            r = _rss_bytes()
            if r is not None and r > self._max:
                self._max = r

    def update(self) -> None:
        """Take one sample now (also done by the background thread)."""
        if self.method == "rss_sampled":
            r = _rss_bytes()
            if r is not None and r > self._max:
                self._max = r

    def __exit__(self, *exc: Any) -> None:
        if self.method == "cuda_max_allocated":
            import torch

            self.peak_bytes = max(0, int(torch.cuda.max_memory_allocated(self.device)) - int(self._base))
        elif self.method == "ru_maxrss":
            self.peak_bytes = max(0, _maxrss_bytes() - int(self._base))
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self.update()
            self.peak_bytes = max(0, int(self._max) - int(self._base))
