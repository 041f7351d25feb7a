"""``extract``: one forward pass per batch feeds every selected tap into its ``FeatureStats`` (docs/methods.md#notation:
streaming statistics; section 1.11: pooling) and, on request, into the on-disk feature store
(:mod:`nctransfer.extract.store`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from nctransfer.exceptions import InputValueError
from nctransfer.extract.store import CacheEntry, digest, weights_fingerprint
from nctransfer.features import TapRecorder, resolve_taps
from nctransfer.features.pooling import check_pool, pool_key
from nctransfer.stats import FeatureStats

DEFAULT_CACHE_DIR = "~/.cache/nctransfer/features"
_DTYPES = {None: None, "float32": None, "fp32": None, "float16": "float16", "fp16": "float16",
           "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}


def default_cache_dir() -> Path:
    """``$NCTRANSFER_CACHE`` or ``~/.cache/nctransfer/features``."""
    return Path(os.environ.get("NCTRANSFER_CACHE", DEFAULT_CACHE_DIR)).expanduser()


@dataclass
class TapResult:
    """What extraction produced for one tap.

    Attributes:
        name: the tap.
        stats: :class:`~nctransfer.stats.FeatureStats` of the pooled features ``[N, dim]``.
        dim: feature width.
        features, labels: ``float32 [N, dim]`` and ``int64 [N]`` when features were stored (loaded lazily from
            the cache), else accessing them raises.
    """

    name: str
    stats: FeatureStats
    dim: int
    _features: np.ndarray | None = field(default=None, repr=False)
    _labels: np.ndarray | None = field(default=None, repr=False)
    _loader: Callable[[], tuple[np.ndarray, np.ndarray]] | None = field(default=None, repr=False)
    _batches: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]] | None = field(default=None, repr=False)

    def iter_batches(self, rows: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The stored ``(features [b, dim], labels [b])`` in order, one feature-store shard (or ``rows`` rows of
        in-memory features) at a time: the re-iterable source of the streaming scores
        (``nctransfer.transferability.streaming.stream_score(name, tap_result.iter_batches)``), which never hold
        ``N x dim``."""
        if self._batches is not None and self._features is None:
            yield from self._batches()
            return
        X, y = self.features, self.labels
        for s in range(0, len(y), max(1, int(rows))):
            yield X[s:s + rows], y[s:s + rows]

    @property
    def has_features(self) -> bool:
        return self._features is not None or self._loader is not None

    def _load(self) -> None:
        if self._features is None:
            if self._loader is None:
                raise InputValueError(f"tap {self.name!r}: features were not stored; call extract(..., "
                                      "store_features=True).")
            self._features, self._labels = self._loader()

    @property
    def features(self) -> np.ndarray:
        self._load()
        return self._features  # type: ignore[return-value]

    @property
    def labels(self) -> np.ndarray:
        self._load()
        return self._labels  # type: ignore[return-value]


class ExtractionResult(Mapping):
    """``{tap: TapResult}`` in forward order, plus run information.

    Attributes:
        taps: tap names; n_samples: N; from_cache: True if nothing was computed; resumed_shards: shards reused
        from an interrupted run; computed_samples: images actually passed through the model; cache_path: the
        cache entry directory (or None); seconds: wall time; key: the cache key components.
    """

    def __init__(self, results: dict[str, TapResult], *, n_samples: int, from_cache: bool, resumed_shards: int,
                 computed_samples: int, cache_path: Path | None, seconds: float, key: dict[str, Any]) -> None:
        self._results = results
        self.taps = list(results)
        self.n_samples = n_samples
        self.from_cache = from_cache
        self.resumed_shards = resumed_shards
        self.computed_samples = computed_samples
        self.cache_path = cache_path
        self.seconds = seconds
        self.key = key

    def __getitem__(self, tap: str) -> TapResult:
        return self._results[tap]

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    def stats(self) -> dict[str, FeatureStats]:
        return {t: r.stats for t, r in self._results.items()}

    def __repr__(self) -> str:
        return (f"ExtractionResult(taps={len(self.taps)}, n={self.n_samples}, from_cache={self.from_cache}, "
                f"resumed_shards={self.resumed_shards}, seconds={self.seconds:.2f})")


# ------------------------------------------------------------------------------------------------ batches
def _collate(items: list[Any]) -> tuple[Any, Any]:
    """``(image, label)`` items of a raw dataset -> ``(x [B, ...], y [B])``: tensors stacked as given, PIL images
    and numpy arrays converted to float ``[C, H, W]`` in ``[0, 1]`` first."""
    import torch

    from nctransfer.data.inputs import item_pair, label_value
    from nctransfer.data.transforms import to_float_tensor

    xs, ys = [], []
    for k, item in enumerate(items):
        img, lab = item_pair(item, f"dataset item {k} of a batch")
        xs.append(img if torch.is_tensor(img) else to_float_tensor(img, f"dataset item {k} of a batch"))
        ys.append(label_value(lab, f"dataset item {k} of a batch"))
    return torch.stack(xs), torch.as_tensor(ys)


