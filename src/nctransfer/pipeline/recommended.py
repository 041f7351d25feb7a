"""The recommended transferability score, and rank-average ensembles of scores.

:func:`register_rank_average` registers, in :data:`nctransfer.transferability.METHODS`, a pool-relative score
that averages the within-pool percentile ranks of several component scores (each oriented higher = better):
``score_m = mean_j (rank_j(m) - 1) / (M - 1)`` with ``rank_j`` the average rank of model ``m`` among the ``M``
candidates by component ``j`` (ties share their mean rank; a component missing for a model is left out of
that model's mean). Components are computed on the shared per-candidate workspace of
:func:`nctransfer.transferability.rank`, so the ensemble costs the sum of its parts once.

:data:`DEFAULT_RECOMMENDED` is the score :func:`nctransfer.rank_models` ranks by when none is given; why it was
chosen, with the numbers, is on the documentation's transferability page, docs/transferability.md (benchmark ``benchmarks/bench_rank_real.py``, which
also evaluates every pair and triple of scores as a rank average: none generalised better than NCTI alone).

Examples:
    >>> from nctransfer.pipeline import register_rank_average
    >>> register_rank_average("ncti_gbc", ["ncti", "gbc"])      # doctest: +SKIP
    'ncti_gbc'
    >>> rank_models(models, data, recommended_score="ncti_gbc")   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from nctransfer.exceptions import InputValueError
from nctransfer.transferability import METHODS, get_method, register

#: rank-average ensembles registered by :func:`register_rank_average`: name -> (components, title)
ENSEMBLES: dict[str, tuple[tuple[str, ...], str]] = {}

#: the default score of rank_models / nctransfer rank --models / nctransfer demo: NCTI (Wang et al., ICCV 2023, docs/methods.md#ncti).
#: Chosen by benchmarks/bench_rank_real.py: best mean weighted Kendall tau over the four offline pools (bundled
#: EfficientNet-Lite0/1/2 + a random-init control; penultimate and all taps; Fashion-MNIST and digits), best on
#: the informative 78-candidate pools, random control ranked last on both 4-model pools, and chosen again by a
#: leave-one-pool-out selection in 3 of 4 folds, where no rank-average ensemble generalised better.
DEFAULT_RECOMMENDED = "ncti"


def register_rank_average(name: str, components: Sequence[str], title: str | None = None) -> str:
    """Register a rank-average ensemble of ``components`` as the pool-relative method ``name``.

    Args:
        name: lowercase snake_case method name (must not be registered yet, unless it is this same ensemble).
        components: registered method names (feature-only or pool-relative; not probability-based, so that the
            ensemble is defined for every tap of a model).
        title: display name (default: ``"RankAvg(A+B+...)"``).

    Returns:
        ``name``.

    Raises:
        InputValueError: fewer than 2 components, a probability-based component, or ``name`` taken by another
            method.
        NotFoundError: an unknown component.
    """
    comps = tuple(get_method(c).name for c in components)
    if len(set(comps)) < 2:
        raise InputValueError(f"register_rank_average: need at least 2 distinct components; got {list(components)}.")
    for c in comps:
        if METHODS[c].needs_probs:
            raise InputValueError(f"register_rank_average: component {c!r} needs source probabilities; a rank "
                                  "average must be defined for every candidate (taps have no probabilities).")
    if name in METHODS:
        if ENSEMBLES.get(name, (None,))[0] == comps:
            return name
        raise InputValueError(f"register_rank_average: method {name!r} is already registered.")
    titles = [METHODS[c].title for c in comps]
    title = title or "RankAvg(" + "+".join(titles) + ")"

    def terms(X: Any, y: Any = None, **options: Any) -> dict[str, float]:
        out: dict[str, float] = {}
        for c in comps:
            info = METHODS[c]
            opts = dict(options.get(c, {}) or {})
            v = info.fn(X, y, **opts)
            if info.pool_relative:
                out.update({f"{c}.{k}": float(t) for k, t in dict(v).items()})
            else:
                out[c] = float(v)
        return out

    def combine(pool: Mapping[str, Mapping[str, float]]) -> Any:
        return rank_average_frame(pool, comps, name)

    terms.__doc__ = (f"Per-model terms of the rank-average ensemble {name!r}: the component scores "
                     f"{', '.join(comps)}; options per component as ``{{component: {{option: value}}}}``.")
    register(name, title=title, reference="nctransfer rank-average of " + ", ".join(titles),
             spec="docs/transferability.md#the-recommended-score-ncti", pool_relative=True, combine=combine,
             inputs="X, y", cost=" + ".join(c for c in comps),
             randomized=any(METHODS[c].randomized for c in comps))(terms)
    ENSEMBLES[name] = (comps, title)
    return name


def percentile_ranks(values: Sequence[float]) -> np.ndarray:
    """``(rank - 1) / (M - 1)`` in ``[0, 1]`` of each finite value among the finite ones (average ranks for ties;
    NaN stays NaN; a single finite value gets 0.5)."""
    v = np.asarray(values, dtype=float)
    out = np.full(v.shape, np.nan)
    ok = np.isfinite(v)
    m = int(ok.sum())
    if m == 1:
        out[ok] = 0.5
    elif m > 1:
        out[ok] = (rankdata(v[ok]) - 1.0) / (m - 1.0)
    return out


def rank_average_frame(pool: Mapping[str, Mapping[str, float]], components: Sequence[str], name: str) -> Any:
    """Combine per-model terms into the ensemble score (column ``name``) plus each component's pool score."""
    models = list(pool)
    cols: dict[str, Any] = {}
    for c in components:
        info = METHODS[c]
        if info.pool_relative:
            sub = {m: {k.split(".", 1)[1]: v for k, v in pool[m].items() if k.startswith(c + ".")} for m in models}
            cols[c] = info.combine(sub)[c].reindex(models).to_numpy(dtype=float)
        else:
            cols[c] = np.array([pool[m].get(c, np.nan) for m in models], dtype=float)
    ranks = np.vstack([percentile_ranks(cols[c]) for c in components])
    with np.errstate(invalid="ignore"):
        counts = np.isfinite(ranks).sum(axis=0)
        score = np.where(counts > 0, np.nansum(ranks, axis=0) / np.maximum(counts, 1), np.nan)
    return pd.DataFrame({name: score, **cols}, index=models)

