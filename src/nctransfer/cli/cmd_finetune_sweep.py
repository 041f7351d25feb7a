"""``nctransfer finetune-sweep``: the data-scarcity sweep of Li et al., TMLR 2024, figure 11 (docs/methods.md#finetuning).

The four methods on class-balanced, nested training subsets of the given sizes (default the paper's
``10,24,59,142,344,835,2022,4898`` images in total; ``--size-mode per_class`` for images per class), all evaluated
on the same test set. Writes ``DIR/sweep.csv``, ``DIR/sweep.md``, ``DIR/sweep.png``, ``DIR/config.yaml`` (the
resolved options, accepted back by ``--config``) and one run directory per (size, method) under ``DIR/runs/``;
finished runs are reused and interrupted ones resumed when run again (``--no-resume``: recomputed). ``--json``
prints the table as ``{"rows": [{column: value}, ...], "files": {...}}``.

Examples:
    nctransfer finetune-sweep --model efficientnet_lite0 --data fashion-mnist --unit blocks.5.0 \\
        --sizes 10,59,344 --epochs 3 --image-size 64 --test-per-class 100 --lr 0.05 --out runs/sweep
"""

from __future__ import annotations

import argparse
import sys

from nctransfer.cli import options as O
from nctransfer.cli.cmd_finetune import add_data_model_options, config_from_args, write_command
from nctransfer.utils.io import dumps_json


def _sizes(s: str) -> list[int]:
    try:
        out = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes expects comma-separated integers; got {s!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"--sizes expects positive integers; got {s!r}")
    return out


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=_sizes, default=[10, 24, 59, 142, 344, 835, 2022, 4898],
                        help="training-set sizes, comma-separated (Li et al., TMLR 2024: 10,24,59,142,344,835,2022,4898)")
    parser.add_argument("--size-mode", choices=("total", "per_class"), default="total",
                        help="sizes count images in total (paper) or per class")
    parser.add_argument("--methods", default="lp,layer,scl,full",
                        help="comma-separated fine-tuning methods (lp,layer,scl,full; default %(default)s)")
    parser.add_argument("--min-steps", type=int, default=None,
                        help="train small subsets for more epochs so that every run makes at least this many "
                             "optimiser steps (default: --epochs for every size)")
    parser.add_argument("--unit", default=None, help="unit of layer/scl: a name, an index or 'auto' (required when "
                                                     "layer or scl is run)")
    add_data_model_options(parser)
    O.add_resume(parser, default=True)
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    O.add_json(parser, "the sweep table")
    O.add_backend(parser, "every unfinished run")


def run(args: argparse.Namespace) -> int:
    from nctransfer.finetune import data_scarcity_sweep  # deferred: imports torch (see cli.main)

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    base = config_from_args(args, "linear_probe")
    write_command(args.out, args, command_json=False)
    res = data_scarcity_sweep(
        args.model, args.data, args.test_data if args.test_data is not None else args.data, sizes=args.sizes,
        size_mode=args.size_mode, methods=methods, unit=args.unit, skip=args.skip, config=base, out_dir=args.out,
        resume=args.resume, test_per_class=args.test_per_class or None, pretrained=args.pretrained, min_steps=args.min_steps,
        backend=getattr(args, "backend", "local"), ray_address=getattr(args, "ray_address", None),
    )
    if args.json:
        files = {"csv": res.csv_path, "markdown": res.markdown_path, "plot": res.plot_path}
        print(dumps_json({"rows": res.table.to_dict(orient="records"), "files": files}, indent=None, default=str))
        return 0
    print(res.markdown_path.read_text() if res.markdown_path else res.table.to_string())
    print(f"wrote {res.csv_path}, {res.markdown_path}, {res.plot_path}", file=sys.stderr)
    return 0
