"""Shared tiny-input models for the finetune tests (random weights, 32 px)."""

import copy
import functools

import pytest
import torch
from torch.utils.data import TensorDataset

from nctransfer.models import load_model

ARCHS = {
    "timm_resnet18": ("timm:resnet18", {}),
    "tv_resnet18": ("torchvision:resnet18", {}),
    "efficientnet_lite0": ("efficientnet_lite0", {}),
    "vit_tiny": ("timm:vit_tiny_patch16_224", {"img_size": 32}),
}


@functools.lru_cache(maxsize=None)
def _base(arch, num_classes):
    name, kw = ARCHS[arch]
    return load_model(name, pretrained=False, num_classes=num_classes, **kw)


def tiny_model(arch, num_classes=4):
    """A fresh copy of a random-weight model (cached construction)."""
    return copy.deepcopy(_base(arch, num_classes))


def signal_data(n=32, k=4, size=32):
    """``n`` seeded random images ``[3, size, size]`` of ``k`` classes shifted by their label (a learnable
    signal), with ``targets``."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % k
    x = torch.randn(n, 3, size, size, generator=g) + y.view(-1, 1, 1, 1).float()
    ds = TensorDataset(x, y)
    ds.targets = y
    return ds


@pytest.fixture(autouse=True)
def single_thread(one_thread):
    """One torch thread per test (``one_thread`` of tests/conftest.py); the name stays for the finetune test
    modules that import it."""
    yield
