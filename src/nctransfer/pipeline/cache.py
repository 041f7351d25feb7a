"""Moved to :mod:`nctransfer.stages.cache` (the stages below ``layers`` share it); the names stay importable here."""

from nctransfer.stages.cache import ResultCache, array_digest, key_digest, value_checksum  # moved

__all__ = ["ResultCache", "array_digest", "key_digest", "value_checksum"]
