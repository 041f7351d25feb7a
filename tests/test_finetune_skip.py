"""SCL skip branch (docs/methods.md#finetuning; Li et al., TMLR 2024, appendix B, Li et al., 2022 preprint, appendix A): shapes for every unit of each
architecture, and at step 0 the penultimate feature equals the frozen model's plus the pooled, padded unit output."""

import copy

import pytest
import torch
from torch import nn

from test_finetune_fixtures import ARCHS, tiny_model, single_thread  # noqa: F401
from nctransfer.exceptions import InputValueError
from nctransfer.features import TapRecorder, infer_widths
from nctransfer.finetune import SkipBranch, attach_skip, detach_skip, get_skip, list_units


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_unit_shapes_and_step0_identity(arch):
    torch.manual_seed(0)
    base = tiny_model(arch).eval()
    x = torch.randn(3, 3, 32, 32)
    units = list_units(base)
    widths = {u.name: u.width for u in infer_widths(base, units, input_size=(3, 32, 32))}
    with torch.no_grad(), TapRecorder(base, [u.name for u in units] + ["penultimate"]) as rec:
        logits0 = base(x)
        frozen = rec.collect()
    h0 = frozen["penultimate"]
    d = h0.shape[1]
    for u in units:
        m = copy.deepcopy(base)
        branch = attach_skip(m, u.name, "pad", image_size=32)
        assert (branch.in_features, branch.out_features) == (widths[u.name], d)
        m.eval()
        with torch.no_grad(), TapRecorder(m, ["penultimate"]) as rec:
            logits = m(x)
            h = rec.collect()["penultimate"]
        pooled = frozen[u.name]
        expected = h0 + nn.functional.pad(pooled, (0, d - pooled.shape[1]))
        torch.testing.assert_close(h, expected, rtol=1e-5, atol=1e-5)
        head = m.get_submodule(m.nctransfer_info.classifier)
        torch.testing.assert_close(logits, nn.functional.linear(expected, head.weight, head.bias), rtol=1e-5, atol=1e-5)
        assert logits.shape == logits0.shape == (3, 4)
        # conv variant: [B, C] -> 1x1 conv -> BN -> [B, D]
        detach_skip(m)
        cb = attach_skip(m, u.name, "conv", image_size=32)
        assert cb.conv.weight.shape == (d, widths[u.name], 1, 1) and cb.bn.num_features == d
        assert m(x).shape == (3, 4)


def test_vit_skip_is_token_mean_without_padding():
    m = tiny_model("vit_tiny").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), TapRecorder(m, ["blocks.5", "penultimate"]) as rec:
        m(x)
        f = rec.collect()
    branch = attach_skip(m, "blocks.5", "pad", image_size=32)
    captured = {}
    hook = m.blocks[5].register_forward_hook(lambda mod, a, out: captured.setdefault("tokens", out))
    assert branch.in_features == branch.out_features == 192
    with torch.no_grad(), TapRecorder(m, ["penultimate"]) as rec:
        m(x)
        h = rec.collect()["penultimate"]
    hook.remove()
    assert captured["tokens"].shape == (2, 5, 192)  # 4 patches + class token, all averaged
    torch.testing.assert_close(h, f["penultimate"] + captured["tokens"].mean(1), rtol=1e-5, atol=1e-5)


def test_gradient_reaches_unit_through_skip_only():
    """With everything after the unit frozen, the unit still gets a gradient through the skip branch."""
    m = tiny_model("tv_resnet18")
    attach_skip(m, "layer2.0", "pad", image_size=32)
    for n, p in m.named_parameters():
        p.requires_grad_(n.startswith("layer2.0.") or n.startswith("fc."))
    m.train()
    m(torch.randn(4, 3, 32, 32)).sum().backward()
    assert m.layer2[0].conv1.weight.grad is not None and m.layer2[0].conv1.weight.grad.abs().sum() > 0


def test_pad_needs_room_and_conv_solves_it():
    with pytest.raises(InputValueError, match=r"more than the 4 of the penultimate.*skip='conv'"):
        SkipBranch(8, 4, "pad")
    b = SkipBranch(8, 4, "conv")
    assert b(torch.randn(5, 8)).shape == (5, 4)


def test_attach_twice_and_detach():
    m = tiny_model("tv_resnet18")
    attach_skip(m, 0, image_size=32)
    with pytest.raises(InputValueError, match="already has a skip branch"):
        attach_skip(m, 1, image_size=32)
    assert isinstance(detach_skip(m), SkipBranch) and get_skip(m) is None
    assert detach_skip(m) is None
    x = torch.randn(2, 3, 32, 32)
    ref = tiny_model("tv_resnet18").eval()
    m.eval()
    torch.testing.assert_close(m(x), ref(x))  # hooks are gone: back to the plain model


def test_deepcopy_rewires_hooks_to_the_copy():
    m = tiny_model("tv_resnet18")
    attach_skip(m, "layer4.0", "conv", image_size=32)
    c = copy.deepcopy(m)
    with torch.no_grad():
        c.nctransfer_skip.bn.bias.fill_(3.0)
    m.eval(), c.eval()
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(m(x), c(x))
    with torch.no_grad():
        c.nctransfer_skip.bn.bias.zero_()
    torch.testing.assert_close(m(x), c(x))
