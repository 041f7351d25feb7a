"""``nctransfer metrics FILE`` (npz / pt / csv / saved statistics)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nctransfer import FeatureStats
from nctransfer import metrics as M
from nctransfer.cli.main import main


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    y = np.arange(200) % 4
    X = rng.normal(size=(200, 8)) + 2 * rng.normal(size=(4, 8))[y]
    return X, y


def run_json(capsys, *argv):
    assert main(["metrics", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    return json.loads(out)


def test_npz_table_and_json(tmp_path, capsys, arrays):
    X, y = arrays
    np.savez(tmp_path / "f.npz", X=X, y=y)
    assert main(["metrics", str(tmp_path / "f.npz")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("f.npz: N=200 samples, d=8 features, K=4 classes (from samples)")
    assert out[1].split() == ["metric", "direction", "value"]
    assert [line.split()[0] for line in out[3:]] == [n for n in M.list_metrics() if n != "nc3"]
    values = run_json(capsys, str(tmp_path / "f.npz"))
    assert values == pytest.approx(M.compute_all(X, y), rel=1e-12)


def test_npz_keys_classifier_options_and_output(tmp_path, capsys, arrays):
    X, y = arrays
    W = np.random.default_rng(1).normal(size=(4, 8))
    np.savez(tmp_path / "g.npz", feats=X, target=y, clf=W)
    values = run_json(capsys, str(tmp_path / "g.npz"), "--x-key", "feats", "--y-key", "target", "--w-key", "clf",
                      "--metrics", "nc3,vci,nc1", "--ridge", "0.5", "--output", str(tmp_path / "out" / "m.json"))
    assert list(values) == ["nc3", "vci", "nc1"]  # the requested order
    assert values["nc3"] == pytest.approx(M.nc3(X, y, W=W))
    assert values["vci"] == pytest.approx(M.vci(X, y, ridge=0.5))
    saved = json.loads((tmp_path / "out" / "m.json").read_text())
    assert saved["metrics"] == values and saved["config"]["ridge"] == 0.5 and saved["K"] == 4
    np.savez(tmp_path / "h.npz", features=X, labels=y)  # common names found automatically
    assert run_json(capsys, str(tmp_path / "h.npz"))["nc1"] == pytest.approx(M.nc1(X, y))


def test_missing_keys_list_available_ones(tmp_path, capsys, arrays):
    X, y = arrays
    np.savez(tmp_path / "f.npz", emb=X, y=y)
    assert main(["metrics", str(tmp_path / "f.npz")]) == 2
    err = capsys.readouterr().err
    assert "could not find the features (tried ['X', 'x', 'features'" in err
    assert "available keys: ['emb', 'y']. Pass --x-key KEY." in err
    assert main(["metrics", str(tmp_path / "f.npz"), "--x-key", "emb", "--y-key", "lab"]) == 2
    assert "no key 'lab' for the labels; available keys: ['emb', 'y']" in capsys.readouterr().err


def test_saved_statistics_give_the_statistics_metrics(tmp_path, capsys, arrays):
    X, y = arrays
    s = FeatureStats().update(X, y)
    s.save(tmp_path / "stats.npz")
    values = run_json(capsys, str(tmp_path / "stats.npz"))
    assert values == pytest.approx(M.compute_all(s), rel=1e-12)
    assert "ncc_accuracy" not in values
    torch = pytest.importorskip("torch")
    torch.save(s.state_dict(), tmp_path / "stats.pt")
    assert main(["metrics", str(tmp_path / "stats.pt"), "--json", "--allow-pickle"]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(values, rel=1e-12)


def test_pt_dict_and_tuple(tmp_path, capsys, arrays):
    torch = pytest.importorskip("torch")
    X, y = arrays
    torch.save({"X": torch.tensor(X, dtype=torch.float32), "y": torch.tensor(y)}, tmp_path / "d.pt")
    torch.save((torch.tensor(X), torch.tensor(y)), tmp_path / "t.pt")
    ref = M.compute_all(X, y)
    assert run_json(capsys, str(tmp_path / "t.pt")) == pytest.approx(ref, rel=1e-12)
    assert run_json(capsys, str(tmp_path / "d.pt")) == pytest.approx(M.compute_all(X.astype(np.float32), y),
                                                                      rel=1e-9)
    torch.save({"X": X, "y": y}, tmp_path / "np.pt")  # numpy arrays: refused by weights_only loading
    assert main(["metrics", str(tmp_path / "np.pt")]) == 2
    assert "pass --allow-pickle if you trust the file" in capsys.readouterr().err
    assert run_json(capsys, str(tmp_path / "np.pt"), "--allow-pickle") == pytest.approx(ref, rel=1e-12)
    torch.save(torch.tensor(X), tmp_path / "lone.pt")
    assert main(["metrics", str(tmp_path / "lone.pt")]) == 2
    assert "expected a dict of tensors, a tuple (X, y) or a FeatureStats state_dict; got Tensor" in \
        capsys.readouterr().err


@pytest.mark.parametrize("header", [True, False])
def test_csv_with_and_without_header(tmp_path, capsys, arrays, header):
    X, y = arrays
    names = np.array(["cat", "dog", "eel", "fox"])[y]
    lines = ([",".join([f"f{i}" for i in range(8)] + ["label"])] if header else [])
    lines += [",".join([repr(float(v)) for v in row] + [lab]) for row, lab in zip(X, names)]
    (tmp_path / "f.csv").write_text("\n".join(lines) + "\n")
    values = run_json(capsys, str(tmp_path / "f.csv"))
    assert values == pytest.approx(M.compute_all(X, names), rel=1e-12)


def test_csv_numeric_labels_with_header(tmp_path, capsys, arrays):
    X, y = arrays
    lines = ["a,b,c,label"] + [f"{r[0]},{r[1]},{r[2]},{lab}" for r, lab in zip(X, y)]
    (tmp_path / "n.csv").write_text("\n".join(lines) + "\n")
    assert run_json(capsys, str(tmp_path / "n.csv"), "--metrics", "nc1")["nc1"] == pytest.approx(M.nc1(X[:, :3], y))


def test_bad_files(tmp_path, capsys):
    assert main(["metrics", str(tmp_path / "none.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert main(["metrics", str(tmp_path / "bad.npz")]) == 2
    assert "not a zip archive written by numpy.savez" in capsys.readouterr().err
    np.savez(tmp_path / "obj.npz", X=np.zeros((4, 2)), y=np.array([0, "a", 0, "a"], dtype=object))
    assert main(["metrics", str(tmp_path / "obj.npz")]) == 2
    assert "holds pickled objects (e.g. labels of dtype object); pass --allow-pickle" in capsys.readouterr().err
    (tmp_path / "f.txt").write_text("1,2\n")
    assert main(["metrics", str(tmp_path / "f.txt")]) == 2
    assert "unsupported file type '.txt'" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text("1,2,a\n3,x,b\n5,6,a\n")
    assert main(["metrics", str(tmp_path / "bad.csv")]) == 2
    assert "non-numeric feature value 'x' in data row 2, column 2" in capsys.readouterr().err
    (tmp_path / "one.csv").write_text("1,2,a\n3,4,a\n")
    assert main(["metrics", str(tmp_path / "one.csv")]) == 2
    assert "must contain at least 2 distinct classes; got 1" in capsys.readouterr().err


def test_warnings_go_to_stderr_once(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "w.npz", X=rng.normal(size=(30, 20)), y=np.arange(30) % 3)
    assert main(["metrics", str(tmp_path / "w.npz"), "--metrics", "vci"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("warning (NumericalWarning): vci: N = 30 samples") == 1
    assert "vci" in captured.out


def test_console_script_and_yaml_config(tmp_path, arrays):
    X, y = arrays
    np.savez(tmp_path / "f.npz", X=X, y=y)
    (tmp_path / "c.yaml").write_text("metrics: nc1,cdnv\njson: true\n")
    exe = Path(sys.executable).with_name("nctransfer")
    proc = subprocess.run([str(exe), "metrics", str(tmp_path / "f.npz"), "--config", str(tmp_path / "c.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == pytest.approx({"nc1": M.nc1(X, y), "cdnv": M.cdnv(X, y)})
