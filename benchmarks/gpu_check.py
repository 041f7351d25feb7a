"""Verify and measure the whole GPU path in one command (under 5 minutes on one modern GPU).

    python benchmarks/gpu_check.py            # needs CUDA
    python benchmarks/gpu_check.py --cpu-smoke  # the same steps, tiny, on CPU (checks the script itself)

1. runs the ``gpu``-marked tests (``tests/test_gpu.py``: FeatureStats from CUDA tensors, extraction in float32
   and under float16 / bfloat16 autocast, every score on CUDA tensors, SCL and full fine-tuning on CUDA);
2. extraction throughput of EfficientNet-Lite0 at 224 px (images/s) in float32 and with autocast, and the speed-up
   of autocast over float32 measured in the same run;
3. scoring time per candidate (1 280-d penultimate features) for each default score, CUDA tensors vs numpy on CPU;
4. one epoch of SCL FT vs full FT (seconds per epoch, peak memory in MB).

Exit status: 0 when the tests passed, 1 otherwise (or 2 without CUDA).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_tests(device: str) -> bool:
    print("== gpu tests (pytest -m gpu tests/test_gpu.py)", flush=True)
    if device != "cuda":
        print("   skipped: no CUDA device")
        return True
    r = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:randomly", "-rs",
                        str(ROOT / "tests" / "test_gpu.py")], cwd=ROOT, timeout=240)
    return r.returncode == 0


def extraction(device: str, n: int, size: int, batch: int) -> tuple[dict[str, float], object, object]:
    from nctransfer.data import load_dataset
    from nctransfer.extract import extract
    from nctransfer.models import load_model

    model = load_model("efficientnet_lite0")
    data = load_dataset("digits", "train", model=model, image_size=size, n=n)
    print(f"== extraction: efficientnet_lite0, {len(data)} digits images at {size} px, batch {batch}, {device}")
    dtypes = [None, "float16", "bfloat16"] if device == "cuda" else [None, "bfloat16"]
    out: dict[str, float] = {}
    feats = None
    for dt in dtypes:
        extract(model, data, ["penultimate"], batch_size=batch, device=device, dtype=dt, progress=False)  # warm-up
        _sync()
        t0 = time.perf_counter()
        res = extract(model, data, ["penultimate"], batch_size=batch, device=device, dtype=dt,
                      store_features=dt is None, progress=False)
        _sync()
        out[dt or "float32"] = len(data) / (time.perf_counter() - t0)
        if dt is None:
            feats = res["penultimate"]
    for k, v in out.items():
        ratio = v / out["float32"]
        print(f"   {k:9s} {v:9.1f} images/s   ({ratio:.2f}x float32, same run)")
    model.to("cpu")
    return out, feats.features, feats.labels  # type: ignore[union-attr]


def scoring(device: str, X, y) -> None:  # noqa: ANN001
    import numpy as np
    import torch

    from nctransfer.transferability import METHODS, list_methods

    print(f"== scoring time per candidate: N={len(y)}, d={X.shape[1]}")
    Xd = torch.as_tensor(np.asarray(X, dtype=np.float64), device=device)
    yd = torch.as_tensor(y, device=device)
    for name in list_methods():
        info = METHODS[name]
        if info.needs_probs or info.expensive:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            info.fn(X, y)
            t_cpu = time.perf_counter() - t0
            info.fn(Xd, yd)  # warm-up (kernels, cuBLAS handles)
            _sync()
            t0 = time.perf_counter()
            info.fn(Xd, yd)
            _sync()
            t_dev = time.perf_counter() - t0
        print(f"   {name:12s} {device} tensors {t_dev:8.4f} s   numpy/CPU {t_cpu:8.4f} s   ({t_cpu / t_dev:5.2f}x)")


def finetuning(device: str, n: int, size: int, batch: int) -> None:
    from nctransfer.data import load_dataset
    from nctransfer.finetune import finetune
    from nctransfer.models import load_model

    print(f"== one epoch of fine-tuning: efficientnet_lite0, {n} images at {size} px, batch {batch}, {device}")
    for method, unit in (("scl", "blocks.4.0"), ("full", None)):
        model = load_model("efficientnet_lite0")
        train = load_dataset("digits", "train", model=model, image_size=size, n=n)
        test = load_dataset("digits", "test", model=model, image_size=size, n=min(n, 200))
        res = finetune(model, train, test, method=method, unit=unit, epochs=1, batch_size=batch, lr=0.01,
                       device=device, progress=False, seed=0)
        print(f"   {res.method:8s} {res.seconds_per_epoch:7.2f} s/epoch   peak memory {res.peak_memory_mb:8.1f} MB   "
              f"trainable {res.trainable_percent:5.1f} %   test accuracy {res.test_accuracy:.3f}")


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny run on CPU (checks the script without a GPU)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available() and not args.cpu_smoke:
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False); use --cpu-smoke to check the script.")
        return 2
    device = "cuda" if torch.cuda.is_available() and not args.cpu_smoke else "cpu"
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
        n, size, batch, ft_n = 1024, 224, 128, 512
    else:
        torch.set_num_threads(1)
        n, size, batch, ft_n = 64, 32, 32, 64
    t0 = time.perf_counter()
    ok = run_tests(device)
    _, X, y = extraction(device, n, size, batch)
    scoring(device, X, y)
    finetuning(device, ft_n, size, batch if device == "cpu" else 64)
    print(f"gpu_check: tests {'passed' if ok else 'FAILED'}; total {time.perf_counter() - t0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
