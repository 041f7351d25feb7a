"""The built-in defaults of the demo job (``nctransfer demo``, :func:`nctransfer.pipeline.demo.run_demo`).

A torch-free module of its own: ``nctransfer demo --help`` shows these defaults, and building the command-line
parser must not import the pipeline (which imports torch).
"""

from __future__ import annotations

from typing import Any

#: built-in defaults of the demo (every one can be overridden through run_demo's keywords or the CLI)
DEMO_DEFAULTS: dict[str, Any] = {
    "models": ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "random:efficientnet_lite0"],
    "data": "fashion-mnist",
    "taps": "all",
    "per_class": 40,
    "test_per_class": 40,
    "image_size": 64,
    "batch_size": 100,
    "truth": "probe",
    "compare_finetune": True,
    "finetune_options": {"epochs": 3, "batch_size": 32, "lr": 0.01, "backbone_lr": 0.01, "bn_policy": "frozen",
                         "unit": "recommended",
                         "auto": {"candidates": "stage_first", "max_trainable_percent": 10.0, "probe_per_class": 10}},
    "out": "runs/demo",
    "seed": 0,
}


__all__ = ["DEMO_DEFAULTS"]
