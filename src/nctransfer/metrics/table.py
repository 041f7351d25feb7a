"""Plain-text tables of metric values (used by ``nctransfer metrics`` and ``nctransfer demo``)."""

from __future__ import annotations

import math
from typing import Any, Mapping

from nctransfer.metrics.registry import METRICS


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    v = float(value)
    if math.isnan(v):
        return "nan"
    if v == 0.0:
        return "0"
    return f"{v:.{digits}g}"


def format_table(values: Mapping[str, Any], *, digits: int = 4, direction: bool = True,
                 title: str | None = None) -> str:
    """Format metric values as an aligned text table, one row per metric.

    Args:
        values: ``{metric: value}`` (one column named ``value``) or ``{column: {metric: value}}`` (several
            columns, e.g. one per dataset). Rows keep the order of first appearance.
        digits: significant digits.
        direction: add a column saying whether lower or higher is more collapsed (from the registry).
        title: optional first line.

    Returns:
        The table as a string (no trailing newline).

    Examples:
        >>> print(format_table({"nc1": 0.5, "ncc_accuracy": 0.9}))
        metric        direction                value
        ------------  -----------------------  -----
        nc1           lower = more collapsed     0.5
        ncc_accuracy  higher = more collapsed    0.9
    """
    if values and all(isinstance(v, Mapping) for v in values.values()):
        columns = {str(k): dict(v) for k, v in values.items()}
    else:
        columns = {"value": dict(values)}
    names: list[str] = []
    for col in columns.values():
        names += [n for n in col if n not in names]
    header = ["metric"] + (["direction"] if direction else []) + list(columns)
    rows = []
    for n in names:
        row = [n]
        if direction:
            row.append(METRICS[n].direction if n in METRICS else "")
        row += [_fmt(col.get(n), digits) for col in columns.values()]
        rows.append(row)
    n_text = 2 if direction else 1
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [c.ljust(w) if i < n_text else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(parts).rstrip()

    out = ([title] if title else []) + [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    return "\n".join(out)
