"""Seeding and the environment stamp written into every output."""

from __future__ import annotations

import os
import platform
import random
import subprocess
import sys
from datetime import datetime, timezone
from typing import Any

import numpy as np

from nctransfer._version import __version__


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (if imported) PyTorch, and ask PyTorch for deterministic CPU kernels."""
    random.seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    np.random.seed(seed % (2**32))
    torch = sys.modules.get("torch")  # only when something imported it: seeding never loads torch
    if torch is not None:
        torch.manual_seed(seed)


def environment_stamp() -> dict[str, Any]:
    """Versions of Python, nctransfer, numpy, torch, timm; CPU/GPU; git commit; UTC time."""
    stamp: dict[str, Any] = {
        "nctransfer": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for mod in ("numpy", "scipy", "sklearn", "torch", "torchvision", "timm"):
        try:
            stamp[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional
            stamp[mod] = None
    torch = sys.modules.get("torch")  # loaded by the version loop above when installed
    if torch is not None:
        stamp["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        stamp["torch_threads"] = torch.get_num_threads()
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        stamp["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip() or None
    except Exception:  # noqa: BLE001
        stamp["git_commit"] = None
    return stamp
