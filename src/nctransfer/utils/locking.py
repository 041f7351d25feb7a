"""Inter-process file locks for caches that many workers share (``filelock``).

A cache entry is protected by one lock file beside it (``<dir>/.<name>.lock``). Writers of an entry hold its lock
for the whole write (and the check that precedes it), so two processes that want the same entry never both write
it: the second waits, then finds the first one's complete entry and reuses it. Readers take the same lock while
they verify and read an entry, so they never see one being rebuilt. Files themselves are still written atomically
(:mod:`nctransfer.utils.io`), which keeps every reader safe even where locking is impossible.

Locks are per process and reentrant within a thread (``is_singleton=True``: the same path gives the same lock object
in one process). A lock is released by the operating system when its process dies, so a killed worker never leaves
a cache locked. ``NCTRANSFER_LOCK_TIMEOUT`` (seconds, default: wait forever) bounds the wait.

Examples:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with entry_lock(d / "entry"):
    ...     (d / "entry").write_text("x")
    1
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock, Timeout

from nctransfer.exceptions import InputValueError


def lock_path_for(path: str | os.PathLike) -> Path:
    """The lock file of ``path``: a hidden sibling ``.<name>.lock`` (outside an entry directory, so wiping the
    entry keeps its lock)."""
    p = Path(path)
    return p.parent / f".{p.name}.lock"


def _timeout() -> float:
    raw = os.environ.get("NCTRANSFER_LOCK_TIMEOUT", "").strip()
    if not raw:
        return -1.0
    try:
        return float(raw)
    except ValueError:
        raise InputValueError(f"NCTRANSFER_LOCK_TIMEOUT must be a number of seconds; got {raw!r}.") from None


@contextlib.contextmanager
def entry_lock(path: str | os.PathLike, timeout: float | None = None) -> Iterator[Any]:
    """Hold the inter-process lock of the cache entry ``path`` (a file or directory, need not exist).

    Args:
        path: the entry; its lock file is :func:`lock_path_for` ``(path)``.
        timeout: seconds to wait (``None``: ``$NCTRANSFER_LOCK_TIMEOUT`` or forever); on expiry
            ``filelock.Timeout`` is raised.

    A directory where no lock file can be created (a read-only cache) yields without locking: readers of such a
    cache still see only complete entries because every file is committed by an atomic rename.
    """
    lp = lock_path_for(path)
    try:
        lp.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(lp), is_singleton=True)
        lock.acquire(timeout=_timeout() if timeout is None else float(timeout))
    except (PermissionError, OSError) as exc:
        if isinstance(exc, Timeout):
            raise
        yield None
        return
    try:
        yield lock
    finally:
        lock.release()
