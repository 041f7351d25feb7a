"""Registry of transferability scores and the uniform entry point :func:`score` (docs/methods.md#transferability).

Each method is a :class:`MethodInfo`: its function, paper, section of docs/methods.md, inputs, whether it needs the source
classifier's probabilities, whether it is pool-relative (NCTI, ETran: min-max normalised across the candidate
models, so one model alone has no score), how many passes over the data a streaming implementation needs, and
its cost. Every registered score is oriented so that **higher = predicted to transfer better**.

Examples:
    >>> from nctransfer.transferability import METHODS, list_methods
    >>> METHODS["leep"].needs_probs
    True
    >>> list_methods(pool_relative=True)
    ['ncti', 'etran']
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import math
import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from nctransfer.exceptions import InputValueError, NotFoundError, UndefinedMetricWarning

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class MethodInfo:
    """Metadata of a registered transferability score.

    Attributes:
        name: lowercase snake_case key (the column name in :func:`~nctransfer.transferability.rank`).
        fn: per-model function ``fn(X_or_stats, y, [probs,] **options) -> float``; for pool-relative methods the
            per-model *terms* function returning a dict of raw terms.
        title: display name (e.g. ``"LogME"``).
        reference: paper (authors, venue, year).
        spec: where the formula and defaults are stated: an anchor of the methods page (``docs/methods.md#logme``).
        needs_probs: needs the source classifier's probabilities ``probs [N, C_src]``.
        pool_relative: the score is defined only relative to a pool of candidate models.
        combine: for pool-relative methods, ``combine({model: terms}) -> DataFrame`` with a column ``name``.
        accepts_stats: also computable from a :class:`~nctransfer.stats.FeatureStats`.
        passes: passes over the data a streaming implementation needs (1 = sufficient statistics).
        inputs: short description of the inputs.
        cost: time complexity (N samples, d features, K classes, C source classes).
        expensive: excluded from ``rank(methods=None)`` (run with ``methods="all"`` or by name).
        randomized: has a seeded random step (``seed`` argument).
        higher_is_better: always True for registered scores (kept explicit for tables and checks).
    """

    name: str
    fn: Callable[..., Any]
    title: str
    reference: str
    spec: str
    needs_probs: bool = False
    pool_relative: bool = False
    combine: Callable[..., Any] | None = None
    accepts_stats: bool = False
    passes: int = 1
    inputs: str = "X, y"
    cost: str = ""
    expensive: bool = False
    randomized: bool = False
    higher_is_better: bool = True

    @property
    def direction(self) -> str:
        return "higher = better" if self.higher_is_better else "lower = better"


METHODS: dict[str, MethodInfo] = {}


def register(name: str, *, title: str, reference: str, spec: str, needs_probs: bool = False,
             pool_relative: bool = False, combine: Callable[..., Any] | None = None, accepts_stats: bool = False,
             passes: int = 1, inputs: str = "X, y", cost: str = "", expensive: bool = False,
             randomized: bool = False) -> Callable[[Callable], Callable]:
    """Decorator registering a score function under ``name`` (see :class:`MethodInfo` for the fields).

    Raises:
        InputValueError: a name that is not lowercase snake_case or is already registered; a pool-relative
            method without ``combine``.
    """
    if not _NAME.match(name):
        raise InputValueError(f"method name must be lowercase snake_case; got {name!r}.")
    if name in METHODS:
        raise InputValueError(f"transferability method {name!r} is already registered.")
    if pool_relative and combine is None:
        raise InputValueError(f"pool-relative method {name!r} needs a combine function.")
    if int(passes) < 1:
        raise InputValueError(f"passes must be >= 1; got {passes!r}.")

    if accepts_stats and "FeatureStats" not in inputs:
        inputs = f"{inputs} (or FeatureStats)"

    def decorator(fn: Callable) -> Callable:
        guarded = finite_or_nan(fn, name)
        METHODS[name] = MethodInfo(name, guarded, title, reference, spec, needs_probs, pool_relative, combine,
                                   accepts_stats, int(passes), inputs, cost, expensive, randomized)
        return guarded
    return decorator


def _finite(value: Any, where: str) -> Any:
    """``value`` with every ``+-inf`` float (also inside a dict of terms) replaced by NaN, with a warning."""
    if isinstance(value, dict):
        return {k: _finite(v, f"{where}[{k}]") for k, v in value.items()}
    if isinstance(value, float) or type(value).__module__ == "numpy" and hasattr(value, "dtype") \
            and getattr(value, "ndim", 1) == 0 and value.dtype.kind == "f":
        if math.isinf(float(value)):
            warnings.warn(f"{where}: the score is {float(value)} (e.g. perfectly collapsed features give "
                          "-log NC1 = inf); returning NaN so that it cannot decide a ranking.", UndefinedMetricWarning,
                          stacklevel=4)
            return float("nan")
    return value


def finite_or_nan(fn: Callable, name: str) -> Callable:
    """Wrap a score function so that it never returns ``+-inf`` (NaN with an
    :class:`~nctransfer.exceptions.UndefinedMetricWarning` instead): an infinite score would top (or end) any
    ranking whatever the other candidates. Applied by :func:`register` to every registered method, so the public
    functions, :func:`score` and :func:`~nctransfer.transferability.rank` all share it."""
    if getattr(fn, "_nctransfer_finite", False):
        return fn

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return _finite(fn(*args, **kwargs), name)

    wrapper._nctransfer_finite = True  # type: ignore[attr-defined]
    return wrapper


def list_methods(pattern: str = "*", *, needs_probs: bool | None = None, pool_relative: bool | None = None,
                 accepts_stats: bool | None = None, include_expensive: bool = True) -> list[str]:
    """Registered method names matching a shell-style ``pattern`` (registration order), optionally filtered."""
    out = []
    for n, m in METHODS.items():
        if not fnmatch.fnmatchcase(n, pattern):
            continue
        if needs_probs is not None and m.needs_probs != needs_probs:
            continue
        if pool_relative is not None and m.pool_relative != pool_relative:
            continue
        if accepts_stats is not None and m.accepts_stats != accepts_stats:
            continue
        if not include_expensive and m.expensive:
            continue
        out.append(n)
    return out


def get_method(name: str) -> MethodInfo:
    """The :class:`MethodInfo` of ``name``; unknown names raise :class:`NotFoundError` with suggestions."""
    if not isinstance(name, str):
        raise InputValueError(f"method must be a string naming a registered score; got {type(name).__name__}.")
    key = name.strip().lower().replace("-", "_")
    try:
        return METHODS[key]
    except KeyError:
        close = difflib.get_close_matches(key, list(METHODS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise NotFoundError(f"unknown transferability method {name!r}.{hint} "
                            f"Available: {', '.join(METHODS)}.") from None


def score(method: str, X: Any, y: Any = None, probs: Any = None, **options: Any) -> float:
    """Compute one transferability score of one model: ``score("logme", X, y)``.

    Args:
        method: a registered name (:func:`list_methods`), e.g. ``"logme"``, ``"leep"``, ``"sfda"``.
        X: features ``[N, d]`` (numpy array or torch tensor), or a ``FeatureStats`` for methods with
            ``accepts_stats`` (then ``y=None``).
        y: labels ``[N]`` (or a target matrix for LogME).
        probs: source-classifier probabilities ``[N, C_src]`` (required by LEEP and NCE, ignored otherwise).
        **options: the method's keyword arguments (see its function).

    Returns:
        The score as a float; higher = predicted to transfer better.

    Raises:
        NotFoundError: unknown method.
        InputValueError: a pool-relative method (NCTI, ETran) - it is defined only across several models: use
            :func:`~nctransfer.transferability.rank` or the method's pool function (``ncti(pool)``,
            ``etran(pool)``); its per-model raw terms come from ``ncti_terms`` / ``etran_terms``.
    """
    info = get_method(method)
    if info.pool_relative:
        raise InputValueError(
            f"{info.name} is pool-relative: each of its terms is min-max normalised across the candidate models "
            f"of one target dataset, so a single model has no {info.title} score. Rank a pool instead: "
            f"nctransfer.transferability.rank({{'model_a': (X_a, y), 'model_b': (X_b, y), ...}}, "
            f"methods=['{info.name}']) or {info.name}({{'model_a': (X_a, y), ...}}); "
            f"{info.name}_terms(X, y) gives this model's raw terms.")
    if info.needs_probs:
        return float(info.fn(X, y, probs, **options))
    return float(info.fn(X, y, **options))
