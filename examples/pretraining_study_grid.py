"""A pre-training study grid: how do the loss and a projection head shape collapse, and does it transfer?

Li et al. (TMLR 2024, section 3.1) ask what to do *before* transfer: features that are less collapsed on the
source data tend to transfer better, up to a point, and the loss, projection heads, augmentation and adversarial
training all move that collapse. ``nctransfer.pretrain`` runs such a study on your architecture and data: it
pre-trains one model per recipe of a grid on the source classes, measures collapse at every layer, transfers each
encoder to the target with a linear probe, and writes ``study.csv``, ``study.json`` and the figures. Re-running
the same command resumes: finished recipes are skipped.

    pip install 'nctransfer[torch,report]'
    python examples/pretraining_study_grid.py --source fashion-mnist:0-4 --target fashion-mnist:5-9 --out runs/study

The grid below is written in Python; the same grid as YAML is ``examples/study_grid.yaml`` (``nctransfer study
--grid``). NCTRANSFER_EXAMPLE_TINY=1: two tiny recipes, one epoch, a few images (the test suite's run).
"""

import argparse
import os

from nctransfer.pretrain import StudyGrid
from nctransfer.pretrain.study import StudyConfig, run_study

TINY = os.environ.get("NCTRANSFER_EXAMPLE_TINY") == "1"
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--source", default="digits:0-4", help="NAME[:CLASSES], e.g. fashion-mnist:0-4")
parser.add_argument("--target", default="digits:5-9")
parser.add_argument("--out", default="runs/study_example")
args = parser.parse_args()

grid = StudyGrid.from_dict({
    # shared by every recipe: a small CNN (any nctransfer.models name works too, e.g. timm:resnet18)
    "defaults": {"arch": "small_cnn", "width": 8 if TINY else 16, "depth": 3 if TINY else 4,
                 "epochs": 1 if TINY else 10, "batch_size": 64},
    # the cartesian product of the axes: the loss x the depth of the projection head discarded after pre-training
    "product": {"loss": ["ce", "mse"] if TINY else ["ce", "mse", "supcon"],
                "head_layers": [0] if TINY else [0, 1, 2]},
})
print("recipes:", ", ".join(r.name for r in grid.recipes))

config = StudyConfig(
    source=args.source, targets=[args.target], out=args.out,
    source_per_class=30 if TINY else 1000,         # source training images per class
    source_test_per_class=10 if TINY else 200,
    target_train_per_class=10 if TINY else 100,    # images per class for the transfer (linear probe)
    target_test_per_class=10 if TINY else 100,
    methods=["logme", "neg_nc1"] if TINY else None,   # transferability scores to compute (None: all)
    plots=not TINY,
    threads=1,
)
result = run_study(grid, config, progress=not TINY)
for row in result.rows:   # one row per (recipe, target): source collapse and transfer accuracy
    print(f"{row['recipe']:14s} source NC1 {row['source_nc1']:.3g}   transfer accuracy {row['probe_accuracy']:.3f}")
print("written", os.path.join(args.out, "study.csv"))
