"""``FeatureStats``: exact streaming sufficient statistics of labelled features (spec section 0).

State (all float64, all plain sums, so merging two partial statistics is addition):

- ``n``: number of samples; ``shift`` ``a`` of shape ``[d]``: the first batch's mean, fixed afterwards;
- per class ``k``: count ``n_k``, shifted sum ``s_k = sum_{i in k} (x_i - a)`` ``[K, d]``, shifted squared-norm
  sum ``q_k = sum_{i in k} ||x_i - a||^2`` ``[K]`` and the sum of L2-normalised raw features
  ``u_k = sum_{i in k} x_i / ||x_i||`` ``[K, d]``;
- the pooled shifted second moment ``G = sum_i (x_i - a)(x_i - a)^T`` ``[d, d]``.

Accumulating about a shift keeps features with a large common offset exact (style.md section 3.3 measured
relative errors of 1e-3 at an offset of 1e6 without it and 3e-12 with it). Every derived view
(class means, ``Sigma_W``, ``Sigma_B``, ``Sigma_Bw``, ``Sigma_T``) is computed from the state in float64 and
returned in sorted class order (first-seen order when labels of mixed types cannot be sorted).

Example:
    >>> import numpy as np
    >>> from nctransfer import FeatureStats
    >>> X = np.array([[0., 0.], [2., 0.], [0., 4.], [2., 4.]]); y = np.array(["a", "a", "b", "b"])
    >>> s = FeatureStats().update(X[:2], y[:2]).update(X[2:], y[2:])
    >>> s.class_means().tolist()
    [[1.0, 0.0], [1.0, 4.0]]
    >>> s.sigma_W().tolist()
    [[1.0, 0.0], [0.0, 0.0]]
"""

from __future__ import annotations

import copy
import json
import os
import pickle
from typing import Any, Hashable, Iterable, Sequence

import numpy as np

from nctransfer.exceptions import InputValueError, NotFittedError, ShapeError
from nctransfer.utils.io import atomic_path
from nctransfer.utils.validation import LabelEncoder, check_features, check_labels, is_torch, to_numpy

_STATE_VERSION = 1
_PRECISIONS = ("exact", "fast")


