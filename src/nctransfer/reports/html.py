"""Self-contained HTML report: inline CSS, figures embedded as base64 PNG, no script, no external resource.

The page can be mailed or archived alone and opens in any browser, offline. Its content is the report context
(:mod:`nctransfer.reports.context`), laid out by the template ``templates/report.html.j2``.
"""

from __future__ import annotations

import html
from typing import Any, Mapping

from nctransfer.reports.context import MAX_WARNINGS, TOP_ROWS, ReportContext, build_context
from nctransfer.reports.plots import make_figures
from nctransfer.reports.templating import HTML_TEMPLATE, data_uri, render_template


def img_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` with the PNG embedded as a base64 data URI."""
    return f'<img src="{data_uri(png)}" alt="{html.escape(alt, quote=True)}">'


def render_html(results: Mapping[str, Any], figures: Mapping[str, bytes] | None = None) -> str:
    """The report as one self-contained HTML page.

    Args:
        results: the structure of :mod:`nctransfer.reports.schema`.
        figures: PNG bytes by key (``summary``, ``scatter``, ``layers``, ``finetune``, ``timings``), as made by
            :func:`nctransfer.reports.make_figures`; drawn here when ``None``.

    Returns:
        The HTML text (UTF-8, no external resources).

    Raises:
        MissingExtraError: without Jinja2 (or, when ``figures`` is ``None``, matplotlib): the ``[report]`` extra.
    """
    ctx = build_context(results)
    if figures is None:
        figures = make_figures(results)
    return html_of(ctx, figures)


def html_of(ctx: ReportContext, figures: Mapping[str, bytes]) -> str:
    """The HTML page of a built report context (what :func:`render_html` and ``write_report`` lay out)."""
    return render_template(HTML_TEMPLATE, ctx, figures=dict(figures))


__all__ = ["MAX_WARNINGS", "TOP_ROWS", "html_of", "img_tag", "render_html"]
