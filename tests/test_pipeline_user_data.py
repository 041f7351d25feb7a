"""rank_models on the user's own data (explicit train/test Datasets, DataLoaders, a Hugging Face dataset, taps by
module path) and its result object: dict keys kept, ``to_frame()`` and ``evaluation_frame()``."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from torch.utils.data import DataLoader

from nctransfer.exceptions import InputValueError
from nctransfer.pipeline import RankResult, rank_models

from _user_datasets import ToTensorDataset, hf_image_dataset

MODELS = ["timm:resnet10t", "timm:efficientnet_lite0"]
FAST = dict(pretrained=False, image_size=32, per_class=None, test_per_class=None, probe_C_grid=(0.1, 1.0),
            progress=False, methods="logme,hscore")


def tiny(n_per_class=16, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n_per_class)
    X = (rng.random((len(y), 16, 16)) * 100).astype(np.uint8)
    for c in range(k):
        r, q = divmod(c, 2)
        X[y == c, 8 * r:8 * r + 8, 8 * q:8 * q + 8] += 150
    return X, y


pytestmark = pytest.mark.usefixtures("one_thread")  # one thread (tests/conftest.py)


@pytest.fixture(scope="module")
def split():
    X, y = tiny()
    te = np.arange(len(y)) % 4 == 0
    return (X[~te], y[~te]), (X[te], y[te])


@pytest.fixture(scope="module")
def explicit(split, tmp_path_factory):
    (Xtr, ytr), (Xte, yte) = split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rank_models(MODELS, train=ToTensorDataset(Xtr, ytr), test=ToTensorDataset(Xte, yte),
                           cache_dir=tmp_path_factory.mktemp("c"), **FAST)


def test_explicit_train_test_used_as_given_and_result_object(explicit, split):
    res = explicit
    assert isinstance(res, RankResult) and isinstance(res, dict)
    assert res["data"]["n_train"] == len(split[0][1]) and res["data"]["n_test"] == len(split[1][1])  # no re-split
    assert res["ranking"][0] == res["recommended"] == res.recommended
    json.loads(json.dumps(res, default=str))  # still the JSON-able dict
    df = res.to_frame()
    assert list(df.index) == res["ranking"] and df["rank"].tolist() == [1, 2]
    assert df.loc[res.recommended, "recommended"] and not df["recommended"].iloc[1]
    for name in res["ranking"]:
        assert df.loc[name, "logme"] == pytest.approx(res["scores"][name]["logme"])
        assert df.loc[name, "truth_accuracy"] == pytest.approx(res["truth"]["accuracy"][name])
        assert df.loc[name, "collapse.nc1"] == pytest.approx(res["collapse"][name]["nc1"])
    ev = res.evaluation_frame()
    assert set(res["evaluation"]) <= set(ev.index)
    for m, e in res["evaluation"].items():
        for k, v in e.items():
            assert (np.isnan(ev.loc[m, k]) if v is None else ev.loc[m, k] == pytest.approx(v))
    assert ev["recommended"].sum() == 1 and ev.loc[ev.index[ev["recommended"]][0]].name == res["recommended_score"]
    assert not df.attrs and not ev.attrs


def test_dataloaders_give_the_same_ranking(explicit, split):
    (Xtr, ytr), (Xte, yte) = split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = rank_models(MODELS, train=DataLoader(ToTensorDataset(Xtr, ytr), batch_size=5),
                          test=DataLoader(ToTensorDataset(Xte, yte), batch_size=5), cache_dir=None, **FAST)
    assert res["ranking"] == explicit["ranking"]
    for n in res["ranking"]:
        assert res["scores"][n]["logme"] == pytest.approx(explicit["scores"][n]["logme"], rel=1e-3)
        assert res["truth"]["accuracy"][n] == pytest.approx(explicit["truth"]["accuracy"][n])


def test_hugging_face_dataset_dict_and_taps_by_path(explicit, split):
    datasets = pytest.importorskip("datasets")

    (Xtr, ytr), (Xte, yte) = split
    dd = datasets.DatasetDict({"train": hf_image_dataset(datasets, Xtr, ytr, "abc"),
                               "test": hf_image_dataset(datasets, Xte, yte, "abc")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = rank_models(MODELS[:1] + ["timm:resnet18"], dd, taps="layer1.0.conv1,layer2.0", cache_dir=None,
                          **FAST)
    assert res["data"]["classes"] == ["a", "b", "c"]
    assert {c["tap"] for c in res["candidates"]} == {"layer1.0.conv1", "layer2.0"}
    assert len(res.to_frame()) == 4


def test_bad_explicit_arguments():
    X, y = tiny()
    with pytest.raises(InputValueError, match="either data or explicit"):
        rank_models(MODELS, (X, y), train=ToTensorDataset(X, y), test=ToTensorDataset(X, y), **FAST)
    with pytest.raises(InputValueError, match="need both train="):
        rank_models(MODELS, train=ToTensorDataset(X, y), **FAST)
    with pytest.raises(InputValueError, match="cannot be split"):
        rank_models(MODELS, DataLoader(ToTensorDataset(X, y)), cache_dir=None, **FAST)


def test_cli_explicit_test_folder_and_taps_by_path(split, tmp_path):
    from PIL import Image

    from nctransfer.cli.main import main

    for part, (X, y) in zip(("tr", "te"), split):
        for i, (x, c) in enumerate(zip(X, y)):
            (tmp_path / part / f"class{c}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(x).save(tmp_path / part / f"class{c}" / f"{i}.png")
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["rank", "--models", "timm:resnet10t,timm:resnet18", "--data", str(tmp_path / "tr"),
                   "--test-data", str(tmp_path / "te"), "--taps", "layer1.0.conv1,penultimate", "--no-pretrained",
                   "--image-size", "32", "--per-class", "100", "--test-per-class", "100", "--methods",
                   "logme,hscore", "--out", str(out), "--cache-dir", "none", "--quiet"])
    assert rc == 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["data"]["n_train"] == len(split[0][1]) and saved["data"]["n_test"] == len(split[1][1])
    assert {c["tap"] for c in saved["candidates"]} == {"layer1.0.conv1", "penultimate"}


def test_layers_analyze_and_finetune_take_user_data(split):
    datasets = pytest.importorskip("datasets")

    from nctransfer.data import load_dataset
    from nctransfer.finetune import finetune
    from nctransfer.layers import analyze
    from nctransfer.models import load_model

    (Xtr, ytr), (Xte, yte) = split
    model = load_model("timm:resnet10t", pretrained=False)
    tr = load_dataset(DataLoader(ToTensorDataset(Xtr, ytr), batch_size=8), model=model, image_size=32)
    te = load_dataset(ToTensorDataset(Xte, yte), model=model, image_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        la = analyze(model, tr, te, "layer2.0,layer3.0.conv1,penultimate", probe=False, progress=False)
    assert la.taps == ["layer2.0", "layer3.0.conv1", "penultimate"]
    hf_tr = hf_image_dataset(datasets, Xtr, ytr, "abc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = finetune(model, hf_tr, te, method="linear_probe", epochs=1, batch_size=8, image_size=32,
                     progress=False)  # a HF dataset gets the model's transform; a loaded dataset is used as given
    assert r.n_train == len(ytr) and r.n_test == len(yte) and 0.0 <= r.test_accuracy <= 1.0
    with pytest.raises(InputValueError, match="needs a map-style dataset"):
        finetune(model, DataLoader(ToTensorDataset(Xtr, ytr)), ToTensorDataset(Xte, yte), method="linear_probe", epochs=1)


def test_cli_hf_name_loads_the_hub_dataset(split, tmp_path, monkeypatch):
    """``--data hf:<name>`` goes through ``datasets.load_dataset`` (replaced here by a local DatasetDict: no
    network); ClassLabel names reach the results."""
    datasets = pytest.importorskip("datasets")

    from nctransfer.cli.main import main

    (Xtr, ytr), (Xte, yte) = split

    def hf(X, y):
        return hf_image_dataset(datasets, X, y, "xyz", image="img", label="fine")

    asked = []

    def fake_load_dataset(name, config=None, **kw):
        asked.append((name, config))
        return datasets.DatasetDict({"train": hf(Xtr, ytr), "test": hf(Xte, yte)})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["rank", "--models", ",".join(MODELS), "--data", "hf:someone/tiny-shapes", "--no-pretrained",
                   "--image-size", "32", "--per-class", "100", "--test-per-class", "100", "--methods", "logme",
                   "--out", str(out), "--cache-dir", "none", "--quiet"])
    assert rc == 0 and asked and asked[0] == ("someone/tiny-shapes", None)
    saved = json.loads((out / "results.json").read_text())
    assert saved["data"]["classes"] == ["x", "y", "z"] and saved["data"]["n_test"] == len(yte)
