"""Budgeted selection vs fine-tuning everything vs the score alone, on the suite's pools.

For each pool (the bundled EfficientNet-Lite0/1/2 and the random-init control on a dataset; ``models/<data>``: their
penultimate features, ``layers/<data>``: every tap of them):

- (a) train every candidate for ``--epochs`` epochs: its test accuracies are the truth; compute = candidates x
  epochs. ``--target``: ``cached_probe`` (default: a linear softmax classifier trained by mini-batch SGD, momentum
  0.9, cosine schedule, on the candidate's frozen features extracted once -- the features of a layer pool's taps
  come from one pass), or a fine-tuning method of :func:`nctransfer.finetune.finetune` (``scl_ft``, ``full_ft``,
  ``linear_probe``; model pools only);
- (b) the recommended score alone picks the top-scored candidate (no training);
- (c) ``nctransfer.select``'s successive halving at 10%, 20% and 40% of (a)'s compute.

Reported per pool: top-1 regret (points of accuracy lost against (a)'s best) and compute (epochs) of each. Target:
(c) at <= 25% of (a)'s compute within 0.5 points of (a)'s choice on every pool. Runs are cached per
``(candidate, epochs)`` within one invocation, so (c)'s full-length runs reuse (a)'s; shorter runs are runs of
their own (a cosine schedule over fewer epochs), as in ``select``.

    python benchmarks/bench_select.py [--pools models/digits,layers/digits] [--epochs 8] [--target cached_probe]
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
    p.add_argument("--pools", default=None, help="comma list of models/<data> and layers/<data> (default: "
                   "models/ and layers/ of --datasets)")
    p.add_argument("--datasets", default="digits")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--target", default="cached_probe")
    p.add_argument("--lr", type=float, default=0.05, help="learning rate of --target cached_probe")
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--test-per-class", type=int, default=50)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--fractions", default="0.1,0.2,0.4")
    p.add_argument("--out", default="runs/bench_select")
    p.add_argument("--cache-dir", default="default", help="the pipeline's cache (features reused across runs)")
    args = p.parse_args()

    import torch

    from nctransfer.finetune import finetune
    from nctransfer.pipeline import rank_models
    from nctransfer.pipeline.recommended import DEFAULT_RECOMMENDED
    from nctransfer.pipeline.select import successive_halving

    torch.set_num_threads(1)
    models = args.models.split(",")
    pools = args.pools.split(",") if args.pools else [f"{kind}/{d}" for kind in ("models", "layers")
                                                        for d in args.datasets.split(",")]
    rows = []
    for pool in pools:
        kind, data = pool.split("/", 1)
        taps = "penultimate" if kind == "models" else "all"
        if kind not in ("models", "layers") or (kind == "layers" and args.target != "cached_probe"):
            raise SystemExit(f"bench_select: unknown pool {pool!r} for --target {args.target}")
        cache: dict[tuple[str, int], float] = {}
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = rank_models(models, data, taps=taps, methods=[DEFAULT_RECOMMENDED], per_class=args.per_class,
                              test_per_class=args.test_per_class, image_size=args.image_size, progress=False,
                              cache_dir=None if args.cache_dir == "none" else args.cache_dir)
        names = [c["name"] for c in res["candidates"]]
        feats = _features(res, data, args) if args.target == "cached_probe" else {}

        def run(name: str, epochs: int) -> float:
            key = (name, int(epochs))
            if key not in cache:
                if args.target == "cached_probe":
                    cache[key] = _probe(*feats[name], epochs=int(epochs), lr=args.lr)
                    return cache[key]
                base = name.split(":", 1)[1] if name.startswith("random:") else name
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = finetune(base, data, data, method=args.target, epochs=int(epochs), per_class=args.per_class,
                                 test_per_class=args.test_per_class, image_size=args.image_size, seed=0,
                                 pretrained=not name.startswith("random:"), progress=False, device="cpu")
                cache[key] = float(r.test_accuracy)
            return cache[key]

        truth = {m: run(m, args.epochs) for m in names}
        best = max(truth.values())
        compute_a = len(names) * args.epochs
        scores = {m: (res["scores"][m].get(DEFAULT_RECOMMENDED) if res["scores"][m].get(DEFAULT_RECOMMENDED)
                      is not None else float("nan")) for m in names}
        top = max(names, key=lambda m: scores[m] if scores[m] == scores[m] else -1e9)
        row = {"pool": pool, "target": args.target, "truth": truth, "scores": scores,
               "a": {"chosen": max(truth, key=truth.get), "best": best, "regret": 0.0, "compute": compute_a},
               "b": {"chosen": top, "regret": best - truth[top], "compute": 0}}
        for frac in [float(f) for f in args.fractions.split(",")]:
            sel = successive_halving(scores, run, frac * compute_a, max_resource=args.epochs)
            row[f"c{int(round(100 * frac))}"] = {"chosen": sel.chosen, "regret": best - truth[sel.chosen],
                                                 "compute": sel.cost, "rounds": [list(r) for r in sel.plan.rounds]}
        row["seconds"] = time.perf_counter() - t0
        print(f"{pool}: {len(names)} candidates, best {100 * best:.1f}% ({row['a']['chosen']}), "
              f"{row['seconds']:.0f} s", file=sys.stderr)
        rows.append(row)

    keys = [k for k in rows[0] if k.startswith("c")] if rows else []
    lines = ["| pool | (a) fine-tune all: compute | (b) score alone: regret | "
             + " | ".join(f"(c) select {k[1:]}%: regret / compute" for k in keys) + " |",
             "| --- | ---: | ---: | " + " | ".join("---:" for _ in keys) + " |"]
    for r in rows:
        lines.append(f"| {r['pool']} ({len(r['truth'])}) | {r['a']['compute']} epochs, best {100 * r['a']['best']:.1f}% | {100 * r['b']['regret']:.1f} pt | "
                     + " | ".join(f"{100 * r[k]['regret']:.1f} pt / {r[k]['compute']} ({100 * r[k]['compute'] / r['a']['compute']:.0f}%)"
                                  for k in keys) + " |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_select.json").write_text(json.dumps(rows, indent=2))
    (out / "bench_select.md").write_text(table + "\n")
    return 0


def _features(res: dict, data: str, args: argparse.Namespace) -> dict[str, tuple]:
    """Frozen train/test features of every candidate of a ranked pool (the same splits, seeds and feature cache as
    ``rank_models``: extraction is a cache hit after the ranking)."""
    import torch

    from nctransfer.data import load_dataset
    from nctransfer.extract import extract
    from nctransfer.models import load_model

    root = (res.get("config") or {}).get("cache_dir")  # the cache root rank_models resolved
    cache = None if root is None else Path(root)
    out: dict[str, tuple] = {}
    by_model: dict[str, list[dict]] = {}
    for c in res["candidates"]:
        by_model.setdefault(c["model"], []).append(c)
    for label, cands in by_model.items():
        control = label.startswith("random:")
        torch.manual_seed(0)
        model = load_model(label.split(":", 1)[1] if control else label, pretrained=not control)
        model.eval()
        train = load_dataset(data, "train", model=model, image_size=args.image_size, per_class=args.per_class, seed=0)
        test = load_dataset(data, "test", model=model, image_size=args.image_size, per_class=args.test_per_class,
                            seed=1)
        taps = [c["tap"] for c in cands]
        kw = dict(store_features=True, progress=False, batch_size=64)
        if cache is not None:
            kw["cache_dir"] = cache / "features"
        r_tr, r_te = extract(model, train, taps, **kw), extract(model, test, taps, **kw)
        for c in cands:
            out[c["name"]] = (r_tr[c["tap"]].features, r_tr[c["tap"]].labels, r_te[c["tap"]].features,
                              r_te[c["tap"]].labels)
    return out


def _probe(Xtr, ytr, Xte, yte, *, epochs: int, lr: float, batch_size: int = 32, seed: int = 0) -> float:
    """Test accuracy of a linear softmax classifier trained for ``epochs`` epochs by mini-batch SGD (momentum 0.9,
    weight decay 5e-4, cosine schedule to 0) on standardised frozen features."""
    import numpy as np
    import torch

    Xtr = np.asarray(Xtr, dtype=np.float64)
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6
    xt = torch.as_tensor((Xtr - mu) / sd, dtype=torch.float32)
    xe = torch.as_tensor((np.asarray(Xte, dtype=np.float64) - mu) / sd, dtype=torch.float32)
    yt, ye = torch.as_tensor(np.asarray(ytr), dtype=torch.long), torch.as_tensor(np.asarray(yte), dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = torch.nn.Linear(xt.shape[1], int(max(yt.max(), ye.max())) + 1)
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    steps = epochs * -(-len(yt) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    for _ in range(epochs):
        for idx in torch.randperm(len(yt), generator=g).split(batch_size):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(head(xt[idx]), yt[idx]).backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        return float((head(xe).argmax(1) == ye).float().mean())


if __name__ == "__main__":
    sys.exit(main())
