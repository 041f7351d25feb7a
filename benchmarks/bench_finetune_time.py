"""Where the wall time of a small fine-tuning run goes: training steps, evaluation, unit probing.

Two default runs of the command a new user types first, on 400 Fashion-MNIST training images (40 per class; the
scikit-learn digits when the Debian package ``dataset-fashion-mnist`` is missing - the script says so) with the
bundled ImageNet ``efficientnet_lite0`` at 64 px, 3 epochs, on the CPU:

    nctransfer finetune --model efficientnet_lite0 --data fashion-mnist --method lp --epochs 3 --per-class 40 \\
        --image-size 64 --device cpu --out DIR
    nctransfer finetune ... --method lp --eval-every 0 ...      (only the final evaluation)
    nctransfer finetune ... --method scl --unit auto ...

Each run's ``result.json`` gives the seconds by phase (``timing``: training passes, evaluations, unit probe,
setup) and the wall time is measured around the command. Targets: training steps at least 60% of the wall time
of the default run (``lp``; for ``scl --unit auto`` the probe is capped at half the estimated training time, at
least 30 s, so its share is reported against that cap).

Then the evaluation pass (:func:`nctransfer.finetune.evaluation.evaluate`: accuracy, loss and penultimate
statistics in one pass) is timed against :func:`nctransfer.extract.extract` of the penultimate tap on the same
500 test images at the same batch size (best of ``--repeats`` interleaved runs); target: at least 85% of
extraction's throughput.

Usage: ``python benchmarks/bench_finetune_time.py [--threads T] [--repeats R] [--json FILE]``
(about two to three minutes on two CPU cores).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
import warnings
from pathlib import Path

import torch

from nctransfer.cli.main import main as cli
from nctransfer.data import find_fashion_mnist, load_dataset
from nctransfer.extract import extract
from nctransfer.finetune import FinetuneConfig, prepare_model
from nctransfer.finetune.evaluation import batches, evaluate
from nctransfer.models import load_model


def dataset_name() -> str:
    try:
        find_fashion_mnist()
        return "fashion-mnist"
    except LookupError:
        print("NOTE: Fashion-MNIST is not installed (Debian package dataset-fashion-mnist); using scikit-learn "
              "digits instead (fewer test images per class).")
        return "digits"


def run_cli(data: str, method: list[str], out: Path, threads: int | None) -> tuple[float, dict]:
    args = ["finetune", "--model", "efficientnet_lite0", "--data", data, *method, "--epochs", "3", "--per-class", "40",
            "--image-size", "64", "--device", "cpu", "--no-progress", "--out", str(out)]
    if threads:
        args += ["--threads", str(threads)]
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        rc = cli(args)
    wall = time.perf_counter() - t
    if rc != 0:
        raise SystemExit(f"nctransfer {' '.join(args)} failed ({rc}):\n{printed.getvalue()}")
    return wall, json.loads((out / "result.json").read_text())


def eval_vs_extract(data: str, repeats: int) -> dict:
    model = prepare_model(load_model("efficientnet_lite0"), 10, FinetuneConfig(method="lp"), force_reset=True)
    ds = load_dataset(data, "test", model=model, image_size=64, per_class=50, seed=1)
    bs = 64  # the evaluation batch size of a CPU run with --batch-size 64, and extract's default
    dev = torch.device("cpu")
    evaluate(model, batches(ds, bs), dev, penultimate=True)  # warm-up
    t_ev, t_ex = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        extract(model, ds, ["penultimate"], batch_size=bs, device="cpu", progress=False)
        t_ex.append(time.perf_counter() - t)
        t = time.perf_counter()
        out = evaluate(model, batches(ds, bs), dev, penultimate=True)
        t_ev.append(time.perf_counter() - t)
        assert out["n"] == len(ds) and out["stats"].n_samples == len(ds)
    return {"images": len(ds), "batch_size": bs, "extract_seconds": min(t_ex), "evaluate_seconds": min(t_ev),
            "extract_images_per_s": len(ds) / min(t_ex), "evaluate_images_per_s": len(ds) / min(t_ev),
            "ratio": min(t_ex) / min(t_ev)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the throughput comparison")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the numbers as JSON")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    data = dataset_name()
    print(f"efficientnet_lite0 (ImageNet weights) on {data}: 40 training images per class, 64 px, 3 epochs, CPU, "
          f"torch threads {torch.get_num_threads()}")
    # one-time costs of a fresh process (imports of timm/torchvision, first kernels, reading the IDX files) are
    # paid here, before the timed runs, and reported separately
    t = time.perf_counter()
    warm = load_model("efficientnet_lite0")
    load_dataset(data, "train", model=warm, image_size=64, per_class=1)
    load_dataset(data, "test", model=warm, image_size=64, per_class=1)
    with torch.no_grad():
        warm.eval()(torch.zeros(2, 3, 64, 64))
    from nctransfer.utils.repro import environment_stamp

    environment_stamp()  # imports scikit-learn, scipy... to list their versions
    warmup = time.perf_counter() - t
    print(f"  warm-up (imports, first load of the model and the data): {warmup:.1f} s")
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, method in (("lp", ["--method", "lp"]), ("lp --eval-every 0", ["--method", "lp", "--eval-every", "0"]),
                             ("scl --unit auto", ["--method", "scl", "--unit", "auto"])):
            wall, res = run_cli(data, method, Path(tmp) / name.replace(" ", "_"), args.threads)
            t = res["timing"]
            runs[name] = {"wall": wall, "train": t["train"], "eval": t["eval"], "probe": t["probe"],
                          "other": wall - t["train"] - t["eval"] - t["probe"], "n_train": res["n_train"],
                          "n_test": res["n_test"], "test_accuracy": res["test_accuracy"], "unit": res["unit"],
                          "auto": None if res["auto"] is None else {
                              "chosen": res["auto"]["chosen"], "probe_seconds": res["auto"]["probe_seconds"],
                              "budget_seconds": res["auto"]["time_budget"]["seconds"],
                              "estimated_training_seconds": res["auto"]["time_budget"]["estimated_training_seconds"],
                              "probed": res["auto"]["time_budget"]["probed"],
                              "not_probed": res["auto"]["time_budget"]["not_probed"],
                              "candidates": [(c["unit"], round(c["probe_seconds"], 1), c["status"])
                                             for c in res["auto"]["candidates"]]}}
            print(f"  {name}: {wall:.1f} s")
    thr = eval_vs_extract(data, args.repeats)

    print(f"\n| run | wall s | training | evaluation | unit probe | other (load, setup) | test acc ({data}) |")
    print("|---|---|---|---|---|---|---|")
    for name, r in runs.items():
        w = r["wall"]
        print(f"| `{name}` | {w:.1f} | {r['train']:.1f} s ({100 * r['train'] / w:.0f}%) | {r['eval']:.1f} s "
              f"({100 * r['eval'] / w:.0f}%) | {r['probe']:.1f} s ({100 * r['probe'] / w:.0f}%) | {r['other']:.1f} s "
              f"({100 * r['other'] / w:.0f}%) | {100 * r['test_accuracy']:.1f}% on {r['n_test']} |")
    a = runs["scl --unit auto"]["auto"]
    print(f"\nscl --unit auto: chose {a['chosen']}; probed {a['probed']} candidate(s) in {a['probe_seconds']:.1f} s "
          f"(budget {a['budget_seconds']:.1f} s = max(0.5 x estimated training {a['estimated_training_seconds']:.1f} s"
          f", 30 s); {a['not_probed']} not probed); actual training {runs['scl --unit auto']['train']:.1f} s")
    print(f"  probes (unit, seconds, status): {a['candidates']}")
    share = runs["lp"]["train"] / runs["lp"]["wall"]
    verdict = "PASS" if share >= 0.6 else "FAIL"
    print(f"\ntraining share of the default run (lp) = {share:.2f}  (target >= 0.60: {verdict})")
    s0 = runs["lp --eval-every 0"]["train"] / runs["lp --eval-every 0"]["wall"]
    print(f"training share with --eval-every 0 (final evaluation only) = {s0:.2f}")
    print(f"evaluation pass: {thr['evaluate_images_per_s']:.0f} images/s, extract (penultimate tap): "
          f"{thr['extract_images_per_s']:.0f} images/s on the same {thr['images']} images, batch {thr['batch_size']}: "
          f"ratio {thr['ratio']:.2f}  (target >= 0.85: {'PASS' if thr['ratio'] >= 0.85 else 'FAIL'})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"data": data, "threads": torch.get_num_threads(), "warmup_seconds": warmup,
                                               "runs": runs, "eval_vs_extract": thr, "train_share_lp": share},
                                              indent=2))


if __name__ == "__main__":
    main()
