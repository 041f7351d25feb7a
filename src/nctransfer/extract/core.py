"""``extract``: one forward pass per batch feeds every selected tap into its ``FeatureStats`` (docs/methods.md#notation:
streaming statistics; section 1.11: pooling) and, on request, into the on-disk feature store
(:mod:`nctransfer.extract.store`).
"""

from __future__ import annotations

import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from nctransfer.exceptions import InputValueError
from nctransfer.extract.batches import _as_extract_input, _autocast, _BatchSource, _dataset_id, _model_name
from nctransfer.extract.distributed import extract_sharded
from nctransfer.extract.results import ExtractionResult, TapResult
from nctransfer.extract.reuse import _HELD_LOCKS, _from_entry, _releasing_locks, _reuse_locked, _serve_verified, _serves
from nctransfer.extract.store import CacheEntry, digest, weights_fingerprint
from nctransfer.features import TapRecorder, resolve_taps
from nctransfer.features.pooling import check_pool, pool_key
from nctransfer.stats import FeatureStats
from nctransfer.utils.distributed import rank_and_world

DEFAULT_CACHE_DIR = "~/.cache/nctransfer/features"
_DTYPES = {None: None, "float32": None, "fp32": None, "float16": "float16", "fp16": "float16",
           "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}


def default_cache_dir() -> Path:
    """``$NCTRANSFER_CACHE`` or ``~/.cache/nctransfer/features``."""
    return Path(os.environ.get("NCTRANSFER_CACHE", DEFAULT_CACHE_DIR)).expanduser()


class _StatsFeeder:
    """Buffers pooled CPU features per tap and feeds them to ``FeatureStats`` in blocks of ``flush_rows`` rows,
    optionally in one background thread (FIFO, so each tap's updates keep their order and the result is the same
    as a synchronous run)."""

    def __init__(self, stats: dict[str, FeatureStats], flush_rows: int, background: bool) -> None:
        self.stats = stats
        self.flush_rows = max(1, int(flush_rows))
        self.buf: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.rows: dict[str, int] = {}
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nct-stats") if background else None
        self.pending: list[Any] = []

    def add(self, name: str, X: np.ndarray, y: np.ndarray) -> None:
        self.buf.setdefault(name, []).append((X, y))
        self.rows[name] = self.rows.get(name, 0) + len(y)
        if self.rows[name] >= self.flush_rows:
            self._flush(name)

    def _flush(self, name: str) -> None:
        parts = self.buf.pop(name, [])
        self.rows[name] = 0
        if not parts:
            return
        X = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
        y = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
        if self.pool is None:
            self.stats[name].update(X, y)
        else:
            self.pending.append(self.pool.submit(self.stats[name].update, X, y))
            still = []
            for f in self.pending:
                if f.done():
                    f.result()  # surfaces a worker error early
                else:
                    still.append(f)
            self.pending = still

    def flush_all(self) -> None:
        for name in list(self.buf):
            self._flush(name)
        self.wait()

    def wait(self) -> None:
        pending, self.pending = self.pending, []
        for f in pending:
            f.result()  # re-raises a worker error here

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)


