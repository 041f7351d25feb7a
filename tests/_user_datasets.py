"""Datasets as users write them, shared by the tests of user-data input (imported by test modules, not a test)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class ToTensorDataset(Dataset):
    """What ``transforms.ToTensor()`` yields: float ``[1, H, W]`` tensors in [0, 1] from ``uint8`` images ``X
    [N, H, W]``; labels without ``.targets``."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return torch.from_numpy(self.X[i]).float().unsqueeze(0) / 255.0, int(self.y[i])


def hf_image_dataset(datasets, X, y, names, image="image", label="label"):
    """A Hugging Face ``datasets.Dataset`` of ``uint8`` images ``X [N, H, W]`` (column ``image``) with ClassLabel
    ``label`` named ``names``; ``datasets`` is the module (the caller's ``importorskip``)."""
    from PIL import Image

    feats = datasets.Features({image: datasets.Image(), label: datasets.ClassLabel(names=list(names))})
    return datasets.Dataset.from_dict({image: [Image.fromarray(x) for x in X], label: y.tolist()}, features=feats)
