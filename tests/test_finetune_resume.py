"""Checkpointing: a run stopped after epoch k and resumed equals the uninterrupted run (CPU, fixed seed)."""

import json

import pytest
import torch
from torch.utils.data import TensorDataset

from test_finetune_fixtures import tiny_model, single_thread  # noqa: F401
from nctransfer.exceptions import InputValueError
from nctransfer.finetune import FinetuneResult, finetune

CFG = dict(method="scl", unit="layer3.0", skip="conv", epochs=3, batch_size=5, lr=0.02, progress=False, seed=3)


def data(n=16, k=4):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.arange(n) % k
    ds = TensorDataset(x, y)
    ds.targets = y
    return ds


def _model():
    # timm ResNet18 with head dropout: the resumed run must also restore the RNG that drives dropout
    from nctransfer.models import load_model

    torch.manual_seed(0)  # same random initial weights for every run
    return load_model("timm:resnet18", pretrained=False, num_classes=4, drop_rate=0.3)


def _strip(history):
    return [{k: v for k, v in h.items() if "seconds" not in k and k != "peak_memory_mb"} for h in history]


def test_stopped_and_resumed_equals_uninterrupted(tmp_path):
    ds = data()
    full = finetune(_model(), ds, ds, out_dir=tmp_path / "a", **CFG)

    stop_after = 1
    part = finetune(_model(), ds, ds, out_dir=tmp_path / "b", on_epoch_end=lambda r: r["epoch"] == stop_after, **CFG)
    assert part.epochs_completed == stop_after
    resumed = finetune(_model(), ds, ds, out_dir=tmp_path / "b", resume=True, **CFG)
    assert resumed.epochs_completed == 3
    assert _strip(resumed.history) == _strip(full.history)
    sa, sb = full.model.state_dict(), resumed.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    saved = json.loads((tmp_path / "b" / "result.json").read_text())
    assert saved["test_accuracy"] == full.test_accuracy and len(saved["history"]) == 3
    assert FinetuneResult.load(tmp_path / "b" / "result.json").penultimate_nc1 == full.penultimate_nc1


def test_crash_mid_run_loses_at_most_one_epoch(tmp_path):
    ds = data()

    def crash(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(_model(), ds, ds, out_dir=tmp_path, on_epoch_end=crash, **CFG)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2
    res = finetune(_model(), ds, ds, out_dir=tmp_path, resume=True, **CFG)
    assert [h["epoch"] for h in res.history] == [1, 2, 3]


def test_resume_with_other_config_fails_clearly(tmp_path):
    ds = data()
    finetune(_model(), ds, ds, out_dir=tmp_path, on_epoch_end=lambda r: True, **CFG)
    with pytest.raises(InputValueError, match=r"different configuration \(fields \['lr'\] differ"):
        finetune(_model(), ds, ds, out_dir=tmp_path, resume=True, **{**CFG, "lr": 0.5})
