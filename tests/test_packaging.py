"""Packaging: a small core (the metrics and scores never import torch or matplotlib), extras that name
themselves when missing, one version source, and the metadata a package index needs. The built wheel itself is
tried in fresh virtual environments by ``make wheel-smoke`` (part of ``make test``)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

import nctransfer
from nctransfer.exceptions import NCTransferError
from nctransfer.utils.extras import MissingExtraError, error_for_missing_module, require_extra

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_core_paths_import_no_heavy_module():
    code = (
        "import sys, numpy as np\n"
        "import nctransfer, nctransfer.metrics, nctransfer.transferability, nctransfer.stats\n"
        "from nctransfer import metrics, transferability as tr, FeatureStats\n"
        "y = np.arange(60) % 3; X = np.random.default_rng(0).normal(size=(60, 5)) + np.eye(5)[y]\n"
        "metrics.compute_all(X, y); FeatureStats().update(X, y); tr.score('logme', X, y)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'torchvision', 'timm', 'matplotlib', 'transformers', 'ray'))\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_missing_extra_names_the_extra_to_install():
    with pytest.raises(MissingExtraError) as info:
        require_extra("torch", "nctransfer.example", ("nctransfer_surely_missing_module",))
    msg = str(info.value)
    assert msg.startswith("nctransfer.example needs PyTorch")
    assert "pip install 'nctransfer[torch]'" in msg and "nctransfer_surely_missing_module" in msg
    assert isinstance(info.value, ImportError) and isinstance(info.value, NCTransferError)
    require_extra("report", "nctransfer.example", ("numpy",))   # present: nothing raised


def test_module_not_found_translated_to_its_extra():
    err = error_for_missing_module(ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib.pyplot"),
                                   "nctransfer layers")
    assert isinstance(err, MissingExtraError)
    assert str(err) == "nctransfer layers needs matplotlib: pip install 'nctransfer[report]' (missing: matplotlib)"
    assert "nctransfer[hf]" in str(error_for_missing_module(ModuleNotFoundError(name="transformers")))
    assert error_for_missing_module(ModuleNotFoundError(name="nctransfer_not_an_extra")) is None


def test_one_version_source():
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert "version" not in PYPROJECT["project"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "nctransfer._version.__version__"}
    assert importlib.metadata.version("nctransfer") == nctransfer.__version__


def test_core_dependencies_and_extras():
    core = " ".join(PYPROJECT["project"]["dependencies"])
    for heavy in ("torch", "timm", "matplotlib", "transformers", "ray"):
        assert heavy not in core
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"torch", "report", "hf", "ray", "docs", "test", "weights", "all"} <= set(extras)
    assert {r.split(">")[0].split("=")[0] for r in extras["torch"]} == {"torch", "torchvision", "timm", "safetensors"}
    for req in extras["torch"] + PYPROJECT["project"]["dependencies"]:
        assert "<" not in req, f"upper cap: {req}"
    assert extras["all"] == ["nctransfer[torch,report,hf,ray,weights]"]


def test_license_classifiers_urls_and_typing_marker():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "Typing :: Typed" in project["classifiers"]
    assert {"Homepage", "Documentation", "Source"} <= set(project["urls"])
    assert (Path(nctransfer.__file__).parent / "py.typed").is_file()
    assert PYPROJECT["tool"]["setuptools"]["package-data"]["nctransfer"] == ["py.typed"]
