"""Structural trainable-parameter selection and counting (docs/methods.md#finetuning)."""

import pytest
import torch
from torch import nn

from test_finetune_fixtures import single_thread  # noqa: F401
from nctransfer.exceptions import InputValueError, NotFoundError
from nctransfer.finetune import (
    apply_trainable,
    attach_skip,
    count_parameters,
    format_parameter_count,
    list_units,
    resolve_unit,
    stage_first_units,
    trainable_parameter_names,
)
from nctransfer.models import load_model


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class TinyResNetLike(nn.Module):
    """Two stages of two blocks (ResNet layout: layer1, layer2) and an fc; every count is hand-checkable."""

    def __init__(self, k=3):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False)          # 3*4*9 = 108
        self.layer1 = nn.Sequential(Block(4, 4), Block(4, 4))            # 2 * (4*4*9 + 2*4) = 2 * 152 = 304
        self.layer2 = nn.Sequential(Block(4, 6), Block(6, 6))            # (4*6*9 + 12) + (6*6*9 + 12) = 228 + 336
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, k)                                        # 6*3 + 3 = 21

    def forward(self, x):
        return self.fc(self.pool(self.layer2(self.layer1(self.stem(x)))).flatten(1))


TOTAL = 108 + 304 + 228 + 336 + 21  # 997


def test_hand_count_every_method():
    m = TinyResNetLike()
    assert [u.name for u in list_units(m)] == ["layer1.0", "layer1.1", "layer2.0", "layer2.1"]
    assert count_parameters(m) == (TOTAL, TOTAL)
    lp = trainable_parameter_names(m, "lp")
    assert lp == ["fc.weight", "fc.bias"] and count_parameters(m, lp) == (21, TOTAL)
    layer = trainable_parameter_names(m, "layer", "layer2.0")
    assert layer == ["layer2.0.conv.weight", "layer2.0.bn.weight", "layer2.0.bn.bias", "fc.weight", "fc.bias"]
    assert count_parameters(m, layer) == (228 + 21, TOTAL)
    assert count_parameters(m, trainable_parameter_names(m, "full")) == (TOTAL, TOTAL)
    # SCL with zero-padding adds no parameter: 4 channels padded to 6
    attach_skip(m, "layer1.1", "pad", image_size=8)
    scl = trainable_parameter_names(m, "scl", "layer1.1")
    assert count_parameters(m, scl) == (152 + 21, TOTAL)


def test_hand_count_scl_conv_branch():
    m = TinyResNetLike()
    branch = attach_skip(m, "layer1.0", "conv", image_size=8)
    assert (branch.in_features, branch.out_features) == (4, 6)
    names = trainable_parameter_names(m, "scl", 0)
    conv_bn = 4 * 6 + 2 * 6  # 1x1 conv without bias + BatchNorm affine
    assert names[-3:] == ["nctransfer_skip.conv.weight", "nctransfer_skip.bn.weight", "nctransfer_skip.bn.bias"]
    tr, tot = count_parameters(m, names)
    assert (tr, tot) == (152 + 21 + conv_bn, TOTAL + conv_bn)
    expected = f"trainable params: 209 || all params: 1,033 || trainable%: {100 * 209 / 1033:.4f}"
    assert format_parameter_count(tr, tot) == expected


def test_resnet18_block5_matches_paper_share():
    """torchvision ResNet18, block 5 (layer3.0) + a 10-class head, counted by hand: Li et al., TMLR 2024, table 3 reports 8.27%."""
    m = load_model("torchvision:resnet18", pretrained=False, num_classes=10)
    block = (128 * 256 * 9 + 2 * 256) + (256 * 256 * 9 + 2 * 256) + (128 * 256 + 2 * 256)  # conv1/bn1, conv2/bn2, down
    fc = 512 * 10 + 10
    total = 11_176_512 + fc
    tr, tot = count_parameters(m, trainable_parameter_names(m, "layer", 4))
    assert (tr, tot) == (block + fc, total)
    assert 100 * tr / tot == pytest.approx(8.27, abs=0.01)


def test_apply_trainable_sets_requires_grad_exactly():
    m = TinyResNetLike()
    names = trainable_parameter_names(m, "layer", "layer1.1")
    apply_trainable(m, names)
    assert {n for n, p in m.named_parameters() if p.requires_grad} == set(names)
    assert count_parameters(m) == (152 + 21, TOTAL)
    with pytest.raises(NotFoundError, match="not parameters"):
        apply_trainable(m, ["nope.weight"])


def test_unknown_unit_lists_valid_ones():
    m = TinyResNetLike()
    with pytest.raises(NotFoundError, match=r"unknown unit 'layer3.0'.*Valid units: \['layer1.0', 'layer1.1', "
                                            r"'layer2.0', 'layer2.1'\]"):
        resolve_unit(m, "layer3.0")
    with pytest.raises(NotFoundError, match=r"index 7 is out of range.*valid indices -4..3"):
        resolve_unit(m, 7)
    with pytest.raises(NotFoundError, match=r"Did you mean \['layer2.1'"):
        resolve_unit(m, "layer2.l")
    assert resolve_unit(m, -1).name == "layer2.1"


def test_model_without_units_explains_support():
    m = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    with pytest.raises(InputValueError, match=r"no fine-tuning units found.*ResNet-style.*ViT encoder layers"):
        trainable_parameter_names(m, "layer", 0)
    assert trainable_parameter_names(m, "lp") == ["1.weight", "1.bias"]  # the probe still works


def test_scl_without_branch_is_an_error():
    with pytest.raises(InputValueError, match="skip branch is not attached"):
        trainable_parameter_names(TinyResNetLike(), "scl", 0)


def test_stage_first_units():
    assert [u.name for u in stage_first_units(list_units(TinyResNetLike()))] == ["layer1.0", "layer2.0"]
    rn = load_model("torchvision:resnet18", pretrained=False)
    assert [u.name for u in stage_first_units(list_units(rn))] == ["layer1.0", "layer2.0", "layer3.0", "layer4.0"]
