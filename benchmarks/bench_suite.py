"""The benchmark suite: every score on every offline pool, with 95% intervals, static baselines and the random score.

Pools (``nctransfer.pipeline.benchmark.default_pools``): every tap of EfficientNet-Lite0/1/2 plus the random-init
control on Fashion-MNIST (digits when the Debian package is missing), on digits, few-shot (10 training images per
class) versions of both, Fashion-MNIST's four look-alike tops; and the penultimate features of the three models
plus the control on both datasets; with ``--study DIR`` also the checkpoints of a pre-training study (recipes x
seeds) on its targets. Ground truth: linear-probe test accuracy (its per-sample correctness resampled by the
bootstrap), or ``--truth finetune`` (SCL FT at the tap for layer pools, full FT for model pools and study
checkpoints; ``--truth-seeds`` seeds, standard error from the test size and the seeds). The summary gives each
score's mean weighted tau, how often it beats every static baseline and the random score, and the leave-one-pool-out
choice of the recommended score.

    python benchmarks/bench_suite.py [--out runs/bench_suite] [--quick] [--methods all] [--pools layers/digits,...]
        [--study runs/suite_study] [--truth finetune --truth-seeds 2 --truth-epochs 3]

Features and probe results are cached by the pipeline: a re-run takes seconds. Writes ``OUT/benchmark.json`` and
``OUT/benchmark.md`` (the README table) and one report per pool.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench_suite")
    p.add_argument("--quick", action="store_true", help="two models, 20/30 images per class, 32 px")
    p.add_argument("--methods", default=None, help="comma-separated scores, 'all', or default (non-expensive)")
    p.add_argument("--pools", default=None, help="comma-separated pool names (default: all)")
    p.add_argument("--blas-threads", type=int, default=1)
    p.add_argument("--truth", choices=("probe", "finetune"), default="probe",
                   help="ground truth: linear probe (default) or fine-tuning (SCL FT at a tap, full FT of a model)")
    p.add_argument("--truth-seeds", type=int, default=1, help="fine-tuning seeds per candidate (--truth finetune)")
    p.add_argument("--truth-epochs", type=int, default=None, help="fine-tuning epochs (--truth finetune)")
    p.add_argument("--study", default=None, metavar="DIR",
                   help="also the pools of a pre-training study's checkpoints: run (or resume) the suite's study "
                        "grid under DIR (nctransfer.pipeline.benchmark.default_study_pool)")
    args = p.parse_args()

    from nctransfer.pipeline.benchmark import default_pools, default_study_pool, format_suite_md, run_suite
    from nctransfer.transferability import set_blas_threads

    set_blas_threads(args.blas_threads)
    pools = default_pools(args.quick)
    if args.pools:
        want = set(args.pools.split(","))
        pools = [q for q in pools if q.name in want]
    if args.study:
        pools.append(default_study_pool(args.study, quick=args.quick))
    methods = args.methods if args.methods in (None, "all") else args.methods.split(",")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_suite(pools, methods=methods, out=args.out, progress=sys.stderr.isatty(), truth=args.truth,
                        truth_seeds=args.truth_seeds,
                        truth_finetune={"epochs": args.truth_epochs} if args.truth_epochs else None)
    print(format_suite_md(res))
    print(f"({time.perf_counter() - t0:.0f} s; {args.out}/benchmark.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