# ------------------------------------------------------------------------------------------------ main
@_releasing_locks
def extract(
    model: Any,
    dataset: Any,
    taps: Any = "all",
    *,
    batch_size: int = 64,
    device: str | None = None,
    dtype: str | None = None,
    token_pool: str = "mean",
    pool: Any = "auto",
    store_features: bool = False,
    cache_dir: str | os.PathLike | None = None,
    no_cache: bool = False,
    shard_size: int = 4096,
    precision: str = "exact",
    num_workers: int = 0,
    progress: bool = True,
    dataset_id: str | None = None,
    desc: str | None = None,
    flush_rows: int = 512,
    background_stats: bool = True,
    distributed: bool | None = None,
) -> ExtractionResult:
    """Stream ``dataset`` through ``model`` once and collect, for every selected tap, the streaming statistics
    (and optionally the pooled features).

    Args:
        model: ``nn.Module`` (ideally from :func:`nctransfer.models.load_model`); put in eval mode; its train/eval
            mode is restored afterwards.
        dataset: a dataset from :func:`nctransfer.data.load_dataset` (batched transform, content fingerprint), or
            fed as given: any ``torch`` dataset yielding ``(image, label)`` (tensors; PIL images and numpy arrays
            converted to float ``[C, H, W]`` in ``[0, 1]``), a ``DataLoader`` (its batches and sampler as given,
            labels from the batches), a Hugging Face ``datasets.Dataset``, or an ``IterableDataset`` (needs
            ``dataset_id`` when caching). For the model's own preprocessing wrap the data with
            ``load_dataset(data, model=model)``.
        taps: tap selector (:func:`nctransfer.features.select_taps`): ``"all"``, names, indices, patterns.
        batch_size: images per forward pass.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default CUDA when available. The model is moved there.
        dtype: ``None``/``"float32"``; ``"float16"`` or ``"bfloat16"`` run the forward under autocast (CUDA; CPU
            bfloat16). Pooled features are accumulated in float64 regardless.
        token_pool: ``"mean"`` or ``"cls"`` for transformer taps (docs/methods.md#layer-wise).
        pool: how a tap's output becomes one vector per sample: ``"auto"`` (by shape: conv maps averaged over
            space, token sequences by ``token_pool``, flat vectors unchanged) or ``"avg"``, ``"max"``, ``"cls"``,
            ``"flatten"``, a callable ``tensor -> [B, D]`` (:mod:`nctransfer.features.pooling`).
        store_features: also keep the pooled features (in memory, or in the cache when ``cache_dir`` is set).
        cache_dir: feature store directory (``None``: no disk cache). Entries are keyed by model name, weights hash,
            dataset fingerprint (data, split, subsampling, transform), token pooling, dtype and taps. Many
            processes may share one directory: an entry's writer holds its file lock, a second writer of the same
            entry waits and then reuses it (:mod:`nctransfer.utils.locking`).
        no_cache: ignore ``cache_dir`` entirely (neither read nor write).
        shard_size: samples per shard: the unit of resumption (rounded up to a multiple of ``batch_size``).
        precision: ``FeatureStats`` precision (``"exact"`` or ``"fast"``).
        num_workers: DataLoader workers for datasets without ``get_batch``.
        progress: show a tqdm progress bar.
        dataset_id: identity of a dataset that has no ``fingerprint()`` (enables caching for it; required for an
            iterable stream). The user is responsible for changing it when the content changes.
        desc: progress-bar label.
        flush_rows: pooled rows buffered per tap before a statistics update (larger BLAS calls, bounded memory
            ``flush_rows x d`` per tap).
        background_stats: run the statistics updates in a worker thread, overlapping the next forward pass (the
            result is identical: updates of each tap stay in order).
        distributed: split the work across the processes of the default ``torch.distributed`` process group
            (launched by ``torchrun``; :mod:`nctransfer.extract.distributed`): each rank extracts a contiguous
            slice of whole batches, the statistics are all-reduced, stored features are read back as one array in
            the original order. ``None`` (default): when a process group with more than one process exists.
            Every rank must then call :func:`extract` with the same arguments (it synchronises the ranks);
            ``False`` extracts everything in this process only.

    Returns:
        :class:`ExtractionResult` mapping tap -> :class:`TapResult` (``.stats``, ``.dim``, ``.features``).

    Determinism: no shuffling, eval mode, fixed batch boundaries; a resumed run reproduces the files of an
    uninterrupted one byte for byte.
    """
    if distributed is None or distributed:
        if rank_and_world()[1] > 1:
            return extract_sharded(
                model, dataset, taps, batch_size=batch_size, device=device, dtype=dtype, token_pool=token_pool,
                store_features=store_features, cache_dir=cache_dir, no_cache=no_cache, shard_size=shard_size,
                precision=precision, num_workers=num_workers, progress=progress, dataset_id=dataset_id, desc=desc,
                flush_rows=flush_rows, background_stats=background_stats)
    t0 = time.perf_counter()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise InputValueError(f"shard_size must be a positive integer; got {shard_size!r}.")
    if dtype not in _DTYPES:
        raise InputValueError(f"dtype must be one of {sorted(k for k in _DTYPES if k)} or None; got {dtype!r}.")
    amp = _DTYPES[dtype]
    check_pool(pool)
    dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if amp == "float16" and dev.type == "cpu":
        raise InputValueError("dtype='float16' autocast needs a CUDA device; use 'bfloat16' on CPU.")
    dataset = _as_extract_input(dataset, dataset_id, cache_dir is not None and not no_cache, batch_size)
    n = len(dataset)
    if n == 0:
        raise InputValueError("dataset is empty.")
    units = resolve_taps(model, taps)
    tap_names = [u.name for u in units]
    shard_size = -(-shard_size // batch_size) * batch_size
    n_shards = -(-n // shard_size)

    # ---------------------------------------------------------------- cache lookup
    key: dict[str, Any] = {"model": _model_name(model)}
    entry: CacheEntry | None = None
    ds_id = None
    use_cache = cache_dir is not None and not no_cache
    if use_cache:
        ds_id = _dataset_id(dataset, dataset_id)
        if ds_id is None:
            warnings.warn("extract: the dataset has no fingerprint() and no dataset_id was given; not caching.",
                          stacklevel=2)
            use_cache = False
    if use_cache:
        key.update({"weights": weights_fingerprint(model), "dataset": ds_id, "n": n, "token_pool": token_pool,
                    "dtype": amp or "float32", "precision": precision})
        if pool != "auto":  # (absent for the default: existing cache entries stay valid)
            key["pool"] = pool_key(pool)
        base = Path(cache_dir).expanduser() / digest(key)
        for cand in CacheEntry.candidates(base):
            if cand.manifest.get("key") != key:  # recorded fingerprint differs (or a tampered manifest): never served
                cand.wipe()
                continue
            if cand.complete and cand.covers(tap_names, store_features):
                hit = _reuse_locked(cand, tap_names, store_features, n, key, t0)
                if hit is not None:
                    return hit
        entry = CacheEntry.create(base, key, tap_names, store_features, n, shard_size)
        # held until extract() returns: a concurrent writer of this entry waits here, then reuses our entry
        _HELD_LOCKS.get().enter_context(entry.lock())
        old = CacheEntry.open(entry.path)
        if _serves(old, tap_names, store_features, key):
            hit = _serve_verified(old, tap_names, n, key, t0)
            if hit is not None:
                return hit
        if (old is not None and not old.complete and old.manifest["n"] == n and old.taps == tap_names
                and old.manifest.get("key") == key):
            files = [f for f in [old.manifest.get("stats_file")] if f] + old.shard_names()
            if old.verify(files):
                entry = old
            else:
                old.wipe()
        elif old is not None:
            old.wipe()

    # ---------------------------------------------------------------- run
    start_shard = entry.done if entry is not None else 0
    stats: dict[str, FeatureStats] = entry.load_stats() if (entry is not None and start_shard) else {}
    for t in tap_names:
        stats.setdefault(t, FeatureStats(precision=precision))
    mem_feats: dict[str, list[np.ndarray]] = {t: [] for t in tap_names}
    mem_labels: list[np.ndarray] = []
    shard_feats: dict[str, list[np.ndarray]] = {t: [] for t in tap_names}
    shard_labels: list[np.ndarray] = []
    dims: dict[str, int] = dict(entry.manifest.get("dims", {})) if entry is not None else {}
    feeder = _StatsFeeder(stats, flush_rows=flush_rows, background=background_stats)
    current: dict[str, Any] = {}

    def sink(name: str, feats: Any) -> None:
        y = current["y"]
        dims[name] = int(feats.shape[1])
        if feats.device.type == "cpu":
            arr = feats.numpy()
            if store_features:
                arr = np.array(arr, dtype=np.float32, copy=True)
                shard_feats[name].append(arr)
            feeder.add(name, arr, y)
        else:  # reduce on the GPU right away (FeatureStats handles CUDA tensors in float64)
            stats[name].update(feats, y)
            if store_features:
                shard_feats[name].append(feats.float().cpu().numpy())

    was_training = model.training
    model.eval()
    model.to(dev)
    computed = 0
    start = start_shard * shard_size
    bar = tqdm(total=n, initial=min(start, n), unit="img", disable=not progress, leave=False,
               desc=desc or f"extract {_model_name(model)}")
    source = _BatchSource(dataset, batch_size, num_workers)
    try:
        with TapRecorder(model, units, token_pool=token_pool, sink=sink, pool=pool) as rec, torch.inference_mode():
            for s in range(start_shard, n_shards):
                lo, hi = s * shard_size, min(n, (s + 1) * shard_size)
                for x, y in source.take(lo, hi):
                    y_np = np.asarray(y.cpu().numpy() if hasattr(y, "cpu") else y, dtype=np.int64)
                    current["y"] = y_np
                    x = x.to(dev, non_blocking=True)
                    with _autocast(dev, amp):
                        model(x)
                    rec.check_fired()
                    rec.reset()
                    shard_labels.append(y_np)
                    computed += len(y_np)
                    bar.update(len(y_np))
                feeder.flush_all()
                labels = np.concatenate(shard_labels) if shard_labels else np.zeros(0, dtype=np.int64)
                feats = {t: np.concatenate(v) for t, v in shard_feats.items()} if store_features else None
                if entry is not None:
                    entry.commit_shard(s, stats, feats, labels, dims)
                elif store_features:
                    for t in tap_names:
                        mem_feats[t].append(feats[t])  # type: ignore[index]
                    mem_labels.append(labels)
                shard_feats = {t: [] for t in tap_names}
                shard_labels = []
    finally:
        feeder.close()
        bar.close()
        model.train(was_training)
    if entry is not None:
        return _from_entry(entry, tap_names, n, key, t0, resumed=start_shard, computed=computed,
                           from_cache=False, stats=stats)
    results = {}
    for t in tap_names:
        tr = TapResult(t, stats[t], dims[t])
        if store_features:
            tr._features = np.concatenate(mem_feats[t])
            tr._labels = np.concatenate(mem_labels)
        results[t] = tr
    return ExtractionResult(results, n_samples=n, from_cache=False, resumed_shards=0, computed_samples=computed,
                            cache_path=None, seconds=time.perf_counter() - t0, key=key)
