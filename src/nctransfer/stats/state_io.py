"""Safe persistence and full validation of :class:`~nctransfer.stats.FeatureStats` state.

- :func:`read_npz`: every array of an ``.npz`` archive, read without pickle (one clear error per failure);
- :func:`encode_classes` / :func:`decode_classes`: the class list as JSON (tuples, frozensets and bytes tagged);
- :func:`save_state` / :func:`load_state`: the ``.npz`` file of :meth:`FeatureStats.save` / :meth:`FeatureStats.load`
  (written atomically; a pickled class list of old files only with ``allow_pickle=True``);
- :func:`validate_state`: every key, shape, type and the consistency any real dataset has (counts adding up,
  a positive semi-definite within-class second moment, ...).
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from typing import Any, Hashable, Sequence

import numpy as np
from scipy.linalg import lapack

from nctransfer.exceptions import InputValueError, NotFoundError, UnsafeFileError
from nctransfer.utils.io import atomic_path

STATE_VERSION = 1
PRECISIONS = ("exact", "fast")
_STATE_VERSION = STATE_VERSION  # older private names
_PRECISIONS = PRECISIONS

_REQUIRED_KEYS = ("version", "precision", "chunk_size", "n", "classes", "counts", "sums", "sqnorms", "normsums",
                  "gram")


# -------------------------------------------------------------------------------------- safe persistence
def read_npz(path: str | os.PathLike, what: str = "file") -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` archive, read without pickle; every failure is one :class:`InputValueError`.

    Raises:
        NotFoundError: missing path. InputValueError: a directory, not a zip archive, truncated or corrupt, or an
        array that needs pickle (dtype object).
    """
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
    if version != STATE_VERSION:
        raise InputValueError(f"unsupported FeatureStats state version {version!r}; expected {STATE_VERSION} "
                              f"({where}).")
    precision = _scalar(state, "precision", str, where)
    if precision not in PRECISIONS:
        raise InputValueError(f"{where}: precision must be one of {PRECISIONS}; got {precision!r}.")
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
    A = (W + W.T) * 0.5
    A.flat[:: A.shape[0] + 1] += tol
    _, info = lapack.dpotrf(A, lower=1, clean=0, overwrite_a=1)
    if info != 0:
        raise InputValueError(f"{where}: the within-class second moment (gram minus the class-mean part) is not "
                              "positive semi-definite: no set of feature vectors has these statistics (tampered or "
                              "corrupted file?).")


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write a :meth:`FeatureStats.state_dict` to an ``.npz`` file atomically, without pickle (the class list as
    JSON ``classes_json``)."""
    state = dict(state)
    classes = state.pop("classes")
    state["classes_json"] = np.array(encode_classes(classes))
    if state["shift"] is None:
        state.pop("shift")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **state)


def load_state(path: str | os.PathLike, *, allow_pickle: bool = False) -> tuple[dict[str, Any], str]:
    """The state stored by :func:`save_state` (not yet validated) and the ``where`` text naming the file.

    Raises:
        NotFoundError, InputValueError: as :func:`read_npz`, or no class list. UnsafeFileError: a pickled class list
        (older files) without ``allow_pickle=True``.
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
        classes = pickle.loads(np.asarray(blob).tobytes())  # noqa: S301 - explicit opt-in above
    else:
        raise InputValueError(f"{where} has no class list (key 'classes_json'); keys present: "
                              f"{sorted(state)}. Was it written by FeatureStats.save?")
    state["classes"] = classes
    state.setdefault("shift", None)
    return state, where


__all__ = ["PRECISIONS", "STATE_VERSION", "decode_classes", "encode_classes", "load_state", "read_npz",
           "save_state", "validate_state"]
