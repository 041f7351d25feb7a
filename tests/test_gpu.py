"""The CUDA paths: FeatureStats updates from CUDA tensors, extraction on CUDA (float32 and autocast), every score on
CUDA tensors, fine-tuning on CUDA. Marked ``gpu``; skipped with a reason without CUDA. ``benchmarks/gpu_check.py``
runs them and measures the GPU path in one command."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from nctransfer.stats import FeatureStats

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is "
                                                             "False); run benchmarks/gpu_check.py on a GPU machine"),
]


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.fixture(scope="module")
def lite0():
    from nctransfer.models import load_model

    return load_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def digits(lite0):
    from nctransfer.data import load_dataset

    return load_dataset("digits", "train", model=lite0, image_size=64, per_class=8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_feature_stats_updates_from_cuda_tensors(dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 33)) + 50.0
    y = rng.integers(0, 5, 1000)
    ref = FeatureStats().update(X.astype(np.float32 if dtype == torch.float32 else np.float64), y)
    s = FeatureStats()
    Xt = torch.as_tensor(X, dtype=dtype, device="cuda")
    for lo in range(0, 1000, 128):
        s.update(Xt[lo:lo + 128], torch.as_tensor(y[lo:lo + 128], device="cuda"))
    assert s.n_samples == 1000 and s.classes == ref.classes
    for view in ("class_means", "sigma_W", "sigma_B", "sigma_T", "class_unit_sums", "class_variances"):
        assert _rel(getattr(s, view)(), getattr(ref, view)()) <= 1e-10, view


def test_extraction_on_cuda_float32_and_autocast(lite0, digits):
    from nctransfer.extract import extract

    taps = ["blocks.4.0", "penultimate"]
    cpu = extract(lite0, digits, taps, batch_size=32, device="cpu", store_features=True, progress=False)
    f32 = extract(lite0, digits, taps, batch_size=32, device="cuda", store_features=True, progress=False)
    for t in taps:
        # cuDNN may use TF32 for float32 convolutions: close, not identical
        assert _rel(f32[t].features, cpu[t].features) <= 1e-2, t
        assert np.array_equal(f32[t].labels, cpu[t].labels)
        assert _rel(f32[t].stats.sigma_T(), FeatureStats().update(f32[t].features, f32[t].labels).sigma_T()) <= 1e-8
    for dtype in ("float16", "bfloat16"):
        amp = extract(lite0, digits, taps, batch_size=32, device="cuda", dtype=dtype, store_features=True,
                      progress=False)
        for t in taps:
            assert amp[t].features.dtype == np.float32 and np.isfinite(amp[t].features).all()
            assert _rel(amp[t].features, cpu[t].features) <= (5e-2 if dtype == "float16" else 1e-1), (dtype, t)
            assert np.isfinite(amp[t].stats.sigma_W()).all()
    assert next(lite0.parameters()).device.type == "cuda"
    lite0.to("cpu")


def test_every_score_on_cuda_tensors_equals_numpy():
    from nctransfer.transferability import METHODS

    rng = np.random.default_rng(1)
    N, d, K = 400, 48, 4
    y = rng.integers(0, K, N)
    X = rng.normal(size=(N, d)) + 0.6 * rng.normal(size=(K, d))[y]
    P = rng.dirichlet(np.ones(7), size=N)
    Xt = torch.as_tensor(X, device="cuda")
    checked = []
    for name, info in METHODS.items():
        args = (X, y, P) if info.needs_probs else (X, y)
        targs = (Xt, torch.as_tensor(y, device="cuda"), torch.as_tensor(P, device="cuda")) if info.needs_probs \
            else (Xt, torch.as_tensor(y, device="cuda"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = info.fn(*args)
            got = info.fn(*targs)
        if isinstance(ref, dict):
            for k in ref:
                assert got[k] == pytest.approx(ref[k], rel=1e-6, abs=1e-9), (name, k)
        else:
            assert got == pytest.approx(ref, rel=1e-6, abs=1e-9), name
        checked.append(name)
    assert {"logme", "hscore", "sfda", "ncti", "etran", "gbc", "transrate"} <= set(checked)


@pytest.mark.parametrize("method,unit", [("scl", "blocks.4.0"), ("full", None)])
def test_finetuning_on_cuda(digits, method, unit):
    from nctransfer.finetune import finetune
    from nctransfer.models import load_model

    res = finetune(load_model("efficientnet_lite0"), digits, digits, method=method, unit=unit, epochs=1,
                   batch_size=16, lr=0.01, device="cuda", progress=False, seed=0)
    assert 0.0 <= res.test_accuracy <= 1.0
    assert res.peak_memory_mb > 0 and res.seconds_per_epoch > 0
