"""The one reader of features files (``nctransfer metrics FILE``, ``nctransfer rank FILE...``, ``rank([path])``).

Accepted files (``formats`` narrows them per caller):

- ``.npz``: arrays ``X`` ``[N, d]``, ``y`` ``[N]`` and optionally ``P`` ``[N, C_src]`` (source-classifier
  probabilities); common aliases (:data:`X_KEYS`, :data:`Y_KEYS`, :data:`P_KEYS`) are found automatically, other
  names are chosen with ``x_key`` / ``y_key``; or statistics written by :meth:`FeatureStats.save`;
- ``.pt`` / ``.pth``: ``torch.save`` of a dict of tensors, a tuple/list ``(X, y[, W, b])`` or a
  ``FeatureStats.state_dict()``;
- ``.csv``: one sample per row, last column = label, optional header row.

Every failure is one :class:`~nctransfer.exceptions.InputValueError` (or ``NotFoundError`` for a missing path)
naming the file, what was expected and what was found.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from nctransfer.exceptions import InputValueError, NotFoundError, UnsafeFileError
from nctransfer.stats.feature_stats import FeatureStats
from nctransfer.stats.state_io import _first_line
from nctransfer.utils.paths import check_input_file

#: every format the reader knows
FORMATS: tuple[str, ...] = (".npz", ".pt", ".pth", ".csv")
#: names tried, in order, for the features, the labels and the source probabilities
X_KEYS = ("X", "x", "features", "feats", "embeddings", "X_train")
Y_KEYS = ("y", "labels", "label", "targets", "target", "y_train")
P_KEYS = ("P", "probs", "probabilities")
_STATS_KEYS = {"version", "gram", "counts", "sums", "sqnorms", "normsums"}


def _expected(formats: tuple[str, ...]) -> tuple[str, str]:
    """(what a path should be, the list of suffixes) in words."""
    if formats == (".npz",):
        return "an .npz file", "an .npz file with arrays X, y (and optionally P)"
    names = [f for f in formats if f != ".pth"]
    words = [("{}/.pth".format(f) if f == ".pt" and ".pth" in formats else f) for f in names]
    listed = ", ".join(words[:-1]) + f" or {words[-1]}" if len(words) > 1 else words[0]
    return f"a file ({listed})", listed


def _pick(keys: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, path: Path,
          label: str) -> str:
    if wanted is not None:
        if wanted not in keys:
            raise NotFoundError(f"{path}: no key {wanted!r} for the {what}; available keys: {keys}.")
        return wanted
    for c in candidates:
        if c in keys:
            return c
    flag = "--x-key" if what == "features" else "--y-key"
    raise InputValueError(f"{label} {str(path)!r} has no array {candidates[0]!r}: could not find the {what} (tried "
                          f"{list(candidates)}); available keys: {keys}. Pass {flag} KEY.")


def _from_mapping(data: Mapping[str, Any], path: Path, *, x_key: str | None, y_key: str | None,
                  w_key: str | None, b_key: str | None, allow_pickle: bool, statistics: bool,
                  probabilities: bool, label: str) -> dict[str, Any]:
    keys = [str(k) for k in data]
    looks_like_stats = _STATS_KEYS <= set(keys) or "classes_json" in keys or "classes_pickle" in keys
    if statistics and looks_like_stats and x_key is None:
        if "classes_json" in keys or "classes_pickle" in keys:  # FeatureStats.save layout
            return {"stats": FeatureStats.load(path, allow_pickle=allow_pickle)}
        state = {k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in data.items()}
        return {"stats": FeatureStats.from_state_dict(state, source=f"statistics in {str(path)!r}")}
    out = {"X": data[_pick(keys, x_key, X_KEYS, "features", path, label)],
           "y": data[_pick(keys, y_key, Y_KEYS, "labels", path, label)]}
    if probabilities:
        p = next((k for k in P_KEYS if k in keys), None)
        if p is not None:
            out["P"] = data[p]
    for opt, name, key in (("w_key", "W", w_key), ("b_key", "b", b_key)):
        if key is not None:
            if key not in keys:
                raise NotFoundError(f"{path}: no key {key!r} for --{opt.replace('_', '-')}; available keys: {keys}.")
            out[name] = data[key]
    return out


def _read_npz(p: Path, allow_pickle: bool | None, label: str) -> dict[str, np.ndarray]:
    def unreadable(detail: str) -> InputValueError:
        return InputValueError(f"{label} {str(p)!r} is not a readable .npz archive (truncated or corrupt?): could "
                               f"not read {p.name} as .npz: {detail}")

    if not zipfile.is_zipfile(p):
        raise unreadable("not a zip archive written by numpy.savez.")
    try:
        with open(p, "rb") as fh, np.load(fh, allow_pickle=bool(allow_pickle)) as z:  # our handle: always closed
            return {k: z[k] for k in z.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            how = ("pass --allow-pickle if you trust the file, or save plain numeric/string arrays."
                   if allow_pickle is not None else "they are never unpickled. Save plain numeric or string arrays.")
            raise UnsafeFileError(f"{p} holds pickled objects (e.g. labels of dtype object); {how}") from None
        raise unreadable(_first_line(exc)) from None
    except Exception as exc:  # zipfile.BadZipFile, EOFError, OSError, KeyError, ...
        raise unreadable(_first_line(exc)) from None


def _read_torch(p: Path, allow_pickle: bool) -> Any:
    import torch  # deferred on purpose: the [torch] extra, needed for .pt files only

    try:
        return torch.load(p, map_location="cpu", weights_only=not allow_pickle)
    except Exception as exc:  # UnpicklingError for refused objects, RuntimeError for corrupt files
        hint = (" It holds objects that torch.load(weights_only=True) refuses (e.g. numpy arrays): re-save "
                "tensors, or pass --allow-pickle if you trust the file." if "weights_only" in str(exc) else "")
        raise InputValueError(f"could not read {p} with torch.load: {str(exc).splitlines()[0]}{hint}") from None


def _read_csv(path: Path) -> dict[str, Any]:
    try:
        df = pd.read_csv(path, header=None, skipinitialspace=True)
    except Exception as exc:  # pandas raises many types (ParserError, EmptyDataError, UnicodeDecodeError)
        raise InputValueError(f"could not read {path} as CSV: {exc}") from None
    if df.shape[1] < 2:
        raise InputValueError(f"{path}: a features CSV needs at least 2 columns (features..., label); "
                              f"got {df.shape[1]}.")
    first = df.iloc[0, :-1]
    if pd.to_numeric(first, errors="coerce").isna().any() and len(df) > 1:  # a header row
        df = df.iloc[1:].reset_index(drop=True)
        labels = pd.to_numeric(df.iloc[:, -1], errors="coerce")
        y = labels.to_numpy() if not labels.isna().any() else df.iloc[:, -1].to_numpy()
        if y.dtype.kind == "f" and np.all(y == np.round(y)):
            y = y.astype(np.int64)
    else:
        y = df.iloc[:, -1].to_numpy()
    feats = df.iloc[:, :-1].apply(pd.to_numeric, errors="coerce")
    bad = feats.isna().to_numpy() & ~df.iloc[:, :-1].isna().to_numpy()
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputValueError(f"{path}: non-numeric feature value {df.iloc[r, c]!r} in data row {r + 1}, column "
                              f"{c + 1} ({int(bad.sum())} such cells). The last column is the label; all others must "
                              "be numbers.")
    return {"X": feats.to_numpy(dtype=np.float64), "y": y}


def load_features_file(path: str | os.PathLike, *, formats: tuple[str, ...] = FORMATS, x_key: str | None = None,
                       y_key: str | None = None, w_key: str | None = None, b_key: str | None = None,
                       allow_pickle: bool | None = False, statistics: bool = True, probabilities: bool = False,
                       what: str = "features file") -> dict[str, Any]:
    """Read a features file (see the module docstring).

    Args:
        path: the file.
        formats: the suffixes accepted (subset of :data:`FORMATS`).
        x_key, y_key: names of the features ``[N, d]`` and labels ``[N]`` (default: the first of
            :data:`X_KEYS` / :data:`Y_KEYS` present).
        w_key, b_key: names of classifier weights ``[K, d]`` and bias ``[K]`` (optional).
        allow_pickle: unpickle objects in ``.npz``/``.pt`` files (trusted files only); ``None``: refused and no
            opt-in is offered in the message.
        statistics: recognise saved :class:`FeatureStats` (returned as ``{"stats": FeatureStats}``).
        probabilities: also return ``P`` ``[N, C_src]`` when the file holds one of :data:`P_KEYS`.
        what: how the file is named in messages.

    Returns:
        ``{"X", "y"[, "P"][, "W", "b"]}`` or ``{"stats": FeatureStats}``.

    Raises:
        NotFoundError: the file (or an explicitly named key) does not exist.
        InputValueError: a directory, an unsupported suffix, an unreadable file or a missing array.
    """
    p = Path(path)
    expected, listed = _expected(tuple(formats))
    if p.is_dir():
        raise InputValueError(f"{what} {str(p)!r} is a directory; expected {expected}.")
    p = check_input_file(p, what)
    suffix = p.suffix.lower()
    if suffix not in formats:
        raise InputValueError(f"unsupported file type {suffix or '(none)'!r} for {what} {str(p)!r}; expected "
                              f"{listed}.")
    opts = dict(x_key=x_key, y_key=y_key, w_key=w_key, b_key=b_key, allow_pickle=bool(allow_pickle),
                statistics=statistics, probabilities=probabilities, label=what)
    if suffix == ".npz":
        return _from_mapping(_read_npz(p, allow_pickle, what), p, **opts)
    if suffix in (".pt", ".pth"):
        obj = _read_torch(p, bool(allow_pickle))
        if isinstance(obj, dict):
            return _from_mapping(obj, p, **opts)
        if isinstance(obj, (tuple, list)) and len(obj) in (2, 3, 4):
            return dict(zip(["X", "y", "W", "b"][: len(obj)], obj))
        length = f" of length {len(obj)}" if isinstance(obj, (tuple, list)) else ""
        raise InputValueError(f"{p}: expected a dict of tensors, a tuple (X, y) or a FeatureStats state_dict; got "
                              f"{type(obj).__name__}{length}.")
    return _read_csv(p)


__all__ = ["FORMATS", "P_KEYS", "X_KEYS", "Y_KEYS", "load_features_file"]
