"""Figures of a ranking run, drawn from the results structure of :mod:`nctransfer.reports.schema`.

Matplotlib is imported lazily and only through its object-oriented API (``matplotlib.figure.Figure`` with
the Agg canvas): no pyplot global state, no display needed. Every function returns a ``Figure`` (or
``None`` when the results hold nothing to draw); :func:`figure_png` turns it into PNG bytes.
"""

from __future__ import annotations

import io
import math
from typing import Any, Mapping, Sequence

from nctransfer.reports.context import method_display
from nctransfer.utils.extras import require_extra
from nctransfer.reports.schema import (
    candidate_names,
    is_number,
    method_label,
    method_names,
)

#: colours of the models in every figure (matplotlib's tab10), controls are drawn in grey
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
CONTROL_COLOR = "#7f7f7f"


def _figure(width: float, height: float) -> Any:
    require_extra("report", "nctransfer.reports")  # matplotlib is optional: say which extra installs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # deferred: matplotlib is the [report] extra
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _plain_log_axis(ax: Any) -> None:
    """Log-scale y axis with plain tick labels (0.3, 1, 2 instead of 3x10^-1, 10^0, 2x10^0)."""
    from matplotlib.ticker import FuncFormatter, LogLocator  # deferred: matplotlib is the [report] extra

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """PNG bytes of a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def _candidate_map(results: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c["name"]: c for c in results["candidates"]}


def model_colors(results: Mapping[str, Any]) -> dict[str, str]:
    """Colour of every model (controls grey), stable in pool order."""
    colors: dict[str, str] = {}
    i = 0
    for c in results["candidates"]:
        model = str(c.get("model", c["name"]))
        if model in colors:
            continue
        if c.get("control"):
            colors[model] = CONTROL_COLOR
        else:
            colors[model] = PALETTE[i % len(PALETTE)]
            i += 1
    return colors


def _short_model(model: str) -> str:
    return model.split("/")[-1]


def _scatter_panel(ax: Any, results: Mapping[str, Any], method: str, colors: Mapping[str, str],
                   annotate: bool = False) -> bool:
    """Score (x) against true accuracy in % (y) of every candidate; False if nothing to draw."""
    cmap = _candidate_map(results)
    acc = (results.get("truth") or {}).get("accuracy") or {}
    pts = []
    for name in candidate_names(results):
        s = results["scores"].get(name, {}).get(method)
        a = acc.get(name)
        if is_number(s) and is_number(a):
            pts.append((name, float(s), 100.0 * float(a)))
    if not pts:
        ax.text(0.5, 0.5, "not computed", ha="center", va="center", transform=ax.transAxes, color="#999")
        ax.set_xticks([])
        ax.set_yticks([])
        return False
    n_taps_max = max(int(cmap[n].get("n_taps") or 1) for n, _, _ in pts)
    for name, s, a in pts:
        c = cmap[name]
        model = str(c.get("model", name))
        is_pen = c.get("tap", "penultimate") == "penultimate"
        depth = (int(c.get("tap_index") or 0) + 1) / max(int(c.get("n_taps") or 1), 1)
        size = 46 if is_pen else 10 + 26 * depth
        marker = "X" if c.get("control") else ("o" if is_pen or n_taps_max <= 1 else ".")
        ax.scatter([s], [a], s=size, c=colors.get(model, CONTROL_COLOR), marker=marker,
                   alpha=0.9 if is_pen else 0.55, edgecolors="white" if marker == "o" else "none", linewidths=0.5,
                   zorder=3 if is_pen else 2)
        if annotate and (is_pen or n_taps_max <= 1):
            ax.annotate(_short_model(model) if is_pen else name, (s, a), xytext=(4, 3), textcoords="offset points",
                        fontsize=7, color="#333")
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.tick_params(labelsize=7)
    return True


def _legend(fig_or_ax: Any, results: Mapping[str, Any], colors: Mapping[str, str], **kw: Any) -> None:
    from matplotlib.lines import Line2D  # deferred: matplotlib is the [report] extra

    controls = {str(c.get("model", c["name"])) for c in results["candidates"] if c.get("control")}
    handles = [Line2D([], [], marker="X" if m in controls else "o", linestyle="", color=col,
                      label=_short_model(m) + (" (control)" if m in controls and "random" not in m else ""))
               for m, col in colors.items()]
    fig_or_ax.legend(handles=handles, fontsize=8, frameon=False, **kw)


def score_scatter_figure(results: Mapping[str, Any], methods: Sequence[str] | None = None, ncols: int = 5) -> Any:
    """Small multiples: each score against the true accuracy, titled with its weighted Kendall tau.

    Large markers are penultimate features, small dots the intermediate taps (bigger = deeper); crosses are
    controls. The recommended score's panel is framed. Returns ``None`` without ground truth.
    """
    if not (results.get("truth") or {}).get("accuracy"):
        return None
    methods = list(methods or method_names(results))
    if not methods:
        return None
    evaluation = results.get("evaluation") or {}
    rec = results.get("recommended_score")
    def _tau(m: str) -> float:
        t = (evaluation.get(m) or {}).get("weighted_tau")
        return -float(t) if is_number(t) else 9.0

    methods.sort(key=_tau)  # best-ranking scores first, the recommended one leading
    if rec in methods:
        methods.remove(rec)
        methods.insert(0, rec)
    ncols = max(1, min(ncols, len(methods)))
    nrows = math.ceil(len(methods) / ncols)
    fig = _figure(2.7 * ncols, 2.35 * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colors = model_colors(results)
    for k, ax in enumerate(axes.flat):
        if k >= len(methods):
            ax.set_visible(False)
            continue
        m = methods[k]
        _scatter_panel(ax, results, m, colors)
        tau = (evaluation.get(m) or {}).get("weighted_tau")
        title = method_label(results, m) + (f"   τw = {tau:+.2f}" if is_number(tau) else "")
        ax.set_title(title, fontsize=9, fontweight="bold" if m == rec else "normal")
        if m == rec:
            for side in ax.spines.values():
                side.set_edgecolor("#d62728")
                side.set_linewidth(1.8)
        if k % ncols == 0:
            ax.set_ylabel("true accuracy (%)", fontsize=8)
    _legend(fig, results, colors, loc="outside lower center", ncol=min(6, len(colors)))
    return fig


def layer_curves_figure(results: Mapping[str, Any]) -> Any:
    """Layer-wise collapse: NC1 (log scale) and linear-probe accuracy of every tap, one line per model.

    The x axis is the tap's relative depth (0 = first unit, 1 = penultimate) so models of different depths
    share it. Returns ``None`` when the results hold no layer-wise data.
    """
    layers = results.get("layers") or {}
    layers = {m: v for m, v in layers.items() if v.get("taps")}
    if not layers:
        return None
    colors = model_colors(results)
    has_acc = any(is_number(t.get("probe_accuracy")) for v in layers.values() for t in v["taps"])
    fig = _figure(9.5 if has_acc else 5.2, 3.6)
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)[0]
    for model, v in layers.items():
        taps = v["taps"]
        n = len(taps)
        xs = [i / max(n - 1, 1) for i in range(n)]
        col = colors.get(model, CONTROL_COLOR)
        nc1 = [t.get("nc1") if is_number(t.get("nc1")) and t.get("nc1") > 0 else float("nan") for t in taps]
        rho = (v.get("correlations") or {}).get("spearman_nc1_accuracy")
        label = _short_model(model) + (f" (ρ = {rho:+.2f})" if is_number(rho) else "")
        axes[0].plot(xs, nc1, "-o", color=col, ms=3, lw=1.5, label=label)
        if has_acc:
            acc = [100 * t["probe_accuracy"] if is_number(t.get("probe_accuracy")) else float("nan") for t in taps]
            axes[1].plot(xs, acc, "-o", color=col, ms=3, lw=1.5, label=_short_model(model))
    _plain_log_axis(axes[0])
    axes[0].set_xlabel("relative depth of the tap (0 = first block, 1 = penultimate)", fontsize=8)
    axes[0].set_ylabel("NC1 on training features (log)", fontsize=8)
    axes[0].set_title("Within-class variability collapses with depth", fontsize=9)
    axes[0].legend(fontsize=7, frameon=False, title="model (Spearman NC1 vs acc.)", title_fontsize=7)
    if has_acc:
        axes[1].set_xlabel("relative depth of the tap", fontsize=8)
        axes[1].set_ylabel("linear-probe test accuracy (%)", fontsize=8)
        axes[1].set_title("...and linear separability grows", fontsize=9)
    for ax in axes:
        ax.grid(True, alpha=0.3, linewidth=0.6)
        ax.tick_params(labelsize=7)
    return fig


#: metrics of the fine-tuning comparison: key, axis label, scale to display, format
_FT_PANELS = (
    ("test_accuracy", "test accuracy (%)", 100.0, "{:.1f}"),
    ("penultimate_nc1", "penultimate NC1 (train)", 1.0, "{:.3g}"),
    ("trainable_percent", "parameters trained (%)", 1.0, "{:.2g}"),
    ("seconds_per_epoch", "seconds per epoch", 1.0, "{:.2g}"),
)


def finetune_figure(results: Mapping[str, Any]) -> Any:
    """Bars comparing the fine-tuning methods (linear probe vs SCL FT ...) on the recommended model."""
    ft = results.get("finetune") or {}
    methods = ft.get("methods") or {}
    if not methods:
        return None
    panels = [p for p in _FT_PANELS if any(is_number(r.get(p[0])) for r in methods.values())]
    if not panels:
        return None
    fig = _figure(2.0 * len(panels) + 0.4, 2.3)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    names = list(methods)
    cols = ["#9ecae1", "#3182bd", "#e6550d", "#31a354", "#756bb1"]
    for ax, (key, label, scale, fmt) in zip(axes, panels):
        vals = [scale * float(methods[m][key]) if is_number(methods[m].get(key)) else 0.0 for m in names]
        bars = ax.bar(range(len(names)), vals, color=cols[: len(names)] if len(names) <= len(cols) else None)
        for b, m, v in zip(bars, names, vals):
            if is_number(methods[m].get(key)):
                ax.annotate(fmt.format(v), (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                            fontsize=7, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(range(len(names)), [method_display(m) for m in names], fontsize=7)
        ax.set_title(label, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.margins(y=0.18)
        ax.grid(True, axis="y", alpha=0.3, linewidth=0.6)
    return fig


def timings_figure(results: Mapping[str, Any]) -> Any:
    """Horizontal bars of the wall time of every stage."""
    timings = {k: float(v) for k, v in (results.get("timings") or {}).items() if is_number(v)}
    if not timings:
        return None
    names = list(timings)[::-1]
    fig = _figure(6.0, 0.32 * len(names) + 0.9)
    ax = fig.subplots()
    ax.barh(names, [timings[n] for n in names], color="#3182bd")
    for i, n in enumerate(names):
        ax.annotate(f"{timings[n]:.1f} s", (timings[n], i), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=7)
    ax.set_xlabel("seconds", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.margins(x=0.15)
    return fig


def summary_figure(results: Mapping[str, Any]) -> Any:
    """The report's headline picture: the recommended score against true accuracy, next to the layer-wise
    NC1 curves (when present) and the fine-tuning comparison (when present)."""
    rec = results.get("recommended_score")
    has_truth = bool((results.get("truth") or {}).get("accuracy"))
    has_layers = any(v.get("taps") for v in (results.get("layers") or {}).values())
    ft = (results.get("finetune") or {}).get("methods") or {}
    panels = (["scatter"] if rec and has_truth else []) + (["layers"] if has_layers else []) + (["ft"] if ft else [])
    if not panels:
        return None
    widths = {"scatter": 4.4, "layers": 4.2, "ft": 2.6}
    fig = _figure(sum(widths[p] for p in panels) + 0.3, 3.5)
    axes = fig.subplots(1, len(panels), squeeze=False, width_ratios=[widths[p] for p in panels])[0]
    colors = model_colors(results)
    for ax, p in zip(axes, panels):
        if p == "scatter":
            _scatter_panel(ax, results, rec, colors)
            tau = ((results.get("evaluation") or {}).get(rec) or {}).get("weighted_tau")
            ax.set_title(f"{method_label(results, rec)} vs true accuracy"
                         + (f"  (weighted τ = {tau:+.2f})" if is_number(tau) else ""), fontsize=9)
            ax.set_xlabel(f"{method_label(results, rec)} (higher = predicted better)", fontsize=8)
            ax.set_ylabel("true accuracy (%)", fontsize=8)
            _legend(ax, results, colors, loc="lower right")
        elif p == "layers":
            for model, v in (results.get("layers") or {}).items():
                taps = v.get("taps") or []
                if not taps:
                    continue
                xs = [i / max(len(taps) - 1, 1) for i in range(len(taps))]
                ys = [t["nc1"] if is_number(t.get("nc1")) and t["nc1"] > 0 else float("nan") for t in taps]
                ax.plot(xs, ys, "-o", ms=2.5, lw=1.4, color=colors.get(model, CONTROL_COLOR),
                        label=_short_model(model))
            _plain_log_axis(ax)
            ax.set_title("Layer-wise collapse (NC1, lower = more collapsed)", fontsize=9)
            ax.set_xlabel("relative depth of the tap", fontsize=8)
            ax.set_ylabel("NC1 (log)", fontsize=8)
            ax.grid(True, alpha=0.3, linewidth=0.6)
            ax.tick_params(labelsize=7)
        else:
            names = list(ft)
            vals = [100 * float(ft[m]["test_accuracy"]) if is_number(ft[m].get("test_accuracy")) else 0.0
                    for m in names]
            bars = ax.bar(range(len(names)), vals, color=["#9ecae1", "#e6550d", "#31a354", "#756bb1"][: len(names)])
            for b, v in zip(bars, vals):
                ax.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8,
                            xytext=(0, 2), textcoords="offset points")
            ax.set_xticks(range(len(names)), [method_display(m) for m in names], fontsize=8)
            model = (results.get("finetune") or {}).get("model")
            ax.set_title("Fine-tuning" + (f" {_short_model(str(model))}" if model else ""), fontsize=9)
            ax.set_ylabel("test accuracy (%)", fontsize=8)
            lo = min(vals) if vals else 0
            ax.set_ylim(max(0.0, lo - 15), min(100.0, max(vals + [0]) + 6))
            ax.grid(True, axis="y", alpha=0.3, linewidth=0.6)
            ax.tick_params(labelsize=7)
    return fig


#: figure key -> (function name in nctransfer.reports.plots, file name)
FIGURES: dict[str, tuple[str, str]] = {
    "summary": ("summary_figure", "summary.png"),
    "scatter": ("score_scatter_figure", "scores_vs_accuracy.png"),
    "layers": ("layer_curves_figure", "layers_nc1.png"),
    "finetune": ("finetune_figure", "finetune.png"),
    "timings": ("timings_figure", "timings.png"),
}


def make_figures(results: Mapping[str, Any], dpi: int = 110) -> dict[str, bytes]:
    """PNG bytes of every figure the results can support (keys of :data:`FIGURES`)."""
    out: dict[str, bytes] = {}
    for key, (fn, _) in FIGURES.items():
        fig = globals()[fn](results)
        if fig is not None:
            out[key] = figure_png(fig, dpi=dpi)
    return out
