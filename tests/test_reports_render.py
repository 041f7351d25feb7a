"""Report rendering (nctransfer.reports): HTML/Markdown content, files, figures, strict JSON, and a real
headless-browser render of the HTML report."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from nctransfer.exceptions import InputValueError
from nctransfer.reports import (
    check_results,
    load_results,
    make_figures,
    render_html,
    render_markdown,
    scores_frame,
    write_report,
    write_results_json,
    write_scores_csv,
)
from nctransfer.reports.browser import check_in_browser, find_browser
from nctransfer.reports.schema import ranking_order, true_ranks

METHODS = ("logme", "leep", "hscore", "ncti", "neg_nc1")


def make_results(n_models: int = 2, n_taps: int = 3, control: bool = True, seed: int = 0) -> dict:
    """A results structure as rank_models returns it, with known, hand-checkable values."""
    rng = np.random.default_rng(seed)
    cands, scores, collapse, acc, layers = [], {}, {}, {}, {}
    models = [f"m{i}" for i in range(n_models)] + (["random:m0"] if control else [])
    for mi, m in enumerate(models):
        ctl = m.startswith("random:")
        taps = [f"blocks.{i}" for i in range(n_taps - 1)] + ["penultimate"]
        lt = []
        for ti, t in enumerate(taps):
            name = m if n_taps == 1 else f"{m}@{t}"
            q = (ti + 1) / n_taps * (0.3 if ctl else 1.0) + 0.05 * mi
            cands.append(dict(name=name, model=m, tap=t, tap_index=ti, n_taps=n_taps, dim=8 * (ti + 1),
                              pretrained=not ctl, control=ctl))
            scores[name] = {meth: float(q * (k + 1)) for k, meth in enumerate(METHODS)}
            nc1 = float(np.exp(2 - 3 * q))
            collapse[name] = {"nc1": nc1, "vci": 1 - q / 2, "cdnv": nc1 / 3}
            acc[name] = float(min(0.95, 0.3 + 0.6 * q + rng.normal(0, 0.01)))
            lt.append({"tap": t, "index": ti, "dim": 8 * (ti + 1), "nc1": nc1, "probe_accuracy": acc[name]})
        layers[m] = {"taps": lt, "correlations": {"spearman_nc1_accuracy": -1.0}}
    res = dict(
        schema="nctransfer.results/1",
        data=dict(name="toy", n_train=40, n_test=40, n_classes=4, image_size=32),
        candidates=cands, methods={m: {"label": m.upper()} for m in METHODS}, scores=scores,
        score_seconds={m: 0.01 for m in METHODS}, collapse=collapse,
        truth={"kind": "probe", "source": "linear probe", "accuracy": acc},
        evaluation={m: {"weighted_tau": 0.5 - 0.1 * k, "kendall": 0.4, "spearman": 0.5, "pearson": 0.6,
                        "top1_regret": 0.0} for k, m in enumerate(METHODS)},
        recommended_score="ncti",
        layers=layers,
        finetune={"model": "m1", "unit": "blocks.1", "methods": {
            "linear_probe": {"test_accuracy": 0.81, "penultimate_nc1": 2.0, "trainable_percent": 0.3,
                             "trainable_params": 1234, "seconds_per_epoch": 1.0},
            "scl_ft": {"test_accuracy": 0.86, "penultimate_nc1": 0.9, "trainable_percent": 8.0,
                       "trainable_params": 56789, "seconds_per_epoch": 3.0}}},
        timings={"extract features": 2.0, "scores": 1.0}, config={"models": "m0,m1", "data": "toy"},
        environment={"nctransfer": "0.1.0"}, warnings=["a <warning> & more"],
    )
    res["ranking"] = ranking_order(res)
    res["recommended"] = res["ranking"][0]
    return res


def test_ranking_order_and_true_ranks_by_hand():
    r = {"candidates": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
         "scores": {"a": {"s": 1.0}, "b": {"s": None}, "c": {"s": 3.0}},
         "truth": {"accuracy": {"a": 0.9, "b": 0.5, "c": 0.7}}}
    assert ranking_order(r, "s") == ["c", "a", "b"]  # the missing score goes last
    assert ranking_order(r) == ["a", "b", "c"]  # no recommended score: pool order
    assert true_ranks(r) == {"a": 1, "c": 2, "b": 3}


@pytest.mark.parametrize("mutate, match", [
    (lambda r: r.pop("scores"), "missing the required key 'scores'"),
    (lambda r: r.__setitem__("candidates", []), "non-empty list"),
    (lambda r: r["candidates"].append(dict(r["candidates"][0])), "duplicate names"),
    (lambda r: r["scores"].pop(r["candidates"][0]["name"]), "no entry for candidate"),
    (lambda r: r.__setitem__("recommended_score", "nope"), "'nope' is not a method"),
])
def test_check_results_errors_name_the_key(mutate, match):
    r = make_results()
    mutate(r)
    with pytest.raises(InputValueError, match=match):
        check_results(r)


def test_html_is_self_contained_and_complete():
    r = make_results()
    figs = make_figures(r)
    assert set(figs) == {"summary", "scatter", "layers", "finetune", "timings"}
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" for png in figs.values())
    page = render_html(r, figs)
    # every candidate, every score, the recommended candidate on top of the ranking table
    for c in r["candidates"]:
        assert c["name"] in page
    for m in METHODS:
        assert m.upper() in page
    ranking_section = page.split("<h2>Ranking</h2>")[1]
    first_row = re.search(r'<tr class="top[^"]*">(.*?)</tr>', ranking_section).group(1)
    assert r["ranking"][0] in first_row and "recommended" in first_row
    # self-contained: embedded images only, no external resources, text escaped
    assert page.count("data:image/png;base64,") == 4  # summary, scatter, layers, finetune
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "a &lt;warning&gt; &amp; more" in page and "<warning>" not in page
    assert "<script" not in page


def test_minimal_results_render_without_optional_sections():
    r = {"candidates": [{"name": "a"}, {"name": "b"}], "scores": {"a": {"x": 1.0}, "b": {"x": float("nan")}}}
    page = render_html(r)
    assert "a" in page and "Layer-wise" not in page and "Fine-tuning" not in page
    assert "<img" not in page  # no truth, no layers, no fine-tuning: nothing to plot
    assert re.search(r"<td class=num>1</td><td>a</td><td class=num>1</td>", page)  # score column without rec
    md = render_markdown(r)
    assert "| 1 | a | 1 |" in md and "| 2 | b | — |" in md


def test_markdown_tables_and_figure_links():
    r = make_results()
    md = render_markdown(r, {"summary": "figures/summary.png", "scatter": "figures/s.png"})
    assert "![summary](figures/summary.png)" in md and "![scores vs accuracy](figures/s.png)" in md
    eval_rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "pt |" in ln]
    assert len(eval_rows) == len(METHODS)
    assert "NCTI **(recommended)**" in md
    # evaluation sorted by weighted tau: LOGME (0.5) first
    assert eval_rows[0].startswith("| LOGME")


def test_write_report_files_and_strict_json(tmp_path):
    r = make_results()
    r["scores"][r["candidates"][0]["name"]]["logme"] = float("nan")
    r["scores"][r["candidates"][1]["name"]]["leep"] = np.float32(0.25)
    paths = write_report(r, tmp_path)
    assert (tmp_path / "report.html").is_file() and (tmp_path / "report.md").is_file()
    for key in ("summary", "scatter", "layers", "finetune", "timings"):
        assert paths[key].is_file() and paths[key].read_bytes()[:4] == b"\x89PNG"
    write_results_json(r, tmp_path / "results.json")
    text = (tmp_path / "results.json").read_text()
    assert "NaN" not in text
    back = load_results(tmp_path / "results.json")
    assert back["scores"][r["candidates"][0]["name"]]["logme"] is None
    assert back["scores"][r["candidates"][1]["name"]]["leep"] == 0.25
    write_scores_csv(r, tmp_path / "scores.csv")
    import pandas as pd

    df = pd.read_csv(tmp_path / "scores.csv", index_col=0)
    assert list(df.index) == r["ranking"]
    assert {"rank", "true_accuracy", "true_rank", "collapse_nc1", *METHODS} <= set(df.columns)
    assert math.isnan(df.loc[r["candidates"][0]["name"], "logme"])
    assert not list(tmp_path.glob(".*.tmp*"))  # no temporary files left behind


def test_failed_report_keeps_previous_files(tmp_path):
    good = make_results()
    write_report(good, tmp_path)
    before = (tmp_path / "report.html").read_bytes()
    bad = make_results()
    bad["recommended_score"] = "not-a-method"
    with pytest.raises(InputValueError):
        write_report(bad, tmp_path)
    assert (tmp_path / "report.html").read_bytes() == before


def test_scores_frame_one_row_per_candidate():
    r = make_results(n_models=3, n_taps=1, control=False)
    df = scores_frame(r)
    assert len(df) == 3 and df["rank"].tolist() == [1, 2, 3]
    assert df.index[0] == r["recommended"]
    assert json.loads(df.to_json())  # plain values only


@pytest.mark.skipif(find_browser() is None, reason="no headless Chromium installed (Debian package 'chromium'; "
                    "`make test` installs it when run as root)")
def test_report_renders_in_headless_chromium(tmp_path):
    r = make_results(n_models=3, n_taps=4)
    write_report(r, tmp_path)
    check = check_in_browser(tmp_path / "report.html", tmp_path / "shot.png")
    assert check.n_images == 4
    assert check.all_images_loaded, f"only {check.n_loaded}/{check.n_images} images decoded"
    assert not check.blank, f"blank screenshot (ink {check.ink_fraction:.3f}, std {check.pixel_std:.1f})"


@pytest.mark.skipif(find_browser() is None, reason="no headless Chromium installed")
def test_browser_check_detects_broken_image_and_blank_page(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<html><body style="background:#fff"><img src="data:image/png;base64,AAAA"></body></html>')
    check = check_in_browser(page, tmp_path / "b.png", window=(400, 300))
    assert check.n_images == 1 and check.n_loaded == 0 and not check.all_images_loaded
    assert check.blank


def test_report_files_get_the_usual_file_mode(tmp_path):
    """Atomic writes go through mkstemp (mode 0600); the report must end up with the umask-based mode a plain
    open() gives, so that it can be shared or served."""
    import os

    mask = os.umask(0o022)
    try:
        write_report(make_results(), tmp_path)
    finally:
        os.umask(mask)
    assert (tmp_path / "report.html").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "figures" / "summary.png").stat().st_mode & 0o777 == 0o644
