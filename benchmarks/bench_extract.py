"""Speed and memory of nctransfer's feature extraction.

One run measures, for the bundled ``efficientnet_lite0`` (real ImageNet weights) on Fashion-MNIST at the model's
input size (224 px unless ``--image-size``):

(a) the floor: the raw forward pass of the model on random batches of the same shape (``torch.inference_mode``,
    eval mode, no hooks, no data);
(b) nctransfer: ``extract(model, dataset, taps="all", cache_dir=...)``: the real images (batched eval transform:
    resize, grayscale -> RGB, normalise), hooks on all 17 taps pooling inside the hook, every tap streamed into its
    ``FeatureStats``, the statistics checkpointed to the on-disk store;
(c) the same call again, now served from the cache (checksums verified, statistics loaded).

It prints throughputs and the ratios (b)/(a) in images per second (target >= 0.85) and (b)/(c) in time
(target >= 20x). Timings are the best of ``--repeats`` interleaved runs (the machine may be shared).
Finally it measures the extra Python/numpy memory (tracemalloc peak) of statistics-only extraction for N and 4N
images at a small image size: it must not grow with N (features-storing extraction is shown for contrast).

Usage: ``python benchmarks/bench_extract.py [--quick] [--n 1024] [--batch-size 64] [--image-size S]
[--threads T] [--repeats R]``
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import torch

from nctransfer.data import find_fashion_mnist, load_dataset
from nctransfer.extract import extract
from nctransfer.models import load_model


def raw_forward(model, shape, n_batches: int) -> float:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        t = time.perf_counter()
        for _ in range(n_batches):
            model(x)
        return time.perf_counter() - t


def dataset_name() -> str:
    try:
        find_fashion_mnist()
        return "fashion-mnist"
    except LookupError:
        return "digits"


def memory_peak(model, data: str, n_per_class: int, image_size: int, store: bool, batch_size: int) -> tuple[int, float]:
    ds = load_dataset(data, "train", model=model, image_size=image_size, per_class=n_per_class)
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    extract(model, ds, "all", batch_size=batch_size, store_features=store, progress=False)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return len(ds), peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer images and repeats (about a minute)")
    ap.add_argument("--n", type=int, default=None, help="images for the speed runs (default 1024, quick 256)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=None, help="default: the model's input size (224)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 3, quick 2)")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the numbers as JSON")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    n = args.n or (256 if args.quick else 1024)
    repeats = args.repeats or (2 if args.quick else 3)
    bs = args.batch_size
    data = dataset_name()
    model = load_model("efficientnet_lite0")
    size = args.image_size or model.nctransfer_info.image_size[0]
    per_class = max(1, n // 10)
    ds = load_dataset(data, "train", model=model, image_size=size, per_class=per_class)
    n = len(ds)
    n_batches = -(-n // bs)
    print(f"efficientnet_lite0 on {data}: {n} images at {size}px, batch {bs}, torch threads "
          f"{torch.get_num_threads()}, {repeats} interleaved repeats")

    raw_forward(model, (bs, 3, size, size), 1)  # warm-up
    t_raw, t_ext, t_cache = [], [], []
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            t_raw.append(raw_forward(model, (bs, 3, size, size), n_batches) * n / (n_batches * bs))
            t = time.perf_counter()
            res = extract(model, ds, "all", batch_size=bs, cache_dir=cache, progress=False)
            t_ext.append(time.perf_counter() - t)
            assert not res.from_cache and len(res) == 17
            t = time.perf_counter()
            again = extract(model, ds, "all", batch_size=bs, cache_dir=cache, progress=False)
            t_cache.append(time.perf_counter() - t)
            assert again.from_cache
            np.testing.assert_array_equal(again["penultimate"].stats.gram_, res["penultimate"].stats.gram_)
        print(f"  repeat {r + 1}: raw {t_raw[-1]:.2f}s  extract {t_ext[-1]:.2f}s  cached {t_cache[-1]:.3f}s")
    raw, ext, cached = min(t_raw), min(t_ext), min(t_cache)
    ratio = raw / ext
    speedup = ext / cached
    rows = [
        ("(a) raw forward, random batches", raw, n / raw),
        ("(b) extract all 17 taps -> FeatureStats + store", ext, n / ext),
        ("(c) same call served from the cache", cached, n / cached),
    ]
    print(f"\n{'run':50s} {'seconds':>9s} {'images/s':>10s}")
    for name, sec, thr in rows:
        print(f"{name:50s} {sec:9.3f} {thr:10.1f}")
    print(f"\nextraction throughput / raw forward throughput = {ratio:.3f}  (target >= 0.85: "
          f"{'PASS' if ratio >= 0.85 else 'FAIL'})")
    print(f"cached run speed-up = {speedup:.1f}x  (target >= 20x: {'PASS' if speedup >= 20 else 'FAIL'})")

    small = 32
    pcs = (10, 40) if args.quick else (20, 80)
    mem = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for store in (False, True):
            for pc in pcs:
                N, mb = memory_peak(model, data, pc, small, store, bs)
                mem.append((store, N, mb))
    print(f"\nextra memory (tracemalloc peak, {small}px):")
    for store, N, mb in mem:
        print(f"  {'stats + stored features' if store else 'stats only':24s} N = {N:5d}: {mb:8.2f} MiB")
    so = [m for m in mem if not m[0]]
    growth = so[1][2] / so[0][2]
    print(f"stats-only memory ratio N={so[1][1]} / N={so[0][1]}: {growth:.2f}  (target ~1, independent of N: "
          f"{'PASS' if growth < 1.3 else 'FAIL'})")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "n": n, "image_size": size, "batch_size": bs, "threads": torch.get_num_threads(),
            "raw_seconds": raw, "extract_seconds": ext, "cached_seconds": cached, "throughput_ratio": ratio,
            "cache_speedup": speedup, "memory_mib": [{"store": s, "n": N, "mib": m} for s, N, m in mem],
        }, indent=2))


if __name__ == "__main__":
    main()
