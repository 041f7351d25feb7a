"""The content of a report, built once from the results structure and rendered by two Jinja2 templates.

:func:`build_context` decides *what* the report says (sections, table columns, rows, every number formatted as
text); the templates ``templates/report.html.j2`` and ``templates/report.md.j2`` decide only *how* it looks, so
the HTML and the Markdown report carry the same content. Text in the context is plain (unescaped): the HTML
template escapes it (autoescape), the Markdown template escapes the table-cell separators.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from nctransfer.reports.context_model import (  # noqa: F401 (moved; re-exported)
    FIGURE_TEXT,
    MAX_WARNINGS,
    TOP_ROWS,
    Card,
    EvalCell,
    EvalRow,
    Evaluation,
    Finetune,
    LayerModel,
    RankingTable,
    RankRow,
    ReportContext,
    Timing,
    method_display,
    pct,
)
from nctransfer.reports.schema import (
    COLLAPSE_COLUMNS,
    EVALUATION_MEASURES,
    INTERVAL_MEASURES,
    baseline_lines,
    candidate_names,
    check_results,
    coverage_text,
    format_number,
    interval_suffix,
    is_number,
    method_label,
    method_names,
    ranking_order,
    true_ranks,
)

_f = format_number


def _heat(v: Any, higher_is_better: bool = True) -> str:
    """Background colour for a correlation in [-1, 1] (green good, red bad); ``""`` for a missing value."""
    if not is_number(v):
        return ""
    x = max(-1.0, min(1.0, float(v))) * (1 if higher_is_better else -1)
    return f"hsl({130 if x >= 0 else 0},60%,{97 - 22 * abs(x):.0f}%)"


def _subtitle(r: Mapping[str, Any]) -> list[str]:
    data = r.get("data") or {}
    bits = []
    if data.get("name"):
        bits.append(f"data: {data['name']}")
    if data.get("n_classes"):
        bits.append(f"{data['n_classes']} classes")
    if data.get("n_train"):
        bits.append(f"{data['n_train']} train / {data.get('n_test', '?')} test images"
                    + (f" at {data['image_size']} px" if data.get("image_size") else ""))
    bits.append(f"{len(r['candidates'])} candidates, {len(method_names(r))} scores")
    env = r.get("environment") or {}
    if env.get("time_utc"):
        bits.append(f"generated {env['time_utc']}")
    return bits


def _cards(r: Mapping[str, Any], order: list[str]) -> list[Card]:
    rec_score = r.get("recommended_score")
    acc = (r.get("truth") or {}).get("accuracy") or {}
    ev = (r.get("evaluation") or {}).get(rec_score) or {}
    cards = []
    if rec_score:
        top = r.get("recommended") or order[0]
        note = (f"true accuracy {pct(acc.get(top))}" if top in acc
                else f"{method_label(r, rec_score)} = {_f(r['scores'][top].get(rec_score))}")
        cards.append(Card("hero", "recommended", top, note))
    if acc:
        best = max((n for n in candidate_names(r) if is_number(acc.get(n))), key=lambda n: float(acc[n]), default=None)
        if best is not None:
            cards.append(Card("", "truly best", best,
                              f"{(r.get('truth') or {}).get('kind', 'true')} accuracy {pct(acc[best])}"))
    if rec_score:
        tau = ev.get("weighted_tau")
        cards.append(Card("", "ranked by", method_label(r, rec_score),
                          f"weighted τ = {tau:+.3f} on this pool" if is_number(tau) else "the recommended score"))
    controls = [c["name"] for c in r["candidates"] if c.get("control")]
    if rec_score and controls:
        pos = {n: i + 1 for i, n in enumerate(order)}
        best_ctl = min(pos[c] for c in controls if c in pos)
        n_ctl = len(controls)
        last = best_ctl > len(order) - n_ctl
        cards.append(Card("", "controls", f"ranked {best_ctl}/{len(order)}" if not last else
                          ("all ranked last" if n_ctl > 1 else "ranked last"),
                          f"{n_ctl} control candidate(s) (random init)" + ("" if last else "; the best of them")))
    if is_number(ev.get("top1_regret")):
        cards.append(Card("", "top-1 regret", f"{100 * float(ev['top1_regret']):.1f} points",
                          "true accuracy lost by trusting the score"))
    t = r.get("timings") or {}
    if t:
        cards.append(Card("", "wall time", f"{sum(float(v) for v in t.values() if is_number(v)):.0f} s",
                          f"{len(t)} stages"))
    return cards


def _ranking(r: Mapping[str, Any], order: list[str]) -> RankingTable:
    cmap = {c["name"]: c for c in r["candidates"]}
    rec = r.get("recommended_score")
    truth = r.get("truth") or {}
    acc = truth.get("accuracy") or {}
    tranks = true_ranks(r)
    collapse = r.get("collapse") or {}
    ccols = [(k, lab) for k, lab in COLLAPSE_COLUMNS if any(is_number((collapse.get(n) or {}).get(k)) for n in order)]
    has_dim = any(is_number(cmap[n].get("dim")) for n in order)
    best_acc = max((float(acc[n]) for n in order if is_number(acc.get(n))), default=None)
    score_cols = [rec] if rec else method_names(r)
    rows = []
    for i, name in enumerate(order):
        c = cmap[name]
        a = acc.get(name)
        rows.append(RankRow(
            rank=i + 1, name=name, top=bool(i == 0 and rec), recommended=name == r.get("recommended"),
            control=bool(c.get("control")), random_init=not c.get("control") and c.get("pretrained") is False,
            scores=[_f(r["scores"][name].get(m)) for m in score_cols],
            accuracy=pct(a), accuracy_fraction=float(a) if is_number(a) else 0.0,
            truly_best=is_number(a) and best_acc is not None and float(a) == best_acc,
            true_rank=str(tranks.get(name, "—")),
            collapse=[_f((collapse.get(name) or {}).get(k)) for k, _ in ccols], dim=str(c.get("dim", "—"))))
    return RankingTable(
        intro="" if rec else "Candidates in pool order.", ranked_by=method_label(r, rec) if rec else None,
        truth_source=truth.get("source") or None, score_labels=[method_label(r, m) for m in score_cols],
        has_truth=bool(acc), collapse_labels=[lab for _, lab in ccols], has_dim=has_dim, rows=rows,
        shown=len(rows) if len(rows) <= TOP_ROWS + 5 else TOP_ROWS)


def _evaluation(r: Mapping[str, Any]) -> Evaluation | None:
    ev = r.get("evaluation") or {}
    if not ev:
        return None
    rec = r.get("recommended_score")
    seconds = r.get("score_seconds") or {}
    methods = [m for m in method_names(r) if m in ev] + [m for m in ev if m not in method_names(r)]
    methods.sort(key=lambda m: -float(ev[m]["weighted_tau"]) if is_number(ev[m].get("weighted_tau")) else 9)
    extra = r.get("evaluation_intervals") or {}
    rows = []
    for i, m in enumerate(methods):
        e = {**ev[m], **(extra.get(m) or {})}
        cells = []
        for key, _, hib in EVALUATION_MEASURES:
            v = e.get(key)
            if key == "top1_regret":
                cells.append(EvalCell("—" if not is_number(v) else f"{100 * float(v):.1f} pt",
                                      interval_suffix(e, key, 100.0, 1, sign=False), ""))
            else:
                cells.append(EvalCell("—" if not is_number(v) else f"{float(v):+.3f}", interval_suffix(e, key),
                                      _heat(v, hib)))
        cov = coverage_text(e)
        rows.append(EvalRow(rank=i + 1, label=method_label(r, m), recommended=m == rec, cells=cells,
                            coverage=cov or "—", partial=cov.endswith("partial"),
                            seconds=_f(seconds.get(m), 3) if seconds else None))
    headers = [lab + (" [95% CI]" if k in INTERVAL_MEASURES else "") for k, lab, _ in EVALUATION_MEASURES]
    return Evaluation(headers=headers, rows=rows, has_seconds=bool(seconds), baselines=baseline_lines(r))


def _layers(r: Mapping[str, Any]) -> list[LayerModel]:
    out = []
    for model, v in (r.get("layers") or {}).items():
        taps = v.get("taps") or []
        if not taps:
            continue
        keys = [k for k in ("nc1", "vci", "cdnv", "ncc_accuracy", "probe_accuracy") if any(k in t for t in taps)]
        rows = [[str(i), str(t.get("tap")), str(t.get("dim", "—"))]
                + [pct(t.get(k)) if k.endswith("accuracy") else _f(t.get(k)) for k in keys] for i, t in enumerate(taps)]
        corr = ", ".join(f"{k.replace('_', ' ')} = {_f(val, 3)}" for k, val in (v.get("correlations") or {}).items())
        out.append(LayerModel(model=str(model), n_taps=len(taps), correlations=corr,
                              headers=["#", "tap", "dim"] + [k.replace("_", " ") for k in keys], rows=rows))
    return out


def _finetune(r: Mapping[str, Any]) -> Finetune | None:
    ft = r.get("finetune") or {}
    methods = ft.get("methods") or {}
    if not methods:
        return None
    cols = [("test_accuracy", "test accuracy"), ("penultimate_nc1", "penultimate NC1"),
            ("trainable_params", "trainable params"), ("trainable_percent", "trainable %"),
            ("seconds_per_epoch", "s / epoch"), ("peak_memory_mb", "peak MB")]
    cols = [c for c in cols if any(c[0] in v for v in methods.values())]
    rows = []
    for m, v in methods.items():
        row = [method_display(m)]
        for k, _ in cols:
            x = v.get(k)
            if k == "test_accuracy":
                row.append(pct(x))
            elif k == "trainable_params":
                row.append(f"{int(x):,}" if is_number(x) else "—")
            else:
                row.append(_f(x, 3))
        rows.append(row)
    return Finetune(model=str(ft.get("model", "")), unit=str(ft.get("unit") or ""),
                    description=str(ft.get("description") or ""), headers=["method"] + [lab for _, lab in cols],
                    rows=rows)


def _kv(d: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(str(k), json.dumps(v, default=str) if isinstance(v, (list, dict, tuple)) else str(v))
            for k, v in d.items()]


def build_context(results: Mapping[str, Any]) -> ReportContext:
    """The content of the report of ``results`` (the structure of :mod:`nctransfer.reports.schema`).

    Raises:
        InputValueError: when ``results`` is malformed (see :func:`nctransfer.reports.schema.check_results`).
    """
    r = check_results(results)
    data = r.get("data") or {}
    title = r.get("title") or (f"Which model transfers best to {data['name']}?" if data.get("name")
                               else "nctransfer transferability report")
    order = r.get("ranking") or ranking_order(r)
    t = {k: float(v) for k, v in (r.get("timings") or {}).items() if is_number(v)}
    total = sum(t.values())
    cached = set(r.get("timings_cached") or [])
    warns = [str(w) for w in r.get("warnings") or []]
    env = r.get("environment") or {}
    return ReportContext(
        title=str(title), subtitle=_subtitle(r), cards=_cards(r, order), ranking=_ranking(r, order),
        evaluation=_evaluation(r), layers=_layers(r), finetune=_finetune(r),
        timings=[Timing(k, k in cached, f"{v:.2f}", v / (total or 1.0)) for k, v in t.items()],
        timings_total=f"{total:.2f}", notes=[str(n) for n in r.get("notes") or []], warnings=warns[:MAX_WARNINGS],
        more_warnings=max(len(warns) - MAX_WARNINGS, 0),
        score_errors=[(str(c), str(m), str(msg)) for c, d in (r.get("score_errors") or {}).items()
                      for m, msg in d.items()],
        config=_kv(r.get("config") or {}), environment=_kv(env), version=str(env.get("nctransfer", "")),
        schema=str(r.get("schema", "")))


__all__ = ["Card", "EvalCell", "EvalRow", "Evaluation", "FIGURE_TEXT", "Finetune", "LayerModel", "MAX_WARNINGS",
           "RankRow", "RankingTable", "ReportContext", "TOP_ROWS", "Timing", "build_context", "method_display", "pct"]
