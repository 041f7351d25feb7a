"""``FeatureStats``: exact streaming sufficient statistics of labelled features (docs/methods.md#notation).

State (all float64, all plain sums, so merging two partial statistics is addition):

- ``n``: number of samples; ``shift`` ``a`` of shape ``[d]``: the first batch's mean, fixed afterwards;
- per class ``k``: count ``n_k``, shifted sum ``s_k = sum_{i in k} (x_i - a)`` ``[K, d]``, shifted squared-norm
  sum ``q_k = sum_{i in k} ||x_i - a||^2`` ``[K]`` and the sum of L2-normalised raw features
  ``u_k = sum_{i in k} x_i / ||x_i||`` ``[K, d]``;
- the pooled shifted second moment ``G = sum_i (x_i - a)(x_i - a)^T`` ``[d, d]``.

Accumulating about a shift keeps features with a large common offset exact (measured:
relative errors of 1e-3 at an offset of 1e6 without it and 3e-12 with it). Every derived view
(class means, ``Sigma_W``, ``Sigma_B``, ``Sigma_Bw``, ``Sigma_T``) is computed from the state in float64 and
returned in sorted class order (first-seen order when labels of mixed types cannot be sorted).

Examples:
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
from typing import Any, Hashable, Iterable, Sequence

import numpy as np

from nctransfer.exceptions import InputValueError, NotFittedError, NotFoundError, ShapeError, UnsafeFileError
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
        if is_torch(X):
            X = X.detach()  # statistics never take part in autograd (a tensor that requires grad is fine)
        X = check_features(X, "X")
        y_np = check_labels(y, X.shape[0], "y", discrete=False)  # metrics check the label type when used
        d = X.shape[1]
        if self.shift_ is None:
            if is_torch(X):
                import torch

                mean = X.mean(0, dtype=torch.float64).cpu().numpy()
            else:
                mean = X.mean(0, dtype=np.float64)  # buffered cast: no float64 copy of the batch
            if self.precision == "fast":  # a float32-representable shift keeps the float32 path exact in shift
                mean = mean.astype(np.float32).astype(np.float64)
            from nctransfer.utils.memory import WIDE_FEATURES_ADVICE, check_memory

            # gram + syrk accumulator (float64 d x d each) + one chunk buffer; derived views need one more d x d
            check_memory(3 * d * d * 8 + self.chunk_size * d * 8, f"FeatureStats of d={d} features",
                         advice=WIDE_FEATURES_ADVICE)
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
    def from_state_dict(cls, state: dict[str, Any], *, source: str = "state") -> "FeatureStats":
        """Statistics from :meth:`state_dict` output, fully validated (see :func:`validate_state`).

        Raises:
            InputValueError: a missing key, a wrong shape or type, or values no dataset can produce (negative
                counts, counts not adding up to ``n``, a second moment that is not positive semi-definite, ...);
                the message names ``source`` and what is wrong.
        """
        state = validate_state(state, source)
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
        """Write the state to an ``.npz`` file atomically, without pickle.

        The class list is stored as JSON (``classes_json``); tuples, frozensets and bytes labels are tagged
        (``{"__tuple__": [...]}``) so that they round-trip. Labels of any other type raise
        :class:`~nctransfer.exceptions.InputValueError` (map them to strings or integers first).
        """
        state = self.state_dict()
        classes = state.pop("classes")
        state["classes_json"] = np.array(encode_classes(classes))
        if state["shift"] is None:
            state.pop("shift")
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **state)

    @classmethod
    def load(cls, path: str | os.PathLike, *, allow_pickle: bool = False) -> "FeatureStats":
        """Read statistics written by :meth:`save` and validate them (:func:`validate_state`).

        Nothing is unpickled: files written by old versions with a pickled class list (``classes_pickle``) are
        refused unless ``allow_pickle=True`` -- unpickling a file can run arbitrary code, so only opt in for files
        you trust.

        Raises:
            NotFoundError: no such file. InputValueError: a directory, not an ``.npz`` archive, truncated, missing
            keys, tampered values. UnsafeFileError (an InputValueError): a pickled class list without
            ``allow_pickle=True``.
        """
        state = read_npz(path, "statistics file")
        where = f"statistics file {str(path)!r}"
        if "classes_json" in state:
            classes = decode_classes(state.pop("classes_json"), where)
        elif "classes_pickle" in state:
            blob = state.pop("classes_pickle")
            if not allow_pickle:
                raise UnsafeFileError(
                    f"{where} stores its class list pickled (written by an older nctransfer); unpickling a file can run "
                    "arbitrary code. Pass allow_pickle=True (CLI: --allow-pickle) only if you trust the file, then "
                    "re-save it: FeatureStats.load(path, allow_pickle=True).save(path) writes the safe format.")
            import pickle

            classes = pickle.loads(np.asarray(blob).tobytes())  # noqa: S301 - explicit opt-in above
        else:
            raise InputValueError(f"{where} has no class list (key 'classes_json'); keys present: "
                                  f"{sorted(state)}. Was it written by FeatureStats.save?")
        state["classes"] = classes
        state.setdefault("shift", None)
        return cls.from_state_dict(state, source=where)

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


_REQUIRED_KEYS = ("version", "precision", "chunk_size", "n", "classes", "counts", "sums", "sqnorms", "normsums",
                  "gram")


# -------------------------------------------------------------------------------------- safe persistence
def read_npz(path: str | os.PathLike, what: str = "file") -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` archive, read without pickle; every failure is one :class:`InputValueError`.

    Raises:
        NotFoundError: missing path. InputValueError: a directory, not a zip archive, truncated or corrupt, or an
        array that needs pickle (dtype object).
    """
    import zipfile

    p = os.fspath(path)
    if os.path.isdir(p):
        raise InputValueError(f"{what} {p!r} is a directory; expected an .npz file.")
    if not os.path.exists(p):
        raise NotFoundError(f"{what} {p!r} does not exist.")
    try:
        with open(p, "rb") as fh:  # our own handle: closed even when numpy fails half-way
            with np.load(fh, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "pickle" in str(exc).lower():
            raise UnsafeFileError(f"{what} {p!r} holds pickled objects (arrays of dtype object); they are never "
                                  "unpickled. Save plain numeric or string arrays.") from None
        raise InputValueError(f"{what} {p!r} could not be read as .npz: {_first_line(exc)}") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, zipfile.LargeZipFile) as exc:
        raise InputValueError(f"{what} {p!r} is not a readable .npz archive (truncated or corrupt?): "
                              f"{_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_TAGS = {"__tuple__": tuple, "__frozenset__": frozenset}


def _encode_label(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        if not np.isfinite(v):
            raise InputValueError(f"class label {v!r} is not finite.")
        return v
    if isinstance(v, np.generic):
        return _encode_label(v.item())
    if isinstance(v, tuple):
        return {"__tuple__": [_encode_label(x) for x in v]}
    if isinstance(v, frozenset):
        return {"__frozenset__": sorted((_encode_label(x) for x in v), key=repr)}
    if isinstance(v, bytes):
        return {"__bytes__": v.hex()}
    raise InputValueError(f"class label {v!r} of type {type(v).__name__} cannot be saved without pickle; map the "
                          "labels to strings or integers first.")


def _decode_label(v: Any, where: str) -> Any:
    if isinstance(v, dict):
        if len(v) == 1:
            (tag, inner), = v.items()
            if tag in _TAGS and isinstance(inner, list):
                return _TAGS[tag](_decode_label(x, where) for x in inner)
            if tag == "__bytes__" and isinstance(inner, str):
                return bytes.fromhex(inner)
        raise InputValueError(f"{where}: unrecognised class label encoding {v!r}.")
    if isinstance(v, list):
        raise InputValueError(f"{where}: a class label is a list {v!r}; labels must be hashable.")
    return v


def encode_classes(classes: Sequence[Hashable]) -> str:
    """JSON text ``{"classes": [...]}`` of a class list (tuples/frozensets/bytes tagged; no pickle)."""
    return json.dumps({"classes": [_encode_label(c) for c in classes]}, allow_nan=False)


def decode_classes(blob: Any, where: str = "statistics") -> list[Hashable]:
    """Inverse of :func:`encode_classes` (accepts the untagged lists older versions wrote)."""
    try:
        meta = json.loads(str(np.asarray(blob)))
    except (ValueError, TypeError) as exc:
        raise InputValueError(f"{where}: the class list is not valid JSON ({_first_line(exc)}).") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("classes"), list):
        raise InputValueError(f"{where}: the class list must be JSON {{\"classes\": [...]}}; got {str(meta)[:80]!r}.")
    return [_decode_label(c, where) for c in meta["classes"]]


def _scalar(state: dict[str, Any], key: str, kind: type, where: str) -> Any:
    v = state[key]
    if hasattr(v, "numpy") and hasattr(v, "detach"):  # a torch tensor from a .pt state dict
        v = v.detach().cpu().numpy()
    a = np.asarray(v)
    if a.ndim != 0:
        raise InputValueError(f"{where}: {key!r} must be a scalar; got an array of shape {a.shape}.")
    value = a.item()
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise InputValueError(f"{where}: {key!r} must be an integer; got {value!r}.")
        return int(value)
    if not isinstance(value, str):
        raise InputValueError(f"{where}: {key!r} must be a string; got {value!r}.")
    return value


def _array(state: dict[str, Any], key: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    v = state[key]
    if hasattr(v, "numpy") and hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    a = np.asarray(v)
    if a.dtype.kind not in "iuf":
        raise InputValueError(f"{where}: {key!r} must be a numeric array; got dtype {a.dtype}.")
    if a.shape != shape:
        raise InputValueError(f"{where}: {key!r} must have shape {shape}; got {a.shape}.")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise InputValueError(f"{where}: {key!r} contains NaN or Inf.")
    return a


def validate_state(state: dict[str, Any], where: str = "state") -> dict[str, Any]:
    """Check a :meth:`FeatureStats.state_dict` completely; return a normalised copy (numpy arrays, Python
    scalars).

    Checked: every key present; version; precision; ``chunk_size >= 1``; ``n >= 0`` integer; the class list (a
    list of distinct hashable labels, one per count); shapes ``shift [d]``, ``counts [K]``, ``sums [K, d]``,
    ``sqnorms [K]``, ``normsums [K, d]``, ``gram [d, d]``; finite values; counts integral, positive and adding up
    to ``n``; and the consistency that any real dataset has: ``gram`` symmetric, the within-class scatter
    ``gram - sum_k s_k s_k^T / n_k`` positive semi-definite (Cholesky with a rounding tolerance),
    ``trace(gram) = sum_k q_k`` (both are ``sum_i ||x_i - a||^2``), ``q_k >= ||s_k||^2 / n_k`` and
    ``||u_k|| <= n_k`` (sums of unit vectors).

    Raises:
        InputValueError: naming ``where`` and the first violated condition.
    """
    if not isinstance(state, dict):
        raise InputValueError(f"{where}: expected a dict of FeatureStats state; got {type(state).__name__}.")
    missing = [k for k in _REQUIRED_KEYS if k not in state]
    if missing:
        raise InputValueError(f"{where}: missing key(s) {missing}; a FeatureStats state has {list(_REQUIRED_KEYS)} "
                              "and 'shift'.")
    version = _scalar(state, "version", int, where)
    if version != _STATE_VERSION:
        raise InputValueError(f"unsupported FeatureStats state version {version!r}; expected {_STATE_VERSION} "
                              f"({where}).")
    precision = _scalar(state, "precision", str, where)
    if precision not in _PRECISIONS:
        raise InputValueError(f"{where}: precision must be one of {_PRECISIONS}; got {precision!r}.")
    chunk = _scalar(state, "chunk_size", int, where)
    if chunk < 1:
        raise InputValueError(f"{where}: chunk_size must be >= 1; got {chunk}.")
    n = _scalar(state, "n", int, where)
    if n < 0:
        raise InputValueError(f"{where}: the sample count n must be >= 0; got {n}.")
    classes = state["classes"]
    if isinstance(classes, np.ndarray):
        classes = classes.tolist()
    if not isinstance(classes, (list, tuple)):
        raise InputValueError(f"{where}: 'classes' must be a list of labels; got {type(classes).__name__}.")
    classes = list(classes)
    try:
        distinct = len(set(classes))
    except TypeError:
        raise InputValueError(f"{where}: every class label must be hashable.") from None
    if distinct != len(classes):
        raise InputValueError(f"{where}: the class list has duplicated labels.")
    out = {"version": version, "precision": precision, "chunk_size": chunk, "n": n, "classes": classes,
           "shift": None}
    shift = state.get("shift")
    if shift is None or (isinstance(shift, np.ndarray) and shift.ndim == 0 and shift.dtype.kind == "O"):
        if n != 0 or classes:
            raise InputValueError(f"{where}: no 'shift' (empty statistics) but n={n} and {len(classes)} classes.")
        return out
    shift = np.asarray(shift.detach().cpu().numpy() if hasattr(shift, "detach") else shift)
    if shift.ndim != 1 or shift.shape[0] < 1:
        raise InputValueError(f"{where}: 'shift' must be a 1-D array [d]; got shape {shift.shape}.")
    d = shift.shape[0]
    shift = _array({"shift": shift}, "shift", (d,), where)
    K = len(classes)
    got = np.shape(state["counts"])
    if got != (K,):
        raise InputValueError(f"{where}: the class list has {K} labels but 'counts' has shape {tuple(got)}; expected "
                              f"({K},).")
    counts = _array(state, "counts", (K,), where)
    if np.any(counts != np.round(counts)):
        raise InputValueError(f"{where}: 'counts' must be whole numbers; got {counts[counts != np.round(counts)][:3]}.")
    if np.any(np.abs(counts) > 2 ** 53):
        raise InputValueError(f"{where}: implausibly large class count(s) {counts[np.abs(counts) > 2 ** 53][:3]}.")
    counts = counts.astype(np.int64)
    if np.any(counts < 0):
        raise InputValueError(f"{where}: negative class count(s) {counts[counts < 0][:3].tolist()} for class(es) "
                              f"{[classes[i] for i in np.flatnonzero(counts < 0)[:3]]}.")
    if np.any(counts == 0):
        raise InputValueError(f"{where}: class(es) {[classes[i] for i in np.flatnonzero(counts == 0)[:3]]} have a "
                              "count of 0; every listed class must have samples.")
    if int(counts.sum()) != n:
        raise InputValueError(f"{where}: the class counts add up to {int(counts.sum())} but n = {n}.")
    sums = _array(state, "sums", (K, d), where).astype(np.float64)
    sqnorms = _array(state, "sqnorms", (K,), where).astype(np.float64)
    normsums = _array(state, "normsums", (K, d), where).astype(np.float64)
    gram = _array(state, "gram", (d, d), where).astype(np.float64)
    if np.any(sqnorms < 0):
        raise InputValueError(f"{where}: 'sqnorms' (sums of squared norms) must be >= 0; got {sqnorms.min():.6g}.")
    rel = 1e-5 if precision == "fast" else 1e-9 * max(16.0, float(np.sqrt(max(n, 1))))
    scale = max(float(np.abs(np.diag(gram)).max()), float(sqnorms.max()) if K else 0.0, np.finfo(float).tiny)
    if np.any(np.diag(gram) < -rel * scale):
        i = int(np.argmin(np.diag(gram)))
        raise InputValueError(f"{where}: the second moment 'gram' has a negative diagonal entry gram[{i},{i}] = "
                              f"{gram[i, i]:.6g}; a sum of squares cannot be negative.")
    if not np.allclose(gram, gram.T, rtol=0.0, atol=rel * scale):
        raise InputValueError(f"{where}: the second moment 'gram' is not symmetric.")
    if abs(float(np.trace(gram)) - float(sqnorms.sum())) > 1e3 * rel * max(scale * d, float(sqnorms.sum())):
        raise InputValueError(f"{where}: trace(gram) = {np.trace(gram):.6g} differs from the sum of squared norms "
                              f"{sqnorms.sum():.6g}; both are sum_i ||x_i - shift||^2.")
    means_sq = np.einsum("kd,kd->k", sums, sums) / counts
    if np.any(sqnorms < means_sq - 1e3 * rel * np.maximum(sqnorms, means_sq)):
        k = int(np.argmax(means_sq - sqnorms))
        raise InputValueError(f"{where}: class {classes[k]!r} has sqnorms {sqnorms[k]:.6g} < ||sum||^2 / n_k = "
                              f"{means_sq[k]:.6g} (a negative variance).")
    unit = np.linalg.norm(normsums, axis=1)
    if np.any(unit > counts * (1 + 1e-6) + 1e-9):
        k = int(np.argmax(unit - counts))
        raise InputValueError(f"{where}: class {classes[k]!r} has a sum of unit vectors of norm {unit[k]:.6g} > its "
                              f"count {counts[k]}.")
    _check_psd(gram - (sums.T / counts) @ sums, rel * scale * max(d, 1), where)
    out.update(shift=shift.astype(np.float64), counts=counts, sums=sums, sqnorms=sqnorms, normsums=normsums,
               gram=gram)
    return out


def _check_psd(W: np.ndarray, tol: float, where: str) -> None:
    """Raise unless the symmetric ``W`` is positive semi-definite up to ``tol`` (one Cholesky of ``W + tol I``)."""
    from scipy.linalg import lapack

    A = (W + W.T) * 0.5
    A.flat[:: A.shape[0] + 1] += tol
    _, info = lapack.dpotrf(A, lower=1, clean=0, overwrite_a=1)
    if info != 0:
        raise InputValueError(f"{where}: the within-class second moment (gram minus the class-mean part) is not "
                              "positive semi-definite: no set of feature vectors has these statistics (tampered or "
                              "corrupted file?).")


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


__all__: Sequence[str] = ["FeatureStats", "stats_from_batches", "ensure_stats", "validate_state", "read_npz"]
