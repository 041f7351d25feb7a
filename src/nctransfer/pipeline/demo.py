"""The demo job (``make demo`` / ``nctransfer demo``): the main job on built-in defaults.

The three bundled real ImageNet models ``efficientnet_lite0/1/2`` and a randomly initialised
``efficientnet_lite0`` as a control, every tap of each, on Fashion-MNIST (scikit-learn digits when
Fashion-MNIST's files are absent): ranking by every transferability score against linear-probe accuracy,
layer-wise collapse, a short linear probe vs SCL FT comparison on the recommended model, and the report.
Subsets and image size are sized so that the whole job takes at most 10 minutes on a 2-core CPU and a second run,
served from the cache, at most 1 minute (``benchmarks/bench_demo.py`` measures it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from nctransfer._demo_defaults import DEMO_DEFAULTS  # moved there (torch-free, for `nctransfer demo --help`)
from nctransfer.data import find_fashion_mnist
from nctransfer.exceptions import NotFoundError
from nctransfer.pipeline.core import rank_models
from nctransfer.reports.schema import is_number, method_label, ranking_order


def default_data() -> str:
    """``"fashion-mnist"`` when its IDX files are found, else ``"digits"``."""
    try:
        find_fashion_mnist()
        return "fashion-mnist"
    except NotFoundError:
        return "digits"


def run_demo(**overrides: Any) -> dict[str, Any]:
    """Run the demo with :data:`DEMO_DEFAULTS` updated by ``overrides`` (keywords of
    :func:`nctransfer.rank_models`, plus ``out``); returns the results structure."""
    opts = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEMO_DEFAULTS.items()}
    opts.update({k: v for k, v in overrides.items() if v is not None or k == "cache_dir"})  # None: no cache
    if overrides.get("data") in (None, "auto"):
        opts["data"] = default_data()
    models = opts.pop("models")
    data = opts.pop("data")
    title = opts.pop("title", None) or f"nctransfer demo: which ImageNet model (and layer) transfers best to {data}?"
    return rank_models(models, data, title=title, **opts)


def format_summary(results: Mapping[str, Any], top: int = 8) -> str:
    """A terminal summary: the top of the ranking, how well each score ranked, layer-wise collapse, fine-tuning."""
    lines: list[str] = []
    rec = results.get("recommended_score")
    acc = (results.get("truth") or {}).get("accuracy") or {}
    order = results.get("ranking") or ranking_order(results)
    lines.append(f"Ranking by {method_label(results, rec)} (top {min(top, len(order))} of {len(order)} candidates):")
    width = max(len(n) for n in order[:top]) + 2
    for i, n in enumerate(order[:top]):
        s = results["scores"][n].get(rec)
        a = acc.get(n)
        lines.append(f"  {i + 1:>3}. {n:<{width}} score {s:>9.4g}   true acc {100 * a:5.1f}%" if is_number(s)
                     and is_number(a) else f"  {i + 1:>3}. {n}")
    controls = [c["name"] for c in results["candidates"] if c.get("control")]
    if controls:
        pos = sorted({n: i + 1 for i, n in enumerate(order)}[c] for c in controls)
        lines.append(f"  {len(controls)} control candidate(s) ranked " + (f"{pos[0]}/{len(order)}" if len(pos) == 1
                     else f"from {pos[0]} to {pos[-1]} of {len(order)}"))
    ev = results.get("evaluation") or {}
    if ev:
        lines.append("")
        lines.append("How well each score ranked the candidates (weighted Kendall tau, top-1 regret):")
        for m in sorted(ev, key=lambda m: -(ev[m].get("weighted_tau") or -9)):
            e = ev[m]
            tau = e.get("weighted_tau")
            reg = e.get("top1_regret")
            lines.append(f"  {method_label(results, m):<28} {tau:+.3f}   {100 * reg:5.1f} pt" if is_number(tau)
                         and is_number(reg) else f"  {method_label(results, m):<28} n/a")
    layers = results.get("layers") or {}
    if layers:
        lines.append("")
        lines.append("Layer-wise collapse (Spearman correlation of NC1 with probe accuracy across taps):")
        for model, v in layers.items():
            rho = (v.get("correlations") or {}).get("spearman_nc1_accuracy")
            nc1 = [t.get("nc1") for t in v.get("taps", []) if is_number(t.get("nc1"))]
            lines.append(f"  {model:<28} rho = {rho:+.2f}   NC1 {nc1[0]:.3g} (first tap) -> {nc1[-1]:.3g} (last)"
                         if is_number(rho) and nc1 else f"  {model}")
    ft = results.get("finetune") or {}
    if ft.get("methods"):
        lines.append("")
        lines.append(f"Fine-tuning {ft.get('model')} ({ft.get('epochs')} epochs):")
        for m, r in ft["methods"].items():
            lines.append(f"  {m:<14} test acc {100 * r['test_accuracy']:5.1f}%   penultimate NC1 "
                         f"{r['penultimate_nc1']:.3g}   trains {r['trainable_percent']:.2f}% of the parameters"
                         + (f" (unit {r['unit']})" if r.get("unit") else ""))
    t = results.get("timings") or {}
    if t:
        lines.append("")
        lines.append("Time: " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items())
                     + f"; total {results.get('seconds_total', sum(t.values())):.1f} s")
    return "\n".join(lines)


def report_location(out: str | os.PathLike) -> str:
    """The report path as a ``file://`` URI (falls back to the plain path)."""
    p = Path(out).resolve() / "report.html"
    try:
        return p.as_uri()
    except ValueError:
        return str(p)
