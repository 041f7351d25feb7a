"""Exception and warning hierarchy of nctransfer.

Every error raised on bad user input derives from :class:`NCTransferError` and from the builtin
exception a user would expect (``ValueError``, ``LookupError``...), so ``except ValueError`` works.
"""


class NCTransferError(Exception):
    """Root of every nctransfer error."""


class ShapeError(NCTransferError, ValueError):
    """An array has the wrong number of dimensions or inconsistent lengths."""


class InputValueError(NCTransferError, ValueError):
    """An argument has a value outside what is accepted (NaN/Inf, too few classes, ...)."""


class NotFoundError(NCTransferError, LookupError):
    """A named thing (model, layer, dataset, method, metric) does not exist."""


class NotFittedError(NCTransferError, RuntimeError):
    """Statistics or estimators used before any data was seen."""


class UnsafeFileError(InputValueError):
    """A file would need unpickling (which can run arbitrary code) and the caller did not opt in with
    ``allow_pickle=True`` / ``--allow-pickle``."""


class InsufficientMemoryError(NCTransferError, MemoryError):
    """A computation would need more memory than is available; the message says what to change."""


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for the given data (e.g. a class too small); NaN is returned."""


class NumericalWarning(UserWarning):
    """A computation is numerically fragile (e.g. N not comfortably larger than d)."""


class ConvergenceWarning(UserWarning):
    """An iterative solver stopped before reaching its tolerance."""


class CacheIntegrityWarning(UserWarning):
    """A cache entry failed its integrity check (checksum mismatch, truncated file); it is ignored and rebuilt."""
