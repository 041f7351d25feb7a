"""nctransfer.extract: streamed statistics, feature store, resumption after a kill, corruption handling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from nctransfer.data import load_dataset
from nctransfer.exceptions import InputValueError
from nctransfer.extract import CacheCorruptedWarning, extract
from nctransfer.models import load_model
from nctransfer.stats import FeatureStats

TAPS = ["blocks.1.1", "blocks.4.0", "penultimate"]


pytestmark = pytest.mark.usefixtures("one_thread")  # one thread (tests/conftest.py)


@pytest.fixture(scope="module")
def model():
    return load_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def data(model):
    return load_dataset("digits", "train", model=model, image_size=32, per_class=10)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_streamed_stats_equal_stats_of_stored_features(model, data):
    res = extract(model, data, taps="all", batch_size=16, store_features=True, progress=False)
    assert res.taps[-1] == "penultimate" and len(res) == 17 and res.n_samples == 100
    for tap in res:
        r = res[tap]
        assert r.features.shape == (100, r.dim) and r.features.dtype == np.float32
        assert np.array_equal(r.labels, data.targets)
        ref = FeatureStats().update(r.features, r.labels)
        np.testing.assert_allclose(r.stats.class_means(), ref.class_means(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(r.stats.sigma_W(), ref.sigma_W(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(r.stats.sigma_T(), ref.sigma_T(), rtol=1e-9, atol=1e-12)
        assert r.stats.n_samples == 100
    # the stored penultimate features are the model's own pre-logits features
    x, _ = data.get_batch(np.arange(100))
    with torch.no_grad():
        ref = model.forward_head(model.forward_features(x), pre_logits=True).numpy()
    np.testing.assert_allclose(res["penultimate"].features, ref, rtol=1e-5, atol=1e-5)


def test_deterministic_and_cache_round_trip(model, data, tmp_path):
    a = extract(model, data, TAPS, batch_size=16, store_features=True, progress=False)
    b = extract(model, data, TAPS, batch_size=16, store_features=True, cache_dir=tmp_path, shard_size=32,
                progress=False)
    assert not b.from_cache and b.computed_samples == 100
    c = extract(model, data, TAPS, batch_size=16, store_features=True, cache_dir=tmp_path, shard_size=32,
                progress=False)
    assert c.from_cache and c.computed_samples == 0
    for t in TAPS:
        assert np.array_equal(a[t].features, b[t].features) and np.array_equal(b[t].features, c[t].features)
        np.testing.assert_array_equal(b[t].stats.gram_, c[t].stats.gram_)
    # a subset of the taps, statistics only: served by the same entry
    d = extract(model, data, ["penultimate"], batch_size=16, cache_dir=tmp_path, progress=False)
    assert d.from_cache and d.taps == ["penultimate"]
    # no_cache computes and writes nothing new
    before = _files(tmp_path)
    e = extract(model, data, ["blocks.0.0"], batch_size=16, cache_dir=tmp_path, no_cache=True, progress=False)
    assert e.computed_samples == 100 and _files(tmp_path) == before
    # another transform (image size) is another dataset fingerprint: a new entry
    other = load_dataset("digits", "train", model=model, image_size=24, per_class=10)
    f = extract(model, other, ["penultimate"], batch_size=16, cache_dir=tmp_path, progress=False)
    assert not f.from_cache


class _Interrupting:
    """Dataset wrapper raising KeyboardInterrupt when batch ``at`` is requested (a user pressing Ctrl-C)."""

    def __init__(self, inner, at):
        self.inner, self.at, self.calls = inner, at, 0

    def __len__(self):
        return len(self.inner)

    def fingerprint(self):
        return self.inner.fingerprint()

    def get_batch(self, idx):
        self.calls += 1
        if self.calls > self.at:
            raise KeyboardInterrupt
        return self.inner.get_batch(idx)


def test_interrupted_run_resumes_to_identical_files(model, data, tmp_path):
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    kw = dict(batch_size=16, store_features=True, shard_size=32, progress=False)
    extract(model, data, TAPS, cache_dir=clean, **kw)
    with pytest.raises(KeyboardInterrupt):
        extract(model, _Interrupting(data, at=5), TAPS, cache_dir=resumed, **kw)  # dies inside shard 2
    manifest = json.loads(next(resumed.rglob("manifest.json")).read_text())
    assert manifest["done"] == 2 and not manifest["complete"]
    r = extract(model, data, TAPS, cache_dir=resumed, **kw)
    assert r.resumed_shards == 2 and r.computed_samples == 100 - 64
    assert _files(clean) == _files(resumed)


def test_killed_process_resumes_to_identical_files(model, data, tmp_path):
    """SIGKILL a real extraction process mid-way, resume in this process, compare every file byte for byte."""
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    kw = dict(batch_size=10, store_features=True, shard_size=20, progress=False)
    extract(model, data, TAPS, cache_dir=clean, **kw)
    script = textwrap.dedent(f"""
        import time, torch
        torch.set_num_threads(1)
        from nctransfer.models import load_model
        from nctransfer.data import load_dataset
        from nctransfer.extract import extract
        m = load_model("efficientnet_lite0")
        ds = load_dataset("digits", "train", model=m, image_size=32, per_class=10)
        class Slow:
            def __len__(self): return len(ds)
            def fingerprint(self): return ds.fingerprint()
            def get_batch(self, idx):
                time.sleep(0.4)
                return ds.get_batch(idx)
        extract(m, Slow(), {TAPS!r}, cache_dir={str(killed)!r}, batch_size=10, store_features=True,
                shard_size=20, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            manifests = list(killed.rglob("manifest.json"))
            if manifests:
                try:
                    if json.loads(manifests[0].read_text())["done"] >= 2:
                        break
                except ValueError:
                    pass
            if proc.poll() is not None:
                pytest.fail("the extraction process ended before it could be killed")
            time.sleep(0.05)
        else:
            pytest.fail("the extraction process made no progress")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = json.loads(next(killed.rglob("manifest.json")).read_text())["done"]
    assert 2 <= done < 5
    r = extract(model, data, TAPS, cache_dir=killed, **kw)
    assert r.resumed_shards == done and r.computed_samples == 100 - 20 * done
    assert _files(clean) == _files(killed)


@pytest.mark.parametrize("victim, damage", [("shard-00001.npz", "flip"), ("stats-", "flip"),
                                            ("shard-00000.npz", "truncate")])
def test_corrupted_cache_is_detected_and_rebuilt(model, data, tmp_path, victim, damage):
    kw = dict(batch_size=16, store_features=True, shard_size=32, cache_dir=tmp_path, progress=False)
    first = extract(model, data, TAPS, **kw)
    reference = _files(tmp_path)
    path = next(p for p in tmp_path.rglob("*.npz") if p.name.startswith(victim))
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    else:
        raw = raw[: len(raw) // 3]
    path.write_bytes(bytes(raw))
    with pytest.warns(CacheCorruptedWarning, match="corrupted"):
        again = extract(model, data, TAPS, **kw)
    assert not again.from_cache and again.computed_samples == 100  # rebuilt, not trusted
    for t in TAPS:
        assert np.array_equal(again[t].features, first[t].features)
    assert _files(tmp_path) == reference
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheCorruptedWarning)
        assert extract(model, data, TAPS, **kw).from_cache


def test_generic_torch_dataset_and_options(model, data, tmp_path):
    class Plain(torch.utils.data.Dataset):
        def __len__(self):
            return 20

        def __getitem__(self, i):
            return data[i]

    with pytest.warns(UserWarning, match="not caching"):
        r = extract(model, Plain(), ["penultimate"], batch_size=8, cache_dir=tmp_path, store_features=True,
                    progress=False)
    assert r.cache_path is None and r["penultimate"].features.shape == (20, 1280)
    r2 = extract(model, Plain(), ["penultimate"], batch_size=8, cache_dir=tmp_path, dataset_id="plain-20",
                 progress=False)
    assert r2.cache_path is not None
    np.testing.assert_allclose(r2["penultimate"].stats.class_means(), r["penultimate"].stats.class_means(),
                               rtol=1e-6)
    bf = extract(model, Plain(), ["penultimate"], batch_size=8, dtype="bfloat16", store_features=True,
                 progress=False)
    assert bf["penultimate"].features.dtype == np.float32
    assert np.corrcoef(bf["penultimate"].features.ravel(), r["penultimate"].features.ravel())[0, 1] > 0.95
    with pytest.raises(InputValueError, match="float16"):
        extract(model, Plain(), dtype="float16", device="cpu", progress=False)
    with pytest.raises(InputValueError, match="batch_size"):
        extract(model, Plain(), batch_size=0, progress=False)
    with pytest.raises(InputValueError, match="dtype"):
        extract(model, Plain(), dtype="int8", progress=False)
    with pytest.raises(InputValueError, match="not stored"):
        _ = r2["penultimate"].features