class FeatureStats:
    """Exact, mergeable, streaming statistics of features ``X [N, d]`` with labels ``y [N]``.

    Args:
        precision: ``"exact"`` (default) forms every chunk's sums and second moment in float64 (BLAS ``dsyrk``);
            ``"fast"`` forms each chunk's sums and second moment in float32 about the (float32-representable)
            shift and accumulates the chunk results in float64 (about 2x faster on CPU; relative error ~1e-6 to
            1e-5 instead of ~1e-14; see ``benchmarks/bench_metrics.py``).
        chunk_size: rows buffered (centred, in the working precision) between two BLAS ``syrk`` calls; bounds the
            extra memory (``chunk_size x d`` floats plus two ``d x d`` float64 matrices) independently of N and
            makes the cost independent of the batch size passed to :meth:`update`.

    Attributes (learned, end in ``_``): ``n_``, ``shift_``, ``counts_``, ``sums_``, ``sqnorms_``,
    ``normsums_``, ``gram_`` (internal first-seen class order) and ``encoder_`` (label mapping).
    """

    def __init__(self, precision: str = "exact", chunk_size: int = 4096) -> None:
        if precision not in _PRECISIONS:
            raise InputValueError(f"precision must be one of {_PRECISIONS}; got {precision!r}.")
        if int(chunk_size) < 1:
            raise InputValueError(f"chunk_size must be a positive integer; got {chunk_size!r}.")
        self.precision = precision
        self.chunk_size = int(chunk_size)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> "FeatureStats":
        """Forget all data."""
        self.n_ = 0
        self.shift_: np.ndarray | None = None
        self.counts_ = np.zeros(0, dtype=np.int64)
        self.sums_ = np.zeros((0, 0))
        self.sqnorms_ = np.zeros(0)
        self.normsums_ = np.zeros((0, 0))
        self.gram_ = np.zeros((0, 0))
        self.encoder_ = LabelEncoder()
        return self

    @property
    def dim(self) -> int | None:
        """Feature width ``d`` (None before the first update)."""
        return None if self.shift_ is None else len(self.shift_)

    @property
    def n_samples(self) -> int:
        return int(self.n_)

    @property
    def n_classes(self) -> int:
        return len(self.encoder_)

    @property
    def classes(self) -> list[Hashable]:
        """Class labels in sorted order (the order of every derived view)."""
        return [self.encoder_.classes[i] for i in self._order()]

    def _order(self) -> np.ndarray:
        return self.encoder_.sorted_order()

    def _init_state(self, d: int, shift: np.ndarray) -> None:
        self.shift_ = np.asarray(shift, dtype=np.float64).copy()
        self.sums_ = np.zeros((0, d))
        self.normsums_ = np.zeros((0, d))
        self.gram_ = np.zeros((d, d))

    def _grow(self, k: int) -> None:
        extra = k - len(self.counts_)
        if extra <= 0:
            return
        d = self.dim
        self.counts_ = np.concatenate([self.counts_, np.zeros(extra, dtype=np.int64)])
        self.sqnorms_ = np.concatenate([self.sqnorms_, np.zeros(extra)])
        self.sums_ = np.vstack([self.sums_, np.zeros((extra, d))])
        self.normsums_ = np.vstack([self.normsums_, np.zeros((extra, d))])

    # ----------------------------------------------------------------- update
    @property
    def gram_(self) -> np.ndarray:
        """Full symmetric shifted second moment ``[d, d]`` (pending BLAS ``syrk`` results folded in)."""
        self._flush()
        return self._gram

    @gram_.setter
    def gram_(self, value: np.ndarray) -> None:
        self._gram = value
        self._acc = None  # pending float64 upper-triangular syrk accumulator (Fortran order)
        self._buf = None  # centred rows waiting for one large syrk (shared across update calls)
        self._buf_rows = 0
        self._c32 = None  # float32 scratch result of the fast mode's ssyrk

    def _flush(self) -> None:
        """Run the pending ``syrk`` on the buffered rows and fold the accumulator into the symmetric ``_gram``."""
        self._syrk_buffer()
        if self._acc is not None:  # only the upper triangle was written (the lower one is still 0)
            acc = self._acc
            self._gram += acc
            self._gram += acc.T
            idx = np.arange(len(acc))
            self._gram[idx, idx] -= acc[idx, idx]
            self._acc = None

    def _syrk_buffer(self) -> None:
        """``acc += buf^T buf`` (upper triangle) for the buffered centred rows, then empty the buffer."""
        if not self._buf_rows:
            return
        from scipy.linalg import blas

        rows = self._buf[: self._buf_rows]
        if self._acc is None:
            self._acc = np.zeros(self._gram.shape, dtype=np.float64, order="F")
        if rows.dtype == np.float64:  # exact: BLAS dsyrk accumulates in place (beta = 1)
            out = blas.dsyrk(1.0, rows.T, beta=1.0, c=self._acc, overwrite_c=1)
            if out is not self._acc:
                self._acc = out
        else:  # fast: one float32 ssyrk per buffer (into a reused scratch matrix), accumulated in float64
            if getattr(self, "_c32", None) is None or self._c32.shape != self._acc.shape:
                self._c32 = np.zeros(self._acc.shape, dtype=np.float32, order="F")
            out = blas.ssyrk(1.0, rows.T, beta=0.0, c=self._c32, overwrite_c=1)  # upper triangle; lower stays 0
            if out is not self._c32:
                self._c32 = out
            self._acc += self._c32
        self._buf_rows = 0

    def __getstate__(self) -> dict[str, Any]:
        self._flush()  # pickles and deep copies carry no pending buffer
        state = self.__dict__.copy()
        state["_buf"] = None
        state["_c32"] = None
        return state

    def update(self, X: Any, y: Any) -> "FeatureStats":
        """Add a batch. ``X``: ``[B, d]`` numpy array or torch tensor (any device, any float dtype);
        ``y``: ``[B]`` labels of any hashable type. Returns ``self`` for chaining.

        Rows are processed ``chunk_size`` at a time, so the extra memory is ``O(chunk_size * d + d^2)`` whatever
        ``B``. CUDA tensors are reduced on the GPU in float64; only ``d x d`` and ``K x d`` partial sums move to
        the host.
        """
        X = check_features(X, "X")
        y_np = check_labels(y, X.shape[0], "y")
        d = X.shape[1]
        if self.shift_ is None:
            if is_torch(X):
                import torch

                mean = X.mean(0, dtype=torch.float64).cpu().numpy()
            else:
                mean = X.mean(0, dtype=np.float64)  # buffered cast: no float64 copy of the batch
            if self.precision == "fast":  # a float32-representable shift keeps the float32 path exact in shift
                mean = mean.astype(np.float32).astype(np.float64)
            self._init_state(d, mean)
        elif d != self.dim:
            raise ShapeError(f"X has {d} features per sample but these statistics were built with d={self.dim}.")
        codes = self.encoder_.encode(y_np)
        self._grow(len(self.encoder_))
        K = len(self.encoder_)
        if is_torch(X) and X.device.type != "cpu":
            self._update_torch(X, codes, K)
        else:
            self._update_numpy(to_numpy(X), codes, K)
        self.counts_ += np.bincount(codes, minlength=K)
        self.n_ += X.shape[0]
        return self

    @staticmethod
    def _class_matrix(codes: np.ndarray, weights: np.ndarray, K: int, dtype: Any) -> Any:
        """Sparse ``[2K, B]`` matrix: rows ``k`` are class indicators, rows ``K + k`` indicators times ``weights``.

        One sparse-dense product then gives the per-class sums and weighted sums in ``O(B d)`` on one thread (a
        dense one-hot GEMM costs ``O(B K d)``, and many small multi-threaded BLAS calls stall on a busy machine).
        """
        n = len(codes)
        import scipy.sparse as sp

        indices = np.empty(2 * n, dtype=np.int64)
        indices[0::2] = codes
        indices[1::2] = codes + K
        data = np.empty(2 * n, dtype=dtype)
        data[0::2] = 1.0
        data[1::2] = weights
        return sp.csc_matrix((data, indices, np.arange(0, 2 * n + 1, 2)), shape=(2 * K, n)).tocsr()

    def _update_numpy(self, X: np.ndarray, codes: np.ndarray, K: int) -> None:
        """Centre each block of rows into the row buffer (one pass), take the class sums with a sparse indicator
        product and the squared norms from it, and run one large ``syrk`` whenever ``chunk_size`` rows are buffered
        (few large BLAS calls whatever the batch size)."""
        fast = self.precision == "fast"
        if fast:
            shift32 = self.shift_.astype(np.float32)
            fast = bool(np.array_equal(shift32.astype(np.float64), self.shift_))  # else: exact path (rare)
        dtype = np.float32 if fast else np.float64
        if self._buf is None or self._buf.dtype != dtype:
            self._syrk_buffer()
            self._buf = np.empty((self.chunk_size, self.dim), dtype=dtype)
        start = 0
        while start < X.shape[0]:
            stop = min(X.shape[0], start + self.chunk_size - self._buf_rows)
            block, c = X[start:stop], codes[start:stop]
            dest = self._buf[self._buf_rows: self._buf_rows + (stop - start)]
            # 1/||x_i|| of the raw rows (accumulated in float64 in exact mode)
            sq = np.einsum("ij,ij->i", block, block) if fast else np.einsum("ij,ij->i", block, block, dtype=np.float64)
            inv = _inverse_norms(sq.astype(np.float64))
            if fast and block.dtype == np.float32:
                np.subtract(block, shift32, out=dest)  # float32 minus a float32 shift
            else:  # centre in float64 (a large offset must not eat a float32 mantissa), store in the buffer dtype
                np.subtract(block, self.shift_, out=dest, casting="same_kind")
            both = np.asarray(self._class_matrix(c, inv, K, dtype) @ dest, dtype=np.float64)
            self.sums_ += both[:K]
            # sum x_i/||x_i|| = sum (x_i - a)/||x_i|| + a * sum 1/||x_i||
            self.normsums_ += both[K:] + np.bincount(c, weights=inv, minlength=K)[:, None] * self.shift_
            self.sqnorms_ += np.bincount(c, weights=np.einsum("ij,ij->i", dest, dest), minlength=K)
            self._buf_rows += stop - start
            if self._buf_rows == self.chunk_size:
                self._syrk_buffer()
            start = stop

    def _update_torch(self, X: Any, codes: np.ndarray, K: int) -> None:
        import torch

        dev = X.device
        work = torch.float32 if self.precision == "fast" else torch.float64
        shift = torch.as_tensor(self.shift_, device=dev)
        c_all = torch.as_tensor(codes, device=dev)
        gram = torch.zeros(self.gram_.shape, dtype=torch.float64, device=dev)
        sums = torch.zeros((K, X.shape[1]), dtype=torch.float64, device=dev)
        normsums = torch.zeros_like(sums)
        sq = torch.zeros(K, dtype=torch.float64, device=dev)
        for start in range(0, X.shape[0], self.chunk_size):
            raw = X[start:start + self.chunk_size].detach().to(torch.float64)
            c = c_all[start:start + self.chunk_size]
            centred = raw - shift
            cw = centred.to(work)
            gram += (cw.T @ cw).to(torch.float64)
            sums.index_add_(0, c, centred)
            sq.index_add_(0, c, (centred * centred).sum(1))
            normsums.index_add_(0, c, raw / raw.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny))
        self.gram_ += gram.cpu().numpy()
        self.sums_ += sums.cpu().numpy()
        self.sqnorms_ += sq.cpu().numpy()
        self.normsums_ += normsums.cpu().numpy()

    @classmethod
    def from_arrays(cls, X: Any, y: Any, **kwargs: Any) -> "FeatureStats":
        """Statistics of one dataset in one call."""
        return cls(**kwargs).update(X, y)

    # ------------------------------------------------------------------ merge
    def _reshifted(self, new_shift: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sums, sqnorms, gram) re-expressed about ``new_shift`` exactly: x - b = (x - a) + (a - b)."""
        delta = self.shift_ - new_shift
        n_k = self.counts_.astype(np.float64)
        sums = self.sums_ + n_k[:, None] * delta
        sq = self.sqnorms_ + 2.0 * self.sums_ @ delta + n_k * (delta @ delta)
        total = self.sums_.sum(0)
        gram = self.gram_ + np.outer(total, delta) + np.outer(delta, total) + self.n_ * np.outer(delta, delta)
        return sums, sq, gram

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        """Return new statistics of the union of both datasets (exact; neither input is modified)."""
        if not isinstance(other, FeatureStats):
            raise TypeError(f"can only merge FeatureStats with FeatureStats; got {type(other).__name__}.")
        if other.n_ == 0:
            return self.copy()
        if self.n_ == 0:
            return other.copy()
        if other.dim != self.dim:
            raise ShapeError(f"cannot merge statistics of different width: d={self.dim} and d={other.dim}.")
        out = self.copy()
        sums, sq, gram = other._reshifted(out.shift_)
        idx = out.encoder_.encode(np.asarray(other.encoder_.classes, dtype=object))
        out._grow(len(out.encoder_))
        out.n_ += other.n_
        np.add.at(out.counts_, idx, other.counts_)
        np.add.at(out.sums_, idx, sums)
        np.add.at(out.sqnorms_, idx, sq)
        np.add.at(out.normsums_, idx, other.normsums_)
        out.gram_ += gram
        return out

    def __add__(self, other: "FeatureStats") -> "FeatureStats":
        return self.merge(other)

    def __radd__(self, other: Any) -> "FeatureStats":
        if other == 0:  # lets sum([s1, s2, ...]) work
            return self.copy()
        return other.merge(self)

    def copy(self) -> "FeatureStats":
        return copy.deepcopy(self)

    def all_reduce(self, group: Any = None) -> "FeatureStats":
        """Sum the statistics of every ``torch.distributed`` process in place (no-op without a process group).

        Label mappings are unified (all_gather of the class lists), every process re-expresses its sums about
        rank 0's shift, then each state array is all-reduced with SUM. Returns ``self``.
        """
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        world = dist.get_world_size(group)
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, (self.dim, list(self.encoder_.classes),
                                          None if self.shift_ is None else self.shift_.tolist()), group=group)
        dims = {g[0] for g in gathered if g[0] is not None}
        if len(dims) > 1:
            raise ShapeError(f"cannot all_reduce statistics of different widths across processes: {sorted(dims)}.")
        if not dims:
            return self
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
        if self.n_:
            idx = union.encode(np.asarray(self.encoder_.classes, dtype=object))
            s, q, gram = self._reshifted(shift)
            counts[idx], sums[idx], sq[idx], normsums[idx] = self.counts_, s, q, self.normsums_
        backend_device = "cuda" if dist.get_backend(group) == "nccl" else "cpu"
        flat = np.concatenate([[float(self.n_)], counts, sq, sums.ravel(), normsums.ravel(), gram.ravel()])
        t = torch.from_numpy(flat).to(backend_device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
        flat = t.cpu().numpy()
        pos = [1, 1 + K, 1 + 2 * K, 1 + 2 * K + K * d, 1 + 2 * K + 2 * K * d]
        self.encoder_ = union
        self._init_state(d, shift)
        self.n_ = int(round(flat[0]))
        self.counts_ = np.rint(flat[pos[0]:pos[1]]).astype(np.int64)
        self.sqnorms_ = flat[pos[1]:pos[2]].copy()
        self.sums_ = flat[pos[2]:pos[3]].reshape(K, d).copy()
        self.normsums_ = flat[pos[3]:pos[4]].reshape(K, d).copy()
        self.gram_ = flat[pos[4]:].reshape(d, d).copy()
        return self

    # ---------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        """Plain-data state (numpy arrays, ints, the class list); inverse of :meth:`from_state_dict`."""
        return {
            "version": _STATE_VERSION,
            "precision": self.precision,
            "chunk_size": self.chunk_size,
            "n": int(self.n_),
            "classes": list(self.encoder_.classes),
            "shift": None if self.shift_ is None else self.shift_.copy(),
            "counts": self.counts_.copy(),
            "sums": self.sums_.copy(),
            "sqnorms": self.sqnorms_.copy(),
            "normsums": self.normsums_.copy(),
            "gram": self.gram_.copy(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "FeatureStats":
        if state.get("version") != _STATE_VERSION:
            raise InputValueError(f"unsupported FeatureStats state version {state.get('version')!r}; "
                                  f"expected {_STATE_VERSION}.")
        out = cls(precision=state["precision"], chunk_size=state["chunk_size"])
        out.encoder_ = LabelEncoder(state["classes"])
        if state["shift"] is not None:
            out._init_state(len(state["shift"]), state["shift"])
            out.n_ = int(state["n"])
            out.counts_ = np.asarray(state["counts"], dtype=np.int64).copy()
            out.sums_ = np.asarray(state["sums"], dtype=np.float64).copy()
            out.sqnorms_ = np.asarray(state["sqnorms"], dtype=np.float64).copy()
            out.normsums_ = np.asarray(state["normsums"], dtype=np.float64).copy()
            out.gram_ = np.asarray(state["gram"], dtype=np.float64).copy()
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the state to an ``.npz`` file atomically."""
        state = self.state_dict()
        classes = state.pop("classes")
        try:
            meta = json.dumps({"classes": classes})
            if json.loads(meta)["classes"] != classes:
                raise TypeError
            state["classes_json"] = np.array(meta)
        except TypeError:
            state["classes_pickle"] = np.frombuffer(pickle.dumps(classes), dtype=np.uint8)
        if state["shift"] is None:
            state.pop("shift")
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **state)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureStats":
        """Read statistics written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            state = {k: z[k] for k in z.files}
        if "classes_json" in state:
            classes = json.loads(str(state.pop("classes_json")))["classes"]
        else:
            classes = pickle.loads(state.pop("classes_pickle").tobytes())
        state["classes"] = classes
        state.setdefault("shift", None)
        state["version"] = int(state["version"])
        state["precision"] = str(state["precision"])
        state["chunk_size"] = int(state["chunk_size"])
        return cls.from_state_dict(state)

    # --------------------------------------------------------- derived views
    def _require(self, min_classes: int = 1) -> None:
        if self.n_ == 0:
            raise NotFittedError("FeatureStats has seen no data: call update(X, y) first.")
        if self.n_classes < min_classes:
            raise InputValueError(f"at least {min_classes} classes are needed; these statistics have "
                                  f"{self.n_classes}.")

    def class_counts(self) -> np.ndarray:
        """``n_k`` ``[K]`` in sorted class order."""
        self._require()
        return self.counts_[self._order()].copy()

    def _shifted_means(self) -> np.ndarray:
        o = self._order()
        return self.sums_[o] / self.counts_[o, None]

    def class_means(self) -> np.ndarray:
        """``mu_k`` ``[K, d]``."""
        self._require()
        return self._shifted_means() + self.shift_

    def global_mean(self) -> np.ndarray:
        """``mu_G = (1/N) sum_i x_i`` ``[d]``."""
        self._require()
        return self.sums_.sum(0) / self.n_ + self.shift_

    def mean_of_class_means(self) -> np.ndarray:
        """``mu_bar = (1/K) sum_k mu_k`` ``[d]``."""
        return self.class_means().mean(0)

    def class_variances(self) -> np.ndarray:
        """``Var_k = (1/n_k) sum_{i in k} ||x_i - mu_k||^2`` ``[K]`` (CDNV's numerator terms)."""
        self._require()
        o = self._order()
        m = self._shifted_means()
        return np.maximum(self.sqnorms_[o] / self.counts_[o] - np.einsum("kd,kd->k", m, m), 0.0)

    def class_unit_sums(self) -> np.ndarray:
        """``sum_{i in k} x_i / ||x_i||`` ``[K, d]`` (cosine-similarity metrics)."""
        self._require()
        return self.normsums_[self._order()].copy()

    def second_moment(self) -> np.ndarray:
        """Shifted second moment ``sum_i (x_i - a)(x_i - a)^T`` ``[d, d]`` (with ``a = self.shift_``)."""
        self._require()
        return self.gram_.copy()

    def sigma_T(self) -> np.ndarray:
        """``Sigma_T = (1/N) sum_i (x_i - mu_G)(x_i - mu_G)^T`` ``[d, d]``."""
        self._require()
        m = self.sums_.sum(0) / self.n_
        S = self.gram_ / self.n_ - np.outer(m, m)
        return (S + S.T) / 2

    def sigma_Bw(self) -> np.ndarray:
        """``Sigma_Bw = sum_k (n_k/N)(mu_k - mu_G)(mu_k - mu_G)^T`` ``[d, d]``."""
        self._require()
        diff = self._shifted_means() - self.sums_.sum(0) / self.n_
        w = self.class_counts() / self.n_
        return (diff.T * w) @ diff

    def sigma_W(self) -> np.ndarray:
        """``Sigma_W = (1/N) sum_k sum_{i in k} (x_i - mu_k)(x_i - mu_k)^T = Sigma_T - Sigma_Bw`` ``[d, d]``."""
        S = self.sigma_T() - self.sigma_Bw()
        return (S + S.T) / 2

    def sigma_B(self) -> np.ndarray:
        """``Sigma_B = (1/K) sum_k (mu_k - mu_bar)(mu_k - mu_bar)^T`` ``[d, d]`` (class-balanced)."""
        m = self._shifted_means()
        diff = m - m.mean(0)
        return diff.T @ diff / len(m)

    def __repr__(self) -> str:
        return f"FeatureStats(n={self.n_}, d={self.dim}, K={self.n_classes}, precision={self.precision!r})"


def _inverse_norms(sq: np.ndarray) -> np.ndarray:
    """``1/sqrt(sq)``, with 0 for zero vectors (a zero vector contributes nothing to the unit-vector sums)."""
    inv = np.zeros_like(sq)
    nz = sq > 0
    inv[nz] = 1.0 / np.sqrt(sq[nz])
    return inv


def stats_from_batches(batches: Iterable[tuple[Any, Any]], **kwargs: Any) -> FeatureStats:
    """Accumulate ``(X, y)`` batches from any iterable into one :class:`FeatureStats`."""
    stats = FeatureStats(**kwargs)
    for X, y in batches:
        stats.update(X, y)
    return stats


def ensure_stats(X_or_stats: Any, y: Any = None, *, name: str = "X") -> FeatureStats:
    """Return ``X_or_stats`` if it is a :class:`FeatureStats`, else statistics of ``(X, y)``.

    Used by every metric that accepts either form.
    """
    if isinstance(X_or_stats, FeatureStats):
        if y is not None:
            raise InputValueError("pass either a FeatureStats object or (X, y), not both.")
        return X_or_stats
    if y is None:
        raise InputValueError(f"labels y are required when {name} is an array; got y=None.")
    return FeatureStats().update(X_or_stats, y)


__all__: Sequence[str] = ["FeatureStats", "stats_from_batches", "ensure_stats"]
