"""Reports of a ranking run: a self-contained ``report.html`` (figures embedded as base64 PNG), ``report.md``
with its figure files, ``results.json`` and ``scores.csv``, all written atomically.

The content is built once (:func:`nctransfer.reports.context.build_context`) and laid out by two Jinja2
templates (``templates/report.html.j2``, ``templates/report.md.j2``), so both formats say the same.

Every function takes the plain results structure documented in :mod:`nctransfer.reports.schema` (what
:func:`nctransfer.rank_models` returns), so a report can be rebuilt later from ``results.json``:

    >>> from nctransfer.reports import load_results, write_report      # doctest: +SKIP
    >>> write_report(load_results("runs/demo/results.json"), "runs/demo")   # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from nctransfer.reports.context import build_context
from nctransfer.reports.html import html_of, render_html
from nctransfer.reports.markdown import evaluation_table_md, markdown_of, ranking_table_md, render_markdown
from nctransfer.reports.plots import FIGURES, make_figures
from nctransfer.reports.records import (
    load_results,
    results_to_json,
    scores_frame,
    write_results_json,
    write_scores_csv,
)
from nctransfer.reports.schema import SCHEMA, check_results, ranking_order
from nctransfer.reports.templating import require_jinja2
from nctransfer.utils.io import write_bytes_atomic, write_text_atomic

def write_report(results: Mapping[str, Any], out_dir: str | os.PathLike, *, html: bool = True,
                 markdown: bool = True, figures_dir: str = "figures", dpi: int = 110) -> dict[str, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` (+ ``figures/*.png``) into ``out_dir``.

    Every file is written atomically: an interrupted call leaves the previous version of each file intact.

    Raises:
        MissingExtraError: (an ``ImportError``) without matplotlib or Jinja2, the ``[report]`` extra; nothing
            is written then.

    Returns:
        Paths written, by key (``html``, ``md`` and one per figure).
    """
    r = check_results(results)
    require_jinja2()  # before any figure file is written: no half report without Jinja2
    out = Path(out_dir)
    figs = make_figures(r, dpi=dpi)
    ctx = build_context(r)  # the content, built once for both formats
    written: dict[str, Path] = {}
    if markdown:
        files = {}
        for key, png in figs.items():
            rel = f"{figures_dir}/{FIGURES[key][1]}"
            written[key] = write_bytes_atomic(out / rel, png)
            files[key] = rel
        written["md"] = write_text_atomic(out / "report.md", markdown_of(ctx, files))
    if html:
        written["html"] = write_text_atomic(out / "report.html", html_of(ctx, figs))
    return written


__all__ = [
    "FIGURES", "SCHEMA", "check_results", "evaluation_table_md", "load_results", "make_figures", "ranking_order",
    "ranking_table_md", "render_html", "render_markdown", "results_to_json", "scores_frame", "write_report",
    "write_results_json", "write_scores_csv",
]
