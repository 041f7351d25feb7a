"""The candidates of a pool and their shared target (docs/methods.md#transferability).

- :func:`load_features_file`: a candidate's ``.npz`` features file (``X``, ``y``, optional ``P``);
- ``candidate_entry``: ``(X_or_stats, y, probs)`` of one entry of :func:`~nctransfer.transferability.rank`;
- :func:`target_fingerprint` and :func:`check_same_targets`: every candidate must describe the same target
  labels, in the same order (scores are compared, and NCTI/ETran normalised, across the pool).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nctransfer.exceptions import InputValueError
from nctransfer.stats.feature_stats import FeatureStats
from nctransfer.stats.features_file import load_features_file as read_features_file
from nctransfer.stats.labelled import LabelledFeatures, encode_labels
from nctransfer.utils.validation import check_labels

_X_KEYS = ("X", "features", "x")
_Y_KEYS = ("y", "labels", "targets")
_P_KEYS = ("P", "probs", "probabilities")


def load_features_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read a candidate's features file: ``.npz`` with ``X [N, d]``, ``y [N]`` and optionally ``P [N, C_src]``
    (source-classifier probabilities), with :func:`nctransfer.stats.features_file.load_features_file`. Aliases:
    ``features``/``labels``/``probs``.

    Raises:
        NotFoundError: the file does not exist.
        InputValueError: not an ``.npz`` file or a required array is missing.
    """
    data = read_features_file(path, formats=(".npz",), allow_pickle=None, statistics=False, probabilities=True)
    return data["X"], data["y"], data.get("P")


def candidate_entry(name: str, value: Any) -> tuple[Any, Any, Any]:
    """``(X_or_stats, y, probs)`` of one candidate entry."""
    if isinstance(value, (str, os.PathLike)):
        return load_features_file(value)
    if isinstance(value, (FeatureStats, LabelledFeatures)):
        return value, None, None
    if isinstance(value, Mapping):
        X = next((value[k] for k in _X_KEYS if k in value), None)
        y = next((value[k] for k in _Y_KEYS if k in value), None)
        P = next((value[k] for k in _P_KEYS if k in value), None)
        if X is None or y is None:
            raise InputValueError(f"rank: candidate {name!r} is a mapping without 'X' and 'y'.")
        return X, y, P
    if isinstance(value, tuple) and len(value) in (2, 3):
        return value[0], value[1], (value[2] if len(value) == 3 else None)
    raise InputValueError(f"rank: candidate {name!r} must be (X, y), (X, y, probs), a features file path (.npz), "
                          f"labelled features (a Workspace) or a FeatureStats; got {type(value).__name__}.")


def _target_labels(name: str, value: Any) -> tuple[str, Any]:
    """``(description, labels)`` of one candidate without loading its features: a file's ``y`` array alone
    (``.npz`` members load lazily), a mapping's or tuple's ``y``, or ``("stats", (classes, counts))``."""
    if isinstance(value, (str, os.PathLike)):
        p = Path(value)
        if p.suffix.lower() != ".npz" or not p.is_file():
            return f"file {str(p)!r}", None  # load_features_file reports it with the usual message
        try:
            with open(p, "rb") as fh, np.load(fh, allow_pickle=False) as z:  # members load lazily: y only
                key = next((k for k in _Y_KEYS if k in z.files), None)
                return f"file {str(p)!r}", (None if key is None else z[key])
        except Exception:  # noqa: BLE001 - unreadable: load_features_file reports it in one line
            return f"file {str(p)!r}", None
    if isinstance(value, FeatureStats):
        return f"candidate {name!r}", ("stats", value)
    if isinstance(value, LabelledFeatures):
        return f"candidate {name!r}", _labels_of(value)
    if isinstance(value, Mapping):
        return f"candidate {name!r}", next((value[k] for k in _Y_KEYS if k in value), None)
    if isinstance(value, tuple) and len(value) in (2, 3):
        return f"candidate {name!r}", value[1]
    return f"candidate {name!r}", None


def _labels_of(lf: LabelledFeatures) -> np.ndarray:
    """The ``[N]`` labels of labelled features (a numeric or string array when the classes allow it)."""
    try:
        return np.asarray(lf.classes)[lf.codes]
    except (TypeError, ValueError):
        return np.asarray(lf.classes, dtype=object)[lf.codes]


