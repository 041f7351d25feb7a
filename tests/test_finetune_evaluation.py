"""The evaluation policy of a fine-tuning run: per-epoch numbers on fixed seeded subsets, the final test accuracy on
exactly the requested test split, once; ``eval_every=0`` evaluates only at the end; the evaluation pass uses the
extractor's batched data path."""

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from test_finetune_fixtures import single_thread, tiny_model  # noqa: F401
from nctransfer.finetune import FinetuneConfig, finetune

FAST = dict(batch_size=8, lr=0.01, progress=False, seed=0)


class Counting(Dataset):
    """Random images with a learnable signal; records how often each item is read."""

    def __init__(self, n, k=4, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.targets = torch.arange(n) % k
        self.x = torch.randn(n, 3, 32, 32, generator=g) + self.targets.view(-1, 1, 1, 1).float()
        self.reads = Counter()

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        self.reads[int(i)] += 1
        return self.x[i], self.targets[i]


def _accuracy(model, ds):
    model.eval()
    with torch.no_grad():
        return float((model(ds.x).argmax(1) == ds.targets).float().mean())


def test_final_accuracy_on_the_whole_test_split_once_and_per_epoch_on_the_subset():
    train, test = Counting(16, seed=1), Counting(24, seed=2)
    res = finetune(tiny_model("tv_resnet18"), train, test, method="lp", epochs=3, eval_every=1, eval_per_class=2,
                   **FAST)
    # epochs 1 and 2 read the same 8 test images (2 per class); epoch 3 (the final evaluation) reads all 24 once
    twice = sorted(i for i, c in test.reads.items() if c == 3)
    assert len(test.reads) == 24 and len(twice) == 8 and sorted(set(test.reads.values())) == [1, 3]
    assert np.bincount(test.targets[twice].numpy(), minlength=4).tolist() == [2, 2, 2, 2]
    per_epoch = [h["eval_samples"] for h in res.history]
    assert [s["test"]["n"] for s in per_epoch] == [8, 8, 24] and [s["train"]["n"] for s in per_epoch] == [8, 8, 16]
    assert per_epoch[0]["test"]["subset"] == "per_class=2, seed=202" and per_epoch[2]["test"]["subset"] == "full"
    assert per_epoch[0]["test"]["split"] == "test" and per_epoch[0]["train"]["split"] == "train"
    # the reported accuracy is the model's accuracy on exactly the requested test split
    assert res.test_accuracy == pytest.approx(_accuracy(res.model, test))
    assert res.test_accuracy == res.history[-1]["test_accuracy"] == res.evaluation["final"]["test_accuracy"]
    assert res.evaluation["final"]["eval_samples"]["test"] == {"split": "test", "subset": "full", "n": 24}
    assert res.evaluation["per_epoch"]["test"]["n"] == 8 and res.evaluation["eval_every"] == 1
    t = res.timing
    assert t["train"] > 0 and t["eval"] > 0 and t["probe"] == 0 and 0 < t["train_share"] < 1
    assert t["total"] >= t["train"] + t["eval"]


def test_eval_every_zero_evaluates_only_at_the_end():
    train, test = Counting(16, seed=1), Counting(12, seed=2)
    res = finetune(tiny_model("tv_resnet18"), train, test, method="scl", unit="layer3.0", epochs=3, eval_every=0,
                   **FAST)
    assert sorted(test.reads.values()) == [1] * 12  # every test image read exactly once, test NC1 from that pass
    assert ["test_accuracy" in h for h in res.history] == [False, False, True]
    assert res.history[-1]["test_penultimate_nc1"] >= 0 and res.test_accuracy == pytest.approx(
        _accuracy(res.model, test))


def test_eval_every_two_and_whole_sets_per_epoch():
    train, test = Counting(16, seed=1), Counting(12, seed=2)
    res = finetune(tiny_model("tv_resnet18"), train, test, method="lp", epochs=4, eval_every=2, eval_per_class=None,
                   **FAST)
    assert ["test_accuracy" in h for h in res.history] == [False, True, False, True]
    assert all(h["eval_samples"]["test"] == {"split": "test", "subset": "full", "n": 12}
               for h in res.history if "eval_samples" in h)
    assert sorted(set(test.reads.values())) == [2]


def test_run_stopped_early_gets_its_final_evaluation_on_the_whole_split():
    train, test = Counting(16, seed=1), Counting(24, seed=2)
    res = finetune(tiny_model("tv_resnet18"), train, test, method="lp", epochs=3, eval_per_class=2,
                   on_epoch_end=lambda r: r["epoch"] == 1, **FAST)
    assert res.epochs_completed == 1 and res.history[0]["eval_samples"]["test"]["n"] == 8
    assert res.evaluation["final"]["epoch"] == 1 and res.evaluation["final"]["eval_samples"]["test"]["n"] == 24
    assert res.test_accuracy == pytest.approx(_accuracy(res.model, test))


def test_evaluation_uses_whole_batches_like_the_extractor():
    """Datasets with ``get_batch`` (nctransfer.data) are evaluated one transformed batch at a time, never per item."""
    from nctransfer.data import load_dataset
    from nctransfer.finetune.evaluation import batches, evaluate

    ds = load_dataset("digits", "test", per_class=3)

    def per_item(i):
        raise AssertionError("evaluation read a single item")

    calls = []
    get_batch = ds.get_batch
    ds.__class__ = type("NoItems", (type(ds),), {"__getitem__": lambda self, i: per_item(i),
                                                  "get_batch": lambda self, idx: calls.append(len(idx))
                                                  or get_batch(idx)})
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    out = evaluate(model, batches(ds, 16), torch.device("cpu"), penultimate=True)
    assert calls == [16, 14] and out["n"] == 30 and out["stats"].n_samples == 30


def test_config_validation_and_round_trip():
    cfg = FinetuneConfig(method="lp", eval_every=0, eval_per_class=None)
    assert FinetuneConfig.from_json(cfg.to_json()) == cfg
    assert FinetuneConfig(method="lp").eval_per_class == 10 and FinetuneConfig(method="lp").eval_every == 1
    with pytest.raises(Exception, match=r"eval_every must be an integer >= 0; got -1"):
        FinetuneConfig(method="lp", eval_every=-1)
    with pytest.raises(Exception, match=r"eval_per_class must be an integer >= 1 or None; got 0"):
        FinetuneConfig(method="lp", eval_per_class=0)


def test_cli_test_per_class_and_eval_options(tmp_path, capsys):
    import json

    from nctransfer.cli.main import main
    from nctransfer.data import load_dataset

    out = tmp_path / "run"
    args = ["finetune", "--model", "torchvision:resnet18", "--no-pretrained", "--data", "digits", "--image-size", "32",
            "--epochs", "2", "--batch-size", "10", "--lr", "0.01", "--no-progress", "--method", "lp",
            "--per-class", "3", "--test-per-class", "2", "--eval-every", "0", "--out", str(out)]
    assert main(args) == 0
    assert "test accuracy on 20 images" in capsys.readouterr().out
    r = json.loads((out / "result.json").read_text())
    assert r["n_test"] == 20 and r["config"]["eval_every"] == 0 and r["config"]["eval_per_class"] == 10
    assert ["test_accuracy" in h for h in r["history"]] == [False, True]
    assert set(r["timing"]) >= {"train", "eval", "probe", "setup", "total", "train_share"}
    n_all = len(load_dataset("digits", "test"))
    args[args.index("--epochs") + 1] = "1"
    assert main([*args[:-4], "--eval-per-class", "all", "--test-per-class", "0", "--out", str(tmp_path / "all")]) == 0
    r = json.loads((tmp_path / "all" / "result.json").read_text())
    assert r["n_test"] == n_all and r["config"]["eval_per_class"] is None  # the whole digits test split
    assert r["history"][0]["eval_samples"]["test"] == {"split": "test", "subset": "full", "n": n_all}


def test_evaluation_keeps_small_feature_sets_and_their_nc1_equals_the_streamed_one(monkeypatch):
    """NC1 of an evaluation comes from the penultimate features themselves when they are few (no d x d matrix);
    it equals NC1 of the streamed statistics, and past the byte cap only the statistics are kept."""
    from nctransfer.finetune import evaluation
    from nctransfer.finetune.evaluation import batches, compute_nc1, evaluate

    ds = Counting(24, k=3, seed=3)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 3))
    out = evaluate(model, batches(ds, 10), torch.device("cpu"), penultimate=True)
    with torch.no_grad():
        h = model[:3](ds.x).numpy()
    assert out["features"].shape == (24, 4) and np.allclose(out["features"], h, rtol=1e-5, atol=1e-6)
    assert out["labels"].tolist() == ds.targets.tolist() and out["stats"].n_samples == 24
    assert compute_nc1(out["stats"], out["features"], out["labels"]) == pytest.approx(compute_nc1(out["stats"]),
                                                                                      rel=1e-10)
    monkeypatch.setattr(evaluation, "KEEP_FEATURES_BYTES", 24 * 4 * 4 - 1)  # one byte short of the 24 rows
    out = evaluate(model, batches(ds, 10), torch.device("cpu"), penultimate=True)
    assert out["features"] is None and out["labels"] is None and out["stats"].n_samples == 24


