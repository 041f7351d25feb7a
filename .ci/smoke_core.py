"""Smoke test of an installed nctransfer wheel with the core dependencies only (numpy, scipy, pandas,
scikit-learn, ...): collapse metrics and transferability scores on arrays, the command line, and the
error that names the extra to install for the parts that need PyTorch or matplotlib.

Run by ``make wheel-smoke`` (part of ``make test``) with the interpreter of a fresh virtual environment,
from a directory outside the source tree so that the installed wheel, not ``src/``, is imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

import nctransfer
from nctransfer import FeatureStats, metrics
from nctransfer import stats as _stats  # noqa: F401  (must import with the core only)
from nctransfer import transferability as tr

warnings.simplefilter("ignore")  # small arrays: NCTI's PCA warns that it keeps fewer dimensions

HEAVY = ("torch", "torchvision", "timm", "matplotlib", "transformers", "ray")


def check(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"wheel smoke test FAILED: {what}")
    print(f"ok  {what}")


src_dir = Path(nctransfer.__file__).resolve().parent
check("site-packages" in str(src_dir), f"nctransfer imported from the installed wheel ({src_dir})")
check((src_dir / "py.typed").is_file(), "py.typed shipped")

# metrics on arrays, exact and streaming
rng = np.random.default_rng(0)
y = np.repeat(np.arange(5), 40)
X = rng.normal(size=(200, 16)) + 4.0 * np.eye(16)[y]
nc1 = metrics.nc1(X, y)
st = FeatureStats().update(X[:90], y[:90]).update(X[90:], y[90:])
check(np.isfinite(nc1) and abs(metrics.nc1(st) - nc1) < 1e-10 * max(1.0, nc1), f"NC1 arrays == streaming ({nc1:.4f})")
values = metrics.compute_all(X, y)
check({"nc1", "vci", "cdnv"} <= set(values), f"compute_all gives {len(values)} metrics")

# transferability scores of a small pool on arrays
pool = {f"m{k}": (X[:, : 16 - 4 * k] + k * rng.normal(size=(200, 16 - 4 * k)), y) for k in range(3)}
table = tr.rank(pool, methods=["logme", "hscore", "ncti", "neg_nc1"])
check(table.shape[0] == 3 and np.isfinite(table.to_numpy(dtype=float)).all(), "rank: 3 models x 4 scores")
ev = tr.evaluate(table["logme"], {"m0": 0.9, "m1": 0.8, "m2": 0.7})
check("weighted_tau" in ev, f"evaluate: weighted tau {ev['weighted_tau']:+.3f}")

loaded = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
check(not loaded, f"no heavy module imported by the core ({loaded or 'none'})")

# a torch-needing part names the extra to install
try:
    import nctransfer.models  # noqa: F401
except ImportError as exc:
    check("nctransfer[torch]" in str(exc), f"import nctransfer.models -> {exc}")
else:
    check(False, "import nctransfer.models without torch raised nothing")

# the command line
exe = Path(sys.executable).with_name("nctransfer")
out = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
check(out.returncode == 0 and out.stdout.strip() == f"nctransfer {nctransfer.__version__}",
      f"nctransfer --version -> {out.stdout.strip()!r}")
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "feats.npz"
    np.savez(path, X=X, y=y)
    out = subprocess.run([str(exe), "metrics", str(path), "--metrics", "nc1,vci", "--json"],
                         capture_output=True, text=True)
    check(out.returncode == 0 and abs(json.loads(out.stdout)["nc1"] - nc1) < 1e-9,
          "nctransfer metrics FILE --json (core only)")
    out = subprocess.run([str(exe), "layers", "--model", "efficientnet_lite0", "--data", "digits",
                          "--out", str(Path(tmp) / "layers")], capture_output=True, text=True)
    msg = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ""
    check(out.returncode != 0 and "nctransfer[torch]" in msg and "Traceback" not in out.stderr,
          f"nctransfer layers without torch -> exit {out.returncode}: {msg}")

print("wheel smoke test passed")
