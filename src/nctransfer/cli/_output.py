"""Shared output helpers of the commands."""

from __future__ import annotations

import sys
from typing import Iterable

_ALWAYS = ("fewer samples than requested", "fewer than requested", "CacheIntegrityWarning")


def print_run_warnings(messages: Iterable[str], limit: int = 20, where: str = "results.json") -> None:
    """Print the warnings a pipeline collected, one line each on stderr, whatever ``--quiet`` says (a split that
    got fewer samples than requested, a rebuilt cache entry, a fragile computation must not go unnoticed). At most
    ``limit`` lines; the others are counted and left in ``where``."""
    msgs = list(dict.fromkeys(" ".join(str(m).split()) for m in messages))
    # the ones about the data and the caches first
    msgs.sort(key=lambda m: not any(k in m for k in _ALWAYS))
    for m in msgs[:limit]:
        print(f"nctransfer: warning: {m}", file=sys.stderr)
    if len(msgs) > limit:
        print(f"nctransfer: warning: ... and {len(msgs) - limit} more (see {where})", file=sys.stderr)
