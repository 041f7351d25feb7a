"""Markdown report (GitHub-flavoured tables); figures are referenced as PNG files next to it.

Its content is the report context (:mod:`nctransfer.reports.context`), laid out by the template
``templates/report.md.j2``; the HTML report shows the same content.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from nctransfer.reports.context import ReportContext, build_context
from nctransfer.reports.templating import MARKDOWN_TEMPLATE, md_cell, template_module, render_template


def md_table(header: list[str], rows: list[list[Any]], align: list[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` items are ``"l"`` or ``"r"``."""
    align = align or ["l"] * len(header)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def evaluation_table_md(results: Mapping[str, Any]) -> str:
    """The table of how well every score ranked the candidates (sorted by weighted tau); ``""`` without an
    evaluation."""
    ctx = build_context(results)
    if ctx.evaluation is None:
        return ""
    return str(template_module(MARKDOWN_TEMPLATE, ctx).evaluation_table(ctx.evaluation)).strip("\n")


def ranking_table_md(results: Mapping[str, Any], limit: int | None = None) -> str:
    """Candidates from best to worst by the recommended score, with true accuracy and collapse."""
    ctx = build_context(results)
    return str(template_module(MARKDOWN_TEMPLATE, ctx).ranking_table(ctx.ranking, limit)).strip("\n")


def render_markdown(results: Mapping[str, Any], figure_files: Mapping[str, str] | None = None) -> str:
    """The report in Markdown.

    Args:
        results: the structure of :mod:`nctransfer.reports.schema`.
        figure_files: relative paths of the figure PNGs by key (``summary``, ``scatter``, ``layers``,
            ``finetune``, ``timings``); figures without a file are left out.

    Raises:
        MissingExtraError: without Jinja2 (the ``[report]`` extra).
    """
    return markdown_of(build_context(results), figure_files)


def markdown_of(ctx: ReportContext, figure_files: Mapping[str, str] | None = None) -> str:
    """The Markdown report of a built report context (what :func:`render_markdown` and ``write_report`` lay
    out)."""
    text = render_template(MARKDOWN_TEMPLATE, ctx, figures=dict(figure_files or {}))
    return re.sub(r"\n{3,}", "\n\n", text)  # one blank line between blocks, whatever sections were left out


__all__ = ["evaluation_table_md", "markdown_of", "md_table", "ranking_table_md", "render_markdown"]
