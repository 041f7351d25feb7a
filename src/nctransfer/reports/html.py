"""Self-contained HTML report: inline CSS, figures embedded as base64 PNG, no script, no external resource.

The page can be mailed or archived alone and opens in any browser, offline.
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any, Mapping

from nctransfer.reports.schema import (
    COLLAPSE_COLUMNS,
    EVALUATION_MEASURES,
    baseline_lines,
    candidate_names,
    coverage_text,
    interval_suffix,
    check_results,
    format_number,
    is_number,
    method_label,
    method_names,
    ranking_order,
    true_ranks,
)

#: rows of the ranking table shown before the rest is folded into a <details> element
TOP_ROWS = 25
#: warnings listed in the report (all of them stay in results.json)
MAX_WARNINGS = 30

_CSS = """
:root { --fg:#1d2733; --muted:#5b6b7c; --line:#e3e8ee; --accent:#c2410c; --bg:#f6f8fa; --good:#15803d; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
  color:var(--fg); background:var(--bg); }
main { max-width:1180px; margin:0 auto; padding:28px 28px 60px; }
header { margin-bottom:18px; }
h1 { font-size:26px; margin:0 0 4px; letter-spacing:-0.01em; }
h2 { font-size:19px; margin:0 0 10px; }
h3 { font-size:15px; margin:16px 0 6px; }
.sub { color:var(--muted); margin:0; }
section { background:#fff; border:1px solid var(--line); border-radius:10px; padding:18px 20px; margin:16px 0; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(160px,1fr)); gap:12px; margin:16px 0; }
.card { background:#fff; border:1px solid var(--line); border-radius:10px; padding:12px 14px; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .v { font-size:18px; font-weight:650; overflow-wrap:anywhere; }
.card .n { color:var(--muted); font-size:12.5px; }
.card.hero { border-color:var(--accent); box-shadow:0 0 0 1px var(--accent) inset; }
.card.hero .v { color:var(--accent); }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { padding:5px 8px; border-bottom:1px solid var(--line); text-align:left; vertical-align:middle; }
th { font-weight:600; color:var(--muted); font-size:12px; background:#fafbfc; position:sticky; top:0; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr.top td { background:#fff7ed; font-weight:600; }
tr.control td { color:#8a94a0; }
tr.rec td:first-child { border-left:3px solid var(--accent); }
.bar { display:inline-block; height:9px; border-radius:2px; background:#93c5fd; vertical-align:middle;
  margin-right:6px; }
.tag { display:inline-block; font-size:11px; padding:0 6px; border-radius:9px; background:#eef2f6; color:var(--muted);
  margin-left:6px; font-weight:500; }
.tag.rec { background:#ffedd5; color:var(--accent); }
.tag.ctl { background:#f1f5f9; color:#64748b; }
figure { margin:12px 0 4px; text-align:center; }
figure img { max-width:100%; height:auto; border-radius:4px; }
figcaption { color:var(--muted); font-size:12.5px; margin-top:4px; }
details { margin-top:8px; }
summary { cursor:pointer; color:#2563eb; }
pre { background:#0f172a; color:#e2e8f0; padding:12px; border-radius:8px; overflow:auto; font-size:12px; }
.note { color:var(--muted); font-size:13px; }
.warn { background:#fffbeb; border:1px solid #fcd34d; border-radius:8px; padding:8px 12px; margin:6px 0;
  font-size:13px; }
.kv td:first-child { color:var(--muted); width:32%; }
footer { color:var(--muted); font-size:12px; text-align:center; margin-top:24px; }
"""


def esc(v: Any) -> str:
    """HTML-escaped text of any value."""
    return html.escape(str(v), quote=True)


fmt = format_number


def pct(v: Any, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage."""
    return f"{100 * float(v):.{digits}f}%" if is_number(v) else "—"


def img_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` with the PNG embedded as a base64 data URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def _breakable(v: Any) -> str:
    """Escaped text with line-break opportunities after ``@``, ``/`` and ``:`` (long candidate names)."""
    out = esc(v)
    for ch in ("@", "/", ":"):
        out = out.replace(ch, ch + "<wbr>")
    return out


def _heat(v: Any, higher_is_better: bool = True) -> str:
    """Inline background colour for a correlation in [-1, 1] (green good, red bad)."""
    if not is_number(v):
        return ""
    x = max(-1.0, min(1.0, float(v))) * (1 if higher_is_better else -1)
    hue = 130 if x >= 0 else 0
    light = 97 - 22 * abs(x)
    return f' style="background:hsl({hue},60%,{light:.0f}%)"'


def _candidate_cell(c: Mapping[str, Any], recommended: str | None) -> str:
    tags = ""
    if c["name"] == recommended:
        tags += '<span class="tag rec">recommended</span>'
    if c.get("control"):
        tags += '<span class="tag ctl">control</span>'
    elif c.get("pretrained") is False:
        tags += '<span class="tag ctl">random init</span>'
    return f"{esc(c['name'])}{tags}"


def _ranking_table(r: Mapping[str, Any]) -> str:
    cmap = {c["name"]: c for c in r["candidates"]}
    rec = r.get("recommended_score")
    order = r.get("ranking") or ranking_order(r)
    acc = (r.get("truth") or {}).get("accuracy") or {}
    tranks = true_ranks(r)
    collapse = r.get("collapse") or {}
    ccols = [(k, lab) for k, lab in COLLAPSE_COLUMNS if any(is_number((collapse.get(n) or {}).get(k)) for n in order)]
    has_dim = any(is_number(cmap[n].get("dim")) for n in order)
    best_acc = max((float(acc[n]) for n in order if is_number(acc.get(n))), default=None)
    head = ["<th class=num>#</th>", "<th>candidate</th>"]
    score_cols = [rec] if rec else method_names(r)
    head += [f"<th class=num>{esc(method_label(r, m))}</th>" for m in score_cols]
    if acc:
        head += ["<th>true accuracy</th>", "<th class=num>true rank</th>"]
    head += [f"<th class=num>{esc(lab)}</th>" for _, lab in ccols]
    if has_dim:
        head.append("<th class=num>dim</th>")
    rows = []
    for i, name in enumerate(order):
        c = cmap[name]
        cls = []
        if i == 0 and rec:
            cls.append("top")
        if c.get("control"):
            cls.append("control")
        cells = [f"<td class=num>{i + 1}</td>", f"<td>{_candidate_cell(c, r.get('recommended'))}</td>"]
        cells += [f"<td class=num>{fmt(r['scores'][name].get(m))}</td>" for m in score_cols]
        if acc:
            a = acc.get(name)
            width = int(round(90 * float(a))) if is_number(a) else 0
            star = " ★" if is_number(a) and best_acc is not None and float(a) == best_acc else ""
            cells.append(f'<td class=num style="text-align:left"><span class=bar style="width:{width}px"></span>'
                         f"{pct(a)}{star}</td>")
            cells.append(f"<td class=num>{tranks.get(name, '—')}</td>")
        cells += [f"<td class=num>{fmt((collapse.get(name) or {}).get(k))}</td>" for k, _ in ccols]
        if has_dim:
            cells.append(f"<td class=num>{esc(c.get('dim', '—'))}</td>")
        rows.append(f'<tr class="{" ".join(cls)}">' + "".join(cells) + "</tr>")
    table = "<table><thead><tr>" + "".join(head) + "</tr></thead><tbody>{}</tbody></table>"
    if len(rows) <= TOP_ROWS + 5:
        return table.format("".join(rows))
    return (table.format("".join(rows[:TOP_ROWS]))
            + f"<details><summary>show the other {len(rows) - TOP_ROWS} candidates</summary>"
            + table.format("".join(rows[TOP_ROWS:])) + "</details>")


def _evaluation_table(r: Mapping[str, Any]) -> str:
    ev = r.get("evaluation") or {}
    rec = r.get("recommended_score")
    seconds = r.get("score_seconds") or {}
    methods = [m for m in method_names(r) if m in ev] + [m for m in ev if m not in method_names(r)]
    methods.sort(key=lambda m: -float(ev[m].get("weighted_tau")) if is_number(ev[m].get("weighted_tau")) else 9)
    head = ("<tr><th class=num>#</th><th>score</th>"
            + "".join(f"<th class=num>{esc(lab)}</th>" for _, lab, _ in EVALUATION_MEASURES)
            + "<th class=num>models scored</th>"
            + ("<th class=num>seconds</th>" if seconds else "") + "</tr>")
    rows = []
    extra = r.get("evaluation_intervals") or {}
    for i, m in enumerate(methods):
        e = {**ev[m], **(extra.get(m) or {})}
        tag = '<span class="tag rec">recommended</span>' if m == rec else ""
        cells = [f"<td class=num>{i + 1}</td>", f"<td>{esc(method_label(r, m))}{tag}</td>"]
        for key, _, hib in EVALUATION_MEASURES:
            v = e.get(key)
            if key == "top1_regret":
                ci = esc(interval_suffix(e, key, 100.0, 1, sign=False))
                cells.append(f"<td class=num>{'—' if not is_number(v) else f'{100 * float(v):.1f} pt'}"
                             f"<small>{ci}</small></td>")
            else:
                ci = esc(interval_suffix(e, key))
                cells.append(f"<td class=num{_heat(v, hib)}>{fmt(v, 3) if not is_number(v) else f'{v:+.3f}'}"
                             f"<small>{ci}</small></td>")
        cov = coverage_text(e)
        cells.append(f"<td class=num>{'<b>' + esc(cov) + '</b>' if cov.endswith('partial') else esc(cov or '—')}"
                     "</td>")
        if seconds:
            cells.append(f"<td class=num>{fmt(seconds.get(m), 3)}</td>")
        rows.append(f'<tr class="{"rec" if m == rec else ""}">' + "".join(cells) + "</tr>")
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _layers_tables(r: Mapping[str, Any]) -> str:
    out = []
    for model, v in (r.get("layers") or {}).items():
        taps = v.get("taps") or []
        if not taps:
            continue
        keys = [k for k in ("nc1", "vci", "cdnv", "ncc_accuracy", "probe_accuracy") if any(k in t for t in taps)]
        head = "<tr><th class=num>#</th><th>tap</th><th class=num>dim</th>" + "".join(
            f"<th class=num>{esc(k.replace('_', ' '))}</th>" for k in keys) + "</tr>"
        rows = []
        for i, t in enumerate(taps):
            cells = [f"<td class=num>{i}</td>", f"<td>{esc(t.get('tap'))}</td>",
                     f"<td class=num>{esc(t.get('dim', '—'))}</td>"]
            cells += [f"<td class=num>{pct(t.get(k)) if k.endswith('accuracy') else fmt(t.get(k))}</td>" for k in keys]
            rows.append("<tr>" + "".join(cells) + "</tr>")
        corr = v.get("correlations") or {}
        corr_txt = ", ".join(f"{esc(k.replace('_', ' '))} = {fmt(val, 3)}" for k, val in corr.items())
        out.append(f"<details><summary>{esc(model)}: {len(taps)} taps{'; ' + corr_txt if corr_txt else ''}"
                   f"</summary><table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></details>")
    return "".join(out)


def _finetune_table(r: Mapping[str, Any]) -> str:
    ft = r.get("finetune") or {}
    methods = ft.get("methods") or {}
    cols = [("test_accuracy", "test accuracy"), ("penultimate_nc1", "penultimate NC1"),
            ("trainable_params", "trainable params"), ("trainable_percent", "trainable %"),
            ("seconds_per_epoch", "s / epoch"), ("peak_memory_mb", "peak MB")]
    cols = [c for c in cols if any(c[0] in v for v in methods.values())]
    head = "<tr><th>method</th>" + "".join(f"<th class=num>{esc(lab)}</th>" for _, lab in cols) + "</tr>"
    from nctransfer.reports.plots import _method_display

    rows = []
    for m, v in methods.items():
        cells = [f"<td>{esc(_method_display(m))}</td>"]
        for k, _ in cols:
            x = v.get(k)
            if k == "test_accuracy":
                cells.append(f"<td class=num>{pct(x)}</td>")
            elif k == "trainable_params":
                cells.append(f"<td class=num>{int(x):,}</td>" if is_number(x) else "<td class=num>—</td>")
            else:
                cells.append(f"<td class=num>{fmt(x, 3)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _timings_table(r: Mapping[str, Any]) -> str:
    t = {k: float(v) for k, v in (r.get("timings") or {}).items() if is_number(v)}
    cached = set(r.get("timings_cached") or [])
    total = sum(t.values()) or 1.0
    rows = []
    for k, v in t.items():
        tag = '<span class="tag">cached</span>' if k in cached else ""
        rows.append(f"<tr><td>{esc(k)}{tag}</td><td class=num>{v:.2f}</td><td style='width:45%'>"
                    f"<span class=bar style='width:{int(round(300 * v / total))}px'></span>{100 * v / total:.0f}%"
                    "</td></tr>")
    rows.append(f"<tr><td><b>total</b></td><td class=num><b>{sum(t.values()):.2f}</b></td><td></td></tr>")
    return ("<table><thead><tr><th>stage</th><th class=num>seconds</th><th>share</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _kv_table(d: Mapping[str, Any]) -> str:
    rows = []
    for k, v in d.items():
        val = json.dumps(v, default=str) if isinstance(v, (list, dict, tuple)) else str(v)
        rows.append(f"<tr><td>{esc(k)}</td><td><code>{esc(val)}</code></td></tr>")
    return f"<table class=kv><tbody>{''.join(rows)}</tbody></table>"


def _figure(figs: Mapping[str, bytes], key: str, alt: str, caption: str) -> str:
    if key not in figs:
        return ""
    return f"<figure>{img_tag(figs[key], alt)}<figcaption>{caption}</figcaption></figure>"


def _cards(r: Mapping[str, Any]) -> str:
    rec_score = r.get("recommended_score")
    order = r.get("ranking") or ranking_order(r)
    acc = (r.get("truth") or {}).get("accuracy") or {}
    ev = (r.get("evaluation") or {}).get(rec_score) or {}
    cards = []
    if rec_score:
        top = r.get("recommended") or order[0]
        note = f"true accuracy {pct(acc.get(top))}" if top in acc else f"{method_label(r, rec_score)} = " \
            f"{fmt(r['scores'][top].get(rec_score))}"
        cards.append(("hero", "recommended", top, note))
    if acc:
        best = max((n for n in candidate_names(r) if is_number(acc.get(n))), key=lambda n: float(acc[n]), default=None)
        if best is not None:
            cards.append(("", "truly best", best, f"{(r.get('truth') or {}).get('kind', 'true')} accuracy "
                                                    f"{pct(acc[best])}"))
    if rec_score:
        tau = ev.get("weighted_tau")
        cards.append(("", "ranked by", method_label(r, rec_score),
                      f"weighted τ = {tau:+.3f} on this pool" if is_number(tau) else "the recommended score"))
    controls = [c["name"] for c in r["candidates"] if c.get("control")]
    if rec_score and controls:
        pos = {n: i + 1 for i, n in enumerate(order)}
        best_ctl = min(pos[c] for c in controls if c in pos)
        n_ctl = len(controls)
        last = best_ctl > len(order) - n_ctl
        cards.append(("", "controls", f"ranked {best_ctl}/{len(order)}" if not last else
                      ("all ranked last" if n_ctl > 1 else "ranked last"),
                      f"{n_ctl} control candidate(s) (random init)"
                      + ("" if last else "; the best of them")))
    if is_number(ev.get("top1_regret")):
        cards.append(("", "top-1 regret", f"{100 * float(ev['top1_regret']):.1f} points",
                      "true accuracy lost by trusting the score"))
    t = r.get("timings") or {}
    if t:
        cards.append(("", "wall time", f"{sum(float(v) for v in t.values() if is_number(v)):.0f} s",
                      f"{len(t)} stages"))
    return "<div class=cards>" + "".join(
        f'<div class="card {cls}"><div class=k>{esc(k)}</div><div class=v>{_breakable(v)}</div>'
        f'<div class=n>{esc(n)}</div>'
        "</div>" for cls, k, v, n in cards) + "</div>"


def render_html(results: Mapping[str, Any], figures: Mapping[str, bytes] | None = None) -> str:
    """The report as one self-contained HTML page.

    Args:
        results: the structure of :mod:`nctransfer.reports.schema`.
        figures: PNG bytes by key (``summary``, ``scatter``, ``layers``, ``finetune``, ``timings``), as made by
            :func:`nctransfer.reports.make_figures`; drawn here when ``None``.

    Returns:
        The HTML text (UTF-8, no external resources).
    """
    r = check_results(results)
    if figures is None:
        from nctransfer.reports import make_figures

        figures = make_figures(r)
    data = r.get("data") or {}
    title = r.get("title") or (f"Which model transfers best to {data['name']}?" if data.get("name")
                               else "nctransfer transferability report")
    sub_bits = []
    if data.get("name"):
        sub_bits.append(f"data: {data['name']}")
    if data.get("n_classes"):
        sub_bits.append(f"{data['n_classes']} classes")
    if data.get("n_train"):
        sub_bits.append(f"{data['n_train']} train / {data.get('n_test', '?')} test images"
                        + (f" at {data['image_size']} px" if data.get("image_size") else ""))
    sub_bits.append(f"{len(r['candidates'])} candidates, {len(method_names(r))} scores")
    env = r.get("environment") or {}
    if env.get("time_utc"):
        sub_bits.append(f"generated {env['time_utc']}")
    truth = r.get("truth") or {}
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        '<meta name=viewport content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<header><h1>{esc(title)}</h1><p class=sub>{esc(' · '.join(sub_bits))}</p></header>",
        _cards(r),
    ]
    if "summary" in figures:
        parts.append("<section>" + _figure(figures, "summary", "summary",
                                           "Left: the recommended score of every candidate against its true accuracy "
                                           "(crosses: controls). Middle: neural collapse (NC1) through the depth of "
                                           "each model. Right: cheap fine-tuning of the recommended model.")
                     + "</section>")
    rec = r.get("recommended_score")
    intro = (f"Ranked by <b>{esc(method_label(r, rec))}</b> (higher = predicted to transfer better)." if rec else
             "Candidates in pool order.")
    if truth.get("source"):
        intro += f" True accuracy: {esc(truth['source'])}."
    parts.append(f"<section><h2>Ranking</h2><p class=note>{intro}</p>{_ranking_table(r)}</section>")
    if r.get("evaluation"):
        parts.append("<section><h2>How well each score ranked the candidates</h2><p class=note>Agreement of each "
                     "score's ranking with the true accuracies: weighted Kendall τ (hyperbolic weights, the measure "
                     "of the published tables), Kendall τ, Spearman and Pearson correlations, and top-1 regret (best "
                     "true accuracy minus that of the score's top candidate); [95% CI]: bootstrap interval over "
                     "the candidates and the test set's sampling error; <b>partial</b>: a score computed on only "
                     "part of the pool.</p>" + _evaluation_table(r)
                     + "".join(f"<p class=note>{esc(line)}</p>" for line in baseline_lines(r))
                     + _figure(figures, "scatter", "score vs accuracy",
                               "Each score against the true accuracy; big markers: penultimate features, dots: "
                               "intermediate taps (bigger = deeper), crosses: controls; framed: recommended score.")
                     + "</section>")
    if any(v.get("taps") for v in (r.get("layers") or {}).values()):
        parts.append("<section><h2>Layer-wise collapse</h2><p class=note>NC1 = tr(Σ<sub>W</sub> Σ<sub>B</sub><sup>+"
                     "</sup>)/K of each tap's training features (docs/methods.md#nc1 #layer-wise) and the linear-probe accuracy of the "
                     "same tap. Li et al., TMLR 2024 (figure 9): collapse progresses with depth and goes with accuracy.</p>"
                     + _figure(figures, "layers", "layer-wise NC1", "NC1 and probe accuracy per tap.")
                     + _layers_tables(r) + "</section>")
    ft = r.get("finetune") or {}
    if ft.get("methods"):
        desc = esc(ft.get("description") or "")
        head = f"on <b>{esc(ft.get('model', ''))}</b>" + (f", unit <code>{esc(ft['unit'])}</code>" if ft.get("unit")
                                                          else "")
        parts.append(f"<section><h2>Fine-tuning: linear probe vs SCL FT</h2><p class=note>{head}. {desc}</p>"
                     + _finetune_table(r) + _figure(figures, "finetune", "fine-tuning", "") + "</section>")
    if r.get("timings"):
        parts.append("<section><h2>Timings</h2>" + _timings_table(r) + "</section>")
    notes = list(r.get("notes") or [])
    warns = list(r.get("warnings") or [])
    if notes or warns:
        shown = warns[:MAX_WARNINGS]
        more = (f"<p class=note>... and {len(warns) - MAX_WARNINGS} more warnings in results.json.</p>"
                if len(warns) > MAX_WARNINGS else "")
        parts.append("<section><h2>Notes and warnings</h2>"
                     + "".join(f"<div class=note>{esc(n)}</div>" for n in notes)
                     + "".join(f"<div class=warn>{esc(w)}</div>" for w in shown) + more + "</section>")
    errors = r.get("score_errors") or {}
    if any(errors.values()):
        items = "".join(f"<li><code>{esc(c)}</code> / {esc(m)}: {esc(msg)}</li>"
                        for c, d in errors.items() for m, msg in d.items())
        parts.append(f"<section><h2>Scores not computed</h2><ul class=note>{items}</ul></section>")
    if r.get("config") or env:
        parts.append("<section><h2>Configuration and environment</h2>"
                     + ("<h3>Resolved configuration</h3>" + _kv_table(r["config"]) if r.get("config") else "")
                     + ("<h3>Environment</h3>" + _kv_table(env) if env else "") + "</section>")
    parts.append(f"<footer>nctransfer {esc(env.get('nctransfer', ''))} · results schema "
                 f"{esc(r.get('schema', ''))}</footer></main></body></html>\n")
    return "".join(parts)
