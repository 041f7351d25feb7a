"""Rendering of the report context (:mod:`nctransfer.reports.context`) with the package's Jinja2 templates.

Jinja2 is part of the ``[report]`` extra; it is imported lazily (on purpose: the core install has no Jinja2) and
a missing Jinja2 raises :class:`~nctransfer.utils.extras.MissingExtraError` naming the extra to install.
"""

from __future__ import annotations

import base64
import functools
from typing import Any, Mapping

from nctransfer.reports.context import ReportContext
from nctransfer.utils.extras import MissingExtraError, missing_modules

#: template file names (package data under nctransfer/reports/templates/)
HTML_TEMPLATE = "report.html.j2"
MARKDOWN_TEMPLATE = "report.md.j2"


def md_cell(v: Any) -> str:
    """Text of a Markdown table cell: ``|`` escaped, line breaks flattened."""
    return str(v).replace("|", "\\|").replace("\n", " ")


def breakable(v: Any) -> Any:
    """HTML-escaped text with line-break opportunities (``<wbr>``) after ``@``, ``/`` and ``:``."""
    from markupsafe import Markup, escape  # deferred on purpose: installed with Jinja2 (the [report] extra)

    out = str(escape(v))
    for ch in ("@", "/", ":"):
        out = out.replace(ch, ch + "<wbr>")
    return Markup(out)


def data_uri(png: bytes) -> str:
    """A PNG as a base64 ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def require_jinja2() -> None:
    """Raise :class:`~nctransfer.utils.extras.MissingExtraError` (an ``ImportError``) naming the ``[report]`` extra
    when Jinja2 is not installed."""
    if missing_modules(("jinja2",)):
        raise MissingExtraError("nctransfer.reports (report.html, report.md) needs Jinja2: "
                                "pip install 'nctransfer[report]' (missing: jinja2)")


def _environment(autoescape: bool) -> Any:
    require_jinja2()
    return _cached_environment(autoescape)


@functools.lru_cache(maxsize=2)
def _cached_environment(autoescape: bool) -> Any:
    import jinja2  # deferred on purpose: an optional dependency (the [report] extra)

    env = jinja2.Environment(loader=jinja2.PackageLoader("nctransfer.reports", "templates"), autoescape=autoescape,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters.update(md_cell=md_cell, breakable=breakable, data_uri=data_uri)
    return env


def render_template(name: str, ctx: ReportContext, **extra: Any) -> str:
    """Render template ``name`` (HTML templates are autoescaped) with ``ctx`` as ``r`` plus ``extra``."""
    env = _environment(name.endswith(".html.j2"))
    return env.get_template(name).render(r=ctx, **extra)


def template_module(name: str, ctx: ReportContext, figures: Mapping[str, Any] | None = None) -> Any:
    """Template ``name`` as a module: its macros (e.g. ``ranking_table``) callable from Python."""
    env = _environment(name.endswith(".html.j2"))
    return env.get_template(name).make_module({"r": ctx, "figures": dict(figures or {})})


__all__ = ["HTML_TEMPLATE", "MARKDOWN_TEMPLATE", "breakable", "data_uri", "md_cell", "render_template", "require_jinja2",
           "template_module"]
