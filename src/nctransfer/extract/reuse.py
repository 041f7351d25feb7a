"""Serving :func:`~nctransfer.extract.extract` from a complete cache entry: the entry locks held by the running call
(:data:`_HELD_LOCKS`, released when it returns or raises), the check that an entry serves a request (complete,
recorded for this data's key, covering the taps), the checksum-verified read, and the reuse of another process's
entry under its lock (a corrupted entry is wiped, never served)."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import time
from typing import Any, Callable, Sequence

from nctransfer.extract.results import ExtractionResult, TapResult
from nctransfer.extract.store import CacheEntry
from nctransfer.stats import FeatureStats

#: the cache-entry locks held by the running :func:`extract` call (released when it returns or raises)
_HELD_LOCKS: contextvars.ContextVar[contextlib.ExitStack] = contextvars.ContextVar("nctransfer_extract_locks")


def _releasing_locks(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` with a fresh lock stack in :data:`_HELD_LOCKS`; every lock entered there is released on exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with contextlib.ExitStack() as stack:
            token = _HELD_LOCKS.set(stack)
            try:
                return fn(*args, **kwargs)
            finally:
                _HELD_LOCKS.reset(token)

    return wrapper


def _serves(entry: CacheEntry | None, taps: list[str], store: bool, key: dict[str, Any]) -> bool:
    """Whether ``entry`` is complete, recorded for this data's ``key`` and holds the requested taps."""
    return (entry is not None and entry.complete and entry.covers(taps, store)
            and entry.manifest.get("key") == key)


def _serve_verified(entry: CacheEntry, taps: list[str], n: int, key: dict[str, Any],
                    t0: float) -> "ExtractionResult | None":
    """The request served from a serving ``entry`` (see :func:`_serves`) whose files pass their checksums;
    ``None`` when a file is corrupted or unreadable (the caller wipes the entry)."""
    if entry.verify([entry.manifest["stats_file"], *entry.shard_names()]):
        try:
            return _from_entry(entry, taps, n, key, t0, resumed=entry.done, computed=0, from_cache=True)
        except (OSError, ValueError, KeyError):
            pass
    return None


def _reuse_locked(cand: CacheEntry, taps: list[str], store: bool, n: int, key: dict[str, Any],
                  t0: float) -> "ExtractionResult | None":
    """Serve the request from the complete entry ``cand`` under its lock (re-read, verified), or wipe it when it
    is corrupted; ``None`` when it cannot serve."""
    with cand.lock():
        fresh = cand.reopen()
        if not _serves(fresh, taps, store, key):
            return None
        hit = _serve_verified(fresh, taps, n, key, t0)
        if hit is None:
            fresh.wipe()
        return hit


def _from_entry(entry: CacheEntry, taps: Sequence[str], n: int, key: dict[str, Any], t0: float, *, resumed: int,
                computed: int, from_cache: bool, stats: dict[str, FeatureStats] | None = None) -> ExtractionResult:
    stats = stats if stats is not None else entry.load_stats()
    results = {}
    for t in taps:
        loader = (lambda t=t: entry.load_features(t)) if entry.manifest["store_features"] else None
        batches = (lambda t=t: entry.iter_features(t)) if entry.manifest["store_features"] else None
        results[t] = TapResult(t, stats[t], int(entry.manifest["dims"][t]), _loader=loader, _batches=batches)
    return ExtractionResult(results, n_samples=n, from_cache=from_cache, resumed_shards=resumed,
                            computed_samples=computed, cache_path=entry.path, seconds=time.perf_counter() - t0,
                            key=key)
