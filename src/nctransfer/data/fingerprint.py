"""Content fingerprints of datasets: what the feature cache keys a user's own data by.

A dataset that is not a built-in is identified by what it *contains*, never by its class name or its length
alone, so that two datasets of the same class with the same labels but different pixels never share cached
features. What is hashed (SHA-1, in this order):

- **any map-style dataset** (a ``torch.utils.data.Dataset``, a Hugging Face ``datasets.Dataset``, a dataset
  wrapped by :func:`nctransfer.data.load_dataset`): the number of samples, the labels (int64 bytes) and the
  *decoded* bytes of **every** selected sample, i.e. what ``dataset[i][0]`` returns before nctransfer's own
  transform: for a PIL image its mode, size and pixel bytes; for an array or tensor its dtype, shape and bytes
  (see :func:`update_with_image`). A dataset whose own transform is random (augmentation) therefore gets a new
  fingerprint on every load: such features are never reused, which is the correct behaviour.
- **an image folder** (:class:`torchvision.datasets.ImageFolder`, a directory given to ``load_dataset``): the
  number of samples, the labels, the relative path and the full SHA-256 of every selected file's bytes, plus
  the decoded pixels of a seeded sample of :data:`FOLDER_DECODED_SAMPLE` images (seed 0). Reading the files is
  much cheaper than decoding them; any change of any byte of any file changes the fingerprint.
- **a DataLoader**: the labels and the bytes of every batch it yields (one pass over the loader, in its own
  order: a shuffling loader has a different fingerprint on every pass).
- **in-memory arrays and the built-in datasets**: every byte of the image array and the labels.

The transform nctransfer applies (the model's preprocessing), the split, the subsample and the selected indices
are part of the key as well. Hashes are computed once per loaded dataset object: after changing a dataset in
place (editing files, replacing arrays), load it again (``load_dataset(...)``) so that it is re-hashed. A stream
(an ``IterableDataset``) cannot be fingerprinted without consuming it: it needs an explicit ``dataset_id=``,
which the user must change whenever the stream's content changes.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from nctransfer.data.images import is_pil_image
from nctransfer.utils.io import file_sha256  # the one file digest, re-exported here

#: decoded images hashed (besides the full file hashes) for an image folder
FOLDER_DECODED_SAMPLE = 16


def update_with_image(h: Any, img: Any) -> None:
    """Feed the canonical bytes of one decoded sample into hash ``h``.

    PIL image: ``"pil"``, mode, size, pixel bytes. Tensor: ``"tensor"``, dtype, shape, bytes (CPU, contiguous).
    Numpy array: ``"ndarray"``, dtype, shape, bytes. Anything else: its type name and ``repr``.
    """
    if is_pil_image(img):
        h.update(f"pil|{img.mode}|{img.size}|".encode())
        h.update(img.tobytes())
        return
    try:
        import torch  # deferred: optional; arrays and PIL images are hashed without it

        if torch.is_tensor(img):
            t = img.detach().cpu().contiguous()
            if t.dtype == torch.bfloat16:
                t = t.view(torch.int16)
            h.update(f"tensor|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.numpy().tobytes())
            return
    except ImportError:  # pragma: no cover
        pass
    if isinstance(img, np.ndarray):
        a = np.ascontiguousarray(img)
        h.update(f"ndarray|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
        return
    h.update(f"{type(img).__name__}|{img!r}|".encode())


def image_digest(img: Any) -> str:
    """SHA-1 hex digest of one decoded sample (:func:`update_with_image`)."""
    h = hashlib.sha1()
    update_with_image(h, img)
    return h.hexdigest()


def seeded_positions(n: int, k: int, seed: int = 0) -> np.ndarray:
    """``min(k, n)`` sorted positions in ``[0, n)`` drawn without replacement with ``seed``."""
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


__all__ = ["FOLDER_DECODED_SAMPLE", "file_sha256", "image_digest", "seeded_positions", "update_with_image"]
