"""Cached, resumable feature extraction: every selected tap streamed into ``FeatureStats`` in one pass
(:func:`extract`), with an optional checksummed on-disk feature store (:mod:`nctransfer.extract.store`)."""

from nctransfer.utils.extras import require_extra

require_extra("torch", "nctransfer.extract", ("torch",))  # fail now, naming the extra to install

from nctransfer.extract.core import ExtractionResult, TapResult, default_cache_dir, extract
from nctransfer.extract.store import CacheCorruptedWarning, CacheEntry, weights_fingerprint

__all__ = [
    "CacheCorruptedWarning",
    "CacheEntry",
    "ExtractionResult",
    "TapResult",
    "default_cache_dir",
    "extract",
    "weights_fingerprint",
]