def _canonical_labels(y: Any) -> np.ndarray:
    """Labels as a 1-D array with integral floats and every integer dtype as int64 (``1 == 1.0`` as labels)."""
    a = check_labels(y, None, "y", discrete=False)
    if a.dtype.kind in "iu" or (a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a))):
        return a.astype(np.int64)
    return a


def target_fingerprint(y: Any) -> str:
    """SHA-256 of a label vector in canonical form (sorted class list and the per-sample class codes), so that
    ``[0, 1, 1]`` as int64, int32, float or a torch tensor give the same fingerprint and a permutation does not."""
    classes, codes = encode_labels(_canonical_labels(y))
    h = hashlib.sha256(json.dumps([repr(c) for c in classes]).encode())
    h.update(np.ascontiguousarray(codes, dtype=np.int64).tobytes())
    return h.hexdigest()


def _describe_difference(y_ref: Any, y: Any) -> str:
    a, b = _canonical_labels(y_ref), _canonical_labels(y)
    if len(a) != len(b):
        return f"a different number of samples N ({len(b)} vs {len(a)})"
    ca, _ = encode_labels(a)
    cb, _ = encode_labels(b)
    if ca != cb:
        extra = [c for c in cb if c not in ca][:5]
        missing = [c for c in ca if c not in cb][:5]
        parts = ([f"labels not in the first: {extra}"] if extra else []) + \
                ([f"labels missing: {missing}"] if missing else [])
        return "a different label set (" + "; ".join(parts) + ")"
    ra = np.asarray([repr(v) for v in a.tolist()])
    rb = np.asarray([repr(v) for v in b.tolist()])
    diff = np.flatnonzero(ra != rb)
    if len(diff) and sorted(ra.tolist()) == sorted(rb.tolist()):
        return f"the same labels in a different order (first difference at sample {int(diff[0])})"
    return f"different labels ({len(diff)} samples differ, first at sample {int(diff[0]) if len(diff) else 0})"


def check_same_targets(items: list[tuple[str, Any]]) -> None:
    """Refuse a pool whose candidates do not share one target: the same labels, in the same order, same N.

    Scores are only comparable on the same target data, and NCTI and ETran normalise across the pool; candidates
    with different labels (another label set, a permutation of the samples, another N) would give a meaningless
    ranking. FeatureStats candidates are compared by class list and class counts.

    Raises:
        InputValueError: naming every candidate (file) that differs from the first and how.
    """
    if len(items) < 2:
        return
    def class_summary(y: Any) -> str:
        if isinstance(y, tuple) and len(y) == 2 and y[0] == "stats":
            st = y[1]
            return repr((st.classes, st.class_counts().tolist())) if st.n_samples else "empty"
        classes, codes = encode_labels(_canonical_labels(y))
        return repr((classes, np.bincount(codes, minlength=len(classes)).tolist()))

    labelled = [(desc, y) for desc, y in (_target_labels(n, v) for n, v in items) if y is not None]
    arrays = [(desc, y) for desc, y in labelled if not (isinstance(y, tuple) and y[:1] == ("stats",))]
    bad: list[str] = []
    ref_desc = None
    if arrays:  # samples: same labels, same order, same N (fingerprint of y)
        ref_desc, ref = arrays[0]
        ref_fp = target_fingerprint(ref)
        for desc, y in arrays[1:]:
            if target_fingerprint(y) != ref_fp:
                bad.append(f"{desc} has {_describe_difference(ref, y)}")
    if len(labelled) > len(arrays):  # statistics carry no order: compare class lists and class counts
        ref_desc_s, ref_y = labelled[0] if ref_desc is None else (ref_desc, ref)
        ref_desc = ref_desc_s
        ref_sum = class_summary(ref_y)
        for desc, y in labelled:
            if isinstance(y, tuple) and y[:1] == ("stats",) and desc != ref_desc and class_summary(y) != ref_sum:
                bad.append(f"{desc} has different classes or class counts")
    if bad:
        raise InputValueError(
            f"rank: all candidates must have the same target labels y in the same order (pool-relative scores "
            f"such as NCTI and ETran, and the ranking itself, compare models on one target dataset); compared with "
            f"{ref_desc}: " + "; ".join(bad) + ".")


__all__ = ["candidate_entry", "check_same_targets", "load_features_file", "target_fingerprint"]
