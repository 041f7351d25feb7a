"""Up-front memory estimates: a computation that cannot fit fails at once with advice, not half-way with numpy's
``_ArrayMemoryError``."""

from __future__ import annotations

import os

from nctransfer.exceptions import InsufficientMemoryError


WIDE_FEATURES_ADVICE = (
    "Reduce the feature width (pool spatial dimensions, or project to fewer dimensions with PCA), use the N x N Gram "
    "domain when there are fewer samples than features (nctransfer.metrics.prepare(X, y, domain='gram'), "
    "`nctransfer metrics --domain gram`), or FeatureStats(precision='fast') to halve the chunk buffers.")


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable`` on Linux, else free physical pages);
    ``None`` when unknown. ``NCTRANSFER_MEMORY_LIMIT`` (bytes, optional ``K``/``M``/``G`` suffix) overrides it."""
    env = os.environ.get("NCTRANSFER_MEMORY_LIMIT", "").strip()
    if env:
        mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(env[-1].lower(), 1)
        try:
            return int(float(env[:-1] if mult > 1 else env) * mult)
        except ValueError:
            pass
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def check_memory(nbytes: int, what: str, advice: str = "") -> None:
    """Raise :class:`InsufficientMemoryError` when ``nbytes`` exceed the available memory.

    Examples:
        >>> check_memory(1024, "a small buffer")  # fits: returns None
    """
    avail = available_memory()
    if avail is None or nbytes <= avail:
        return
    raise InsufficientMemoryError(f"{what} needs about {format_bytes(nbytes)} of memory but only "
                                  f"{format_bytes(avail)} is available. {advice}".rstrip())
