"""nctransfer.data: Fashion-MNIST / digits / arrays / ImageFolder loaders, eval transform, subsampling, splits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nctransfer.data import (
    FASHION_MNIST_CLASSES,
    balanced_indices,
    eval_transform,
    find_fashion_mnist,
    load_dataset,
    stratified_holdout,
    subsample,
)
from nctransfer.exceptions import InputValueError, NotFoundError, ShapeError

INFO = {"input_size": (3, 32, 32), "mean": (0.5, 0.25, 0.5), "std": (0.5, 0.5, 0.25), "interpolation": "bilinear",
        "crop_pct": 0.875}


def _has_fmnist() -> bool:
    try:
        find_fashion_mnist()
        return True
    except NotFoundError:
        return False


needs_fmnist = pytest.mark.skipif(not _has_fmnist(), reason="Fashion-MNIST IDX files not installed")


@needs_fmnist
@pytest.mark.slow
def test_fashion_mnist_splits_shapes_labels():
    sizes = {s: len(load_dataset("fashion-mnist", s)) for s in ("train", "val", "test", "trainval")}
    assert sizes == {"train": 54000, "val": 6000, "test": 10000, "trainval": 60000}
    ds = load_dataset("fashion-mnist", "test")
    x, y = ds[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert ds.classes == FASHION_MNIST_CLASSES and ds.targets.dtype == np.int64
    assert set(np.unique(ds.targets)) == set(range(10)) and (ds.class_counts() == 1000).all()
    tr, va = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "val")
    assert (va.class_counts() == 600).all()
    # train and val partition the official training set: no image in both
    a = {bytes(im) for im in tr.images[:2000].numpy()}
    assert sum(bytes(im) in a for im in va.images.numpy()) <= 5  # (Fashion-MNIST has a few exact duplicates)


@needs_fmnist
def test_fashion_mnist_balanced_subsample_and_model_transform():
    info = dict(INFO, crop_pct=0.875)
    ds = load_dataset("fashion-mnist", "train", model=info, image_size=40, per_class=7, seed=3)
    assert len(ds) == 70 and (ds.class_counts() == 7).all()
    x, y = ds.get_batch(np.arange(5))
    assert x.shape == (5, 3, 40, 40) and y.dtype == torch.int64
    m, s = torch.tensor(INFO["mean"]).view(3, 1, 1), torch.tensor(INFO["std"]).view(3, 1, 1)
    unnorm = x[0] * s + m  # grayscale repeated to three channels before normalisation
    torch.testing.assert_close(unnorm[0], unnorm[1])
    torch.testing.assert_close(unnorm[0], unnorm[2])
    assert torch.equal(ds[2][0], x[2])  # per-item and batched paths identical
    again = load_dataset("fashion-mnist", "train", model=info, image_size=40, per_class=7, seed=3)
    assert torch.equal(again.images, ds.images) and again.fingerprint() == ds.fingerprint()
    other = load_dataset("fashion-mnist", "train", model=info, image_size=40, per_class=7, seed=4)
    assert not torch.equal(other.images, ds.images) and other.fingerprint() != ds.fingerprint()


def test_digits_splits_are_deterministic_and_disjoint():
    parts = {s: load_dataset("digits", s) for s in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == 1797 == len(load_dataset("digits", "all"))
    assert len(parts["test"]) == 359 and len(load_dataset("digits", "trainval")) == 1797 - 359
    x, y = parts["train"][0]
    assert x.shape == (1, 8, 8) and 0 <= float(x.min()) and float(x.max()) <= 1
    for p in parts.values():
        assert set(np.unique(p.targets)) == set(range(10))
    # deterministic: same split twice; different split_seed gives another split
    assert torch.equal(load_dataset("digits", "test").images, parts["test"].images)
    assert not torch.equal(load_dataset("digits", "test", split_seed=1).images, parts["test"].images)
    allimgs = load_dataset("digits", "all").images.reshape(1797, -1).numpy()
    rows = {tuple(r) for r in parts["test"].images.reshape(len(parts["test"]), -1).numpy()}
    tr_rows = [tuple(r) for r in parts["train"].images.reshape(len(parts["train"]), -1).numpy()]
    dup = len(allimgs) - len({tuple(r) for r in allimgs})
    assert sum(r in rows for r in tr_rows) <= dup


@pytest.mark.parametrize("per_class, seed", [(5, 0), (5, 1), (20, 0)])
def test_digits_balanced_subsampling_seeds(per_class, seed):
    ds = load_dataset("digits", "train", per_class=per_class, seed=seed)
    assert (ds.class_counts() == per_class).all()
    assert torch.equal(ds.images, load_dataset("digits", "train", per_class=per_class, seed=seed).images)
    assert not torch.equal(ds.images, load_dataset("digits", "train", per_class=per_class, seed=seed + 7).images)


def test_subsample_by_total_and_too_few_warns():
    ds = load_dataset("digits", "train")
    sub = subsample(ds, n=24, seed=0)
    assert len(sub) == 24 and sorted(sub.class_counts()) == [2] * 6 + [3] * 4
    with pytest.warns(UserWarning, match="fewer samples"):
        big = subsample(ds, per_class=10_000)
    assert len(big) == len(ds)
    with pytest.raises(InputValueError, match="fewer samples"):
        balanced_indices(ds.targets, 10_000, strict=True)
    with pytest.raises(InputValueError, match="per_class"):
        subsample(ds, per_class=0)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=10, max_size=80), st.integers(1, 6), st.integers(0, 10))
def test_balanced_indices_properties(labels, k, seed):
    y = np.array(labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # classes smaller than k keep all their samples
        idx = balanced_indices(y, k, seed=seed)
        bigger = balanced_indices(y, k + 2, seed=seed)
    counts = np.bincount(y[idx], minlength=5)
    full = np.bincount(y, minlength=5)
    assert (counts == np.minimum(full, k)).all()
    assert (np.diff(idx) > 0).all()
    assert set(idx) <= set(bigger)  # same seed, larger budget: a superset


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=4, max_size=60), st.floats(0.0, 0.9), st.integers(0, 5))
def test_stratified_holdout_partitions(labels, frac, seed):
    y = np.array(labels)
    keep, held = stratified_holdout(y, frac, seed)
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == len(y)
    for c in np.unique(y):
        assert (y[held] == c).sum() == int(round(frac * (y == c).sum()))


def test_arrays_dataset_layouts_labels_and_errors():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (30, 10, 12, 3), dtype=np.uint8)
    y = np.array(["b", "a", "c"] * 10)
    ds = load_dataset((X, y), model=INFO)
    assert ds.classes == ["a", "b", "c"] and ds.targets[:3].tolist() == [1, 0, 2]
    x, _ = ds[0]
    assert x.shape == (3, 32, 32)
    raw = load_dataset((X, y))
    assert raw[0][0].shape == (3, 10, 12)
    torch.testing.assert_close(raw[0][0], torch.from_numpy(X[0]).permute(2, 0, 1).float() / 255)
    assert len(load_dataset((X, y), "test")) == 6
    with pytest.raises(InputValueError, match=r"\[0, 1\]"):
        load_dataset((X.astype(np.float32), y))
    with pytest.raises(ShapeError, match="images"):
        load_dataset((np.zeros((4, 5)), np.arange(4)))
    with pytest.raises(InputValueError, match="split"):
        load_dataset((X, y), "training")
    with pytest.raises(NotFoundError, match="Did you mean: fashion-mnist"):
        load_dataset("fashion-mnst")
    with pytest.raises(InputValueError, match="image_size needs model"):
        load_dataset((X, y), image_size=16)


def test_eval_transform_exact_values():
    t = eval_transform(dict(INFO, crop_pct=1.0), image_size=4)
    img = torch.zeros(1, 1, 4, 4)
    img[0, 0, 1, 2] = 1.0
    out = t.batch(img)
    assert out.shape == (1, 3, 4, 4)
    # no resize needed: values are exactly (x - mean) / std per channel
    assert out[0, 0, 1, 2].item() == pytest.approx((1 - 0.5) / 0.5)
    assert out[0, 1, 0, 0].item() == pytest.approx((0 - 0.25) / 0.5)
    assert out[0, 2, 1, 2].item() == pytest.approx((1 - 0.5) / 0.25)
    # centre crop: 8x8 with crop_pct 0.5 to 4x4 keeps the middle exactly (no resize: 4 / 0.5 = 8)
    big = torch.arange(64.0).reshape(1, 1, 8, 8) / 64
    c = eval_transform(dict(INFO, mean=(0, 0, 0), std=(1, 1, 1)), image_size=4, crop_pct=0.5).batch(big)
    torch.testing.assert_close(c[0, 0], big[0, 0, 2:6, 2:6])
    # uint8 PIL-style input and a non-square image: shorter side resized, then centre crop
    u8 = np.full((20, 40), 255, dtype=np.uint8)
    assert eval_transform(INFO)(u8).shape == (3, 32, 32)
    with pytest.raises(InputValueError, match="crop_pct"):
        eval_transform(INFO, crop_pct=0)
    with pytest.raises(InputValueError, match="input_size"):
        eval_transform(object())


def test_image_folder_and_subdir_splits(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "flat" / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(tmp_path / "flat" / cls / f"{i}.png")
        for sub, n in (("train", 6), ("test", 3)):
            (tmp_path / "split" / sub / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (9, 9), dtype=np.uint8)).save(
                    tmp_path / "split" / sub / cls / f"{i}.png")
    flat = load_dataset(tmp_path / "flat", "all", model=INFO)
    assert len(flat) == 20 and flat.classes == ["cat", "dog"] and flat[0][0].shape == (3, 32, 32)
    assert len(load_dataset(tmp_path / "flat", "test")) == 4
    x, y = flat.get_batch([0, 19])
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [0, 1]
    assert len(load_dataset(tmp_path / "split", "test")) == 6
    assert len(load_dataset(tmp_path / "split", "trainval")) == 12
    assert len(load_dataset(tmp_path / "split", "train")) + len(load_dataset(tmp_path / "split", "val")) == 12
    g = load_dataset(tmp_path / "split", "test", model=INFO)
    assert g[0][0].shape == (3, 32, 32)  # grayscale files repeated to RGB
    assert g.fingerprint() != load_dataset(tmp_path / "split", "trainval", model=INFO).fingerprint()


def test_torchvision_dataset_without_download_is_clear(tmp_path):
    with pytest.raises(NotFoundError, match="download=True"):
        load_dataset("torchvision:MNIST", root=tmp_path)
    with pytest.raises(NotFoundError, match="Did you mean: FashionMNIST"):
        load_dataset("torchvision:FashionMNSIT", root=tmp_path)


@needs_fmnist
def test_torchvision_fashion_mnist_from_local_files(tmp_path):
    """torchvision's FashionMNIST reading the Debian IDX files (copied into its raw/ layout): in memory."""
    import gzip

    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in find_fashion_mnist().iterdir():
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rb") as src:
            (raw / f.name.removesuffix(".gz")).write_bytes(src.read())
    ds = load_dataset("torchvision:FashionMNIST", "test", root=tmp_path, model=INFO, per_class=3)
    assert len(ds) == 30 and ds.get_batch([0, 1])[0].shape == (2, 3, 32, 32)
    ours = load_dataset("fashion-mnist", "test", model=INFO, per_class=3)
    assert torch.equal(ds.get_batch(range(30))[0], ours.get_batch(range(30))[0])
