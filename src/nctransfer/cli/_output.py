"""Shared output helpers of the commands."""

from __future__ import annotations

import sys
from typing import Any, Iterable, Mapping

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


def print_ranking_outcome(results: Mapping[str, Any], out: str, as_json: bool, also: str | None = None) -> int:
    """What ``rank --models`` and ``demo`` print when their run ends: the collected warnings (stderr, always), then
    the results as JSON (``--json``) or the summary and where the report is (and ``also``, a line naming the other
    files). Returns the exit code, 0."""
    from nctransfer.pipeline.demo import format_summary, report_location  # deferred: imports torch (see cli.main)
    from nctransfer.reports import results_to_json  # deferred: reports load the templates

    print_run_warnings(results.get("warnings", []), where=f"{out}/results.json")  # shown even with --quiet
    if as_json:
        print(results_to_json(results), end="")
        return 0
    print(format_summary(results))
    print("")
    print(f"Report: {report_location(out)}")
    if also:
        print(also)
    return 0
