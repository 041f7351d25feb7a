"""Markdown report (GitHub-flavoured tables); figures are referenced as PNG files next to it."""

from __future__ import annotations

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


_f = format_number


def _pct(v: Any) -> str:
    return f"{100 * float(v):.1f}" if is_number(v) else "—"


def _md_cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list[Any]], align: list[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` items are ``"l"`` or ``"r"``."""
    align = align or ["l"] * len(header)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def evaluation_table_md(results: Mapping[str, Any]) -> str:
    """The table of how well every score ranked the candidates (sorted by weighted tau)."""
    ev = results.get("evaluation") or {}
    rec = results.get("recommended_score")
    seconds = results.get("score_seconds") or {}
    methods = [m for m in method_names(results) if m in ev] + [m for m in ev if m not in method_names(results)]
    methods.sort(key=lambda m: -float(ev[m]["weighted_tau"]) if is_number(ev[m].get("weighted_tau")) else 9)
    header = ["score"] + [lab + (" [95% CI]" if k in ("weighted_tau", "spearman", "top1_regret") else "")
                          for k, lab, _ in EVALUATION_MEASURES] + ["models scored"] + (["seconds"] if seconds else [])
    rows = []
    extra = results.get("evaluation_intervals") or {}
    for m in methods:
        e = {**ev[m], **(extra.get(m) or {})}
        name = method_label(results, m) + (" **(recommended)**" if m == rec else "")
        row: list[Any] = [name]
        for key, _, _ in EVALUATION_MEASURES:
            v = e.get(key)
            row.append(("—" if not is_number(v) else f"{100 * float(v):.1f} pt"
                        + interval_suffix(e, key, 100.0, 1, sign=False)) if key == "top1_regret"
                       else ("—" if not is_number(v) else f"{float(v):+.3f}" + interval_suffix(e, key)))
        cov = coverage_text(e)
        row.append(f"**{cov}**" if cov.endswith("partial") else (cov or "—"))
        if seconds:
            row.append(_f(seconds.get(m), 3))
        rows.append(row)
    return md_table(header, rows, ["l"] + ["r"] * (len(header) - 1))


def ranking_table_md(results: Mapping[str, Any], limit: int | None = None) -> str:
    """Candidates from best to worst by the recommended score, with true accuracy and collapse."""
    cmap = {c["name"]: c for c in results["candidates"]}
    rec = results.get("recommended_score")
    order = results.get("ranking") or ranking_order(results)
    acc = (results.get("truth") or {}).get("accuracy") or {}
    tranks = true_ranks(results)
    collapse = results.get("collapse") or {}
    ccols = [(k, lab) for k, lab in COLLAPSE_COLUMNS if any(is_number((collapse.get(n) or {}).get(k)) for n in order)]
    score_cols = [rec] if rec else method_names(results)
    header = ["#", "candidate"] + [method_label(results, m) for m in score_cols] + (
        ["true acc. (%)", "true rank"] if acc else []) + [lab for _, lab in ccols]
    rows = []
    for i, n in enumerate(order[: limit or len(order)]):
        c = cmap[n]
        label = f"**{n}**" if i == 0 and rec else n
        if c.get("control"):
            label += " (control)"
        row: list[Any] = [i + 1, label]
        row += [_f(results["scores"][n].get(m)) for m in score_cols]
        if acc:
            row += [_pct(acc.get(n)), tranks.get(n, "—")]
        row += [_f((collapse.get(n) or {}).get(k)) for k, _ in ccols]
        rows.append(row)
    return md_table(header, rows, ["r", "l"] + ["r"] * (len(header) - 2))


def render_markdown(results: Mapping[str, Any], figure_files: Mapping[str, str] | None = None) -> str:
    """The report in Markdown.

    Args:
        results: the structure of :mod:`nctransfer.reports.schema`.
        figure_files: relative paths of the figure PNGs by key (``summary``, ``scatter``, ``layers``,
            ``finetune``, ``timings``); figures without a file are left out.
    """
    r = check_results(results)
    figs = dict(figure_files or {})
    data = r.get("data") or {}
    title = r.get("title") or (f"Which model transfers best to {data['name']}?" if data.get("name")
                               else "nctransfer transferability report")
    out = [f"# {title}", ""]
    bits = []
    if data.get("name"):
        bits.append(f"data `{data['name']}`")
    if data.get("n_train"):
        bits.append(f"{data['n_train']} train / {data.get('n_test', '?')} test images"
                    + (f" at {data['image_size']} px" if data.get("image_size") else ""))
    bits.append(f"{len(r['candidates'])} candidates, {len(method_names(r))} scores")
    out += ["; ".join(bits) + ".", ""]
    rec = r.get("recommended_score")
    acc = (r.get("truth") or {}).get("accuracy") or {}
    if rec:
        top = r.get("recommended") or ranking_order(r)[0]
        line = f"**Recommended: `{top}`** (top by {method_label(r, rec)}"
        if is_number(acc.get(top)):
            line += f"; true accuracy {_pct(acc[top])}%"
        line += ")."
        if acc:
            best = max((n for n in candidate_names(r) if is_number(acc.get(n))), key=lambda n: float(acc[n]),
                       default=None)
            if best is not None:
                line += f" Truly best: `{best}` ({_pct(acc[best])}%)."
        out += [line, ""]
    if "summary" in figs:
        out += [f"![summary]({figs['summary']})", ""]
    out += ["## Ranking", ""]
    if (r.get("truth") or {}).get("source"):
        out += [f"True accuracy: {r['truth']['source']}.", ""]
    out += [ranking_table_md(r), ""]
    if r.get("evaluation"):
        out += ["## How well each score ranked the candidates", "", evaluation_table_md(r), ""]
        out += [f"- {line}" for line in baseline_lines(r)] + ([""] if baseline_lines(r) else [])
        if "scatter" in figs:
            out += [f"![scores vs accuracy]({figs['scatter']})", ""]
    layers = {m: v for m, v in (r.get("layers") or {}).items() if v.get("taps")}
    if layers:
        out += ["## Layer-wise collapse", ""]
        if "layers" in figs:
            out += [f"![layer-wise NC1]({figs['layers']})", ""]
        for model, v in layers.items():
            corr = v.get("correlations") or {}
            out += [f"**{model}**" + ("; " + ", ".join(f"{k} = {_f(x, 3)}" for k, x in corr.items()) if corr else ""),
                    ""]
            rows = [[i, t.get("tap"), t.get("dim", "—"), _f(t.get("nc1")), _pct(t.get("probe_accuracy"))]
                    for i, t in enumerate(v["taps"])]
            out += [md_table(["#", "tap", "dim", "NC1", "probe acc. (%)"], rows, ["r", "l", "r", "r", "r"]), ""]
    ft = r.get("finetune") or {}
    if ft.get("methods"):
        out += ["## Fine-tuning: linear probe vs SCL FT", ""]
        out += [f"Model `{ft.get('model', '')}`" + (f", unit `{ft['unit']}`" if ft.get("unit") else "") + ". "
                + (ft.get("description") or ""), ""]
        from nctransfer.reports.plots import _method_display

        rows = [[_method_display(m), _pct(v.get("test_accuracy")), _f(v.get("penultimate_nc1"), 3),
                 _f(v.get("trainable_percent"), 3), _f(v.get("seconds_per_epoch"), 3)]
                for m, v in ft["methods"].items()]
        out += [md_table(["method", "test acc. (%)", "penultimate NC1", "trainable %", "s / epoch"], rows,
                         ["l", "r", "r", "r", "r"]), ""]
        if "finetune" in figs:
            out += [f"![fine-tuning]({figs['finetune']})", ""]
    t = {k: float(v) for k, v in (r.get("timings") or {}).items() if is_number(v)}
    if t:
        cached = set(r.get("timings_cached") or [])
        rows = [[k + (" (cached)" if k in cached else ""), f"{v:.2f}"] for k, v in t.items()]
        rows.append(["**total**", f"**{sum(t.values()):.2f}**"])
        out += ["## Timings", "", md_table(["stage", "seconds"], rows, ["l", "r"]), ""]
    if r.get("notes") or r.get("warnings"):
        warns = list(r.get("warnings") or [])
        out += ["## Notes and warnings", ""] + [f"- {n}" for n in r.get("notes") or []] + [
            f"- {w}" for w in warns[:30]] + ([f"- ... and {len(warns) - 30} more in results.json"]
                                             if len(warns) > 30 else []) + [""]
    if r.get("config"):
        out += ["## Resolved configuration", "", "```"] + [f"{k}: {v}" for k, v in r["config"].items()] + ["```", ""]
    env = r.get("environment") or {}
    if env:
        out += ["## Environment", "", "```"] + [f"{k}: {v}" for k, v in env.items()] + ["```", ""]
    return "\n".join(out)
