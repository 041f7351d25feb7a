"""Scale-out benchmark: extraction throughput with torchrun and Ray against one process, and peak memory of the
streaming scores against the in-memory ones, all measured in one run.

    python benchmarks/bench_scale.py            # extraction (1 process, torchrun x2, Ray x2) + memory table
    python benchmarks/bench_scale.py --skip-extraction --big   # memory only, adding N = 10^6 (streaming)

Extraction: two EfficientNet-Lite models (lite0, lite1) on ``--n`` digits images at ``--size`` px, features of
every tap's statistics (no cache). ``1 process`` extracts both models one after the other; ``torchrun x2`` splits
each model's data across two gloo processes (:mod:`nctransfer.extract.distributed`); ``Ray x2`` runs the two models
as two Ray tasks (the unit of work of ``rank_models(backend="ray")``). Throughput = images extracted / wall time
of the extraction (process start-up, imports and model loading excluded for every variant); ratios against the
one-process run of the same invocation. On a machine with fewer free cores than workers the ratios are below 1.

Memory: peak Python-heap allocation (``tracemalloc``, which numpy reports to) of each score on synthetic Gaussian
features ``[N, d]`` with 10 classes; in memory the array exists (its own size is listed separately and is not
counted in the score's peak), streaming reads seeded batches regenerated on every pass (nothing ``N x d`` exists).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

MODELS = ["efficientnet_lite0", "efficientnet_lite1"]

_WORKER = textwrap.dedent("""
    import json, sys, time, torch
    torch.set_num_threads(1)
    import torch.distributed as dist
    from nctransfer.data import load_dataset
    from nctransfer.extract import extract
    from nctransfer.models import load_model
    from nctransfer.utils.distributed import init_from_env, shutdown
    init_from_env(backend="gloo")
    n, size, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    models = [load_model(m) for m in %r]
    data = [load_dataset("digits", "train", model=m, image_size=size, n=n) for m in models]
    extract(models[0], data[0], "penultimate", batch_size=32, progress=False)  # warm-up (both ranks)
    dist.barrier()
    t0 = time.perf_counter()
    for m, d in zip(models, data):
        extract(m, d, "all", batch_size=32, progress=False)
    dist.barrier()
    if dist.get_rank() == 0:
        json.dump({"seconds": time.perf_counter() - t0}, open(out, "w"))
    shutdown()
""" % MODELS)


def _one_model(name: str, n: int, size: int) -> float:
    import torch

    from nctransfer.data import load_dataset
    from nctransfer.extract import extract
    from nctransfer.models import load_model

    torch.set_num_threads(1)
    model = load_model(name)
    data = load_dataset("digits", "train", model=model, image_size=size, n=n)
    extract(model, data, "penultimate", batch_size=32, progress=False)  # warm-up
    t0 = time.perf_counter()
    extract(model, data, "all", batch_size=32, progress=False)
    return time.perf_counter() - t0


def bench_extraction(n: int, size: int) -> dict[str, float]:
    print(f"== extraction: {', '.join(MODELS)}, {n} digits images at {size} px, every tap", flush=True)
    # one process: the two models one after the other
    one = sum(_one_model(m, n, size) for m in MODELS)
    rows = {"1 process": one}
    # torchrun x2
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "worker.py"
        script.write_text(_WORKER)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        out = Path(tmp) / "t.json"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
                        "--master_addr=127.0.0.1", f"--master_port={port}", str(script), str(n), str(size),
                        str(out)], env=env, check=True, timeout=900, capture_output=True)
        rows["torchrun x2 (gloo)"] = json.loads(out.read_text())["seconds"]
    # Ray x2: one task per model
    try:
        import ray
    except ImportError:
        print("   Ray not installed: pip install 'nctransfer[ray]'")
    else:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
        try:
            task = ray.remote(_one_model).options(num_cpus=1)
            ray.get([task.remote(m, 32, 32) for m in MODELS])  # start both workers, import torch
            t0 = time.perf_counter()
            per_task = ray.get([task.remote(m, n, size) for m in MODELS])
            # wall time of the two concurrent tasks = the slower one's extraction (warm-up excluded)
            rows["Ray x2 (tasks)"] = max(per_task)
            rows["Ray x2 (wall incl. warm-up)"] = time.perf_counter() - t0
        finally:
            ray.shutdown()
    images = n * len(MODELS)
    for k, sec in rows.items():
        print(f"   {k:28s} {sec:8.2f} s   {images / sec:8.1f} images/s   {one / sec:5.2f}x one process")
    return rows


def _synthetic(N: int, d: int, K: int = 10, rows: int = 8192):
    rng_means = np.random.default_rng(0).normal(size=(K, d))

    def batches():
        rng = np.random.default_rng(1)
        for s in range(0, N, rows):
            b = min(rows, N - s)
            y = rng.integers(0, K, b)
            yield rng.normal(size=(b, d)) + 0.5 * rng_means[y], y
    return batches


def _peak(fn) -> tuple[float, float]:
    tracemalloc.start()
    t0 = time.perf_counter()
    fn()
    sec = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2 ** 20, sec


def bench_memory(sizes: list[int], big: bool, d: int) -> None:
    from nctransfer.transferability import METHODS
    from nctransfer.transferability.streaming import stream_score

    names = ["sfda", "etran", "transrate", "gbc", "ncti", "logme"]
    print(f"== peak memory (MB, tracemalloc) and seconds, d = {d}, K = 10", flush=True)
    print(f"   {'score':10s} {'N':>9s} {'X itself':>9s} {'in-memory':>10s} {'streaming':>10s} {'ratio':>6s}   "
          f"{'s in-mem':>8s} {'s stream':>8s}")
    for N in sizes + ([10 ** 6] if big else []):
        src = _synthetic(N, d)
        in_mem = N <= 10 ** 5
        if in_mem:
            parts = list(src())
            X = np.concatenate([p[0] for p in parts])
            y = np.concatenate([p[1] for p in parts])
            del parts
        for name in names:
            if N > 10 ** 5 and name in ("gbc", "ncti"):
                continue  # keep an N x 64 projection: 0.5 GB at 10^6, skipped on small machines
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mem_s, sec_s = _peak(lambda: stream_score(name, src))
                if in_mem:
                    mem_m, sec_m = _peak(lambda: METHODS[name].fn(X, y))
            xs = f"{X.nbytes / 2 ** 20:9.0f}" if in_mem else f"{N * d * 8 / 2 ** 20:9.0f}"
            if in_mem:
                print(f"   {name:10s} {N:9d} {xs} {mem_m:10.1f} {mem_s:10.1f} {mem_m / mem_s:6.1f}   "
                      f"{sec_m:8.2f} {sec_s:8.2f}", flush=True)
            else:
                print(f"   {name:10s} {N:9d} {xs} {'(not run)':>10s} {mem_s:10.1f} {'':>6s}   {'':>8s} "
                      f"{sec_s:8.2f}", flush=True)
        if in_mem:
            del X, y


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=512, help="images per model (default %(default)s)")
    ap.add_argument("--size", type=int, default=64, help="image size (default %(default)s)")
    ap.add_argument("--d", type=int, default=256, help="feature width of the memory benchmark (default %(default)s)")
    ap.add_argument("--skip-extraction", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--big", action="store_true", help="also N = 10^6 (streaming only)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    if not args.skip_extraction:
        bench_extraction(args.n, args.size)
    if not args.skip_memory:
        bench_memory([10 ** 4, 10 ** 5], args.big, args.d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
