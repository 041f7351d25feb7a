"""``nctransfer study``: pre-train every recipe of a grid, measure source collapse at every layer and transfer.

Example::

    nctransfer study --source fashion-mnist:0-4 --target fashion-mnist:5-9 digits \\
        --grid examples/study_grid.yaml --out runs/study

Writes ``OUT/study.json``, ``OUT/study.csv``, ``OUT/runs/<recipe>/{checkpoint.pt,result.json}``, the figures
``nc1_layers.png``, ``head_depth.png``, ``source_nc1_vs_accuracy.png``, ``target_nc1_vs_accuracy.png`` and
``OUT/config.yaml`` (the resolved options, accepted back by ``--config``; also ``OUT/cli_config.json``, the name
earlier versions wrote). Running the same command again resumes: finished recipes are skipped, an interrupted one
continues from its last epoch. ``--json`` prints ``{"records": [...], "status": {...}, "files": {...}}``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from nctransfer.cli import options as O
from nctransfer.utils.io import dumps_json, write_json_atomic


def _per_class(text: str) -> int | None:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer (0 = all); got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer (0 = all); got {v}")
    return None if v == 0 else v


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = (
        "dataset specs: NAME[:CLASSES], NAME = fashion-mnist | digits | an ImageFolder directory |\n"
        "torchvision:<Name>; CLASSES = class indices such as 0-4, 5-9 or 0,2,4.\n"
        "grid YAML: 'defaults' (recipe keys for all), 'recipes' (list), 'product' (axes -> value lists);\n"
        "recipe keys: see nctransfer.pretrain.Recipe (arch, loss, head_layers, augment, adv_eps, epochs, ...)."
    )
    p.add_argument("--source", required=True, help="source dataset spec, e.g. fashion-mnist:0-4")
    p.add_argument("--target", required=True, nargs="+", help="target dataset spec(s), e.g. fashion-mnist:5-9 digits")
    p.add_argument("--grid", required=True, metavar="FILE.yaml", help="grid of pre-training recipes (YAML)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (resumable)")
    p.add_argument("--source-per-class", type=_per_class, default=1000, metavar="N",
                   help="source training images per class (0 = all; default 1000)")
    p.add_argument("--source-test-per-class", type=_per_class, default=200, metavar="N",
                   help="source test images per class for the source accuracy (default 200)")
    p.add_argument("--target-train-per-class", type=_per_class, default=100, metavar="N",
                   help="target training images per class for the linear probe and scores (default 100)")
    p.add_argument("--target-test-per-class", type=_per_class, default=100, metavar="N",
                   help="target test images per class (default 100)")
    p.add_argument("--image-size", type=int, default=28, help="square image side for every dataset (default 28)")
    p.add_argument("--seed", type=int, default=0, help="data subsampling seed (recipes carry their own seed)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    O.add_scores(p, help="comma-separated transferability scores to compute (default: every registered one)",
                 space_alias=True)
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="limit torch and BLAS threads to N during the study (1 is often fastest on shared CPUs)")
    p.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                   help="checkpoint directory shared by studies with the same source (default OUT/runs)")
    O.add_data_root(p)
    p.add_argument("--max-recipes", type=int, default=None, metavar="N",
                   help="process at most N new recipes in this call (the study stays resumable)")
    O.add_plots(p)
    p.add_argument("--dry-run", action="store_true", help="print the expanded grid and exit")
    O.add_progress(p)
    O.add_json(p, "the study's records")
    O.add_backend(p, "every unfinished recipe")


def _num(v: Any, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    return f"{100 * v:.1f}" if pct else f"{v:.4g}"


def run(args: argparse.Namespace) -> int:
    # deferred: the pretrain package imports torch (see cli.main)
    from nctransfer.pretrain.grid import StudyGrid
    from nctransfer.pretrain.recipe import Recipe
    from nctransfer.pretrain.study import StudyConfig, run_study

    grid = StudyGrid.from_yaml(args.grid)
    if args.dry_run:
        print(f"{len(grid)} recipe(s) in {args.grid}:")
        base = Recipe().training_dict()
        for r in grid:
            diff = {k: v for k, v in r.training_dict().items() if base.get(k) != v}
            print(f"  {r.name:28s} {r.fingerprint()}  {diff}")
        return 0
    config = StudyConfig(
        source=args.source, targets=list(args.target), out=args.out, source_per_class=args.source_per_class,
        source_test_per_class=args.source_test_per_class, target_train_per_class=args.target_train_per_class,
        target_test_per_class=args.target_test_per_class, image_size=args.image_size, seed=args.seed,
        device=args.device, methods=O.comma_list(args.scores), plots=args.plots, data_root=args.data_root,
        threads=args.threads, checkpoint_dir=args.checkpoint_dir,
    )
    result = run_study(grid, config, progress=args.progress, max_recipes=args.max_recipes,
                       backend=getattr(args, "backend", "local"), ray_address=getattr(args, "ray_address", None))
    O.write_config(args.out, args)
    write_json_atomic(Path(args.out) / "cli_config.json", O.config_options(args))
    missing = len(grid) - len(result.records)
    if missing:
        print(f"{missing} recipe(s) not run yet (--max-recipes); run the same command again to continue.",
              file=sys.stderr)
    if args.json:
        print(dumps_json({"records": result.records, "status": result.status, "files": result.files},
                         indent=None, default=str))
        return 0
    targets = list(args.target)
    header = f"{'recipe':28s} {'status':8s} {'src NC1':>9s} {'src acc':>7s} " + " ".join(
        f"{'acc ' + t[:14]:>18s} {'NC1':>8s}" for t in targets)
    print(header)
    for rec in result.records:
        line = (f"{rec['name']:28s} {result.status.get(rec['name'], 'done'):8s} "
                f"{_num(rec['source']['layers']['penultimate']['nc1']):>9s} "
                f"{_num(rec['source']['test_accuracy'], True):>7s} ")
        line += " ".join(f"{_num(t['probe_accuracy'], True):>18s} {_num(t['layers']['penultimate']['nc1']):>8s}"
                         for t in rec["targets"])
        print(line)
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
    return 0
