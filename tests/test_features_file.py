"""One features-file reader (nctransfer.stats.features_file) behind ``nctransfer metrics FILE`` and
``transferability.rank``/``load_features_file``: same arrays, same messages."""

from __future__ import annotations

import numpy as np
import pytest

from nctransfer.cli import cmd_metrics
from nctransfer.exceptions import InputValueError, NotFoundError, UnsafeFileError
from nctransfer.stats import FeatureStats
from nctransfer.stats.features_file import load_features_file
from nctransfer.transferability import ranking

X = np.arange(12, dtype=np.float64).reshape(6, 2)
y = np.array([0, 0, 1, 1, 2, 2])
P = np.full((6, 3), 1 / 3)


def test_aliases_and_probabilities(tmp_path):
    np.savez(tmp_path / "a.npz", features=X, labels=y, probs=P)
    got = load_features_file(tmp_path / "a.npz", probabilities=True)
    assert set(got) == {"X", "y", "P"}
    np.testing.assert_array_equal(got["X"], X)
    np.testing.assert_array_equal(got["y"], y)
    assert "P" not in load_features_file(tmp_path / "a.npz")  # only on request
    Xr, yr, Pr = ranking.load_features_file(tmp_path / "a.npz")
    np.testing.assert_array_equal(Xr, X)
    np.testing.assert_array_equal(Pr, P)
    Xm = cmd_metrics.load_features_file(tmp_path / "a.npz")["X"]
    np.testing.assert_array_equal(Xm, X)


def test_statistics_only_where_asked(tmp_path):
    FeatureStats().update(X, y).save(tmp_path / "s.npz")
    assert isinstance(load_features_file(tmp_path / "s.npz")["stats"], FeatureStats)
    with pytest.raises(InputValueError, match=r"has no array 'X': could not find the features"):
        ranking.load_features_file(tmp_path / "s.npz")


def test_same_messages_for_both_callers(tmp_path):
    np.savez(tmp_path / "noy.npz", X=X)
    for load in (cmd_metrics.load_features_file, ranking.load_features_file):
        with pytest.raises(InputValueError, match=r"has no array 'y': could not find the labels \(tried \['y', "):
            load(tmp_path / "noy.npz")
        with pytest.raises(NotFoundError, match="features file '.*nope.npz' does not exist"):
            load(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputValueError, match=r"'.*bad\.npz' is not a readable \.npz archive .*not a zip archive"):
        ranking.load_features_file(tmp_path / "bad.npz")
    np.savez(tmp_path / "obj.npz", X=X, y=y.astype(object))
    with pytest.raises(UnsafeFileError, match="they are never unpickled"):  # rank offers no opt-in
        ranking.load_features_file(tmp_path / "obj.npz")
    with pytest.raises(UnsafeFileError, match="pass --allow-pickle"):
        cmd_metrics.load_features_file(tmp_path / "obj.npz")


def test_formats_per_caller(tmp_path):
    (tmp_path / "f.csv").write_text("1,2,a\n3,4,b\n")
    got = load_features_file(tmp_path / "f.csv")
    np.testing.assert_array_equal(got["X"], [[1.0, 2.0], [3.0, 4.0]])
    assert list(got["y"]) == ["a", "b"]
    with pytest.raises(InputValueError, match=r"unsupported file type '\.csv' .* expected an \.npz file with arrays"):
        ranking.load_features_file(tmp_path / "f.csv")
    with pytest.raises(InputValueError, match=r"is a directory; expected a file \(\.npz, \.pt/\.pth or \.csv\)"):
        load_features_file(tmp_path)