def test_inference_layout_is_channels_last_on_cpu_with_the_same_values():
    from nctransfer.finetune._data import inference_layout

    x = torch.randn(2, 3, 5, 5)
    y = inference_layout(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(
        memory_format=torch.channels_last) and torch.equal(x, y)
    flat, labels = torch.randn(4, 7), torch.arange(4)
    assert inference_layout(flat) is flat and inference_layout(labels) is labels


def test_per_epoch_subsets_of_in_memory_data_are_transformed_once():
    """A per-epoch subset of an ArrayImageDataset with the model's (deterministic) evaluation transform keeps its
    transformed batches after the first pass; the final whole sets and other datasets are read every time."""
    from nctransfer.data import load_dataset
    from nctransfer.finetune.evaluation import EvalPlan, evaluate

    train, test = load_dataset("digits", "train", per_class=4), load_dataset("digits", "test", per_class=3)
    calls = []
    for ds in (train, test):
        get_batch = ds.get_batch
        ds.get_batch = lambda idx, gb=get_batch: calls.append(len(idx)) or gb(idx)
    plan = EvalPlan.build(train, test, eval_every=1, per_class=2, seed=0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    first = evaluate(model, plan.epoch_test.batches(8), torch.device("cpu"), penultimate=True)
    assert calls == [8, 8, 4]  # 20 images (2 per class) read once, in whole batches
    again = evaluate(model, plan.epoch_test.batches(8), torch.device("cpu"), penultimate=True)
    assert calls == [8, 8, 4] and again["accuracy"] == first["accuracy"] and again["loss"] == first["loss"]
    assert np.array_equal(again["features"], first["features"])
    evaluate(model, plan.epoch_test.batches(5), torch.device("cpu"))  # another batch size: read again
    evaluate(model, plan.final_test.batches(8), torch.device("cpu"))
    evaluate(model, plan.final_test.batches(8), torch.device("cpu"))
    assert calls == [8, 8, 4, 5, 5, 5, 5] + [8, 8, 8, 6] * 2  # the whole 30-image test split: every time
    plan.epoch_test.release()
    evaluate(model, plan.epoch_test.batches(8), torch.device("cpu"))
    assert len(calls) == 18
