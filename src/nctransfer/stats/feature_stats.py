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
import os
from typing import Any, Hashable, Iterable, Sequence

import numpy as np

from nctransfer.exceptions import InputValueError, NotFittedError, ShapeError
from nctransfer.stats.accumulate import _Accumulator, _inverse_norms  # noqa: F401 (moved; re-exported)
from nctransfer.stats.distributed import all_reduce
from nctransfer.stats.state_io import (  # noqa: F401 (moved; re-exported for older imports)
    _PRECISIONS,
    _STATE_VERSION,
    decode_classes,
    encode_classes,
    load_state,
    read_npz,
    save_state,
    validate_state,
)
from nctransfer.utils.memory import WIDE_FEATURES_ADVICE, check_memory
from nctransfer.utils.validation import LabelEncoder, check_features, check_labels, is_torch, to_numpy


class FeatureStats(_Accumulator):
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
                import torch  # deferred: torch inputs bring torch; the core install has none

                mean = X.mean(0, dtype=torch.float64).cpu().numpy()
            else:
                mean = X.mean(0, dtype=np.float64)  # buffered cast: no float64 copy of the batch
            if self.precision == "fast":  # a float32-representable shift keeps the float32 path exact in shift
                mean = mean.astype(np.float32).astype(np.float64)
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
        return all_reduce(self, group)

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
        save_state(path, self.state_dict())

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
        state, where = load_state(path, allow_pickle=allow_pickle)
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
