"""Collapse-aware fine-tuning of the real ImageNet EfficientNet-Lite0 on Fashion-MNIST (Li et al., TMLR 2024, table 3).

Linear probe, Layer FT and SCL FT on one or two hand-picked units, SCL FT with the unit chosen automatically
(``unit="auto"``) and full fine-tuning, all with the same data, schedule and seed; one table of test accuracy,
penultimate NC1 (training data), trainable percentage, seconds per epoch and peak memory.

Every run is a separate process (``nctransfer finetune``), so peak memory is measured from a clean process, and
each run directory is resumable: re-running the script skips finished runs and resumes interrupted ones.

Full form (a few CPU hours on a busy 2-core machine; the numbers in docs/finetuning.md)::

    python benchmarks/finetune_fashion_mnist.py --out runs/bench_finetune

Reduced form (CI)::

    python benchmarks/finetune_fashion_mnist.py --quick --out runs/bench_finetune_quick

Checks printed at the end, as expected from the paper: SCL FT >= Layer FT > linear probe in accuracy; SCL FT's
penultimate NC1 below the linear probe's; SCL FT trains < 10% of the parameters; the automatic choice within one
accuracy point of the best hand-picked unit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench_finetune", help="output directory")
    p.add_argument("--quick", action="store_true",
                   help="reduced form: 20 images/class, 32 px, 1 epoch, one unit, auto over stage-first units")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--per-class", type=int, default=100, help="training images per class")
    p.add_argument("--test-per-class", type=int, default=100, help="test images per class (100 -> 1000 images)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05, help="head learning rate (cosine to lr * 1e-3)")
    p.add_argument("--backbone-lr", type=float, default=0.01, help="learning rate of backbone parameters")
    p.add_argument("--units", default="blocks.4.0,blocks.5.0",
                   help="hand-picked units for Layer/SCL FT (comma-separated)")
    p.add_argument("--auto-budget", type=float, default=10.0, help="auto: max trainable percentage")
    p.add_argument("--auto-probe-per-class", type=int, default=20)
    p.add_argument("--auto-probe-steps", type=int, default=40)
    p.add_argument("--auto-candidates", default="all", help="'all', 'stage_first' or a comma-separated list")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads per run (default 1: on a shared machine 2 OpenMP threads can be 10-40x "
                        "slower)")
    return p.parse_args()


def runs(a: argparse.Namespace) -> list[tuple[str, list[str]]]:
    units = [u.strip() for u in a.units.split(",") if u.strip()]
    out: list[tuple[str, list[str]]] = [("lp", ["--method", "lp"])]
    for u in units:
        out.append((f"layer[{u}]", ["--method", "layer", "--unit", u]))
        out.append((f"scl[{u}]", ["--method", "scl", "--unit", u]))
    out.append(("scl[auto]", ["--method", "scl", "--unit", "auto", "--auto-max-percent", str(a.auto_budget),
                              "--auto-probe-per-class", str(a.auto_probe_per_class),
                              "--auto-probe-steps", str(a.auto_probe_steps), "--auto-candidates", a.auto_candidates]))
    out.append(("full", ["--method", "full"]))
    return out


def main() -> int:
    a = parse()
    if a.quick:
        a.per_class, a.test_per_class, a.image_size, a.epochs = 20, 20, 32, 1
        a.units = a.units.split(",")[-1]
        a.auto_probe_per_class, a.auto_probe_steps, a.auto_candidates = 5, 10, "stage_first"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    common = ["--model", a.model, "--data", "fashion-mnist", "--per-class", str(a.per_class),
              "--test-per-class", str(a.test_per_class), "--image-size", str(a.image_size), "--epochs", str(a.epochs),
              "--batch-size", str(a.batch_size), "--lr", str(a.lr), "--backbone-lr", str(a.backbone_lr),
              "--seed", str(a.seed), "--device", "cpu", "--no-progress", "--resume"]
    env = dict(os.environ)
    if a.threads:
        env["OMP_NUM_THREADS"] = str(a.threads)
        common += ["--threads", str(a.threads)]
    rows = []
    t_all = time.perf_counter()
    for label, extra in runs(a):
        run_dir = out / label.replace("[", "_").replace("]", "").replace(".", "_")
        result = run_dir / "result.json"
        if not (result.is_file() and json.loads(result.read_text()).get("epochs_completed") == a.epochs):
            cmd = [sys.executable, "-m", "nctransfer.cli.main", "finetune", *common, *extra, "--out", str(run_dir)]
            print(f"[{time.strftime('%H:%M:%S')}] {label}: {' '.join(cmd[3:])}", flush=True)
            subprocess.run(cmd, check=True, env=env)
        r = json.loads(result.read_text())
        rows.append({"run": label, "unit": r["unit"], "test_accuracy": r["test_accuracy"],
                     "penultimate_nc1": r["penultimate_nc1"], "trainable_percent": r["trainable_percent"],
                     "trainable_params": r["trainable_params"], "seconds_per_epoch": r["seconds_per_epoch"],
                     "peak_memory_mb": r["peak_memory_mb"], "auto": r.get("auto")})
        print(f"    acc {100 * r['test_accuracy']:.2f}%  NC1 {r['penultimate_nc1']:.4g}  "
              f"trainable {r['trainable_percent']:.2f}%  {r['seconds_per_epoch']:.1f} s/epoch  "
              f"peak {r['peak_memory_mb']:.0f} MB", flush=True)

    lines = ["| method | unit | test acc. (%) | penultimate NC1 (train) | trainable params | trainable (%) | "
             "s / epoch | peak memory (MB) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['run'].split('[')[0]} | {r['unit'] or '-'}{' (auto)' if r['auto'] else ''} | "
                     f"{100 * r['test_accuracy']:.2f} | {r['penultimate_nc1']:.3f} | {r['trainable_params']:,d} | "
                     f"{r['trainable_percent']:.2f} | {r['seconds_per_epoch']:.1f} | {r['peak_memory_mb']:.0f} |")
    table = "\n".join(lines)

    by = {r["run"]: r for r in rows}
    lp = by["lp"]
    hand = [r for r in rows if r["run"].startswith(("layer[", "scl[")) and r["auto"] is None]
    scl_hand = [r for r in hand if r["run"].startswith("scl[")]
    layer_hand = [r for r in hand if r["run"].startswith("layer[")]
    auto = by["scl[auto]"]
    best_scl = max(scl_hand, key=lambda r: r["test_accuracy"])
    best_layer = max(layer_hand, key=lambda r: r["test_accuracy"])
    checks = {
        "SCL FT >= Layer FT (best unit each)": best_scl["test_accuracy"] >= best_layer["test_accuracy"],
        "Layer FT > linear probe": best_layer["test_accuracy"] > lp["test_accuracy"],
        "SCL FT penultimate NC1 < linear probe's": all(r["penultimate_nc1"] < lp["penultimate_nc1"] for r in scl_hand),
        "SCL FT trains < 10% of parameters": all(r["trainable_percent"] < 10 for r in scl_hand + [auto]),
        "auto within 1 point of the best hand-picked SCL unit":
            auto["test_accuracy"] >= best_scl["test_accuracy"] - 0.01,
    }
    report = [f"# {a.model} on Fashion-MNIST ({'quick' if a.quick else 'full'} form)", "",
              f"{a.per_class} training images/class, {a.test_per_class * 10} test images, {a.image_size} px, "
              f"{a.epochs} epochs, batch {a.batch_size}, head lr {a.lr}, backbone lr {a.backbone_lr}, cosine, "
              f"SGD 0.9 / wd 1e-4, seed {a.seed}, CPU.", "", table, "",
              "auto choice: " + (auto["auto"]["reason"] if auto["auto"] else "-"), ""]
    report += [f"- {'PASS' if ok else 'DIFFERS'}: {name}" for name, ok in checks.items()]
    report += ["", f"total wall time {time.perf_counter() - t_all:.0f} s (runs reused from {out} are not re-timed)"]
    text = "\n".join(report) + "\n"
    (out / "table.md").write_text(text)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
