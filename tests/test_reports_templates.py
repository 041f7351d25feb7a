"""The report is one context rendered by two Jinja2 templates: both formats carry the same content, the templates
ship as package data, and without Jinja2 the data files are still written (the report is skipped with a warning)."""

from __future__ import annotations

import html
import importlib.resources
import warnings

import pytest

from nctransfer.reports import render_html, render_markdown
from nctransfer.reports.context import build_context
from nctransfer.utils.extras import MissingExtraError
from test_reports_render import make_results


def _rich_results() -> dict:
    r = make_results()
    r["evaluation"]["logme"].update(weighted_tau_lo=0.1, weighted_tau_hi=0.8, n_scored=9, n_pool=9)
    r["evaluation"]["leep"].update(n_scored=2, n_pool=9)
    r["notes"] = ["LEEP needs source probabilities"]
    r["score_errors"] = {r["candidates"][0]["name"]: {"leep": "no probabilities"}}
    return r


def test_html_and_markdown_carry_the_same_content():
    r = _rich_results()
    ctx = build_context(r)
    page = html.unescape(render_html(r, {}).replace("<wbr>", ""))  # line-break hints in long names
    md = render_markdown(r)
    texts = [ctx.title, *ctx.subtitle, *ctx.notes, *ctx.warnings]
    texts += [t for c in ctx.cards for t in (c.value, c.note)]
    for row in ctx.ranking.rows:
        texts += [row.name, *row.scores, row.accuracy, row.true_rank, *row.collapse]
    for e in ctx.evaluation.rows:
        texts += [e.label, e.coverage] + [c.value for c in e.cells] + [c.interval.strip() for c in e.cells if c.interval]
    for m in ctx.layers:
        texts += [m.model, m.correlations] + [v for row in m.rows for v in row]
    texts += [v for row in ctx.finetune.rows for v in row] + [t.seconds for t in ctx.timings]
    texts += [msg for _, _, msg in ctx.score_errors] + [v for _, v in ctx.config + ctx.environment]
    missing_html = [t for t in texts if t and t not in page]
    missing_md = [t for t in texts if t and t not in md]
    assert not missing_html and not missing_md, (missing_html, missing_md)
    # the numbers of the context, by hand: the recommended score's weighted tau and the partial coverage
    assert "+0.200" in [c.value for e in ctx.evaluation.rows if e.recommended for c in e.cells]
    assert [e.coverage for e in ctx.evaluation.rows if e.label == "LEEP"] == ["2/9 partial"]


def test_templates_are_package_data():
    root = importlib.resources.files("nctransfer.reports") / "templates"
    assert {"report.html.j2", "report.md.j2"} <= {p.name for p in root.iterdir()}


def test_without_jinja2_render_names_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "jinja2", None)
    with pytest.raises(MissingExtraError, match=r"nctransfer\[report\]"):
        render_markdown(make_results())


def test_rank_files_out_without_jinja2_writes_data_and_warns(tmp_path, monkeypatch, capsys):
    from nctransfer.cli.main import main
    from test_transferability_rank import write_files

    files = write_files(tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "jinja2", None)
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["rank", *files, "--methods", "logme,leep", "--truth", str(tmp_path / "truth.csv"),
                   "--out", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "no report.html/report.md" in err and "nctransfer[report]" in err and "jinja2" in err
    assert (out / "results.json").is_file() and (out / "scores.csv").is_file()
    assert not (out / "report.html").exists() and not (out / "report.md").exists()
    assert not (out / "figures").exists()  # checked before any figure is written
