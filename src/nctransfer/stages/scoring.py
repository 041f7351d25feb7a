"""Stage 2 of a run: the transferability scores of a pool of candidates (docs/methods.md#transferability).

Scoring is two steps, as in :func:`nctransfer.transferability.rank`:

1. :func:`score_one`: the per-model part of every score for one candidate
   (:func:`nctransfer.transferability.ranking.score_candidate`): values of the per-model scores, raw terms of the
   pool-relative ones (NCTI, ETran). A resumable or distributed runner computes it one candidate at a time (a Ray
   worker, a pre-training study's recipe);
2. :func:`combine_pool`: the pool's table (:func:`nctransfer.transferability.ranking.combine_candidates`): the
   pool-relative scores min-max normalised across the candidates.

:func:`score_candidates` does both for a list of :class:`~nctransfer.stages.candidates.Candidate` (cached by
:class:`~nctransfer.stages.cache.ResultCache`) and returns the JSON-able scores of ``results.json``.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from nctransfer.exceptions import NCTransferError
from nctransfer.stages.cache import ResultCache
from nctransfer.stages.candidates import Candidate, Run
from nctransfer.stages.settings import ScoringSettings
from nctransfer.transferability import rank
from nctransfer.transferability.ranking import combine_candidates, resolve_methods, score_candidate

#: errors a method may raise on a degenerate candidate; :func:`score_one` with ``skip_errors`` records them
SCORE_ERRORS = (NCTransferError, ValueError, ArithmeticError, np.linalg.LinAlgError)


def candidate_entry(c: Candidate) -> tuple[Any, ...]:
    """The ``(X, y)`` or ``(X, y, probs)`` entry of :func:`nctransfer.transferability.rank` for a candidate."""
    return (c.X_train, c.y_train, c.probs) if c.probs is not None else (c.X_train, c.y_train)


def score_one(name: str, entry: Any, settings: ScoringSettings, *, pool_size: int,
              skip_errors: bool = False) -> dict[str, Any]:
    """The per-model part of every score of ``settings`` for one candidate.

    Args:
        name, entry: the candidate and its ``(X [N, d], y [N])`` or ``(X, y, probs [N, C_src])``.
        settings: the methods and their options.
        pool_size: candidates in the whole pool (the raw terms of pool-relative scores are computed when >= 2).
        skip_errors: a method that raises one of :data:`SCORE_ERRORS` is recorded in ``part["errors"]``
            (``{method: "Type: message"}``) instead of failing the candidate; the other methods still run.

    Returns:
        The part of :func:`~nctransfer.transferability.ranking.score_candidate`: ``{"values", "terms",
        "seconds", "no_probs", "stats_only"}`` (plus ``"errors"`` with ``skip_errors``).
    """
    infos, opts, _ = resolve_methods(settings.methods, settings.options)
    if not skip_errors:
        return score_candidate(name, entry, infos, opts, pool_size=pool_size)
    try:  # every method on one shared workspace (the common case)
        return {**score_candidate(name, entry, infos, opts, pool_size=pool_size), "errors": {}}
    except SCORE_ERRORS:
        pass
    part: dict[str, Any] = {"values": {}, "terms": {}, "seconds": {}, "no_probs": [], "stats_only": [],
                            "errors": {}}
    for info in infos:  # one method at a time, to tell which one failed
        try:
            one = score_candidate(name, entry, [info], opts, pool_size=pool_size)
        except SCORE_ERRORS as exc:
            part["errors"][info.name] = f"{type(exc).__name__}: {exc}"
            continue
        for k in ("values", "terms", "seconds"):
            part[k].update(one[k])
        for k in ("no_probs", "stats_only"):
            part[k] += one[k]
    return part


def combine_pool(parts: Mapping[str, Mapping[str, Any]], settings: ScoringSettings) -> Any:
    """The pool's ``DataFrame`` ``[candidate, method]`` from the parts of :func:`score_one` (in pool order), as
    :func:`nctransfer.transferability.rank` returns it (``attrs``: ``seconds``, ``notes``, ``terms``)."""
    return combine_candidates(parts, settings.methods, options=settings.options)


def score_candidates(cands: list[Candidate], settings: ScoringSettings, cache: ResultCache, run: Run,
                     parts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every score of the pool (cached under the candidates' digests and the settings).

    ``parts``: the per-model parts when workers computed them (Ray backend), then only combined here (the same
    numbers as scoring on the driver).

    Returns:
        ``{"columns": [method, ...], "scores": {candidate: {method: value or None}}, "seconds": {method: s},
        "notes": [...]}``.
    """
    key = {"pool": [(c.name, c.digest) for c in cands], "methods": settings.methods, "options": settings.options}
    hit = cache.get("scores", key)
    if hit is not None:
        return hit
    if parts is not None:
        df = combine_pool({c.name: parts[c.name] for c in cands}, settings)
    else:
        pool = {c.name: candidate_entry(c) for c in cands}
        df = rank(pool, methods=settings.methods, options=settings.options, progress=run.progress)
    value = {
        "columns": list(df.columns),
        "scores": {n: {m: (float(df.loc[n, m]) if np.isfinite(df.loc[n, m]) else None) for m in df.columns}
                   for n in df.index},
        "seconds": {k: float(v) for k, v in df.attrs.get("seconds", {}).items()},
        "notes": list(df.attrs.get("notes", [])),
    }
    return cache.put("scores", key, value)


__all__ = ["SCORE_ERRORS", "candidate_entry", "combine_pool", "score_candidates", "score_one"]
