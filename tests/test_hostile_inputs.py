"""Hostile and careless inputs: every one gives a clear one-line error (or a documented warning), nothing runs from a
data file, no ranking comes out of inconsistent candidates, and the CLI never prints a Python traceback for a user
error without -v.

The CLI cases form one table: (command line, expected exit code, regular expression the first stderr line must
match). Each case builds its files in ``tmp_path`` and runs ``nctransfer.cli.main.main`` in-process.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nctransfer import FeatureStats
from nctransfer.cli.main import main
from nctransfer.exceptions import InputValueError, NCTransferError, UnsafeFileError

ROOT = Path(__file__).resolve().parents[1]


class _OpensSentinel:
    """Unpickling this object calls ``open(sentinel, "w")``: it creates the file (a harmless stand-in for code)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _data(n: int = 60, d: int = 5, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n // k)
    return rng.normal(size=(n, d)) + 3 * np.eye(d)[y % d], y


def _stats_file(path: Path, **changes) -> Path:
    """A saved FeatureStats with some entries replaced (a callable gets the old value; None deletes the key)."""
    FeatureStats().update(*_data()).save(path)
    with np.load(path) as z:
        state = {k: z[k] for k in z.files}
    for key, value in changes.items():
        if value is None:
            state.pop(key)
        else:
            state[key] = value(state[key]) if callable(value) else value
    np.savez(path, **state)
    return path


def _neg_gram(g: np.ndarray) -> np.ndarray:
    g = g.copy()
    g[0, 0] = -1e6
    return g


def _big_off_diagonal(g: np.ndarray) -> np.ndarray:
    """Same trace and diagonal, but |g01| > sqrt(g00 g11): no set of vectors has this second moment."""
    g = g.copy()
    c = 10 * float(np.diag(g).max())
    g[0, 1] += c
    g[1, 0] += c
    return g


def _pickled_classes(tmp: Path) -> Path:
    return _stats_file(tmp / "evil_stats.npz", classes_json=None,
                       classes_pickle=np.frombuffer(pickle.dumps(_OpensSentinel(tmp / "SENTINEL")), dtype=np.uint8))


def _truncated(src: Path, dst: Path, keep: int = 200) -> Path:
    dst.write_bytes(src.read_bytes()[:keep])
    return dst


def _pair(tmp: Path, y_b) -> list[str]:
    X, y = _data()
    np.savez(tmp / "a.npz", X=X, y=y)
    np.savez(tmp / "b.npz", X=X[: len(y_b)], y=y_b)
    return [str(tmp / "a.npz"), str(tmp / "b.npz")]


def _blocker(tmp: Path) -> Path:
    (tmp / "blocker").write_text("a file, not a directory")
    return tmp / "blocker"


def _features(tmp: Path, X=None, y=None, name: str = "f.npz") -> str:
    Xd, yd = _data()
    np.savez(tmp / name, X=Xd if X is None else X, y=yd if y is None else y)
    return str(tmp / name)


# (id, builder(tmp) -> argv, exit code, regex of the first stderr line)
CASES = [
    # 1. nothing runs from a data file
    ("metrics-pickled-classes", lambda t: ["metrics", str(_pickled_classes(t))], 2,
     r"^nctransfer metrics: error: statistics file .* stores its class list pickled"),
    # 3. labels that are not class labels, complex features
    ("metrics-continuous-labels", lambda t: ["metrics", _features(t, y=np.tile([0.5, 1.5, 2.25], 20))], 2,
     r"^nctransfer metrics: error: y must hold class labels .* continuous values such as 0\.5, 1\.5, 2\.25"),
    ("metrics-one-sample-per-class", lambda t: ["metrics", _features(t, X=_data()[0][:3], y=np.arange(3))], 2,
     r"^nctransfer metrics: error: y has one sample per class"),
    ("metrics-complex-features", lambda t: ["metrics", _features(t, X=_data()[0] + 1j)], 2,
     r"^nctransfer metrics: error: X must hold real numbers; got complex"),
    # 4. tampered statistics
    ("stats-negative-gram", lambda t: ["metrics", str(_stats_file(t / "s.npz", gram=_neg_gram))], 2,
     r"negative diagonal entry gram\[0,0\] = -1e\+06"),
    ("stats-negative-count", lambda t: ["metrics", str(_stats_file(t / "s.npz", counts=lambda c: -c))], 2,
     r"negative class count"),
    ("stats-counts-not-n", lambda t: ["metrics", str(_stats_file(t / "s.npz", counts=lambda c: c + 1))], 2,
     r"the class counts add up to 63 but n = 60"),
    ("stats-short-class-list", lambda t: ["metrics", str(_stats_file(
        t / "s.npz", classes_json=np.array('{"classes": [0, 1]}')))], 2, r"the class list has 2 labels but 'counts'"),
    ("stats-wrong-shape", lambda t: ["metrics", str(_stats_file(t / "s.npz", sums=lambda a: a[:, :2]))], 2,
     r"'sums' must have shape \(3, 5\); got \(3, 2\)"),
    ("stats-missing-key", lambda t: ["metrics", str(_stats_file(t / "s.npz", gram=None))], 2,
     r"missing key\(s\) \['gram'\]"),
    ("stats-not-psd", lambda t: ["metrics", str(_stats_file(t / "s.npz", gram=_big_off_diagonal))], 2,
     r"the within-class second moment .* is not positive semi-definite"),
    # traceback or silence before: file kinds, truncation, outputs
    ("metrics-directory", lambda t: ["metrics", str(t)], 2, r"is a directory; expected a file"),
    ("metrics-truncated-stats", lambda t: ["metrics", str(_truncated(_stats_file(t / "s.npz"), t / "cut.npz"))], 2,
     r"could not read .*cut\.npz as \.npz"),
    ("metrics-output-is-directory", lambda t: ["metrics", _features(t), "--output", str(t)], 2,
     r"--output: .* is a directory; expected a file path"),
    ("metrics-output-under-file", lambda t: ["metrics", _features(t), "--output", str(_blocker(t) / "m.json")], 2,
     r"--output: cannot create .* is a file, not a directory"),
    # 2. candidates with different targets
    ("rank-permuted-labels", lambda t: ["rank", *_pair(t, np.random.default_rng(1).permutation(_data()[1])),
                                        "--methods", "logme"], 2,
     r"same target labels y in the same order.*b\.npz' has the same labels in a different order"),
    ("rank-different-n", lambda t: ["rank", *_pair(t, _data()[1][:45]), "--methods", "logme"], 2,
     r"b\.npz' has a different number of samples N \(45 vs 60\)"),
    ("rank-different-label-set", lambda t: ["rank", *_pair(t, np.where(_data()[1] == 2, 7, _data()[1])),
                                            "--methods", "logme"], 2, r"b\.npz' has a different label set"),
    ("rank-truncated-npz", lambda t: ["rank", _features(t), str(_truncated(Path(_features(t, name="g.npz")),
                                                                           t / "cut.npz"))], 2,
     r"features file .*cut\.npz' is not a readable \.npz archive"),
    ("rank-directory", lambda t: ["rank", _features(t), str(t)], 2, r"is a directory; expected an \.npz file"),
    ("rank-truth-missing", lambda t: ["rank", *_pair(t, _data()[1]), "--truth", str(t / "nope.csv")], 2,
     r"truth file .*nope\.csv' does not exist"),
    ("rank-truth-out-of-range", lambda t: (t.joinpath("truth.csv").write_text("model,accuracy\na,0.5\nb,150\n"),
                                           ["rank", *_pair(t, _data()[1]), "--truth", str(t / "truth.csv")])[1], 2,
     r"accuracies must be in \[0, 1\] \(or percentages in \[0, 100\]\); got \[150\.0\]"),
    # configuration, devices, output locations checked before any work
    ("config-broken-yaml", lambda t: (t.joinpath("c.yaml").write_text("methods: [logme,\nfoo: bar\n"),
                                      ["rank", *_pair(t, _data()[1]), "--config", str(t / "c.yaml")])[1], 2,
     r"--config: .*c\.yaml' is not valid YAML \(.* at line \d+, column \d+\)"),
    ("rank-models-no-such-cuda", lambda t: ["rank", "--models", "efficientnet_lite0", "--data", "digits",
                                            "--out", str(t / "o"), "--device", "cuda:99"], 2,
     r"--device 'cuda:99': .*devices on this machine: cpu"),
    ("rank-models-out-under-file", lambda t: ["rank", "--models", "efficientnet_lite0", "--data", "digits",
                                              "--out", str(_blocker(t) / "o")], 2, r"is a file, not a directory"),
    ("rank-models-cache-under-file", lambda t: ["rank", "--models", "efficientnet_lite0", "--data", "digits",
                                                "--out", str(t / "o"), "--cache-dir", str(_blocker(t) / "c")], 2,
     r"--cache-dir: cannot create .* is a file, not a directory"),
    ("layers-out-is-file", lambda t: ["layers", "--model", "efficientnet_lite0", "--data", "digits",
                                      "--out", str(_blocker(t))], 2, r"--out: .*blocker' exists and is not a directory"),
    ("finetune-out-is-file", lambda t: ["finetune", "--model", "efficientnet_lite0", "--data", "digits",
                                        "--out", str(_blocker(t))], 2, r"--out: .*blocker' exists and is not a directory"),
    # usage errors stay argparse's (exit 2, 'usage:' first)
    ("usage-unknown-flag", lambda t: ["rank", "--no-such-flag"], 2, r"^usage: nctransfer"),
]


@pytest.mark.parametrize("case_id,build,code,first_line", CASES, ids=[c[0] for c in CASES])
def test_cli_hostile_input_is_one_clear_line(case_id, build, code, first_line, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = build(tmp_path)
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse usage errors
            rc = exc.code
    err = capsys.readouterr().err
    assert rc == code, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("nctransfer: warning")]
    assert lines, f"no error message for {case_id}"
    assert re.search(first_line, lines[0]), lines[0]
    if case_id != "usage-unknown-flag":
        errors = [ln for ln in lines if ": error: " in ln]
        assert len(errors) == 1 and errors[0] == lines[0]  # one line, and it is the first
    assert not (tmp_path / "SENTINEL").exists()  # nothing ran from a data file
    assert not (tmp_path / "o").exists()  # a run that fails validation creates no directory


def test_pickled_files_never_run_code(tmp_path):
    """A statistics file whose class list would unpickle a callable, and a torch file doing the same, are refused
    without unpickling; the sentinel file the callable would create never appears."""
    evil = _pickled_classes(tmp_path)
    with pytest.raises(UnsafeFileError, match="allow_pickle=True"):
        FeatureStats.load(evil)
    import torch

    from nctransfer.models import load_model

    torch.save({"model": _OpensSentinel(tmp_path / "SENTINEL")}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeFileError, match="--allow-pickle"):
        load_model(f"file:{tmp_path / 'evil.pt'}")
    assert main(["layers", "--model", f"file:{tmp_path / 'evil.pt'}", "--data", "digits",
                 "--out", str(tmp_path / "o")]) == 2
    from nctransfer.finetune.trainer import _read_checkpoint

    (tmp_path / "ckpt").mkdir()
    torch.save({"format": 1, "x": _OpensSentinel(tmp_path / "SENTINEL")}, tmp_path / "ckpt" / "checkpoint.pt")
    with pytest.raises(InputValueError, match="is not unpickled"):
        _read_checkpoint(tmp_path / "ckpt" / "checkpoint.pt")
    assert not (tmp_path / "SENTINEL").exists()
    # the explicit opt-in still reads an old pickled class list
    ok = _stats_file(tmp_path / "old.npz", classes_json=None,
                     classes_pickle=np.frombuffer(pickle.dumps([0, 1, 2]), dtype=np.uint8))
    assert FeatureStats.load(ok, allow_pickle=True).classes == [0, 1, 2]


def test_truncated_checkpoint_and_truncated_stats_are_one_error(tmp_path):
    import torch

    from nctransfer.finetune.trainer import _read_checkpoint

    torch.save({"format": 1, "w": torch.zeros(1000)}, tmp_path / "full.pt")
    _truncated(tmp_path / "full.pt", tmp_path / "checkpoint.pt", keep=300)
    with pytest.raises(InputValueError, match=r"cannot be read \(truncated or corrupt"):
        _read_checkpoint(tmp_path / "checkpoint.pt")
    cut = _truncated(_stats_file(tmp_path / "s.npz"), tmp_path / "cut.npz", keep=900)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no unclosed-file ResourceWarning either
        with pytest.raises(InputValueError, match="truncated or corrupt"):
            FeatureStats.load(cut)


def test_scores_never_inf_in_a_ranking():
    from nctransfer import transferability as tr
    from nctransfer.exceptions import UndefinedMetricWarning

    X = np.repeat(np.eye(3), 4, axis=0)  # perfectly collapsed: NC1 = 0, -log NC1 = +inf before
    y = np.repeat([0, 1, 2], 4)
    with pytest.warns(UndefinedMetricWarning, match="returning NaN"):
        assert np.isnan(tr.score("neg_log_nc1", X, y))
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(tr.neg_log_nc1(X, y))
    with pytest.raises(InputValueError, match="one sample per class"):
        tr.score("neg_log_nc1", np.eye(3), [0, 1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = tr.rank({"collapsed": (X, y), "noisy": (X + np.random.default_rng(0).normal(size=X.shape), y)},
                     methods=["neg_log_nc1", "logme"])
    assert not np.isinf(df.to_numpy()).any() and np.isnan(df.loc["collapsed", "neg_log_nc1"])


def test_label_and_feature_kinds():
    from nctransfer.metrics import nc1
    from nctransfer.utils.validation import type_of_target

    assert [type_of_target(v) for v in ([0, 1, 1], [0, 1, 2], [0.0, 2.0, 1.0], ["a", "b", "c"], [0.5, 1.5],
                                        np.array([1 + 1j, 2]))] == \
        ["binary", "multiclass", "multiclass", "multiclass", "continuous", "complex"]
    X, y = _data()
    with pytest.raises(InputValueError, match="continuous values such as 0.5, 1.5"):
        nc1(X[:4], [0.5, 1.5, 0.5, 1.5])
    assert np.isfinite(nc1(X, y.astype(float)))  # integral floats are class labels
    import torch

    Xt = torch.tensor(X, requires_grad=True)  # FeatureStats.update detaches, as score does
    s = FeatureStats().update(Xt, torch.tensor(y))
    np.testing.assert_allclose(s.class_means(), FeatureStats().update(X, y).class_means(), rtol=1e-12)


def test_result_cache_checksum_rebuilds_a_flipped_digit(tmp_path):
    from nctransfer.exceptions import CacheIntegrityWarning
    from nctransfer.pipeline.cache import ResultCache

    cache = ResultCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"random:efficientnet_lite0": 0.31, "efficientnet_lite0": 0.87}

    assert cache.get_or_compute("scores", {"k": 1}, compute)["efficientnet_lite0"] == 0.87
    entry = next((tmp_path / "scores").glob("*.json"))
    entry.write_text(entry.read_text().replace("0.31", "0.91"))  # one edited digit: the control becomes best
    with pytest.warns(CacheIntegrityWarning, match="does not match its sha256 checksum"):
        value = cache.get_or_compute("scores", {"k": 1}, compute)
    assert value["random:efficientnet_lite0"] == 0.31 and len(calls) == 2
    assert cache.get("scores", {"k": 1})["random:efficientnet_lite0"] == 0.31  # rebuilt entry verifies again


def test_truth_percent_scale_and_memory_estimate(tmp_path, capsys, monkeypatch):
    files = _pair(tmp_path, _data()[1])
    (tmp_path / "truth.csv").write_text("model,accuracy\na,55\nb,80\n")
    assert main(["rank", *files, "--methods", "logme", "--truth", str(tmp_path / "truth.csv"), "--json"]) == 0
    assert "look like percentages; dividing by 100" in capsys.readouterr().err
    monkeypatch.setenv("NCTRANSFER_MEMORY_LIMIT", "10K")
    rc = main(["metrics", _features(tmp_path, X=np.random.default_rng(0).normal(size=(60, 50)), name="w.npz")])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert re.search(r"^nctransfer metrics: error: the d x d total covariance \(d=50\) needs about .* Gram domain",
                     err.splitlines()[-1])


def test_corrupt_image_is_named_and_can_be_skipped(tmp_path):
    from PIL import Image

    from nctransfer.data import load_dataset

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray((rng.random((16, 16, 3)) * 255).astype("uint8")).save(tmp_path / c / f"{i}.png")
    _truncated(tmp_path / "cat" / "0.png", tmp_path / "cat" / "bad.png", keep=60)
    ds = load_dataset(str(tmp_path), "all")
    with pytest.raises(InputValueError, match=r"image file '.*bad\.png' .* --skip-bad-images"):
        [ds[i] for i in range(len(ds))]
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image file\(s\).*bad\.png"):
        ok = load_dataset(str(tmp_path), "all", skip_bad_images=True)
    assert len(ok) == 6 and len([ok[i] for i in range(len(ok))]) == 6
    assert ok.meta["skipped_images"][0].startswith(str(tmp_path / "cat" / "bad.png"))
    from nctransfer.data.datasets import skip_bad_images

    with skip_bad_images(), warnings.catch_warnings():  # the CLI's --skip-bad-images
        warnings.simplefilter("ignore")
        assert len(load_dataset(str(tmp_path), "all")) == 6


def test_interrupt_bug_and_quiet_warnings(monkeypatch, capsys, tmp_path):
    import nctransfer.cli.cmd_rank as cmd_rank

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cmd_rank, "run", interrupted)
    assert main(["rank", "--list-methods"]) == 130
    assert capsys.readouterr().err.strip() == "nctransfer rank: interrupted"

    def bug(args):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(cmd_rank, "run", bug)
    assert main(["rank", "--list-methods"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == ("nctransfer rank: error: TypeError: unsupported operand (run with -v for the full "
                           "traceback)")
    assert main(["rank", "--list-methods", "-v"]) == 1
    assert "Traceback" in capsys.readouterr().err  # -v shows it
    import logging

    assert logging.getLogger("nctransfer").level == logging.INFO  # -v is wired to logging
    main(["rank", "--list-methods", "-vv"])
    assert logging.getLogger("nctransfer").level == logging.DEBUG
    logging.getLogger("nctransfer").debug("a debug record")
    assert "nctransfer: DEBUG: a debug record" in capsys.readouterr().err

    def short_split(args):
        warnings.warn("2 class(es) have fewer samples than requested (50): {0: 3}; they keep all their samples.")
        return 0

    monkeypatch.setattr(cmd_rank, "run", short_split)
    assert main(["rank", "--list-methods", "-q"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("nctransfer: warning: UserWarning: 2 class(es) have fewer samples than requested")


def test_broken_pipe_is_quiet(tmp_path):
    """`nctransfer rank ... | head -1`: the reader goes away; no traceback, no 'Exception ignored', exit 141."""
    files = _pair(tmp_path, _data()[1])
    code = ("import sys; from nctransfer.cli.main import main; "
            f"sys.exit(main(['rank', *{files!r}, '--methods', 'logme,hscore']))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    proc.stdout.close()  # like `head` exiting before nctransfer writes
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert proc.returncode == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err


# ------------------------------------------------------------------------------------------------ properties
_SCORES = None


def _public_scores():
    global _SCORES
    if _SCORES is None:
        from nctransfer import transferability as tr

        _SCORES = [(n, getattr(tr, n, None) or m.fn, m) for n, m in tr.METHODS.items() if not m.pool_relative]
    return _SCORES


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(n_per=st.integers(1, 5), k=st.integers(2, 3), d=st.integers(1, 5), collapse=st.booleans(),
       scale=st.sampled_from([1e-8, 1.0, 1e6]), seed=st.integers(0, 2 ** 16))
def test_property_no_public_score_returns_inf(n_per, k, d, collapse, scale, seed):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n_per)
    y = np.concatenate([y, [0]])  # at least one class with two samples
    X = rng.normal(size=(k, d))[y] * scale if collapse else rng.normal(size=(len(y), d)) * scale
    P = rng.dirichlet(np.ones(4), size=len(y))
    for name, fn, info in _public_scores():
        if info.expensive and len(y) < 6:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for call in (lambda: fn(X, y, P) if info.needs_probs else fn(X, y),):
                try:
                    v = call()
                except NCTransferError:
                    continue
                v = float(getattr(v, "score", v))
                assert not np.isinf(v), (name, v)


_STATE_KEYS = ["counts", "sums", "sqnorms", "normsums", "gram", "shift", "n"]


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(_STATE_KEYS), pos=st.integers(0, 10 ** 6),
       value=st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                       st.sampled_from([-1.0, 0.0, -1e6, 1e6, 1e300])),
       drop=st.booleans(), reshape=st.booleans())
def test_property_loaded_stats_validate_or_raise_input_value_error(tmp_path_factory, key, pos, value, drop, reshape):
    from nctransfer import metrics as M
    from nctransfer.stats.feature_stats import validate_state

    tmp = tmp_path_factory.mktemp("stats")
    path = tmp / "s.npz"
    X, y = _data(n=30, d=4)
    FeatureStats().update(X, y).save(path)
    with np.load(path) as z:
        state = {k: z[k] for k in z.files}
    if drop:
        state.pop(key, None)
    elif reshape:
        state[key] = np.asarray(state[key]).reshape(-1)[:-1] if np.asarray(state[key]).size > 1 else np.zeros((2, 2))
    else:
        a = np.array(state[key], dtype=np.float64)
        a.reshape(-1)[pos % a.size] = value
        state[key] = a
    np.savez(path, **state)
    try:
        s = FeatureStats.load(path)
    except InputValueError:
        return
    validate_state(s.state_dict())  # a loaded object always passes the full validation
    with warnings.catch_warnings():  # metrics of an accepted object fail, if at all, with an nctransfer error
        warnings.simplefilter("ignore")
        try:
            M.compute_all(M.prepare(s))
        except NCTransferError:
            pass
