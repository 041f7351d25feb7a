"""Wall time of ``make demo`` (``nctransfer demo``) from a cold cache, then again served from the cache.

Targets: the whole demo at most 10 minutes on a 2-core CPU, the second run at most 1 minute. Each run is
a separate process with a fresh cache directory (the first) or the same one (the second); the script prints both
wall times, the CPU time of each run, the machine's load average (other processes slow the run down: compare the
CPU time), the speed-up of the cached run (a ratio measured in the same session), and the stage timings.

    python benchmarks/bench_demo.py [--out runs/bench_demo] [--keep-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_FIRST = 600.0
TARGET_CACHED = 60.0


def run_once(out: Path, cache: Path, extra: list[str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "nctransfer.cli.main", "demo", "--out", str(out), "--cache-dir", str(cache),
           "--quiet", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"demo failed with exit code {proc.returncode}")
    res = json.loads((out / "results.json").read_text())
    return {"wall": wall, "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "load_before": load, "load_after": os.getloadavg()[0], "timings": res["timings"],
            "cached": res.get("timings_cached", []), "stdout": proc.stdout}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench_demo")
    p.add_argument("--keep-cache", action="store_true", help="keep the benchmark's cache directory")
    p.add_argument("extra", nargs="*", help="extra arguments for nctransfer demo (after --)")
    a = p.parse_args()
    out = Path(a.out)
    cache = Path(tempfile.mkdtemp(prefix="nctransfer-bench-demo-cache-"))
    try:
        first = run_once(out / "first", cache, a.extra)
        second = run_once(out / "second", cache, a.extra)
    finally:
        if not a.keep_cache:
            shutil.rmtree(cache, ignore_errors=True)
    print(first["stdout"])
    print(f"cores: {os.cpu_count()}")
    for name, r, target in (("first run (cold cache)", first, TARGET_FIRST), ("second run (cached)", second,
                                                                               TARGET_CACHED)):
        ok = "OK" if r["wall"] <= target else "OVER TARGET"
        print(f"{name:<24} wall {r['wall']:7.1f} s  cpu {r['cpu']:7.1f} s  load avg {r['load_before']:.1f}->"
              f"{r['load_after']:.1f}  target <= {target:.0f} s: {ok}")
        print("    " + ", ".join(f"{k} {v:.1f}" for k, v in r["timings"].items()))
    print(f"cached run speed-up: {first['wall'] / second['wall']:.1f}x (wall), {first['cpu'] / second['cpu']:.1f}x "
          "(cpu)")
    summary = {k: {kk: vv for kk, vv in v.items() if kk != "stdout"} for k, v in (("first", first),
                                                                                   ("second", second))}
    (out / "bench_demo.json").write_text(json.dumps(summary, indent=2))
    return 0 if first["wall"] <= TARGET_FIRST and second["wall"] <= TARGET_CACHED else 1


if __name__ == "__main__":
    sys.exit(main())
