"""Speed and memory of streaming statistics + every statistics-based collapse metric.

For N samples of float32 features (d in {1280, 2048}, K in {10, 100}) one run measures:

(a) the floor: one ``X.T @ X`` in float32 numpy (a single pass can not be cheaper);
(b) a straightforward implementation as public scripts write it: per-class ``np.cov``, ``np.cov`` of all
    features, ``np.linalg.pinv`` of ``Sigma_B`` and ``Sigma_T``, Python loops over class pairs;
(c) nctransfer: ``FeatureStats.update`` on batches (as a data loader delivers them) followed by
    ``compute_all(stats)`` (NC1, NC2 x4, CDNV, VCI, fuzziness, squared distance, cosine x2), in the default
    exact mode and in the ``precision="fast"`` mode.

It prints seconds and the ratios (c)/(a) (targets: <= 3 exact, <= 1.5 fast) and (b)/(c) (target >= 5), checks
that (b) and (c) agree, and measures the extra memory of (c) (tracemalloc peak, input excluded) for two values
of N: it must not grow with N. Timings are the best of ``--repeats`` interleaved runs (the machine is shared).

Usage: ``python benchmarks/bench_metrics.py [--quick] [--n 50000] [--dims 1280 2048] [--classes 10 100]
[--threads T]``
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
import warnings

import numpy as np

from nctransfer import FeatureStats
from nctransfer.metrics import compute_all

STATS_METRICS = ["nc1", "nc2_equinorm", "nc2_equiangularity", "nc2_max_angle", "nc2_etf_distance", "cdnv", "vci",
                 "fuzziness", "squared_distance", "cosine_d_within", "class_separation"]


def make_data(N: int, d: int, K: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, N)
    X = rng.standard_normal((N, d), dtype=np.float32)
    X += (3.0 * rng.standard_normal((K, d), dtype=np.float32))[y]
    X += 5.0  # post-ReLU-like common offset
    return X, y


CLOCK = time.perf_counter  # --clock cpu: time.process_time (with --threads 1: robust on a shared machine)


def floor(X: np.ndarray) -> float:
    t0 = CLOCK()
    X.T @ X
    return CLOCK() - t0


def nctransfer_run(X: np.ndarray, y: np.ndarray, precision: str, batch: int) -> tuple[float, dict[str, float]]:
    t0 = CLOCK()
    stats = FeatureStats(precision=precision)
    for start in range(0, len(X), batch):
        stats.update(X[start:start + batch], y[start:start + batch])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = compute_all(stats, metrics=STATS_METRICS)
    return CLOCK() - t0, values


def straightforward(X: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, float]]:
    """What a typical research script does (one pass per class, pinv of d x d matrices, loops)."""
    t0 = CLOCK()
    classes = np.unique(y)
    K, (N, d) = len(classes), X.shape
    mus, ns, Sw = [], [], np.zeros((d, d))
    for c in classes:
        Xc = X[y == c]
        mus.append(Xc.mean(0, dtype=np.float64))
        ns.append(len(Xc))
        Sw += np.cov(Xc.T, bias=True) * len(Xc)
    mus, ns = np.array(mus), np.array(ns, dtype=float)
    Sw /= N
    mu_G = X.mean(0, dtype=np.float64)
    M = mus - mus.mean(0)
    Sb = M.T @ M / K
    ST = np.cov(X.T, bias=True)
    Sbw = ((mus - mu_G).T * (ns / N)) @ (mus - mu_G)
    out = {}
    # NC1 / fuzziness with the top K-1 eigenpairs: pinv with a cut-off on the singular values
    Sb_pinv = np.linalg.pinv(Sb, rcond=1e-10, hermitian=False)
    out["fuzziness"] = float(np.trace(Sw @ Sb_pinv))
    out["nc1"] = out["fuzziness"] / K
    norms = np.linalg.norm(M, axis=1)
    cos = [M[i] @ M[j] / (norms[i] * norms[j]) for i in range(K) for j in range(K) if i != j]
    out["nc2_equinorm"] = float(np.std(norms) / np.mean(norms))
    out["nc2_equiangularity"] = float(np.std(cos))
    out["nc2_max_angle"] = float(np.mean(np.abs(np.array(cos) + 1 / (K - 1))))
    Mn = M / norms[:, None]
    G = Mn @ Mn.T
    E = np.eye(K) - 1 / K
    out["nc2_etf_distance"] = float(np.linalg.norm(G / np.linalg.norm(G) - E / np.linalg.norm(E)))
    var = [np.mean(np.sum((X[y == c] - mus[k]) ** 2, axis=1)) for k, c in enumerate(classes)]
    vals = [(var[i] + var[j]) / (2 * np.sum((mus[i] - mus[j]) ** 2)) for i in range(K) for j in range(K) if i != j]
    out["cdnv"] = float(np.mean(vals))
    out["vci"] = float(1 - np.trace(np.linalg.pinv(ST, hermitian=True) @ Sbw) / min(d, K - 1))
    out["squared_distance"] = float(np.trace(Sw) / np.trace(Sbw))
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    U = np.array([Xn[y == c].sum(0, dtype=np.float64) for c in classes])
    d_within = float(np.mean(1 - np.sum(U * U, 1) / ns ** 2))
    tot = U.sum(0)
    out["cosine_d_within"] = d_within
    out["class_separation"] = 1 - d_within / float(1 - tot @ tot / N ** 2)
    return CLOCK() - t0, out


def peak_memory_mb(X: np.ndarray, y: np.ndarray, precision: str, batch: int) -> float:
    gc.collect()
    tracemalloc.start()
    nctransfer_run(X, y, precision, batch)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (N=4000, d=256, K=10)")
    parser.add_argument("--n", type=int, default=50000)
    parser.add_argument("--dims", type=int, nargs="+", default=[1280, 2048])
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--batch", type=int, default=1024, help="rows per FeatureStats.update call")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats of (a) and (c); best is kept")
    parser.add_argument("--skip-baseline", action="store_true", help="skip (b), the slow straightforward version")
    parser.add_argument("--threads", type=int, default=None,
                        help="limit every BLAS library to this many threads (default: the libraries' default)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall-clock time, or the process's CPU time (needs --threads 1; on a machine shared with "
                             "other jobs it measures the work without the waiting)")
    args = parser.parse_args()
    if args.clock == "cpu":
        if args.threads != 1:
            parser.error("--clock cpu needs --threads 1 (idle BLAS threads spin and would be counted)")
        global CLOCK
        CLOCK = time.process_time
    import scipy.linalg.blas  # noqa: F401  (load SciPy's BLAS now so that --threads applies to it too)
    import scipy.sparse  # noqa: F401
    import threadpoolctl

    if args.threads is not None:
        with threadpoolctl.threadpool_limits(args.threads):
            run(args)
    else:
        run(args)


def run(args: argparse.Namespace) -> None:
    if args.quick:
        args.n, args.dims, args.classes, args.repeats = 4000, [256], [10], 1
    import os

    import threadpoolctl

    info = threadpoolctl.threadpool_info()
    blas = ", ".join(sorted({f"{i['internal_api']} {i['version']} ({i['num_threads']} threads)" for i in info
                             if i["user_api"] == "blas"}))
    print(f"N = {args.n}, float32 input, update batches of {args.batch} rows; BLAS: {blas}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.clock} clock")
    header = ("d", "K", "(a) X.T@X", "(b) naive", "(c) exact", "(c) fast", "(c)/(a)", "fast/(a)", "(b)/(c)",
              "max rel diff")
    rows = []
    for d in args.dims:
        for K in args.classes:
            X, y = make_data(args.n, d, K)
            ta, tc, tf = [], [], []
            for _ in range(args.repeats):
                ta.append(floor(X))
                t, exact = nctransfer_run(X, y, "exact", args.batch)
                tc.append(t)
                t, _ = nctransfer_run(X, y, "fast", args.batch)
                tf.append(t)
            if args.skip_baseline:
                tb, diff = float("nan"), float("nan")
            else:
                tb, naive = straightforward(X, y)
                diff = max(abs(exact[k] - naive[k]) / max(abs(naive[k]), 1e-12) for k in STATS_METRICS)
            a, c, f = min(ta), min(tc), min(tf)
            rows.append((d, K, a, tb, c, f, c / a, f / a, tb / c, diff))
            print("  " + "  ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in rows[-1]), flush=True)
            del X
            gc.collect()
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = [str(r[0]), str(r[1])] + [f"{v:.2f} s" for v in r[2:6]] + [f"{v:.2f}x" for v in r[6:9]] + \
                [f"{r[9]:.1e}"]
        print("| " + " | ".join(cells) + " |")
    print()
    if args.quick:
        print("(--quick smoke run: fixed per-call costs dominate at this size; the targets apply to the full run)")
    worst = max(rows, key=lambda r: r[6])
    print(f"exact mode: worst (c)/(a) = {worst[6]:.2f} (target <= 3): {'PASS' if worst[6] <= 3 else 'MISS'}")
    wf = max(r[7] for r in rows)
    print(f"fast mode:  worst (c)/(a) = {wf:.2f} (target <= 1.5): {'PASS' if wf <= 1.5 else 'MISS'}")
    if not args.skip_baseline:
        wb = min(r[8] for r in rows)
        print(f"speed-up over the straightforward version: worst (b)/(c) = {wb:.1f} (target >= 5): "
              f"{'PASS' if wb >= 5 else 'MISS'}")

    # extra memory of (c) for two values of N (tracemalloc peak; the input array itself is not counted)
    d, K = max(args.dims), max(args.classes)
    print(f"\nextra memory of (c) at d={d}, K={K} (tracemalloc peak, input excluded):")
    for precision in ("exact", "fast"):
        peaks = []
        for n in (args.n // 4, args.n):
            X, y = make_data(n, d, K, seed=1)
            peaks.append((n, peak_memory_mb(X, y, precision, args.batch)))
            del X
        print(f"  {precision:5s}: " + ", ".join(f"N={n}: {mb:.0f} MB" for n, mb in peaks) +
              f"  (input at N={args.n}: {args.n * d * 4 / 1e6:.0f} MB; d x d float64 = {d * d * 8 / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
