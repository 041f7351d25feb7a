"""Every script in examples/ runs end to end on tiny settings (NCTRANSFER_EXAMPLE_TINY=1), offline, as a user would
run it: a subprocess from a fresh working directory. Images for the ImageFolder example are scikit-learn digits
written as PNG files; models use random weights (no download)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, cwd: Path, timeout: int = 600) -> str:
    env = {**os.environ, "NCTRANSFER_EXAMPLE_TINY": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "NCTRANSFER_CACHE": str(cwd / "cache")}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{name} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def write_image_folder(root: Path, classes: int = 3, per_class: int = 20) -> Path:
    from PIL import Image
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    for c in range(classes):
        (root / f"digit_{c}").mkdir(parents=True)
        for i, idx in enumerate(np.flatnonzero(y == c)[:per_class]):
            img = Image.fromarray((X[idx].reshape(8, 8) * 15.9).astype(np.uint8)).resize((32, 32)).convert("RGB")
            img.save(root / f"digit_{c}" / f"{i}.png")
    return root


def test_every_example_has_a_test():
    tested = {"scores_from_saved_features.py", "rank_models_on_imagefolder.py", "layerwise_collapse_own_model.py",
              "scl_finetune_block.py", "pretraining_study_grid.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_scores_from_saved_features(tmp_path):
    out = run_example("scores_from_saved_features.py", cwd=tmp_path)
    assert "pixels" in out and "pca4" in out and "weighted Kendall tau" in out
    taus = {line.split()[0]: float(line.split()[1]) for line in out.splitlines()[-13:] if line.startswith("  ")}
    assert "ncti" in taus and "logme" in taus and all(-1.0 <= t <= 1.0 for t in taus.values())


def test_scores_from_saved_features_user_files(tmp_path):
    """The documented use: the user's own .npz files and truth CSV."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    for k, name in enumerate(["weak", "mid", "strong"]):
        np.savez(tmp_path / f"{name}.npz", X=rng.normal(size=(120, 12)) + (k + 0.5) * np.eye(12)[y], y=y)
    (tmp_path / "truth.csv").write_text("model,accuracy\nweak,0.4\nmid,0.6\nstrong,0.9\n")
    out = run_example("scores_from_saved_features.py", "weak.npz", "mid.npz", "strong.npz", "--truth", "truth.csv",
                      cwd=tmp_path)
    assert "strong" in out and "weighted Kendall tau" in out


@pytest.mark.slow
def test_rank_models_on_imagefolder(tmp_path):
    pytest.importorskip("torch")
    data = write_image_folder(tmp_path / "images")
    out = run_example("rank_models_on_imagefolder.py", str(data), "--out", "rank", cwd=tmp_path)
    assert "ranking (best first):" in out
    results = json.loads((tmp_path / "rank" / "results.json").read_text())
    assert len(results["ranking"]) == 3
    assert (tmp_path / "rank" / "report.html").stat().st_size > 1000


@pytest.mark.slow
def test_layerwise_collapse_own_model(tmp_path):
    pytest.importorskip("torch")
    out = run_example("layerwise_collapse_own_model.py", "--out", "layers", cwd=tmp_path)
    assert "block1" in out and "block3" in out and "penultimate" in out and "spearman_nc1_accuracy" in out
    assert (tmp_path / "layers" / "layers.png").stat().st_size > 1000


@pytest.mark.slow
def test_scl_finetune_block(tmp_path):
    pytest.importorskip("torch")
    out = run_example("scl_finetune_block.py", "--out", "ft", cwd=tmp_path)
    assert "blocks.4.0" in out.splitlines()[0]
    assert "linear probe" in out and "SCL FT (blocks.4.0)" in out
    for sub in ("lp", "scl"):
        assert json.loads((tmp_path / "ft" / sub / "result.json").read_text())["epochs_completed"] == 1


@pytest.mark.slow
def test_pretraining_study_grid(tmp_path):
    pytest.importorskip("torch")
    out = run_example("pretraining_study_grid.py", "--out", "study", cwd=tmp_path)
    assert "recipes: ce-h0, mse-h0" in out
    assert (tmp_path / "study" / "study.csv").read_text().count("\n") >= 3   # header + 2 recipes
