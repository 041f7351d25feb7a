"""Budgeted selection vs fine-tuning everything vs the score alone, on the suite's model pools.

For each pool (the bundled EfficientNet-Lite0/1/2 and the random-init control on a dataset):

- (a) fine-tune every candidate for ``--epochs`` epochs (``--target``: SCL FT, full FT or a linear probe): its test
  accuracies are the truth; compute = candidates x epochs;
- (b) the recommended score alone picks the top-scored candidate (no fine-tuning);
- (c) ``nctransfer.select`` (successive halving) at 10%, 20% and 40% of (a)'s compute.

Reported per pool: top-1 regret (points of accuracy lost against (a)'s best) and compute (epochs) of each. Target:
(c) at <= 25% of (a)'s compute within 0.5 points of (a)'s choice on every pool. Runs are cached per
``(model, epochs)`` within one invocation, so (c)'s full-length runs reuse (a)'s.

    python benchmarks/bench_select.py [--datasets digits,fashion-mnist] [--epochs 8] [--target linear_probe]
        [--per-class 20] [--test-per-class 50] [--image-size 32] [--out runs/bench_select]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

MODELS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "random:efficientnet_lite0"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="digits")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--target", default="linear_probe")
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--test-per-class", type=int, default=50)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--fractions", default="0.1,0.2,0.4")
    p.add_argument("--out", default="runs/bench_select")
    args = p.parse_args()

    import torch

    from nctransfer.finetune import finetune
    from nctransfer.pipeline import rank_models
    from nctransfer.pipeline.recommended import DEFAULT_RECOMMENDED
    from nctransfer.pipeline.select import successive_halving

    torch.set_num_threads(1)
    models = args.models.split(",")
    rows = []
    for data in args.datasets.split(","):
        cache: dict[tuple[str, int], float] = {}

        def run(name: str, epochs: int) -> float:
            key = (name, int(epochs))
            if key not in cache:
                base = name.split(":", 1)[1] if name.startswith("random:") else name
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = finetune(base, data, data, method=args.target, epochs=int(epochs), per_class=args.per_class,
                                 test_per_class=args.test_per_class, image_size=args.image_size, seed=0,
                                 pretrained=not name.startswith("random:"), progress=False, device="cpu")
                cache[key] = float(r.test_accuracy)
            return cache[key]

        t0 = time.perf_counter()
        truth = {m: run(m, args.epochs) for m in models}
        best = max(truth.values())
        compute_a = len(models) * args.epochs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = rank_models(models, data, methods=[DEFAULT_RECOMMENDED], per_class=args.per_class,
                              test_per_class=args.test_per_class, image_size=args.image_size, progress=False)
        scores = {m: (res["scores"][m].get(DEFAULT_RECOMMENDED) if res["scores"][m].get(DEFAULT_RECOMMENDED)
                      is not None else float("nan")) for m in models}
        top = max(models, key=lambda m: scores[m] if scores[m] == scores[m] else -1e9)
        row = {"pool": f"models/{data}", "truth": truth, "scores": scores,
               "a": {"regret": 0.0, "compute": compute_a},
               "b": {"chosen": top, "regret": best - truth[top], "compute": 0}}
        for frac in [float(f) for f in args.fractions.split(",")]:
            sel = successive_halving(scores, run, frac * compute_a, max_resource=args.epochs)
            row[f"c{int(round(100 * frac))}"] = {"chosen": sel.chosen, "regret": best - truth[sel.chosen],
                                                 "compute": sel.cost, "rounds": [list(r) for r in sel.plan.rounds]}
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)

    keys = [k for k in rows[0] if k.startswith("c")] if rows else []
    lines = ["| pool | (a) fine-tune all: compute | (b) score alone: regret | "
             + " | ".join(f"(c) select {k[1:]}%: regret / compute" for k in keys) + " |",
             "| --- | ---: | ---: | " + " | ".join("---:" for _ in keys) + " |"]
    for r in rows:
        lines.append(f"| {r['pool']} | {r['a']['compute']} epochs | {100 * r['b']['regret']:.1f} pt | "
                     + " | ".join(f"{100 * r[k]['regret']:.1f} pt / {r[k]['compute']} ({100 * r[k]['compute'] / r['a']['compute']:.0f}%)"
                                  for k in keys) + " |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_select.json").write_text(json.dumps(rows, indent=2))
    (out / "bench_select.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
