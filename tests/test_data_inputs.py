"""The user's own data in every common form, end to end on tiny real data (scikit-learn digits): each input form
gives the same features as the in-memory ``(X, y)`` path for the same images; content-fingerprinted cache keys;
clear errors for bad input."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, IterableDataset

from nctransfer.data import load_dataset, to_float_tensor
from nctransfer.exceptions import InputValueError, ShapeError
from nctransfer.extract import extract
from nctransfer.models import load_model

from _user_datasets import ToTensorDataset

TAP = ["penultimate"]


pytestmark = pytest.mark.usefixtures("one_thread")  # one thread (tests/conftest.py)


@pytest.fixture(scope="module")
def model():
    return load_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    idx = np.concatenate([np.flatnonzero(y == c)[:4] for c in range(10)])  # 40 images, 4 per class
    return (X[idx].reshape(-1, 8, 8) * 255 / 16).round().astype(np.uint8), y[idx].astype(np.int64)


@pytest.fixture(scope="module")
def reference(model, digits):
    X, y = digits
    ds = load_dataset((X, y), model=model, image_size=32)
    r = extract(model, ds, TAP, store_features=True, progress=False)["penultimate"]
    return r.features, r.labels


def _features(model, ds, **kw):
    r = extract(model, ds, TAP, store_features=True, progress=False, **kw)["penultimate"]
    return r.features, r.labels


class PILDataset(ToTensorDataset):
    def __getitem__(self, i):
        return Image.fromarray(self.X[i]), torch.tensor(self.y[i])


class NumpyDataset(ToTensorDataset):
    targets = None

    def __getitem__(self, i):
        return self.X[i][..., None], np.int64(self.y[i])  # [H, W, 1] uint8


def test_to_float_tensor_detects_pil_by_type_not_by_attributes():
    t = torch.rand(3, 5, 4)
    t.mode, t.size_ = "RGB", (4, 5)  # a tensor with PIL-like attributes is still a tensor
    assert torch.equal(to_float_tensor(t), t)
    img = Image.fromarray(np.arange(20, dtype=np.uint8).reshape(4, 5))
    np.testing.assert_array_equal(to_float_tensor(img).numpy()[0] * 255, np.arange(20).reshape(4, 5))
    rgba = Image.fromarray(np.full((2, 2, 4), 51, dtype=np.uint8), "RGBA")
    assert to_float_tensor(rgba).shape == (3, 2, 2) and float(to_float_tensor(rgba)[0, 0, 0]) == pytest.approx(0.2)


@pytest.mark.parametrize("cls", [ToTensorDataset, PILDataset, NumpyDataset])
def test_map_style_dataset_same_features_as_in_memory(model, digits, reference, cls):
    X, y = digits
    ds = load_dataset(cls(X, y), model=model, image_size=32, crop_pct=1.0)
    assert len(ds) == 40 and ds.targets.tolist() == y.tolist() and ds.meta["split"] == "given"
    f, lab = _features(model, ds)
    np.testing.assert_allclose(f, reference[0], atol=1e-4, rtol=1e-4)
    assert lab.tolist() == y.tolist()


def test_dataloader_used_as_given(model, digits, reference):
    X, y = digits
    loader = DataLoader(ToTensorDataset(X, y), batch_size=7)  # batches cut at shard boundaries of 10
    ds = load_dataset(loader, model=model, image_size=32, crop_pct=1.0)
    assert len(ds) == 40 and ds.targets.tolist() == y.tolist()
    f, lab = _features(model, ds, shard_size=10, batch_size=5)
    np.testing.assert_allclose(f, reference[0], atol=1e-4, rtol=1e-4)
    assert lab.tolist() == y.tolist()
    with pytest.raises(InputValueError, match="cannot be split"):
        load_dataset(loader, "train")
    with pytest.warns(UserWarning, match=r"drop_last=True\): 5 of 40 samples dropped"):
        dropped = load_dataset(DataLoader(ToTensorDataset(X, y), batch_size=7, drop_last=True))
    assert len(dropped) == 35


def test_hugging_face_dataset_columns_and_classlabel_names(model, digits, reference):
    datasets = pytest.importorskip("datasets")
    X, y = digits
    names = [f"digit-{i}" for i in range(10)]
    feats = datasets.Features({"picture": datasets.Image(), "digit": datasets.ClassLabel(names=names),
                               "note": datasets.Value("string")})
    hf = datasets.Dataset.from_dict({"picture": [Image.fromarray(x) for x in X], "digit": y.tolist(),
                                     "note": ["n"] * len(y)}, features=feats)
    ds = load_dataset(hf, model=model, image_size=32, crop_pct=1.0)
    assert ds.classes == names and ds.targets.tolist() == y.tolist()
    np.testing.assert_allclose(_features(model, ds)[0], reference[0], atol=1e-4, rtol=1e-4)
    plain = datasets.Dataset.from_dict({"pix": [x.tolist() for x in X], "kind": y.tolist()})
    with pytest.raises(InputValueError, match="no image column"):
        load_dataset(plain)
    ds2 = load_dataset(plain, image_column="pix", label_column="kind", model=model, image_size=32, crop_pct=1.0)
    np.testing.assert_allclose(_features(model, ds2)[0], reference[0], atol=1e-4, rtol=1e-4)
    dd = datasets.DatasetDict({"train": hf, "test": hf.select(range(10))})
    assert len(load_dataset(dd, "test")) == 10 and len(load_dataset(dd, "train")) == 40


def test_explicit_train_test_are_never_resplit(model, digits, reference):
    X, y = digits
    tr, te = ToTensorDataset(X[:30], y[:30]), PILDataset(X[30:], y[30:])
    train = load_dataset(train=tr, test=te, split="train", model=model, image_size=32, crop_pct=1.0)
    test = load_dataset({"train": tr, "test": te}, "test", model=model, image_size=32, crop_pct=1.0)
    assert len(train) == 30 and len(test) == 10
    np.testing.assert_allclose(_features(model, train)[0], reference[0][:30], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(_features(model, test)[0], reference[0][30:], atol=1e-4, rtol=1e-4)
    with pytest.raises(InputValueError, match="no val dataset"):
        load_dataset(train=tr, test=te, split="val")
    with pytest.raises(InputValueError, match="either spec or explicit"):
        load_dataset("digits", train=tr)


def test_image_folder_png_rgb_gray_rgba_mixed(model, digits, reference, tmp_path):
    X, y = digits
    for i, (x, c) in enumerate(zip(X, y)):
        d = tmp_path / f"class{c}"
        d.mkdir(exist_ok=True)
        kind = i % 3
        img = (Image.fromarray(x) if kind == 0 else Image.fromarray(np.repeat(x[..., None], 3, 2)) if kind == 1
               else Image.fromarray(np.concatenate([np.repeat(x[..., None], 3, 2), np.full_like(x[..., None], 255)],
                                                   2), "RGBA"))
        img.save(d / f"{i:03d}.png")
    ds = load_dataset(tmp_path, "all", model=model, image_size=32, crop_pct=1.0)
    assert len(ds) == 40
    f, lab = _features(model, ds)
    order = np.argsort([f"class{c}/{i:03d}" for i, c in enumerate(y)], kind="stable")  # ImageFolder's file order
    np.testing.assert_allclose(f, reference[0][order], atol=1e-4, rtol=1e-4)
    assert lab.tolist() == y[order].tolist()


# ------------------------------------------------------------------------------------------------ cache
def test_same_class_labels_transform_different_pixels_get_different_features(model, digits, tmp_path):
    X, y = digits
    a = load_dataset(ToTensorDataset(X, y), model=model, image_size=32)
    b = load_dataset(ToTensorDataset(255 - X, y), model=model, image_size=32)
    assert a.fingerprint() != b.fingerprint()
    ra = extract(model, a, TAP, store_features=True, cache_dir=tmp_path, progress=False)
    rb = extract(model, b, TAP, store_features=True, cache_dir=tmp_path, progress=False)
    assert not rb.from_cache and rb.cache_path != ra.cache_path
    assert not np.allclose(ra["penultimate"].features, rb["penultimate"].features)
    again = extract(model, load_dataset(ToTensorDataset(X, y), model=model, image_size=32), TAP,
                    store_features=True, cache_dir=tmp_path, progress=False)
    assert again.from_cache
    np.testing.assert_array_equal(again["penultimate"].features, ra["penultimate"].features)


def test_changing_one_image_of_a_cached_folder_invalidates_it(model, digits, tmp_path):
    X, y = digits
    root = tmp_path / "imgs"
    for i, (x, c) in enumerate(zip(X[:12], y[:12])):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(x).save(root / f"c{c}" / f"{i}.png")
    kw = dict(store_features=True, cache_dir=tmp_path / "cache", progress=False)
    first = extract(model, load_dataset(root, "all", model=model, image_size=32), TAP, **kw)
    assert extract(model, load_dataset(root, "all", model=model, image_size=32), TAP, **kw).from_cache
    victim = sorted(root.rglob("*.png"))[5]
    arr = np.array(Image.open(victim))
    arr[0, 0] ^= 1  # one pixel, one bit; same file size class, same name
    Image.fromarray(arr).save(victim)
    changed = extract(model, load_dataset(root, "all", model=model, image_size=32), TAP, **kw)
    assert not changed.from_cache and changed.cache_path != first.cache_path


def test_tampered_cache_entry_is_rebuilt(model, digits, tmp_path):
    X, y = digits
    ds = load_dataset(ToTensorDataset(X, y), model=model, image_size=32)
    first = extract(model, ds, TAP, store_features=True, cache_dir=tmp_path, progress=False)
    manifest = first.cache_path / "manifest.json"
    m = json.loads(manifest.read_text())
    m["key"]["dataset"] = "someone-else"  # a recorded fingerprint that differs from the data
    manifest.write_text(json.dumps(m))
    rebuilt = extract(model, ds, TAP, store_features=True, cache_dir=tmp_path, progress=False)
    assert not rebuilt.from_cache and rebuilt.computed_samples == 40
    np.testing.assert_array_equal(rebuilt["penultimate"].features, first["penultimate"].features)
    shard = next(first.cache_path.glob("shard-*.npz"))
    shard.write_bytes(shard.read_bytes()[:-7] + b"garbage")
    with pytest.warns(UserWarning, match="corrupted"):
        again = extract(model, ds, TAP, store_features=True, cache_dir=tmp_path, progress=False)
    assert not again.from_cache
    np.testing.assert_array_equal(again["penultimate"].features, first["penultimate"].features)


# ------------------------------------------------------------------------------------------------ bad input
def test_dataset_yielding_something_that_is_not_an_image():
    class Words(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return "a cat", i % 2

    with pytest.raises(InputValueError, match=r"Words\[0\]: expected an image .*got str 'a cat'"):
        load_dataset(Words())

    class Vectors(Words):
        targets = [0, 1, 0, 1]

        def __getitem__(self, i):
            return torch.zeros(5), i % 2

    ds = load_dataset(Vectors())
    with pytest.raises(ShapeError, match=r"Vectors\[0\]: expected one image"):
        ds[0]


def test_labels_missing():
    class NoLabels(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.zeros(1, 4, 4)

    with pytest.raises(InputValueError, match="labels missing: expected \\(image, label\\) pairs; the item is a "
                                              "Tensor"):
        load_dataset(NoLabels())
    with pytest.raises(InputValueError, match="labels missing"):
        load_dataset(DataLoader(NoLabels(), batch_size=2)).targets


def test_iterable_dataset_needs_dataset_id(model, digits, reference, tmp_path):
    X, y = digits

    class Stream(IterableDataset):
        def __iter__(self):
            for i in range(len(y)):
                yield torch.from_numpy(X[i]).float()[None] / 255.0, int(y[i])

    with pytest.raises(InputValueError, match="iterable dataset .*dataset_id="):
        load_dataset(Stream())
    with pytest.raises(InputValueError, match="iterable dataset .*dataset_id="):
        extract(model, Stream(), TAP, cache_dir=tmp_path, progress=False)
    ds = load_dataset(Stream(), dataset_id="digits-stream-v1", model=model, image_size=32, crop_pct=1.0)
    r = extract(model, ds, TAP, store_features=True, cache_dir=tmp_path, progress=False)
    np.testing.assert_allclose(r["penultimate"].features, reference[0], atol=1e-4, rtol=1e-4)
    ds2 = load_dataset(Stream(), dataset_id="digits-stream-v1", model=model, image_size=32, crop_pct=1.0)
    assert extract(model, ds2, TAP, store_features=True, cache_dir=tmp_path, progress=False).from_cache
