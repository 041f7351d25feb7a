"""The user's own data in every common form: map-style datasets, DataLoaders, Hugging Face datasets, streams.

:func:`nctransfer.data.load_dataset` turns each of them into a dataset with ``targets``, ``classes``,
``transform`` and a content ``fingerprint()`` (:mod:`nctransfer.data.fingerprint`):

- a map-style ``torch.utils.data.Dataset`` yielding ``(image, label)``, the image a ``PIL.Image.Image``, a
  ``uint8`` or float tensor ``[C, H, W]`` or a numpy array (labels from ``.targets`` / ``.labels`` when present,
  otherwise read from the items in one pass);
- a ``torch.utils.data.DataLoader``: used as given (its batches, its sampler, its collate function), labels read
  from the batches (:class:`LoaderDataset`);
- a Hugging Face ``datasets.Dataset`` (:class:`HFImageSource`): the image column and the label column are found
  (a ``datasets.Image`` / ``datasets.ClassLabel`` feature, else a column named ``image``/``img``/... and
  ``label``/``labels``/...) or named by the user; ``ClassLabel`` names are kept as the class names;
- an iterable stream (``torch.utils.data.IterableDataset``, a streaming HF dataset): only with an explicit
  ``dataset_id`` (its content cannot be fingerprinted without consuming it).

This module recognises each form; reading items and labels is in :mod:`nctransfer.data.items`, Hugging Face
datasets in :mod:`nctransfer.data.hf_source`, DataLoaders and streams in :mod:`nctransfer.data.loader_dataset`.
"""

from __future__ import annotations

from typing import Any

from nctransfer.exceptions import InputValueError
from nctransfer.utils.extras import require_extra

require_extra("torch", "nctransfer.data.inputs", ("torch",))  # torch is optional: fail now, naming the extra

from torch.utils.data import DataLoader, IterableDataset  # noqa: E402  (after the check above)

from nctransfer.data.hf_source import HFImageSource, hf_columns  # noqa: E402
from nctransfer.data.items import (  # noqa: E402
    IMAGE_COLUMNS,
    LABEL_COLUMNS,
    encode_labels,
    item_pair,
    label_value,
    read_labels,
)
from nctransfer.data.loader_dataset import LoaderDataset, stream_loader  # noqa: E402


def is_hf_dataset(obj: Any) -> bool:
    """A Hugging Face ``datasets.Dataset`` (map-style, with ``features`` and ``column_names``)."""
    mod = type(obj).__module__ or ""
    return mod.startswith("datasets.") and hasattr(obj, "column_names") and hasattr(obj, "features") \
        and hasattr(obj, "__getitem__") and not is_stream(obj)


def is_dataloader(obj: Any) -> bool:
    """A ``torch.utils.data.DataLoader``."""
    return isinstance(obj, DataLoader)


def is_stream(obj: Any) -> bool:
    """An iterable dataset without random access: ``torch.utils.data.IterableDataset`` or a streaming HF dataset."""
    if isinstance(obj, IterableDataset):
        return True
    return type(obj).__name__ == "IterableDataset" and (type(obj).__module__ or "").startswith("datasets.")


def is_map_dataset(obj: Any) -> bool:
    return hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and not isinstance(obj, (str, bytes, dict))


def stream_error(obj: Any, where: str = "load_dataset") -> InputValueError:
    return InputValueError(
        f"{where}: {type(obj).__name__} is an iterable dataset (a stream): it has no length and no random access, "
        "so nctransfer cannot fingerprint its content for the feature cache. Pass dataset_id='<a name that changes "
        "whenever the stream's content changes>' (e.g. dataset_id='my-stream-2024-06'), or give a map-style "
        "Dataset / a DataLoader instead.")


__all__ = [
    "HFImageSource", "IMAGE_COLUMNS", "LABEL_COLUMNS", "LoaderDataset", "encode_labels", "hf_columns",
    "is_dataloader", "is_hf_dataset", "is_map_dataset", "is_stream", "item_pair", "label_value", "read_labels",
    "stream_error", "stream_loader",
]
