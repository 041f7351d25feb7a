"""Smoke test of an installed nctransfer wheel with the ``[torch]`` extra available: the torch-needing parts
import from the wheel, a model loads and gives layer-wise features, and every command's ``--help`` works.

Run by ``make wheel-smoke`` with a fresh virtual environment that holds the wheel (installed ``--no-deps``) and
sees the development environment's PyTorch, so that nothing large is downloaded again.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nctransfer


def check(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"wheel smoke test [torch] FAILED: {what}")
    print(f"ok  {what}")


pkg = Path(nctransfer.__file__).resolve().parent
check(Path(sys.prefix).resolve() in pkg.parents, f"nctransfer imported from the installed wheel ({pkg})")

import torch  # noqa: E402

from nctransfer.features import list_taps  # noqa: E402
from nctransfer.models import load_model  # noqa: E402

torch.set_num_threads(1)
model = load_model("timm:resnet18", pretrained=False, num_classes=3)
taps = list_taps(model)
check(len(taps) == 9 and taps[-1] == "penultimate", f"timm:resnet18 taps: {len(taps)}")
with torch.inference_mode():
    check(tuple(model(torch.zeros(2, 3, 32, 32)).shape) == (2, 3), "forward pass")

exe = Path(sys.executable).with_name("nctransfer")
for cmd in ("metrics", "rank", "layers", "finetune", "finetune-sweep", "study", "demo"):
    out = subprocess.run([str(exe), cmd, "--help"], capture_output=True, text=True)
    check(out.returncode == 0 and "usage:" in out.stdout, f"nctransfer {cmd} --help")
print("wheel smoke test [torch] passed")
