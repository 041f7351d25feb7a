"""Small JSON cache of pipeline stage results (scores of a pool, collapse metrics and probe accuracy of a
candidate, fine-tuning results), keyed by a digest of everything that determines them (the feature arrays
themselves, the options, the nctransfer version). Together with the feature cache of :mod:`nctransfer.extract`
this makes a repeated run of the same job read everything back in seconds."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nctransfer._version import __version__
from nctransfer.exceptions import CacheIntegrityWarning
from nctransfer.utils.io import dumps_json, write_json_atomic
from nctransfer.utils.locking import entry_lock


def array_digest(*arrays: Any) -> str:
    """SHA-1 of the dtype, shape and bytes of each array (``None`` entries allowed)."""
    h = hashlib.sha1()
    for a in arrays:
        if a is None:
            h.update(b"none;")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def key_digest(obj: Any) -> str:
    """SHA-1 of the canonical JSON of ``obj`` (sorted keys; non-JSON values through ``str``)."""
    blob = json.dumps({"v": __version__, "obj": obj}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()


def value_checksum(value: Any) -> str:
    """SHA-256 of the canonical JSON of a cached value (sorted keys; the value as it reads back from JSON, so the
    checksum written with an entry and the one recomputed on reading agree exactly: NaN and Inf read back as
    ``null``, see :func:`~nctransfer.utils.io.dumps_json`)."""
    as_read = json.loads(dumps_json(value, indent=None))
    blob = json.dumps(as_read, sort_keys=True, allow_nan=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class ResultCache:
    """``get(kind, key)`` / ``put(kind, key, value)`` of JSON values under ``root/<kind>/<digest>.json``.

    A ``None`` root disables the cache (``get`` always misses). Every entry carries the sha256 of its value
    (:func:`value_checksum`), verified on reading; unreadable entries and checksum mismatches are treated as misses
    (the latter with a warning) and overwritten; writes are atomic and hold the entry's file lock, so many processes may share one cache root
    (:meth:`get_or_compute` computes a shared entry once).
    """

    def __init__(self, root: str | os.PathLike | None) -> None:
        self.root = Path(root).expanduser() if root is not None else None
        self.hits = 0
        self.misses = 0

    def _path(self, kind: str, key: Any) -> Path | None:
        if self.root is None:
            return None
        return self.root / kind / f"{key_digest(key)}.json"

    def get(self, kind: str, key: Any) -> Any:
        """The stored value, or ``None`` (a miss) when absent, unreadable or failing its sha256 checksum.

        A checksum mismatch (an edited or corrupted entry) or a missing checksum is reported with a
        :class:`~nctransfer.exceptions.CacheIntegrityWarning`; the caller then recomputes and overwrites it.
        """
        path = self._path(kind, key)
        if path is not None and path.is_file():
            try:
                with open(path, encoding="utf-8") as fh:
                    entry = json.load(fh)
                value = entry["value"]
                stored = entry.get("sha256")
                if stored != value_checksum(value):
                    why = "has no checksum" if stored is None else "does not match its sha256 checksum"
                    warnings.warn(f"result cache entry {str(path)!r} {why} (edited or corrupted); ignoring it and "
                                  "recomputing.", CacheIntegrityWarning, stacklevel=2)
                    raise ValueError("checksum")
                self.hits += 1
                return value
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass
        self.misses += 1
        return None

    def put(self, kind: str, key: Any, value: Any) -> Any:
        path = self._path(kind, key)
        if path is not None:
            try:
                with entry_lock(path):  # one writer per entry; readers see the old or the new file (atomic)
                    write_json_atomic(path, {"key": key, "value": value, "sha256": value_checksum(value)})
            except OSError:  # a read-only cache must not break a run
                pass
        return value

    def get_or_compute(self, kind: str, key: Any, compute: Callable[[], Any]) -> Any:
        """The cached value of ``(kind, key)``, or ``compute()`` stored under it.

        The check and the computation run under the entry's inter-process lock
        (:func:`nctransfer.utils.locking.entry_lock`), so workers sharing the cache that ask for the same entry at
        the same time compute it once: the others wait and read the stored value.
        """
        path = self._path(kind, key)
        if path is None:
            self.misses += 1
            return compute()
        with entry_lock(path):
            hit = self.get(kind, key)
            if hit is not None:
                return hit
            return self.put(kind, key, compute())
