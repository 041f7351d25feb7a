"""``nctransfer select``: choose a model within a fine-tuning budget (scores, then successive halving).

Example::

    nctransfer select --models efficientnet_lite0,efficientnet_lite1,efficientnet_lite2 --data digits \\
        --budget 12 --method scl --out runs/select

Scores every candidate (the recommended score unless ``--score``), plans successive halving that fits
``--budget`` (total fine-tuning epochs over all runs), runs it and prints the chosen model, every stage and the
cost. ``OUT/select.json`` holds the whole record; ``OUT/select_runs.json`` the finished runs -- running the same
command again repeats none of them; ``OUT/config.yaml`` the resolved options (accepted back by ``--config``).
``--method`` was called ``--target`` (still accepted). ``--backend ray [--ray-address ADDR]`` scores each model and
runs every unfinished fine-tuning run of a round as a Ray task (same result as the local backend).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from nctransfer.cli import options as O
from nctransfer.cli.cmd_finetune import METHOD_CHOICES
from nctransfer.utils.io import dumps_json, write_json_atomic


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", required=True, metavar="A,B,...", help="comma-separated model names")
    p.add_argument("--data", required=True, help="dataset spec (fashion-mnist, digits, an ImageFolder directory...)")
    p.add_argument("--budget", required=True, type=float,
                   help="total fine-tuning epochs over all runs (never exceeded)")
    p.add_argument("--method", dest="method", default="scl_ft", choices=METHOD_CHOICES,
                   help="fine-tuning method of the runs: lp, layer, scl or full (default scl_ft; lp when a probe is "
                        "deployed)")
    p.add_argument("--target", dest="method", choices=METHOD_CHOICES, default=O.HIDDEN, help=O.HIDDEN)
    O.legacy_key(p, "target", "method")
    O.add_score(p)
    p.add_argument("--eta", type=int, default=2, help="halving rate (default 2: half the candidates go on)")
    p.add_argument("--min-epochs", type=int, default=1, help="shortest run in epochs (default 1)")
    p.add_argument("--max-epochs", type=int, default=None, help="longest run in epochs (default: no cap)")
    p.add_argument("--per-class", type=int, default=50, help="training images per class (default 50)")
    p.add_argument("--test-per-class", type=int, default=50, help="test images per class (default 50)")
    p.add_argument("--image-size", type=int, default=None, help="input resolution (default: each model's own)")
    p.add_argument("--device", default=None, help="fine-tuning device ('cpu', 'cuda', ...; default: auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (run ledger for resuming, select.json, config.yaml)")
    O.add_backend(p, "each model's scoring and every unfinished fine-tuning run of a round")
    O.add_progress(p)
    O.add_json(p, "the result")


def build_config(args: argparse.Namespace) -> Any:
    """The :class:`~nctransfer.pipeline.select_config.SelectConfig` of the parsed command line."""
    # deferred: the pipeline and fine-tuning packages import torch, and `nctransfer --help` imports this module
    from nctransfer.finetune.config import canonical_method
    from nctransfer.pipeline.select_config import SelectConfig

    return SelectConfig(budget=args.budget, target=canonical_method(args.method, "--method"), score=args.score,
                        eta=args.eta, min_resource=args.min_epochs, max_resource=args.max_epochs,
                        per_class=args.per_class or None, test_per_class=args.test_per_class or None,
                        image_size=args.image_size, seed=args.seed,
                        finetune_options={"device": args.device} if args.device else None,
                        progress=args.progress and sys.stderr.isatty(),
                        backend=getattr(args, "backend", "local"), ray_address=getattr(args, "ray_address", None))


def run(args: argparse.Namespace) -> int:
    config = build_config(args)
    if args.out:
        O.write_config(args.out, args)
    # deferred (imports torch); looked up as a module attribute at run time, so tests can replace it
    select = importlib.import_module("nctransfer.pipeline.select").select
    res = select(args.models, args.data, out=args.out, config=config)
    d = res.to_dict()
    if args.out:
        write_json_atomic(Path(args.out) / "select.json", d)
    if args.json:
        print(dumps_json(d, indent=2, default=str))
        return 0
    print(format_result(d))
    return 0


def format_result(d: dict[str, Any]) -> str:
    """Readable summary of a :class:`~nctransfer.pipeline.select.SelectResult` dict."""
    lines = [f"chosen: {d['chosen']}",
             f"cost: {d['cost']} of {d['budget']:g} {d['unit']}s budget; "
             f"{d['plan']['entrants']} of {len(d['scores'])} candidates entered (ordered by {d['score_method']})"]
    for s in d["stages"]:
        accs = ", ".join(f"{n}={100 * a:.1f}%" for n, a in sorted(s["accuracy"].items(), key=lambda kv: -kv[1]))
        lines.append(f"round {s['round']}: {len(s['candidates'])} x {s['resource']} {d['unit']}(s): {accs} -> kept "
                     f"{', '.join(s['kept'])}")
    if not d["stages"]:
        lines.append("no run fitted the budget: the best-scored candidate is chosen")
    return "\n".join(lines)
