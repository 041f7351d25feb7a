"""``nctransfer benchmark``: every score on the offline suite of real pools, with intervals and static baselines.

Example::

    nctransfer benchmark --out runs/bench                  # the whole suite (cached: a rerun reuses everything)
    nctransfer benchmark --quick --out runs/bench-quick    # two models, small subsets: minutes
    nctransfer benchmark --import my_scores --scores logme,ncti,my_score --out runs/mine
    nctransfer benchmark --study runs/suite-study --truth finetune --truth-seeds 2 --out runs/bench-ft

``--import`` imports a module that registers new scores (``@nctransfer.transferability.register``) before the run.
Writes ``OUT/benchmark.json``, ``OUT/benchmark.md`` (one table per pool and the summary across pools, with the
leave-one-pool-out choice of the recommended score), ``OUT/config.yaml`` (the resolved options, accepted back by
``--config``) and each pool's report under ``OUT/<pool>/``. ``--json`` prints ``benchmark.json``'s content instead of
the tables.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from nctransfer.cli import options as O
from nctransfer.exceptions import InputValueError
from nctransfer.utils.io import dumps_json


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    O.add_scores(p, help="scores to run (default: every non-expensive one; 'all' for every one)")
    p.add_argument("--quick", action="store_true", help="the quick suite (two models, small subsets, 32 px)")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (it registers new scores); repeatable")
    p.add_argument("--pools", default=None, metavar="NAME,...", help="run only these pools of the suite")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--study", default=None, metavar="DIR",
                   help="also the pools of a pre-training study's checkpoints (recipes x seeds, one pool per target): "
                        "the suite's study grid is run (or resumed) under DIR")
    p.add_argument("--truth", choices=("probe", "finetune"), default="probe",
                   help="ground truth: linear-probe accuracy (default) or fine-tuning accuracy (SCL FT at the tap "
                        "for layer pools, full FT for model pools and study checkpoints)")
    p.add_argument("--truth-seeds", type=int, default=1, metavar="K",
                   help="--truth finetune: seeds per candidate (mean and its standard error)")
    p.add_argument("--truth-epochs", type=int, default=None, metavar="N", help="--truth finetune: epochs")
    O.add_cache(p)
    O.add_progress(p)
    O.add_json(p, "the suite's results")


def run(args: argparse.Namespace) -> int:
    # deferred: imports torch (see cli.main)
    from nctransfer.pipeline.benchmark import default_pools, default_study_pool, format_suite_md, run_suite

    for mod in args.imports:
        importlib.import_module(mod)
    pools = default_pools(args.quick)
    if args.pools:
        want = [p.strip() for p in args.pools.split(",") if p.strip()]
        unknown = [w for w in want if w not in {p.name for p in pools}]
        if unknown:
            raise InputValueError(f"benchmark: unknown pool(s) {unknown}; the suite has {[p.name for p in pools]}.")
        pools = [p for p in pools if p.name in want]
    if args.study:
        pools.append(default_study_pool(args.study, quick=args.quick))
    methods = args.scores
    if methods and methods != "all":
        methods = O.comma_list(methods)
    O.write_config(args.out, args)
    res = run_suite(pools, methods=methods, out=args.out, cache_dir=O.cache_arg(args),
                    seed=args.seed, progress=args.progress and sys.stderr.isatty(), truth=args.truth,
                    truth_seeds=args.truth_seeds,
                    truth_finetune={"epochs": args.truth_epochs} if args.truth_epochs else None)
    if args.json:
        print(dumps_json(res.to_dict(), indent=None, default=str))
        return 0
    print(format_suite_md(res))
    return 0
