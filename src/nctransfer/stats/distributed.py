"""Summing :class:`~nctransfer.stats.FeatureStats` across ``torch.distributed`` processes (the state is plain sums,
so the statistics of the whole dataset are the all-reduced sums of the shards, after unifying the label mappings
and re-expressing every shard about one shift)."""

from __future__ import annotations

from typing import Any

import numpy as np

from nctransfer.exceptions import ShapeError
from nctransfer.utils.validation import LabelEncoder

def all_reduce(stats: Any, group: Any = None) -> Any:
    """Sum the statistics of every ``torch.distributed`` process into ``stats`` (a ``FeatureStats``) in place (no-op without a process
    group); see :meth:`FeatureStats.all_reduce`. Returns ``stats``."""
    import torch  # deferred: torch is optional and the core install imports nctransfer.stats without it
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return stats
    world = dist.get_world_size(group)
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, (stats.dim, list(stats.encoder_.classes),
                                      None if stats.shift_ is None else stats.shift_.tolist()), group=group)
    dims = {g[0] for g in gathered if g[0] is not None}
    if len(dims) > 1:
        raise ShapeError(f"cannot all_reduce statistics of different widths across processes: {sorted(dims)}.")
    if not dims:
        return stats
    d = dims.pop()
    shift = np.asarray(next(g[2] for g in gathered if g[2] is not None))
    union = LabelEncoder()
    for g in gathered:
        union.encode(np.asarray(g[1], dtype=object))
    K = len(union)
    counts = np.zeros(K)
    sums = np.zeros((K, d))
    sq = np.zeros(K)
    normsums = np.zeros((K, d))
    gram = np.zeros((d, d))
    if stats.n_:
        idx = union.encode(np.asarray(stats.encoder_.classes, dtype=object))
        s, q, gram = stats._reshifted(shift)
        counts[idx], sums[idx], sq[idx], normsums[idx] = stats.counts_, s, q, stats.normsums_
    backend_device = "cuda" if dist.get_backend(group) == "nccl" else "cpu"
    flat = np.concatenate([[float(stats.n_)], counts, sq, sums.ravel(), normsums.ravel(), gram.ravel()])
    t = torch.from_numpy(flat).to(backend_device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    flat = t.cpu().numpy()
    pos = [1, 1 + K, 1 + 2 * K, 1 + 2 * K + K * d, 1 + 2 * K + 2 * K * d]
    stats.encoder_ = union
    stats._init_state(d, shift)
    stats.n_ = int(round(flat[0]))
    stats.counts_ = np.rint(flat[pos[0]:pos[1]]).astype(np.int64)
    stats.sqnorms_ = flat[pos[1]:pos[2]].copy()
    stats.sums_ = flat[pos[2]:pos[3]].reshape(K, d).copy()
    stats.normsums_ = flat[pos[3]:pos[4]].reshape(K, d).copy()
    stats.gram_ = flat[pos[4]:].reshape(d, d).copy()
    return stats


__all__ = ["all_reduce"]
