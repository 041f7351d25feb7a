"""Ranking a pool of candidate models and evaluating a ranking against ground truth (docs/methods.md#transferability).

:func:`rank` computes every requested score for every candidate (features ``(X, y)``, optional source
probabilities, or an ``.npz`` features file) into one DataFrame; pool-relative scores (NCTI, ETran) are combined
across the pool. :func:`evaluate` compares scores with the true transfer accuracies by weighted Kendall tau
(hyperbolic weights, ``scipy.stats.weightedtau`` defaults -- the main figure of Wang et al., ICCV 2023), Kendall tau, Spearman,
Pearson and top-1 regret.

Examples:
    >>> import numpy as np
    >>> from nctransfer.transferability import rank, evaluate
    >>> rng = np.random.default_rng(0); y = np.repeat(np.arange(3), 40)
    >>> pool = {f"sep{s}": (rng.normal(size=(120, 6)) + s * np.eye(6)[y], y) for s in (1, 2, 4)}
    >>> df = rank(pool, methods=["logme", "hscore", "ncti"])
    >>> list(df.columns), sorted(df.attrs["seconds"])
    (['logme', 'hscore', 'ncti'], ['hscore', 'logme', 'ncti'])
    >>> evaluate(df["logme"], {"sep1": 0.5, "sep2": 0.7, "sep4": 0.9})["weighted_tau"]
    1.0
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from nctransfer.exceptions import InputValueError, NotFoundError, UndefinedMetricWarning
from nctransfer.stats.correlation import spearman
from nctransfer.stats.feature_stats import FeatureStats
from nctransfer.stats.features_file import load_features_file as read_features_file
from nctransfer.stats.labelled import LabelledFeatures, encode_labels
from nctransfer.transferability._common import blas_limited, require_pool, Workspace, workspace
from nctransfer.transferability.base import METHODS, MethodInfo, get_method
from nctransfer.transferability.uncertainty import bootstrap_intervals
from nctransfer.utils.validation import check_labels

EVALUATION_KEYS = ("weighted_tau", "kendall", "spearman", "pearson", "top1_regret")
#: keys added by ``evaluate(..., intervals=True)``: 95% bootstrap intervals and the pool coverage of the score
INTERVAL_KEYS = ("weighted_tau_lo", "weighted_tau_hi", "spearman_lo", "spearman_hi", "top1_regret_lo",
                 "top1_regret_hi", "n_scored", "n_pool", "coverage")
_X_KEYS = ("X", "features", "x")
_Y_KEYS = ("y", "labels", "targets")
_P_KEYS = ("P", "probs", "probabilities")


# ------------------------------------------------------------------------------------------------ inputs
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


def _candidate(name: str, value: Any) -> tuple[Any, Any, Any]:
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


def _resolve_methods(methods: Any, options: Mapping[str, Mapping[str, Any]] | None
                     ) -> tuple[list[MethodInfo], dict[str, dict[str, Any]], set[str]]:
    """(methods in order, options per method, names requested explicitly)."""
    opts: dict[str, dict[str, Any]] = {}
    explicit: set[str] = set()
    if methods is None:
        infos = [m for m in METHODS.values() if not m.expensive]
    elif isinstance(methods, str) and methods.strip().lower() == "all":
        infos = list(METHODS.values())
    else:
        if isinstance(methods, str):
            names = [s for s in (t.strip() for t in methods.split(",")) if s]
        elif isinstance(methods, Mapping):
            names = list(methods)
            for k, v in methods.items():
                if v is not None and not isinstance(v, Mapping):
                    raise InputValueError(f"rank: options of method {k!r} must be a mapping; got {v!r}.")
                opts[get_method(k).name] = dict(v or {})
        elif isinstance(methods, Sequence):
            names = list(methods)
        else:
            raise InputValueError(f"rank: methods must be None, 'all', a list of names or a mapping name -> "
                                  f"options; got {type(methods).__name__}.")
        if not names:
            raise InputValueError("rank: methods is empty.")
        infos = []
        for n in names:
            info = get_method(n)
            if info.name not in {i.name for i in infos}:
                infos.append(info)
            explicit.add(info.name)
    for k, v in (options or {}).items():
        info = get_method(k)
        opts.setdefault(info.name, {}).update(dict(v))
    return infos, opts, explicit


# ------------------------------------------------------------------------------------------------- rank
@blas_limited
def score_candidate(name: str, entry: Any, infos: Any, opts: Mapping[str, Mapping[str, Any]], *,
                    pool_size: int) -> dict[str, Any]:
    """The per-model part of :func:`rank` for one candidate (what a worker of a distributed sweep computes).

    Args:
        name, entry: the candidate (an entry as in :func:`rank`).
        infos, opts: resolved methods and options (:func:`resolve_methods`).
        pool_size: number of candidates in the whole pool (pool-relative terms are computed when it is >= 2).

    Returns:
        ``{"values": {method: score}, "terms": {method: {term: value}}, "seconds": {method: s},
        "no_probs": [method, ...], "stats_only": [method, ...]}``; :func:`combine_candidates` turns the parts of a
        pool into :func:`rank`'s DataFrame. Methods run in the given order on one shared workspace, exactly as
        :func:`rank` runs them, so the values are the same numbers.
    """
    X, y, P = _candidate(name, entry)
    is_stats = isinstance(X, FeatureStats)
    ws = None if is_stats else workspace(X, None, f"rank[{name}]") if isinstance(X, LabelledFeatures) \
        else Workspace(X, y, f"rank[{name}]")
    out: dict[str, Any] = {"values": {}, "terms": {}, "seconds": {}, "no_probs": [], "stats_only": []}
    for info in infos:
        kw = opts.get(info.name, {})
        if is_stats and not info.accepts_stats:
            out["stats_only"].append(info.name)
            continue
        if info.needs_probs and P is None:
            out["no_probs"].append(info.name)
            continue
        t0 = time.perf_counter()
        arg = X if is_stats else ws
        if info.pool_relative:
            if pool_size >= 2:
                out["terms"][info.name] = dict(info.fn(arg, None, **kw))
        elif info.needs_probs:
            out["values"][info.name] = float(info.fn(arg, None, P, **kw))
        else:
            out["values"][info.name] = float(info.fn(arg, None, **kw))
        out["seconds"][info.name] = time.perf_counter() - t0
    del ws
    return out


def _collect(name: str, part: Mapping[str, Any], values: dict[str, dict[str, float]],
             terms: dict[str, dict[str, dict[str, float]]], seconds: dict[str, float],
             no_probs: dict[str, list[str]], stats_only: dict[str, list[str]]) -> None:
    values[name].update(part["values"])
    for m, t in part["terms"].items():
        terms.setdefault(m, {})[name] = dict(t)
    for m, sec in part["seconds"].items():
        seconds[m] = seconds.get(m, 0.0) + float(sec)
    for m in part["no_probs"]:
        no_probs.setdefault(m, []).append(name)
    for m in part["stats_only"]:
        stats_only.setdefault(m, []).append(name)


def resolve_methods(methods: Any, options: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[Any, Any, Any]:
    """``(infos, options, explicit)`` of a :func:`rank` ``methods``/``options`` request."""
    return _resolve_methods(methods, options)


def combine_candidates(parts: Mapping[str, Mapping[str, Any]], methods: Any = None, *,
                       options: Mapping[str, Mapping[str, Any]] | None = None) -> "Any":
    """:func:`rank`'s DataFrame from per-candidate parts (:func:`score_candidate`, in pool order): the per-model
    values as computed, the pool-relative scores combined here (min-max across the pool)."""
    import pandas as pd

    infos, _, _ = _resolve_methods(methods, options)
    names = list(parts)
    values: dict[str, dict[str, float]] = {n: {} for n in names}
    seconds: dict[str, float] = {m.name: 0.0 for m in infos}
    terms: dict[str, dict[str, dict[str, float]]] = {m.name: {} for m in infos if m.pool_relative}
    no_probs: dict[str, list[str]] = {}
    stats_only: dict[str, list[str]] = {}
    for name in names:
        _collect(name, parts[name], values, terms, seconds, no_probs, stats_only)
    return _finish(names, infos, values, seconds, terms, no_probs, stats_only, None, pd)


def rank(candidates: Any, methods: Any = None, *, options: Mapping[str, Mapping[str, Any]] | None = None,
         truth: Any = None, progress: bool = False) -> "Any":
    """Score every candidate model with every requested method.

    Args:
        candidates: ``{name: entry}`` (or a list of entries, named ``model_0, ...``; or a list of ``.npz`` paths,
            named by file stem) where an entry is ``(X, y)``, ``(X, y, probs)``, a mapping with ``X``, ``y``
            (``P``), a path to an ``.npz`` features file with ``X``, ``y`` and optionally ``P``, or a
            :class:`~nctransfer.stats.FeatureStats` (only for methods that accept statistics). All candidates
            should describe the same target dataset (pool-relative scores compare them).
        methods: ``None`` -- every registered method except the expensive ones (NLEEP, PARC); ``"all"``; a list
            (or comma-separated string) of names; or a mapping ``name -> options``.
        options: per-method keyword arguments, e.g. ``{"gbc": {"gaussian": "diagonal"}}``.
        truth: optional true accuracies ``{name: accuracy}``; then ``df.attrs["evaluation"]`` holds
            :func:`evaluate` of every column.
        progress: show a tqdm progress bar over candidates.

    Returns:
        ``pandas.DataFrame`` indexed by candidate name (index name ``"model"``), one column per method (higher =
        better; NaN where a method was skipped). ``df.attrs`` holds:

        - ``"seconds"``: ``{method: total wall-clock seconds over all candidates}`` (the first method that needs a
          shared quantity -- e.g. the ``d x d`` scatter matrix -- pays for it, later ones reuse it);
        - ``"notes"``: list of strings explaining skipped methods (no probabilities, statistics-only candidate,
          pool of one model);
        - ``"terms"``: ``{method: {model: {term: value}}}`` raw terms of pool-relative methods;
        - ``"evaluation"`` when ``truth`` is given.

    Raises:
        InputValueError: bad candidates, or an explicitly requested pool-relative method with fewer than 2
            candidates.
        NotFoundError: unknown method name.
    """
    import pandas as pd

    infos, opts, explicit = _resolve_methods(methods, options)
    if isinstance(candidates, Mapping):
        items = [(str(k), v) for k, v in candidates.items()]
    elif isinstance(candidates, Sequence) and not isinstance(candidates, (str, bytes)):
        items = [((Path(v).stem if isinstance(v, (str, os.PathLike)) else f"model_{i}"), v)
                 for i, v in enumerate(candidates)]
    else:
        raise InputValueError(f"rank: candidates must be a mapping name -> (X, y) or a list; "
                              f"got {type(candidates).__name__}.")
    if not items:
        raise InputValueError("rank: no candidates given.")
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InputValueError(f"rank: candidate names must be unique; duplicated: {dup}.")
    for info in infos:
        if info.pool_relative and len(items) < 2 and info.name in explicit:
            require_pool(names, info.name, info.title)
    check_same_targets(items)

    values: dict[str, dict[str, float]] = {n: {} for n in names}
    seconds: dict[str, float] = {m.name: 0.0 for m in infos}
    terms: dict[str, dict[str, dict[str, float]]] = {m.name: {} for m in infos if m.pool_relative}
    no_probs: dict[str, list[str]] = {}
    stats_only: dict[str, list[str]] = {}

    iterator: Any = items
    if progress:
        iterator = tqdm(items, desc="rank", unit="model")
    for name, entry in iterator:
        part = score_candidate(name, entry, infos, opts, pool_size=len(items))
        _collect(name, part, values, terms, seconds, no_probs, stats_only)
    return _finish(names, infos, values, seconds, terms, no_probs, stats_only, truth, pd)


def _finish(names: list[str], infos: Any, values: dict[str, dict[str, float]], seconds: dict[str, float],
            terms: dict[str, dict[str, dict[str, float]]], no_probs: dict[str, list[str]],
            stats_only: dict[str, list[str]], truth: Any, pd: Any) -> "Any":
    """Combine pool-relative terms, add the notes and build the DataFrame (the pool-level end of :func:`rank`)."""
    notes: list[str] = []
    for info in infos:
        if not info.pool_relative:
            continue
        if len(names) < 2:
            notes.append(f"{info.name}: skipped -- pool-relative, needs at least 2 candidates (got 1).")
            continue
        got = terms[info.name]
        if len(got) < 2:
            notes.append(f"{info.name}: skipped -- fewer than 2 candidates could be scored.")
            continue
        t0 = time.perf_counter()
        combined = info.combine(got)
        seconds[info.name] += time.perf_counter() - t0
        for model in got:
            values[model][info.name] = float(combined.loc[model, info.name])
    for method, models in no_probs.items():
        notes.append(f"{method}: skipped for {', '.join(models)} -- needs source-classifier probabilities "
                     "(pass (X, y, probs) or P in the .npz file).")
    for method, models in stats_only.items():
        notes.append(f"{method}: skipped for {', '.join(models)} -- needs per-sample features, got FeatureStats.")
    df = pd.DataFrame([[values[n].get(m.name, np.nan) for m in infos] for n in names],
                      index=pd.Index(names, name="model"), columns=[m.name for m in infos], dtype=float)
    inf = np.isinf(df.to_numpy())
    if inf.any():  # never an infinite score in a ranking (it would top or end it whatever the others)
        where = [f"{df.index[i]}/{df.columns[j]}" for i, j in zip(*np.nonzero(inf))][:10]
        warnings.warn(f"rank: infinite score(s) replaced by NaN: {where}.", UndefinedMetricWarning, stacklevel=4)
        df = df.mask(np.isinf(df))
    df.attrs["seconds"] = seconds
    df.attrs["notes"] = notes
    df.attrs["terms"] = {k: v for k, v in terms.items() if v}
    if truth is not None:
        df.attrs["evaluation"] = evaluate(df, truth)
    return df


# --------------------------------------------------------------------------------------------- evaluate
def _as_series(obj: Any, what: str) -> "Any":
    import pandas as pd

    if isinstance(obj, pd.Series):
        s = obj.copy()
    elif isinstance(obj, pd.DataFrame) and {"model", "accuracy"} <= set(obj.columns):
        s = pd.Series(obj["accuracy"].to_numpy(), index=obj["model"].astype(str))
    elif isinstance(obj, Mapping):
        s = pd.Series(dict(obj))
    else:
        raise InputValueError(f"evaluate: {what} must be a mapping model -> value or a pandas Series; "
                              f"got {type(obj).__name__}.")
    s.index = s.index.map(str)
    try:
        return s.astype(float)
    except (TypeError, ValueError):
        raise InputValueError(f"evaluate: {what} must hold numbers.") from None


def _evaluate_one(score: "Any", truth: "Any", method: str, noise: "Any" = None,
                  boot: Mapping[str, Any] | None = None) -> dict[str, float]:
    from scipy import stats as st

    missing = [m for m in score.index if m not in truth.index]
    if missing:
        raise InputValueError(f"evaluate: the ground truth has no accuracy for {len(missing)} scored model(s): "
                              f"{missing[:10]}; truth covers {list(truth.index)[:10]}"
                              f"{' ...' if len(truth) > 10 else ''}.")
    t = truth.loc[score.index]
    if not np.all(np.isfinite(t.to_numpy())):
        raise InputValueError("evaluate: the ground truth contains NaN or Inf.")
    ok = np.isfinite(score.to_numpy())
    if not ok.all():
        warnings.warn(f"evaluate[{method}]: ignoring {int((~ok).sum())} model(s) with a non-finite score.",
                      RuntimeWarning, stacklevel=3)
    s, t = score[ok], t[ok]
    out = dict.fromkeys(EVALUATION_KEYS + INTERVAL_KEYS, float("nan"))
    out["n_scored"], out["n_pool"] = int(ok.sum()), int(len(ok))
    out["coverage"] = float(ok.sum() / len(ok)) if len(ok) else float("nan")
    if len(s) < 2:
        return out
    if boot and int(boot.get("n_boot", 0)) > 0:
        samples, se = (None, None) if noise is None else noise(list(s.index))
        ci = bootstrap_intervals(s.to_numpy(dtype=float), t.to_numpy(dtype=float), samples=samples, se=se,
                                 n_boot=int(boot["n_boot"]), level=float(boot.get("level", 0.95)),
                                 seed=int(boot.get("seed", 0)))
        for k, (lo, hi) in ci.items():
            out[f"{k}_lo"], out[f"{k}_hi"] = lo, hi
    a, b = s.to_numpy(dtype=float), t.to_numpy(dtype=float)
    if np.ptp(a) <= 1e-9 * max(1.0, float(np.abs(a).max())):
        # a (numerically) constant score carries no ranking information: scipy's weightedtau would still return
        # a value (e.g. 0.94 for 4 tied models), and rounding noise would decide the order; correlations are NaN
        out["top1_regret"] = float(b.max() - b.mean())
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["weighted_tau"] = float(st.weightedtau(b, a).statistic)
        out["kendall"] = float(st.kendalltau(a, b).statistic)
        out["spearman"] = spearman(a, b, min_pairs=2)[0]
        out["pearson"] = float(st.pearsonr(a, b).statistic) if np.ptp(a) > 0 and np.ptp(b) > 0 else float("nan")
    top = a == a.max()
    out["top1_regret"] = float(b.max() - b[top].mean())
    return out


def evaluate(scores: Any, truth: Any, *, intervals: bool = False, truth_samples: Mapping[str, Any] | None = None,
             truth_se: Mapping[str, float] | None = None, n_boot: int = 1000, level: float = 0.95,
             seed: int = 0) -> dict[str, Any]:
    """Compare transferability scores with ground-truth transfer accuracies (docs/methods.md#transferability), with intervals.

    Args:
        scores: ``{model: score}`` or a ``pandas.Series`` indexed by model -- or a DataFrame from :func:`rank`
            (one column per method).
        truth: ``{model: accuracy}``, a Series, or a DataFrame with columns ``model`` and ``accuracy`` (and
            optionally ``se``, the accuracy's standard error). Must cover every scored model (extra models are
            ignored).
        intervals: also return the bootstrap intervals and the coverage (the keys of ``INTERVAL_KEYS``).
        truth_samples: ``{model: per-test-sample correctness [n_test]}`` (0/1, same test set for every model):
            the bootstrap resamples the test samples (paired across models).
        truth_se: ``{model: standard error of its accuracy}`` (used when ``truth_samples`` is not given).
        n_boot: bootstrap replicates of the intervals (1000; 0 disables them).
        level: coverage of the intervals (0.95).
        seed: seed of the bootstrap (same seed, same intervals).

    Returns:
        For one ranking: ``{"weighted_tau", "kendall", "spearman", "pearson", "top1_regret"}`` where
        ``weighted_tau`` is ``scipy.stats.weightedtau`` with its defaults (hyperbolic weigher, additive, rank by
        both orders -- as the published tables), and ``top1_regret = max accuracy - accuracy of the top-scored
        model`` (mean over ties for the top score; 0 is best). With ``intervals=True`` also
        ``<stat>_lo, <stat>_hi`` for weighted_tau,
        spearman and top1_regret: the percentile bootstrap interval that resamples the candidates and the ground
        truth's noise (:mod:`nctransfer.transferability.uncertainty`); ``n_scored`` (models with a finite score),
        ``n_pool`` (models in the ranking) and ``coverage = n_scored / n_pool`` -- a score computed on only part
        of the pool (``coverage < 1``, e.g. LEEP without source probabilities for most candidates) is judged on
        that part only. For a DataFrame: ``{method: that dict}``.
        Correlations are NaN when fewer than two models have finite scores (or a constant input).

    Raises:
        InputValueError: truth misses scored models, non-numeric values, NaN truth.

    Examples:
        >>> evaluate({"a": 3.0, "b": 2.0, "c": 1.0}, {"a": 0.9, "b": 0.8, "c": 0.7})["kendall"]
        1.0
    """
    import pandas as pd

    if truth_se is None and isinstance(truth, pd.DataFrame) and "se" in truth.columns and "model" in truth.columns:
        truth_se = dict(zip(truth["model"].astype(str), truth["se"].astype(float)))
    t = _as_series(truth, "truth")
    noise = _truth_noise(truth_samples, truth_se)
    boot = {"n_boot": int(n_boot) if intervals else 0, "level": float(level), "seed": int(seed)}
    keys = EVALUATION_KEYS + (INTERVAL_KEYS if intervals else ())

    def one(s: Any, name: str) -> dict[str, float]:
        e = _evaluate_one(s, t, name, noise, boot)
        return {k: e[k] for k in keys}

    if isinstance(scores, pd.DataFrame):
        return {str(c): one(_as_series(scores[c], "scores"), str(c)) for c in scores.columns}
    return one(_as_series(scores, "scores"), "scores")


def _truth_noise(samples: Mapping[str, Any] | None, se: Mapping[str, float] | None) -> Any:
    """``models -> (samples list | None, se array | None)`` for the bootstrap, checking coverage."""
    if samples is None and se is None:
        return None

    def pick(models: list[str]) -> tuple[Any, Any]:
        if samples is not None:
            miss = [m for m in models if str(m) not in {str(k) for k in samples}]
            if miss:
                raise InputValueError(f"evaluate: truth_samples has no per-sample correctness for {miss[:10]}.")
            lut = {str(k): v for k, v in samples.items()}
            return [np.asarray(lut[m], dtype=np.float64) for m in models], None
        lut = {str(k): float(v) for k, v in se.items()}  # type: ignore[union-attr]
        miss = [m for m in models if m not in lut]
        if miss:
            raise InputValueError(f"evaluate: truth_se has no standard error for {miss[:10]}.")
        return None, np.array([lut[m] for m in models])
    return pick


def read_truth_csv(path: str | os.PathLike) -> dict[str, float]:
    """Read ground truth from a CSV with columns ``model,accuracy`` (extra columns ignored).

    Accuracies must lie in ``[0, 1]``; a column on the percent scale (some value above 1, all within
    ``[0, 100]``) is recognised, divided by 100 and reported with a warning.

    Raises:
        NotFoundError: missing file. InputValueError: a directory, an unreadable CSV, missing columns,
        non-numeric, non-finite or out-of-range accuracies.
    """
    import pandas as pd

    p = Path(path)
    if p.is_dir():
        raise InputValueError(f"truth file {str(p)!r} is a directory; expected a CSV file with columns "
                              "model,accuracy.")
    if not p.is_file():
        raise NotFoundError(f"truth file {str(p)!r} does not exist.")
    try:
        df = pd.read_csv(p)
    except Exception as exc:  # noqa: BLE001 - pandas raises many types (ParserError, EmptyDataError, ...)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputValueError(f"truth file {str(p)!r} could not be read as CSV: {first}") from None
    cols = {str(c).strip().lower(): c for c in df.columns}
    if "model" not in cols or "accuracy" not in cols:
        raise InputValueError(f"truth file {str(p)!r} must have columns 'model' and 'accuracy'; "
                              f"got {list(df.columns)}.")
    try:
        acc = df[cols["accuracy"]].astype(float)
    except (TypeError, ValueError):
        raise InputValueError(f"truth file {str(p)!r}: column 'accuracy' must be numeric.") from None
    values = acc.to_numpy(dtype=float)
    if not np.all(np.isfinite(values)):
        raise InputValueError(f"truth file {str(p)!r}: column 'accuracy' contains NaN, Inf or empty cells.")
    if len(values) and (values.min() < 0 or values.max() > 1):
        if values.min() >= 0 and values.max() <= 100:
            warnings.warn(f"truth file {str(p)!r}: accuracies up to {values.max():g} look like percentages; "
                          "dividing by 100.", UserWarning, stacklevel=2)
            acc = acc / 100.0
        else:
            bad = values[(values < 0) | (values > 100)][:3].tolist()
            raise InputValueError(f"truth file {str(p)!r}: accuracies must be in [0, 1] (or percentages in "
                                  f"[0, 100]); got {bad}.")
    models = df[cols["model"]].astype(str).str.strip()
    if models.duplicated().any():
        raise InputValueError(f"truth file {str(p)!r}: duplicated models {sorted(set(models[models.duplicated()]))}.")
    return dict(zip(models, acc))


def read_truth_se_csv(path: str | os.PathLike) -> dict[str, float] | None:
    """The standard errors of a truth CSV (column ``se`` or ``stderr``, same units as ``accuracy``), or ``None``
    when it has no such column. Call after :func:`read_truth_csv` (which validates the file)."""
    import pandas as pd

    df = pd.read_csv(Path(path))
    cols = {str(c).strip().lower(): c for c in df.columns}
    key = cols.get("se", cols.get("stderr"))
    if key is None or "model" not in cols:
        return None
    try:
        se = df[key].astype(float).to_numpy()
    except (TypeError, ValueError):
        raise InputValueError(f"truth file {str(path)!r}: column {key!r} must be numeric.") from None
    if not np.all(np.isfinite(se)) or np.any(se < 0):
        raise InputValueError(f"truth file {str(path)!r}: column {key!r} must hold finite values >= 0.")
    acc = df[cols["accuracy"]].astype(float).to_numpy() if "accuracy" in cols else None
    if acc is not None and len(acc) and acc.max() > 1 and acc.max() <= 100:
        se = se / 100.0  # percentages, as read_truth_csv
    return dict(zip(df[cols["model"]].astype(str).str.strip(), se.tolist()))


__all__ = ["rank", "evaluate", "load_features_file", "read_truth_csv", "read_truth_se_csv", "EVALUATION_KEYS",
           "score_candidate", "combine_candidates", "resolve_methods",
           "INTERVAL_KEYS"]
