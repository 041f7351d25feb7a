"""Which transferability score ranks real models best?

Pools available offline: the three bundled ImageNet models ``efficientnet_lite0/1/2`` and a randomly initialised
``efficientnet_lite0`` control, as 4 penultimate candidates or as every tap of each (78 candidates), on
Fashion-MNIST and on scikit-learn's digits (64-pixel inputs, 50 training and up to 50 test images per class).
Ground truth: linear-probe test accuracy of each candidate (docs/methods.md#finetuning). For every score: weighted Kendall
tau (the published tables' measure), Kendall tau, top-1 regret, and where the random control is ranked.

Rank-average ensembles (``nctransfer.pipeline.recommended``) are functions of the per-candidate scores, so every
pair and triple of feature-based scores is also evaluated from the same run; a leave-one-pool-out check shows
whether choosing on three pools carries over to the fourth.

    python benchmarks/bench_rank_real.py [--out runs/bench_rank] [--per-class 50] [--quick]

Everything is cached (features and stage results): a re-run takes seconds. Results go to ``OUT/summary.json``
and ``OUT/summary.md`` (and one report per pool in ``OUT/<pool>/``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

MODELS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "random:efficientnet_lite0"]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench_rank")
    p.add_argument("--per-class", type=int, default=50)
    p.add_argument("--test-per-class", type=int, default=50)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--datasets", default="fashion-mnist,digits")
    p.add_argument("--quick", action="store_true", help="penultimate pools only, 20 images per class")
    p.add_argument("--max-ensemble", type=int, default=3, help="largest rank-average ensemble searched")
    return p.parse_args()


def weighted_tau(score: dict, truth: dict) -> float:
    from nctransfer.transferability import evaluate

    return evaluate(score, truth)["weighted_tau"]


def tau0(v) -> float:
    """A weighted tau for averaging: NaN/None (a score constant on the pool, which cannot rank it) counts as 0."""
    return 0.0 if v is None or not np.isfinite(v) else float(v)


def main() -> int:
    a = parse()
    if a.quick:
        a.per_class = a.test_per_class = 20
    from nctransfer.pipeline import rank_models
    from nctransfer.pipeline.recommended import ENSEMBLES, percentile_ranks
    from nctransfer.transferability import METHODS

    out = Path(a.out)
    pools: dict[str, dict] = {}
    for data in [d.strip() for d in a.datasets.split(",") if d.strip()]:
        for taps in (["penultimate"] if a.quick else ["penultimate", "all"]):
            name = f"{data}/{taps}"
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = rank_models(MODELS, data, taps=taps, methods="all" if taps == "penultimate" else None,
                                  per_class=a.per_class, test_per_class=a.test_per_class, image_size=a.image_size,
                                  out=out / name.replace("/", "_"), progress=False)
            pools[name] = res
            print(f"{name}: {len(res['candidates'])} candidates in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    # ----------------------------------------------------------------- single scores
    methods = [m for m in pools[next(iter(pools))]["evaluation"] if m not in ENSEMBLES]
    rows = {}
    for m in methods:
        row = {}
        for pname, res in pools.items():
            e = res["evaluation"].get(m) or {}
            order = [c for c in res["ranking"]] if res["recommended_score"] == m else None
            scores = {c: v.get(m) for c, v in res["scores"].items()}
            finite = {c: v for c, v in scores.items() if v is not None and np.isfinite(v)}
            ctl = [c["name"] for c in res["candidates"] if c["control"]]
            ranked = sorted(finite, key=lambda c: -finite[c])
            ctl_best = min((ranked.index(c) + 1 for c in ctl if c in finite), default=None)
            row[pname] = {"weighted_tau": e.get("weighted_tau"), "kendall": e.get("kendall"),
                          "top1_regret": e.get("top1_regret"), "best_control_rank": ctl_best,
                          "n_scored": len(finite)}
            del order
        rows[m] = row

    # ----------------------------------------------------------------- rank-average ensembles (post hoc)
    feature_methods = [m for m in methods if not METHODS[m].needs_probs and m not in ("nleep", "parc")
                       and all(rows[m][p]["n_scored"] == len(pools[p]["candidates"]) for p in pools)]

    def ens_tau(combo: tuple[str, ...], pname: str) -> float:
        res = pools[pname]
        names = [c["name"] for c in res["candidates"]]
        ranks = np.vstack([percentile_ranks([res["scores"][n][m] for n in names]) for m in combo])
        s = dict(zip(names, np.nanmean(ranks, axis=0)))
        return weighted_tau(s, res["truth"]["accuracy"])

    ens = {}
    for k in range(2, a.max_ensemble + 1):
        for combo in itertools.combinations(feature_methods, k):
            ens[combo] = {p: ens_tau(combo, p) for p in pools}

    def mean_tau(d: dict) -> float:
        return float(np.mean([tau0(v) for v in d.values()]))

    singles = {m: {p: rows[m][p]["weighted_tau"] for p in pools} for m in feature_methods}
    # leave-one-pool-out: choose the best (single or ensemble) on 3 pools, report it on the 4th
    candidates = {**{(m,): v for m, v in singles.items()}, **ens}
    lopo = {}
    for held in pools:
        train = [p for p in pools if p != held]
        best = max(candidates, key=lambda c: np.mean([tau0(candidates[c][p]) for p in train]))
        best_single = max(singles, key=lambda m: np.mean([tau0(singles[m][p]) for p in train]))
        lopo[held] = {"chosen": "+".join(best), "held_out_tau": candidates[best][held],
                      "chosen_single": best_single, "single_held_out_tau": singles[best_single][held]}

    summary = {"pools": {p: {"candidates": len(r["candidates"]), "timings": r["timings"],
                             "recommended_score": r["recommended_score"]} for p, r in pools.items()},
               "single": rows,
               "ensembles_top": sorted(({"components": list(c), "taus": v, "mean": mean_tau(v)}
                                        for c, v in ens.items()), key=lambda d: -d["mean"])[:15],
               "leave_one_pool_out": lopo}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))

    # ----------------------------------------------------------------- tables
    pnames = list(pools)
    lines = ["| score | " + " | ".join(pnames) + " | mean | control ranked last? |",
             "| --- | " + " | ".join("---:" for _ in pnames) + " | ---: | --- |"]
    order = sorted(methods, key=lambda m: -np.mean([tau0(rows[m][p]["weighted_tau"]) for p in pnames]))
    for m in order:
        taus = [rows[m][p]["weighted_tau"] for p in pnames]
        last = []
        for p in pnames:
            r = rows[m][p]
            if p.endswith("/penultimate") and r["best_control_rank"] is not None:
                last.append("yes" if r["best_control_rank"] == r["n_scored"] else f"no ({r['best_control_rank']})")
        cells = [f"{t:+.3f}" if t is not None and np.isfinite(t) else "—" for t in taus]
        mean = f"{np.mean([tau0(t) for t in taus]):+.3f}" if all(rows[m][p]["n_scored"] for p in pnames) else "—"
        lines.append(f"| {METHODS[m].title} (`{m}`) | " + " | ".join(cells) + f" | {mean} | {', '.join(last)} |")
    lines += ["", "Best rank-average ensembles (weighted tau per pool, mean):", "",
              "| components | " + " | ".join(pnames) + " | mean |",
              "| --- | " + " | ".join("---:" for _ in pnames) + " | ---: |"]
    for d in summary["ensembles_top"][:8]:
        lines.append(f"| {' + '.join(d['components'])} | " + " | ".join(f"{tau0(d['taus'][p]):+.3f}" for p in pnames)
                     + f" | {d['mean']:+.3f} |")
    lines += ["", "Leave one pool out (choose on the other three by mean weighted tau, evaluate on the held-out):", "",
              "| held-out pool | chosen (single or ensemble) | tau | chosen single | tau |",
              "| --- | --- | ---: | --- | ---: |"]
    for p, d in lopo.items():
        lines.append(f"| {p} | {d['chosen']} | {tau0(d['held_out_tau']):+.3f} | {d['chosen_single']} | "
                     f"{tau0(d['single_held_out_tau']):+.3f} |")
    lines += ["", "Time per pool (seconds, first run / stages):", ""]
    for p, r in pools.items():
        lines.append(f"- {p}: " + ", ".join(f"{k} {v:.1f}" for k, v in r["timings"].items()))
    text = "\n".join(lines)
    (out / "summary.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
