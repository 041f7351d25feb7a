"""Data-parallel extraction under torchrun (2 gloo processes on CPU) equals one process."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _torchrun import SCRIPTS, torchrun
from nctransfer.extract.distributed import DatasetSlice, slice_bounds
from nctransfer.stats import FeatureStats

pytestmark = pytest.mark.distributed
TAPS = ["blocks.4.0", "penultimate"]


def test_slice_bounds_cover_every_sample_once():
    for n in (1, 2, 7, 45, 64, 65, 1001):
        for bs in (1, 8, 64):
            for world in (1, 2, 3, 8):
                bounds = [slice_bounds(n, bs, r, world) for r in range(world)]
                covered = np.concatenate([np.arange(lo, hi) for lo, hi in bounds])
                assert np.array_equal(covered, np.arange(n))  # contiguous, in rank order, each sample once
                assert all(lo % bs == 0 for lo, hi in bounds if hi > lo)  # whole batches: the same forwards
                sizes = [-(-(hi - lo) // bs) for lo, hi in bounds]
                assert max(sizes) - min(sizes) <= 1


def test_dataset_slice_maps_indices_and_fingerprint():
    class DS:
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return i, i % 2

        def fingerprint(self):
            return "abc"

    s = DatasetSlice(DS(), 3, 7)
    assert len(s) == 4 and s[0] == (3, 1) and s[3] == (6, 0) and not hasattr(s, "get_batch")
    assert s.fingerprint() == "abc#rows[3:7]of10"
    with pytest.raises(IndexError):
        s[4]


def _rel(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / max(np.linalg.norm(np.asarray(b)), 1e-300)


@pytest.mark.slow
@pytest.mark.parametrize("cache", [True, False], ids=["shared-cache", "no-cache"])
def test_two_rank_extraction_equals_one_process(tmp_path, cache):
    from nctransfer.data import load_dataset
    from nctransfer.extract import extract
    from nctransfer.models import load_model

    out = tmp_path / "out"
    out.mkdir()
    torchrun([str(SCRIPTS / "extract_worker.py"), str(out), str(tmp_path / "cache") if cache else "none"])
    torch.set_num_threads(1)
    model = load_model("efficientnet_lite0")
    data = load_dataset("digits", "train", model=model, image_size=32, n=45)
    ref = extract(model, data, TAPS, batch_size=8, store_features=True, progress=False)
    metas = [json.loads((out / f"meta-{cache}-{r}.json").read_text()) for r in (0, 1)]
    assert [m["slice"] for m in metas] == [[0, 24], [24, 45]]  # N = 45: not a multiple of 2
    assert all(m["n"] == 45 and m["computed"] == 45 for m in metas)
    if cache:
        assert len(metas[0]["shards"]) == 2 and metas[0]["shards"] == metas[1]["shards"]
    for r in (0, 1):
        for t in TAPS:
            s = FeatureStats.load(out / f"stats-{cache}-{r}-{t}.npz")
            e = ref[t].stats
            assert s.n_samples == 45 and s.classes == e.classes
            np.testing.assert_array_equal(s.class_counts(), e.class_counts())
            for view in ("class_means", "sigma_W", "sigma_B", "sigma_T", "class_unit_sums", "class_variances"):
                assert _rel(getattr(s, view)(), getattr(e, view)()) <= 1e-10, (t, view)
            # stored features read back as one: the same rows in the same order
            np.testing.assert_array_equal(np.load(out / f"lab-{cache}-{r}-{t}.npy"), ref[t].labels)
            np.testing.assert_allclose(np.load(out / f"feat-{cache}-{r}-{t}.npy"), ref[t].features, rtol=1e-6,
                                       atol=1e-6)
