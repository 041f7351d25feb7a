"""Pre-training study on Fashion-MNIST (Li et al., TMLR 2024, section 3.1, table 1, figures 2-5).

A small CNN (4 conv blocks, 128-d features) is pre-trained on Fashion-MNIST classes 0-4 under the recipes of
``examples/study_grid.yaml`` (CE / MSE / SupCon x projection heads 0-2, augmentation levels 2-4, PGD radii 1/255
and 8/255, label smoothing), then transferred with a linear probe to Fashion-MNIST classes 5-9 (unseen classes) and
to scikit-learn digits (another dataset). An untrained network of the same architecture is evaluated as the
"random features" reference of Li et al., TMLR 2024 (footnote 2). The script prints a table and checks Li et al.'s (TMLR 2024) claims:

1. table 1: MSE collapses the source features most and transfers worst; an MLP projection head helps SupCon;
2. figure 3: projection heads keep the encoder less collapsed and improve transfer, plateauing;
3. figure 4: less source collapse (higher source NC1) goes with better transfer, up to a threshold;
4. figure 5: lower NC1 on the target data goes with higher transfer accuracy.

Usage::

    python benchmarks/study_fashion_mnist.py                 # full study (~15-25 CPU minutes, resumable)
    python benchmarks/study_fashion_mnist.py --quick         # 2 recipes, seconds (CI)
    python benchmarks/study_fashion_mnist.py --export-figures docs/img --figure-prefix pretrain_

Outputs go to ``--out`` (default ``benchmarks/results/study_fashion_mnist[_quick]``): the study files of
``nctransfer study`` plus ``summary.json`` and ``summary.md``. Re-running resumes where it stopped.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _fashion_available() -> bool:
    from nctransfer.data.arrays import find_fashion_mnist
    from nctransfer.exceptions import NotFoundError

    try:
        find_fashion_mnist()
        return True
    except NotFoundError:
        return False


def random_init_record(source: Any, targets: list[Any], config: Any, recipe: Any) -> dict[str, Any]:
    """Study record of the untrained network of ``recipe``'s architecture ("random features")."""
    from nctransfer.pretrain.augment import channel_stats
    from nctransfer.pretrain.nets import build_net
    from nctransfer.pretrain.recipe import Recipe
    from nctransfer.pretrain.study import evaluate_model
    from nctransfer.pretrain.trainer import PretrainedModel

    r = Recipe.from_dict({**recipe.to_dict(), "name": "random-init"})
    classes = sorted(int(c) for c in np.unique(source.y_train))
    net = build_net(r, in_channels=source.X_train.shape[1], image_size=source.X_train.shape[2],
                    num_classes=len(classes)).eval()
    mean, std = channel_stats(source.X_train)
    model = PretrainedModel(r, net, mean, std, classes, source.X_train.shape[1], source.X_train.shape[2], [], False)
    rec = evaluate_model(model, source, targets, config)
    rec["note"] = "untrained network (random features), not a recipe of the grid"
    return rec


def _spearman(x: list[float], y: list[float]) -> float:
    from nctransfer.pretrain.plots import spearman

    return spearman(x, y)


def _pearson_log(x: list[float], y: list[float]) -> float:
    x_, y_ = np.log(np.asarray(x, float)), np.asarray(y, float)
    ok = np.isfinite(x_) & np.isfinite(y_)
    if ok.sum() < 3:
        return float("nan")
    return float(np.corrcoef(x_[ok], y_[ok])[0, 1])


def _gmean(v: list[float]) -> float:
    v = [x for x in v if x is not None and math.isfinite(x) and x > 0]
    return float(np.exp(np.mean(np.log(v)))) if v else float("nan")


def _mean_std(v: list[float]) -> tuple[float, float]:
    a = np.asarray([x for x in v if x is not None and math.isfinite(x)], float)
    if not len(a):
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else float("nan")


def base_name(name: str) -> str:
    """Recipe name without the ``-s<seed>`` suffix added by ``--seeds``."""
    return re.sub(r"-s\d+$", "", name)


