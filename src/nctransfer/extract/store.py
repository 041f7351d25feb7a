"""On-disk feature store: resumable, checksummed, atomic.

Layout (``<cache_dir>/<base>/<entry>/``)::

    manifest.json         # what this entry holds and which files are complete, with their sha256
    shard-00000.npz       # (store_features=True) labels + pooled features of every tap for one shard of samples
    stats-00003.npz       # FeatureStats of every tap after shards 0..3 (cumulative; only the newest is kept)

``base`` hashes (model name, weights hash, dataset fingerprint = data + split + subsampling + transform,
token pooling, dtype); ``entry`` hashes the tap set and whether features are stored, so a later request for a
subset of taps is served by an existing entry. The manifest is rewritten (atomically) after each shard: it is the
commit point, so a run killed at any moment resumes from the last completed shard, and every file it lists is
verified against its checksum before use (a mismatch or an unreadable file means the entry is rebuilt).

Many workers may share one cache directory: each entry has an inter-process lock (``.<entry>.lock`` beside it,
:mod:`nctransfer.utils.locking`). A writer holds it from its look-up to its last commit, so a second writer of the
same entry waits and then reuses the complete entry; readers hold it while verifying and reading, so they never
see an entry half rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from nctransfer.exceptions import NotFoundError
from nctransfer.stats import FeatureStats
from nctransfer.utils.io import file_sha256 as sha256_file  # the one file digest; old name kept
from nctransfer.utils.io import write_bytes_atomic, write_json_atomic
from nctransfer.utils.locking import entry_lock

STORE_VERSION = 1


class CacheCorruptedWarning(UserWarning):
    """A cache file failed its checksum or could not be read; the entry is rebuilt."""


def digest(obj: Any, n: int = 20) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def weights_fingerprint(model: Any) -> str:
    """sha1 of every parameter and buffer (name, dtype, shape, bytes) of ``model``: identifies the weights
    exactly (a fine-tuned copy of the same architecture gets a different key)."""
    h = hashlib.sha1()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            t = t.detach().cpu().contiguous()
            if t.dtype == torch.bfloat16:
                t = t.view(torch.int16)
            h.update(t.numpy().tobytes())
    return h.hexdigest()[:24]


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def pack_stats(stats: dict[str, FeatureStats], taps: list[str]) -> bytes:
    """Serialise the statistics of every tap into one deterministic ``.npz`` payload."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"taps": taps, "classes": {}, "scalars": {}}
    for i, tap in enumerate(taps):
        st = stats[tap].state_dict()
        meta["classes"][tap] = [c.item() if hasattr(c, "item") else c for c in st.pop("classes")]
        meta["scalars"][tap] = {k: st.pop(k) for k in ("version", "precision", "chunk_size", "n")}
        shift = st.pop("shift")
        if shift is not None:
            arrays[f"t{i}_shift"] = shift
        for k, v in st.items():
            arrays[f"t{i}_{k}"] = np.asarray(v)
    arrays["meta_json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return _npz_bytes(arrays)


def unpack_stats(path: Path) -> dict[str, FeatureStats]:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["meta_json"].tobytes().decode())
        out = {}
        for i, tap in enumerate(meta["taps"]):
            state = dict(meta["scalars"][tap])
            state["classes"] = meta["classes"][tap]
            state["shift"] = z[f"t{i}_shift"] if f"t{i}_shift" in z.files else None
            for k in ("counts", "sums", "sqnorms", "normsums", "gram"):
                state[k] = z[f"t{i}_{k}"]
            out[tap] = FeatureStats.from_state_dict(state)
    return out


