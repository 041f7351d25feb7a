"""``nctransfer demo`` (= ``make demo``): the main job on built-in defaults.

Ranks the three bundled ImageNet models ``efficientnet_lite0/1/2`` and a randomly initialised
``efficientnet_lite0`` control -- every tap of each -- on Fashion-MNIST (digits when absent) by every
transferability score against linear-probe accuracy, draws the layer-wise collapse, compares a linear probe with
SCL FT on the recommended model, and writes the report (``runs/demo/report.html``). Every default can be changed
by a flag or a ``--config FILE.yaml``; the resolved configuration is written to ``OUT/config.yaml`` (accepted back
by ``--config``). ``--json`` prints ``results.json`` instead of the summary.
"""

from __future__ import annotations

import argparse

from nctransfer._demo_defaults import DEMO_DEFAULTS
from nctransfer.cli import options as O
from nctransfer.cli._output import print_ranking_outcome


def add_parser(parser: argparse.ArgumentParser) -> None:
    D = DEMO_DEFAULTS

    parser.add_argument("--out", default=D["out"], help="output directory (default: %(default)s)")
    parser.add_argument("--data", default="auto",
                        help="dataset: 'auto' (fashion-mnist when its files are installed, else digits), "
                             "'fashion-mnist', 'digits', an ImageFolder directory or torchvision:<Name>")
    parser.add_argument("--models", default=",".join(D["models"]),
                        help="comma-separated models; prefix 'random:' = random init control (default: %(default)s)")
    parser.add_argument("--taps", default=D["taps"], help="'all' (every tap) or 'penultimate' (default: %(default)s)")
    parser.add_argument("--per-class", type=int, default=D["per_class"],
                        help="training images per class (default: %(default)s)")
    parser.add_argument("--test-per-class", type=int, default=D["test_per_class"],
                        help="test images per class (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=D["image_size"], help="input size in pixels "
                        "(default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=D["finetune_options"]["epochs"],
                        help="epochs of the linear probe vs SCL FT comparison (default: %(default)s)")
    parser.add_argument("--unit", default=D["finetune_options"]["unit"],
                        help="SCL FT unit: 'recommended' (the tap of the top-ranked candidate), 'auto' (chosen by "
                             "collapse under a 10%% parameter budget) or a unit name such as blocks.5.0 "
                             "(default: %(default)s)")
    O.add_compare_finetune(parser, default=True)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when available)")
    O.add_cache(parser)
    parser.add_argument("--seed", type=int, default=D["seed"], help="seed (default: %(default)s)")
    O.add_progress(parser)
    O.add_json(parser, "results.json")


def run(args: argparse.Namespace) -> int:
    # deferred: imports torch (see cli.main)
    from nctransfer.pipeline.demo import run_demo

    ft = dict(DEMO_DEFAULTS["finetune_options"])
    ft["epochs"] = args.epochs
    ft["unit"] = args.unit
    results = run_demo(
        models=[m.strip() for m in args.models.split(",") if m.strip()],
        data=None if args.data == "auto" else args.data,
        taps=args.taps, per_class=args.per_class, test_per_class=args.test_per_class, image_size=args.image_size,
        compare_finetune=args.compare_finetune, finetune_options=ft, device=args.device,
        cache_dir=O.cache_arg(args), seed=args.seed,
        out=args.out, progress=args.progress, config={"command": "demo", "cli": O.config_options(args)},
    )
    return print_ranking_outcome(results, args.out, args.json,
                                 also=f"(also {args.out}/report.md, results.json, scores.csv, config.yaml)")