def summarise(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per recipe (seeds pooled): geometric-mean NC1 (source, every target), mean and std of the accuracies, mean of
    every score."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(base_name(r["name"]), []).append(r)
    n_t = len(records[0]["targets"])
    out: dict[str, dict[str, Any]] = {}
    for base, rs in groups.items():
        row: dict[str, Any] = {"name": base, "n_seeds": len(rs), "recipe": rs[0]["recipe"],
                               "source_nc1": _gmean([r["source"]["layers"]["penultimate"]["nc1"] for r in rs]),
                               "source_test_accuracy": _mean_std([r["source"]["test_accuracy"] for r in rs]),
                               "train_seconds": float(np.mean([r.get("train_seconds", 0) for r in rs])),
                               "source_layers_nc1": {t: _gmean([r["source"]["layers"][t]["nc1"] for r in rs])
                                                     for t in rs[0]["source"]["taps"]},
                               "targets": []}
        for j in range(n_t):
            ts = [r["targets"][j] for r in rs]
            row["targets"].append({
                "target": ts[0]["target"],
                "accuracy": _mean_std([t["probe_accuracy"] for t in ts]),
                "target_nc1": _gmean([t["layers"]["penultimate"]["nc1"] for t in ts]),
                "scores": {m: _mean_std([t["scores"].get(m, float("nan")) for t in ts])[0] for m in ts[0]["scores"]},
            })
        out[base] = row
    return out


def analyse(records: list[dict[str, Any]], random_rec: dict[str, Any] | None) -> dict[str, Any]:
    """Numbers behind each of Li et al.'s (TMLR 2024) claims (see the module docstring), on seed-pooled recipes."""
    summ = summarise(records)
    names = list(summ)
    targets = [t["target"] for t in records[0]["targets"]]
    src = {n: summ[n]["source_nc1"] for n in names}
    out: dict[str, Any] = {"targets": targets, "recipes": summ, "per_target": {}}
    for j, t in enumerate(targets):
        acc = {n: summ[n]["targets"][j]["accuracy"][0] for n in names}
        tnc1 = {n: summ[n]["targets"][j]["target_nc1"] for n in names}
        res: dict[str, Any] = {
            "spearman_source_nc1_vs_acc": _spearman([src[n] for n in names], [acc[n] for n in names]),
            "spearman_target_nc1_vs_acc": _spearman([tnc1[n] for n in names], [acc[n] for n in names]),
            "pearson_log_target_nc1_vs_acc": _pearson_log([tnc1[n] for n in names], [acc[n] for n in names]),
            # the same correlation on every (recipe, seed) run separately
            "spearman_target_nc1_vs_acc_runs": _spearman(
                [r["targets"][j]["layers"]["penultimate"]["nc1"] for r in records],
                [r["targets"][j]["probe_accuracy"] for r in records]),
            "spearman_source_nc1_vs_acc_runs": _spearman(
                [r["source"]["layers"]["penultimate"]["nc1"] for r in records],
                [r["targets"][j]["probe_accuracy"] for r in records]),
            "best_recipe": max(names, key=lambda n: acc[n]),
            "best_accuracy": max(acc.values()),
        }
        order = sorted(names, key=lambda n: src[n])
        res["source_nc1_order"] = order
        res["best_rank_by_source_nc1"] = order.index(res["best_recipe"]) + 1
        if random_rec is not None:
            res["random_init_accuracy"] = random_rec["targets"][j]["probe_accuracy"]
            res["random_init_source_nc1"] = random_rec["source"]["layers"]["penultimate"]["nc1"]
            res["random_init_target_nc1"] = random_rec["targets"][j]["layers"]["penultimate"]["nc1"]
        heads: dict[str, Any] = {}
        for loss in ("ce", "mse", "supcon"):
            row = {h: summ.get(f"{loss}-h{h}") for h in (0, 1, 2)}
            if all(v is not None for v in row.values()):
                heads[loss] = {str(h): {"source_nc1": v["source_nc1"], "accuracy": v["targets"][j]["accuracy"]}
                               for h, v in row.items()}
        res["heads"] = heads
        res["score_spearman"] = {
            m: _spearman([summ[n]["targets"][j]["scores"].get(m, float("nan")) for n in names],
                         [acc[n] for n in names])
            for m in summ[names[0]]["targets"][j]["scores"]}
        out["per_target"][t] = res
    return out


def _pct(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _pm(ms: tuple[float, float]) -> str:
    m, s = ms
    if m is None or math.isnan(m):
        return "n/a"
    return f"{100 * m:.1f}" + (f" ± {100 * s:.1f}" if s and not math.isnan(s) else "")


def _g(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def markdown(records: list[dict[str, Any]], random_rec: dict[str, Any] | None, analysis: dict[str, Any]) -> str:
    targets = analysis["targets"]
    summ = analysis["recipes"]
    head = "| recipe | seeds | source NC1 | source test acc (%) | " + " | ".join(
        f"{t} acc (%) | {t} NC1" for t in targets) + " | train s |"
    sep = "|" + "---|" * (4 + 2 * len(targets) + 1)
    lines = [head, sep]
    for row in summ.values():
        cells = [row["name"], str(row["n_seeds"]), _g(row["source_nc1"]), _pm(row["source_test_accuracy"])]
        for t in row["targets"]:
            cells += [_pm(t["accuracy"]), _g(t["target_nc1"])]
        cells.append(f"{row['train_seconds']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    if random_rec is not None:
        cells = ["random-init (untrained)", "1", _g(random_rec["source"]["layers"]["penultimate"]["nc1"]),
                 _pct(random_rec["source"]["test_accuracy"])]
        for t in random_rec["targets"]:
            cells += [_pct(t["probe_accuracy"]), _g(t["layers"]["penultimate"]["nc1"])]
        cells.append("0")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for t in targets:
        a = analysis["per_target"][t]
        lines.append(f"- **{t}**: Spearman(source NC1, accuracy) = {_g(a['spearman_source_nc1_vs_acc'])} over "
                     f"recipes ({_g(a['spearman_source_nc1_vs_acc_runs'])} over runs); Spearman(target NC1, accuracy) "
                     f"= {_g(a['spearman_target_nc1_vs_acc'])} ({_g(a['spearman_target_nc1_vs_acc_runs'])} over runs; "
                     f"Pearson of log NC1: {_g(a['pearson_log_target_nc1_vs_acc'])}); best recipe {a['best_recipe']} "
                     f"({_pct(a['best_accuracy'])}%), rank {a['best_rank_by_source_nc1']} of {len(summ)} by "
                     f"source NC1" + (f"; random init: {_pct(a['random_init_accuracy'])}% at source NC1 "
                                      f"{_g(a['random_init_source_nc1'])}" if "random_init_accuracy" in a else ""))
    return "\n".join(lines) + "\n"


def pooled_records(summ: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Seed-pooled pseudo-records (geometric-mean NC1, mean accuracy) in the shape the plot functions read."""
    out = []
    for row in summ.values():
        taps = list(row["source_layers_nc1"])
        out.append({
            "name": row["name"], "recipe": {**row["recipe"], "name": row["name"], "seed": None},
            "source": {"taps": taps, "layers": {t: {"nc1": row["source_layers_nc1"][t]} for t in taps}},
            "targets": [{"target": t["target"], "probe_accuracy": t["accuracy"][0],
                         "layers": {"penultimate": {"nc1": t["target_nc1"]}}} for t in row["targets"]],
        })
    return out


def expand_seeds(grid: Any, seeds: list[int]) -> Any:
    """The grid repeated for every seed (first seed: the recipes as written; others: ``seed`` set and ``-s<seed>``
    appended to the name)."""
    from nctransfer.pretrain.grid import StudyGrid
    from nctransfer.pretrain.recipe import Recipe

    recipes = list(grid.recipes)
    for s in seeds[1:]:
        recipes += [Recipe.from_dict({**r.to_dict(), "seed": s, "name": f"{r.name}-s{s}"}) for r in grid.recipes]
    return StudyGrid(recipes, grid.spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2-recipe grid on small subsets (CI)")
    ap.add_argument("--out", default=None, help="output directory")
    ap.add_argument("--grid", default=None, help="grid YAML (default examples/study_grid[_ci].yaml)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch and BLAS threads (default 1: small models gain little from more, and shared CPUs "
                         "suffer badly from oversubscription)")
    ap.add_argument("--no-random-baseline", dest="random_baseline", action="store_false")
    ap.add_argument("--export-figures", default=None, metavar="DIR", help="copy the PNG figures into DIR")
    ap.add_argument("--figure-prefix", default="pretrain_", help="file-name prefix of exported figures")
    ap.add_argument("--methods", nargs="+", default=None,
                    help="transferability methods (default: all; --quick: all but the slow NLEEP)")
    ap.add_argument("--seeds", nargs="+", type=int, default=None,
                    help="repeat every recipe with these training seeds (first = the grid's own); results are pooled "
                         "per recipe (mean and std)")
    ap.add_argument("--few-shot", type=int, default=None, metavar="N",
                    help="also evaluate every checkpoint with N target training images per class (default 10; "
                         "--quick: 5; 0 = skip); no retraining")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.few_shot is None:
        args.few_shot = 5 if args.quick else 10

    from nctransfer.pretrain.study import limit_threads

    with limit_threads(max(1, args.threads)):
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    from nctransfer.pretrain.datasets import load_study_data
    from nctransfer.pretrain.grid import StudyGrid
    from nctransfer.pretrain.plots import write_study_plots
    from nctransfer.pretrain.study import StudyConfig, run_study
    from nctransfer.utils.io import write_json_atomic, write_text_atomic

    fashion = _fashion_available()
    if args.quick:
        grid = Path(args.grid or ROOT / "examples" / "study_grid_ci.yaml")
        source, targets = ("fashion-mnist:0-4", ["fashion-mnist:5-9", "digits"]) if fashion else \
            ("digits:0-4", ["digits:5-9"])
        sizes = dict(source_per_class=60, source_test_per_class=20, target_train_per_class=20,
                     target_test_per_class=20)
        out = Path(args.out or ROOT / "benchmarks" / "results" / "study_fashion_mnist_quick")
    else:
        if not fashion:
            print("Fashion-MNIST IDX files not found (apt-get install dataset-fashion-mnist); the full study needs "
                  "them. Use --quick for the digits fallback.", file=sys.stderr)
            return 2
        grid = Path(args.grid or ROOT / "examples" / "study_grid.yaml")
        source, targets = "fashion-mnist:0-4", ["fashion-mnist:5-9", "digits"]
        sizes = dict(source_per_class=1000, source_test_per_class=200, target_train_per_class=100,
                     target_test_per_class=None)
        out = Path(args.out or ROOT / "benchmarks" / "results" / "study_fashion_mnist")
    methods = args.methods
    if methods is None and args.quick:
        from nctransfer.transferability import METHODS

        methods = [m for m in METHODS if m != "nleep"]
    g = StudyGrid.from_yaml(grid)
    if args.seeds:
        g = expand_seeds(g, list(args.seeds))
    studies = [("standard", StudyConfig(source=source, targets=targets, out=str(out), methods=methods,
                                        threads=args.threads, **sizes))]
    if args.few_shot:
        # NLEEP (a 5K-component Gaussian mixture) is ill-posed and slow on 10 images per class: left out here
        from nctransfer.transferability import METHODS

        fs_methods = [m for m in (methods or list(METHODS)) if m != "nleep"]
        studies.append(("few-shot", StudyConfig(
            source=source, targets=targets, out=str(out / "fewshot"), methods=fs_methods, threads=args.threads,
            checkpoint_dir=str(out / "runs"), **{**sizes, "target_train_per_class": args.few_shot})))
    summary: dict[str, Any] = {"grid": str(grid)}
    for label, config in studies:
        t0 = time.perf_counter()
        result = run_study(g, config, progress=not args.quiet)
        wall = time.perf_counter() - t0
        study_out = Path(config.out)
        random_rec = None
        if args.random_baseline:
            src = load_study_data(source, train_per_class=config.source_per_class,
                                  test_per_class=config.source_test_per_class, seed=config.seed)
            tgts = [load_study_data(t, train_per_class=config.target_train_per_class,
                                    test_per_class=config.target_test_per_class, seed=config.seed) for t in targets]
            random_rec = random_init_record(src, tgts, config, g.recipes[0])
            files = write_study_plots(result.records + [random_rec], study_out)
        else:
            files = dict(result.files)
        first_seed = [r for r in result.records if base_name(r["name"]) == r["name"]]
        if len(first_seed) < len(result.records):  # one line per recipe (first seed) in the layer figure
            from nctransfer.pretrain.plots import plot_layer_nc1

            files["nc1_layers"] = plot_layer_nc1(first_seed + ([random_rec] if random_rec else []),
                                                 study_out / "nc1_layers.png")
        analysis = analyse(result.records, random_rec)
        if len(first_seed) < len(result.records):  # figures of the seed means (one point per recipe)
            files = write_study_plots(pooled_records(analysis["recipes"]) + ([random_rec] if random_rec else []),
                                      study_out / "seed_means")
        md = markdown(result.records, random_rec, analysis)
        write_text_atomic(study_out / "summary.md", md)
        summary[label] = {"analysis": analysis, "random_init": random_rec, "wall_seconds_this_call": wall,
                          "status": result.status, "config": config.data_settings()}
        print(f"## {label}: target training images per class = {config.target_train_per_class}\n")
        print(md)
        print(f"status: {result.status}; wall time of this call {wall:.0f} s; files in {study_out}\n")
        if args.export_figures:
            dest = Path(args.export_figures)
            dest.mkdir(parents=True, exist_ok=True)
            prefix = args.figure_prefix + ("" if label == "standard" else "fewshot_")
            for path in files.values():
                if str(path).endswith(".png"):
                    shutil.copyfile(path, dest / f"{prefix}{Path(path).name}")
            print(f"figures copied to {dest}")
    write_json_atomic(out / "summary.json", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