class CacheEntry:
    """One cache entry directory with its manifest (see module docstring)."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = Path(path)
        self.manifest = manifest

    # -------------------------------------------------------------- creation / discovery
    @classmethod
    def create(cls, base_dir: Path, key: dict[str, Any], taps: list[str], store: bool, n: int,
               shard_size: int) -> "CacheEntry":
        entry_id = digest({"taps": taps, "store": store, "n": n, "shard_size": shard_size}, 16)
        path = base_dir / entry_id
        manifest = {
            "version": STORE_VERSION, "key": key, "taps": taps, "store_features": store, "n": n,
            "shard_size": shard_size, "n_shards": -(-n // shard_size) if n else 0, "done": 0, "complete": False,
            "dims": {}, "files": {}, "stats_file": None,
        }
        entry = cls(path, manifest)
        return entry

    @classmethod
    def open(cls, path: Path) -> "CacheEntry | None":
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict) or manifest.get("version") != STORE_VERSION:
            return None
        return cls(path, manifest)

    @staticmethod
    def candidates(base_dir: Path) -> list["CacheEntry"]:
        if not base_dir.is_dir():
            return []
        out = []
        for p in sorted(base_dir.iterdir()):
            if p.is_dir():
                e = CacheEntry.open(p)
                if e is not None:
                    out.append(e)
        return out

    # -------------------------------------------------------------- properties
    @property
    def taps(self) -> list[str]:
        return list(self.manifest["taps"])

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    @property
    def done(self) -> int:
        return int(self.manifest.get("done", 0))

    def covers(self, taps: list[str], store: bool) -> bool:
        return set(taps) <= set(self.taps) and (self.manifest["store_features"] or not store)

    # -------------------------------------------------------------- integrity
    def verify(self, files: list[str] | None = None) -> bool:
        """Check the listed files (default: all) against their recorded sha256; warn and return False on any
        mismatch, missing or unreadable file."""
        recorded = self.manifest.get("files", {})
        for name in (files if files is not None else list(recorded)):
            p = self.path / name
            expected = recorded.get(name)
            try:
                ok = expected is not None and p.is_file() and sha256_file(p) == expected
            except OSError:
                ok = False
            if not ok:
                warnings.warn(f"feature cache: {p} is missing or corrupted (checksum mismatch); rebuilding the "
                              "cache entry instead of trusting it.", CacheCorruptedWarning, stacklevel=4)
                return False
        return True

    def wipe(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def lock(self) -> Any:
        """Context manager holding this entry's inter-process lock (:func:`nctransfer.utils.locking.entry_lock`):
        writers hold it while they check, write and commit the entry, readers while they verify and read it."""
        return entry_lock(self.path)

    def reopen(self) -> "CacheEntry | None":
        """This entry's manifest read afresh from disk (another process may have committed shards since)."""
        return CacheEntry.open(self.path)

    # -------------------------------------------------------------- writing
    def _write(self, name: str, payload: bytes) -> None:
        write_bytes_atomic(self.path / name, payload)
        self.manifest["files"][name] = hashlib.sha256(payload).hexdigest()

    def write_manifest(self) -> None:
        write_json_atomic(self.path / "manifest.json", self.manifest)

    def commit_shard(self, index: int, stats: dict[str, FeatureStats], features: dict[str, np.ndarray] | None,
                     labels: np.ndarray, dims: dict[str, int]) -> None:
        """Write shard ``index`` (features if stored) and the cumulative statistics, then commit the manifest."""
        self.path.mkdir(parents=True, exist_ok=True)
        if features is not None:
            arrays = {"labels": np.asarray(labels, dtype=np.int64)}
            for i, tap in enumerate(self.taps):
                arrays[f"t{i}"] = np.ascontiguousarray(features[tap], dtype=np.float32)
            self._write(f"shard-{index:05d}.npz", _npz_bytes(arrays))
        stats_name = f"stats-{index:05d}.npz"
        self._write(stats_name, pack_stats(stats, self.taps))
        old = self.manifest.get("stats_file")
        self.manifest["stats_file"] = stats_name
        self.manifest["dims"] = dict(dims)
        self.manifest["done"] = index + 1
        self.manifest["complete"] = self.manifest["done"] >= self.manifest["n_shards"]
        if old and old != stats_name:
            self.manifest["files"].pop(old, None)
        self.write_manifest()
        if old and old != stats_name:
            (self.path / old).unlink(missing_ok=True)

    # -------------------------------------------------------------- reading
    def load_stats(self) -> dict[str, FeatureStats]:
        name = self.manifest.get("stats_file")
        if not name:
            return {}
        return unpack_stats(self.path / name)

    def shard_names(self) -> list[str]:
        return [f"shard-{i:05d}.npz" for i in range(self.done)] if self.manifest["store_features"] else []

    def iter_features(self, tap: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(features float32 [b, d], labels int64 [b])`` of ``tap`` shard by shard (each shard verified under the
        entry's lock): the second pass of the streaming scores, one shard in memory at a time."""
        if not self.manifest["store_features"]:
            raise NotFoundError(f"cache entry {self.path} holds statistics only (store_features=False).")
        i = self.taps.index(tap)
        for name in self.shard_names():
            with self.lock():
                if not self.verify([name]):
                    raise OSError(f"cache entry {self.path}: corrupted shard; rerun the extraction to rebuild it.")
                with np.load(self.path / name, allow_pickle=False) as z:
                    X, y = z[f"t{i}"], z["labels"]
            yield X, y

    def load_features(self, tap: str) -> tuple[np.ndarray, np.ndarray]:
        """``(features float32 [N, d], labels int64 [N])`` of ``tap`` from the shards (checksums verified)."""
        if not self.manifest["store_features"]:
            raise NotFoundError(f"cache entry {self.path} holds statistics only (store_features=False).")
        i = self.taps.index(tap)
        names = self.shard_names()
        feats, labels = [], []
        with self.lock():  # a concurrent rebuild of this entry cannot swap shards under the reader
            if not self.verify(names):
                raise OSError(f"cache entry {self.path}: corrupted shard; rerun the extraction to rebuild it.")
            for name in names:
                with np.load(self.path / name, allow_pickle=False) as z:
                    feats.append(z[f"t{i}"])
                    labels.append(z["labels"])
        d = int(self.manifest["dims"].get(tap, 0))
        if not feats:
            return np.zeros((0, d), dtype=np.float32), np.zeros(0, dtype=np.int64)
        return np.concatenate(feats), np.concatenate(labels)
