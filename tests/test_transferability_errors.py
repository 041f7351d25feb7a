"""Bad inputs: every error names the argument and says what was expected (docs/methods.md#transferability; brief)."""

from __future__ import annotations

import numpy as np
import pytest

from nctransfer import FeatureStats
from nctransfer.exceptions import InputValueError, NotFoundError, NumericalWarning, ShapeError
from nctransfer.transferability import (
    METHODS,
    etran,
    gbc,
    get_method,
    leep,
    nce,
    ncti,
    ncti_terms,
    parc,
    rank,
    register,
    score,
    sfda,
)


@pytest.fixture()
def xy():
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    return rng.normal(size=(60, 5)) + np.eye(5)[y], y


@pytest.mark.parametrize("fn", [leep, nce])
def test_probability_scores_without_probs(fn, xy):
    X, y = xy
    with pytest.raises(InputValueError, match="source classifier's probabilities"):
        fn(X, y)
    with pytest.raises(InputValueError, match="source classifier's probabilities"):
        score(fn.__name__, X, y)


@pytest.mark.parametrize("fn", [leep, nce])
def test_probabilities_must_be_rows_summing_to_one(fn, xy):
    X, y = xy
    scores = np.abs(np.random.default_rng(1).normal(size=(60, 4)))  # non-negative but not normalised
    with pytest.raises(InputValueError, match=r"probs rows must sum to one.*softmax"):
        fn(X, y, scores)
    with pytest.raises(InputValueError, match=r">= 0"):
        fn(X, y, np.full((60, 2), 0.5) + np.array([[-0.6, 0.6]]))
    with pytest.raises(ShapeError, match="different lengths"):
        fn(X, y, np.full((59, 2), 0.5))
    with pytest.raises(InputValueError, match="NaN or Inf"):
        fn(X, y, np.full((60, 2), np.nan))


@pytest.mark.parametrize("name,pool_fn", [("ncti", ncti), ("etran", etran)])
def test_pool_of_one_model_is_refused_with_an_explanation(name, pool_fn, xy):
    X, y = xy
    with pytest.raises(InputValueError, match="pool-relative.*at least 2 models"):
        pool_fn({"only": (X, y)})
    with pytest.raises(InputValueError, match="pool-relative.*single model has no"):
        score(name, X, y)
    with pytest.raises(InputValueError, match="pool-relative"):
        rank({"only": (X, y)}, methods=[name])
    df = rank({"only": (X, y)}, methods=None)  # default methods: skipped with a note
    assert np.isnan(df.loc["only", name])
    assert any(note.startswith(f"{name}: skipped") for note in df.attrs["notes"])


def test_too_few_samples_or_dimensions_for_pca_reduce_and_warn():
    rng = np.random.default_rng(2)
    y = np.arange(40) % 4
    X = rng.normal(size=(40, 30)) + np.eye(30)[y]
    with pytest.warns(NumericalWarning, match=r"min\(N, d\) >= 64 but N=40, d=30; using 29 dims"):
        t = ncti_terms(X, y)
    assert t["n_components"] == 29
    with pytest.warns(NumericalWarning, match="using 30 dims"):  # GBC, PARC: min(wanted, d, N - 1)
        gbc(X, y)
    with pytest.warns(NumericalWarning, match=r"N=20, d=30; using 19 dims"):
        parc(X[:20], y[:20])


@pytest.mark.parametrize("name", [n for n in METHODS if not METHODS[n].needs_probs])
def test_nan_inf_and_mismatched_lengths(name, xy):
    X, y = xy
    bad = X.copy()
    bad[3, 1] = np.nan
    bad[7, 0] = np.inf
    fn = METHODS[name].fn
    with pytest.raises(InputValueError, match=r"X contains 2 non-finite value\(s\).*rows \[3, 7\]"):
        fn(bad, y)
    with pytest.raises(ShapeError, match="different lengths"):
        fn(X, y[:-1])
    with pytest.raises(InputValueError, match="at least 2 distinct classes"):
        fn(X, np.zeros(60))
    with pytest.raises(ShapeError, match="2-D array"):
        fn(X[:, 0], y)


def test_registry_and_score_errors(xy):
    X, y = xy
    with pytest.raises(NotFoundError, match="Did you mean logme"):
        score("logmee", X, y)
    with pytest.raises(NotFoundError, match="Available: logme"):
        get_method("nope")
    with pytest.raises(InputValueError, match="already registered"):
        register("logme", title="x", reference="x", spec="x")(lambda X, y: 0.0)
    with pytest.raises(InputValueError, match="snake_case"):
        register("Bad-Name", title="x", reference="x", spec="x")
    with pytest.raises(InputValueError, match="needs per-sample features"):
        sfda(FeatureStats().update(X, y))
    with pytest.raises(InputValueError, match="gaussian must be one of"):
        gbc(X, y, gaussian="full")
    with pytest.raises(InputValueError, match="shrinkage must be in"):
        sfda(X, y, shrinkage=2.0)
    assert score("logme", X, y) == pytest.approx(METHODS["logme"].fn(X, y))
    assert score("leep", X, y, probs=np.full((60, 2), 0.5)) <= 0.0
