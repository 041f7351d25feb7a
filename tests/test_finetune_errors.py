"""Bad input fails clearly: unknown unit, model without units, one class, too few samples for the batch size."""

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from test_finetune_fixtures import tiny_model, single_thread  # noqa: F401
from nctransfer.exceptions import InputValueError, NotFoundError
from nctransfer.finetune import finetune, layer_ft, linear_probe, scl_ft

FAST = dict(epochs=1, batch_size=4, lr=0.01, progress=False)


def ds(n=8, k=4, hw=32):
    x = torch.randn(n, 3, hw, hw)
    y = torch.arange(n) % k
    d = TensorDataset(x, y)
    d.targets = y
    return d


def test_unknown_unit_lists_the_valid_ones():
    valid = r"\['layer1.0', 'layer1.1', 'layer2.0', 'layer2.1', 'layer3.0', 'layer3.1', 'layer4.0', 'layer4.1'\]"
    with pytest.raises(NotFoundError, match=r"unknown unit 'layer5.0'.*Valid units: " + valid):
        scl_ft(tiny_model("tv_resnet18"), ds(), ds(), unit="layer5.0", **FAST)
    with pytest.raises(NotFoundError, match=r"index 16 is out of range.*16 fine-tuning units"):
        layer_ft(tiny_model("efficientnet_lite0"), ds(), ds(), unit=16, **FAST)


class NoUnits(nn.Module):
    def __init__(self):
        super().__init__()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x):
        return self.fc(self.flat(x))


def test_model_without_units_explains_what_is_supported():
    with pytest.raises(InputValueError, match=r"no fine-tuning units found in NoUnits.*ResNet-style residual blocks"
                                              r".*timm blocks.*ViT encoder layers.*linear_probe and full_ft work"):
        scl_ft(NoUnits(), ds(hw=8), ds(hw=8), unit=0, **FAST)
    res = linear_probe(NoUnits(), ds(hw=8), ds(hw=8), **FAST)  # ...and indeed they do
    assert res.trainable_names == ["fc.weight", "fc.bias"]


def test_one_class_fails_clearly():
    one = ds(k=1)
    with pytest.raises(InputValueError, match=r"at least 2 classes; the training set has 1 \(label \[0\]\) in 8"):
        linear_probe(tiny_model("tv_resnet18"), one, ds(), **FAST)


def test_too_few_samples_for_batch_size():
    with pytest.raises(InputValueError, match=r"batch_size: the training set has 6 samples, fewer than batch_size=32"):
        linear_probe(tiny_model("tv_resnet18"), ds(n=6), ds(), **{**FAST, "batch_size": 32})


def test_empty_test_set_and_bad_labels():
    empty = TensorDataset(torch.zeros(0, 3, 32, 32), torch.zeros(0, dtype=torch.long))
    empty.targets = torch.zeros(0, dtype=torch.long)
    with pytest.raises(InputValueError, match="test set is empty"):
        linear_probe(tiny_model("tv_resnet18"), ds(), empty, **FAST)
    bad = TensorDataset(torch.zeros(8, 3, 32, 32), torch.tensor([0.5] * 8))
    with pytest.raises(InputValueError, match="labels must be integers"):
        linear_probe(tiny_model("tv_resnet18"), bad, ds(), **FAST)


def test_pad_too_narrow_points_to_conv():
    class Wide(nn.Module):  # unit output (16 channels) wider than the penultimate feature (8)
        def __init__(self):
            super().__init__()
            self.layer1 = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU())
            self.layer2 = nn.Sequential(nn.Conv2d(16, 8, 3), nn.ReLU())
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(self.layer2(self.layer1(x)).mean((2, 3)))

    with pytest.raises(InputValueError, match=r"skip='pad'.*16 channels.*skip='conv'"):
        scl_ft(Wide(), ds(hw=8), ds(hw=8), unit="layer1.0", **FAST)
    res = scl_ft(Wide(), ds(hw=8), ds(hw=8), unit="layer1.0", skip="conv", **FAST)
    assert res.trainable_names[-3:] == ["nctransfer_skip.conv.weight", "nctransfer_skip.bn.weight",
                                        "nctransfer_skip.bn.bias"]


def test_divergence_is_reported():
    with pytest.raises(FloatingPointError, match=r"training diverged.*lower lr"):
        finetune(tiny_model("tv_resnet18"), ds(), ds(), method="full", **{**FAST, "lr": 1e12})
