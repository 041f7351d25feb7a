"""Ranking a pool of candidate models and evaluating a ranking against ground truth (docs/methods.md#transferability).

:func:`rank` computes every requested score for every candidate (features ``(X, y)``, optional source
probabilities, or an ``.npz`` features file) into one DataFrame; pool-relative scores (NCTI, ETran) are combined
across the pool. :func:`evaluate` compares scores with the true transfer accuracies by weighted Kendall tau
(hyperbolic weights, ``scipy.stats.weightedtau`` defaults -- the main figure of Wang et al., ICCV 2023), Kendall tau, Spearman,
Pearson and top-1 regret.

:func:`rank` is "score one candidate" (:func:`score_candidate`, what a resumable or distributed runner calls per
model) plus "combine the pool" (:func:`combine_candidates`). Candidate entries and the shared-target check are in
:mod:`~nctransfer.transferability.targets`, :func:`evaluate` in :mod:`~nctransfer.transferability.evaluation`, the
truth CSV reader in :mod:`~nctransfer.transferability.truth`; their names are importable from here too.

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

import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from nctransfer.exceptions import InputValueError, UndefinedMetricWarning
from nctransfer.stats.feature_stats import FeatureStats
from nctransfer.transferability._common import blas_limited, require_pool, workspace
from nctransfer.transferability.base import METHODS, MethodInfo, get_method
from nctransfer.transferability.evaluation import EVALUATION_KEYS, INTERVAL_KEYS, evaluate
from nctransfer.transferability.targets import (
    candidate_entry,
    check_same_targets,
    load_features_file,
    target_fingerprint,
)
from nctransfer.transferability.truth import read_truth_csv, read_truth_se_csv


def resolve_methods(methods: Any, options: Mapping[str, Mapping[str, Any]] | None = None
                    ) -> tuple[list[MethodInfo], dict[str, dict[str, Any]], set[str]]:
    """``(infos, options, explicit)`` of a :func:`rank` ``methods``/``options`` request: the methods in order, the
    options per method, the names requested explicitly."""
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
    X, y, P = candidate_entry(name, entry)
    is_stats = isinstance(X, FeatureStats)
    ws = None if is_stats else workspace(X, y, f"rank[{name}]")  # y is None for labelled features
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


def combine_candidates(parts: Mapping[str, Mapping[str, Any]], methods: Any = None, *,
                       options: Mapping[str, Mapping[str, Any]] | None = None) -> "Any":
    """:func:`rank`'s DataFrame from per-candidate parts (:func:`score_candidate`, in pool order): the per-model
    values as computed, the pool-relative scores combined here (min-max across the pool)."""
    infos, _, _ = resolve_methods(methods, options)
    names = list(parts)
    values: dict[str, dict[str, float]] = {n: {} for n in names}
    seconds: dict[str, float] = {m.name: 0.0 for m in infos}
    terms: dict[str, dict[str, dict[str, float]]] = {m.name: {} for m in infos if m.pool_relative}
    no_probs: dict[str, list[str]] = {}
    stats_only: dict[str, list[str]] = {}
    for name in names:
        _collect(name, parts[name], values, terms, seconds, no_probs, stats_only)
    return _finish(names, infos, values, seconds, terms, no_probs, stats_only, None)


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
    infos, opts, explicit = resolve_methods(methods, options)
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
    return _finish(names, infos, values, seconds, terms, no_probs, stats_only, truth)


def _finish(names: list[str], infos: Any, values: dict[str, dict[str, float]], seconds: dict[str, float],
            terms: dict[str, dict[str, dict[str, float]]], no_probs: dict[str, list[str]],
            stats_only: dict[str, list[str]], truth: Any) -> "Any":
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


__all__ = ["rank", "evaluate", "load_features_file", "read_truth_csv", "read_truth_se_csv", "EVALUATION_KEYS",
           "score_candidate", "combine_candidates", "resolve_methods", "check_same_targets", "target_fingerprint",
           "INTERVAL_KEYS"]