def _batches(dataset: Any, start: int, stop: int, batch_size: int, num_workers: int) -> Iterator[tuple[Any, Any]]:
    import torch

    if hasattr(dataset, "get_batch"):
        for b in range(start, stop, batch_size):
            yield dataset.get_batch(np.arange(b, min(b + batch_size, stop)))
        return
    from torch.utils.data import DataLoader, Subset

    loader = DataLoader(Subset(dataset, range(start, stop)), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=_collate)
    for x, y in loader:
        yield x, torch.as_tensor(y)


class _BatchSource:
    """Batches of samples ``[lo, hi)`` for consecutive shards. Map-style datasets are indexed; a dataset that can
    only be iterated (``iter_batches()``: a DataLoader used as given) is consumed once, its batches cut at shard
    boundaries (eval mode: cutting a batch does not change any feature)."""

    def __init__(self, dataset: Any, batch_size: int, num_workers: int) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.streaming = hasattr(dataset, "iter_batches") and not hasattr(dataset, "get_batch")
        self._it: Iterator[tuple[Any, Any]] | None = None
        self._pos = 0
        self._carry: tuple[Any, Any] | None = None

    def _next(self) -> tuple[Any, Any] | None:
        if self._carry is not None:
            out, self._carry = self._carry, None
            return out
        if self._it is None:
            self._it = iter(self.dataset.iter_batches())
        return next(self._it, None)

    def take(self, lo: int, hi: int) -> Iterator[tuple[Any, Any]]:
        if not self.streaming:
            yield from _batches(self.dataset, lo, hi, self.batch_size, self.num_workers)
            return
        while self._pos < hi:
            nxt = self._next()
            if nxt is None:
                raise InputValueError(f"the DataLoader yielded {self._pos} samples, fewer than the {hi} expected (its "
                                      "length changed between passes?).")
            x, y = nxt
            b0, b1 = self._pos, self._pos + len(y)
            if b1 > hi:  # keep the rest for the next shard
                self._carry = (x[hi - b0:], y[hi - b0:])
                x, y, b1 = x[:hi - b0], y[:hi - b0], hi
            self._pos = b1
            if b1 <= lo:  # resuming: skip samples of completed shards
                continue
            if b0 < lo:
                x, y = x[lo - b0:], y[lo - b0:]
            yield x, y


def _as_extract_input(dataset: Any, dataset_id: str | None, cache: bool, batch_size: int) -> Any:
    """DataLoaders, Hugging Face datasets and streams -> datasets :func:`extract` can iterate (no transform:
    images are fed as given)."""
    from nctransfer.data import inputs as I

    if I.is_stream(dataset):
        if cache and dataset_id is None:
            raise I.stream_error(dataset, "extract")
        return I.LoaderDataset(I.stream_loader(dataset, batch_size), dataset_id=dataset_id or "uncached-stream")
    if I.is_dataloader(dataset):
        return I.LoaderDataset(dataset, dataset_id=dataset_id)
    if I.is_hf_dataset(dataset) or (type(dataset).__name__ == "DatasetDict"):
        from nctransfer.data import load_dataset

        return load_dataset(dataset, None if I.is_hf_dataset(dataset) else "train", dataset_id=dataset_id)
    return dataset


def _dataset_id(dataset: Any, dataset_id: str | None) -> str | None:
    if dataset_id is not None:
        return str(dataset_id)
    fp = getattr(dataset, "fingerprint", None)
    return fp() if callable(fp) else None


def _model_name(model: Any) -> str:
    info = getattr(model, "nctransfer_info", None)
    return info.name if info is not None else type(model).__name__


def _autocast(device: Any, dtype: str | None) -> Any:
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, dtype))


class _StatsFeeder:
    """Buffers pooled CPU features per tap and feeds them to ``FeatureStats`` in blocks of ``flush_rows`` rows,
    optionally in one background thread (FIFO, so each tap's updates keep their order and the result is the same
    as a synchronous run)."""

    def __init__(self, stats: dict[str, FeatureStats], flush_rows: int, background: bool) -> None:
        from concurrent.futures import ThreadPoolExecutor

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


# ------------------------------------------------------------------------------------------------ locks
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
    import torch
    from tqdm.auto import tqdm

    if distributed is None or distributed:
        from nctransfer.utils.distributed import rank_and_world

        if rank_and_world()[1] > 1:
            from nctransfer.extract.distributed import extract_sharded

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
