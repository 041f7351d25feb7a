"""Figures of a pre-training study (Li et al., TMLR 2024 figures 2-5). Matplotlib is imported lazily with the Agg backend.

- ``nc1_layers.png`` (figure 2): NC1 on the source training data at every tap, one line per recipe;
- ``head_depth.png`` (figure 3): projection-head depth vs source NC1 and vs transfer accuracy, one line per loss;
- ``source_nc1_vs_accuracy.png`` (figure 4): source NC1 vs transfer (linear-probe) accuracy, one panel per target;
- ``target_nc1_vs_accuracy.png`` (figure 5): target NC1 vs transfer accuracy, one panel per target.

Scatter panels print the Spearman rank correlation of the points in their title.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from nctransfer.stats.correlation import spearman as spearman_pairs
from nctransfer.utils.extras import require_extra
from nctransfer.utils.io import atomic_path

PENULTIMATE = "penultimate"
_LOSS_COLORS = {"ce": "tab:blue", "mse": "tab:red", "supcon": "tab:green", "ls": "tab:purple"}


def _plt() -> Any:
    require_extra("report", "nctransfer.pretrain.plots")  # matplotlib is optional: say which extra installs it
    import matplotlib  # deferred: optional (the [report] extra); Agg before pyplot

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _kind(recipe: dict[str, Any]) -> str:
    if float(recipe.get("adv_eps") or 0) > 0:
        return "adversarial"
    if int(recipe.get("augment", 1)) > 1:
        return "augmentation"
    if int(recipe.get("head_layers", 0)) > 0:
        return "projection head"
    return "plain"


_MARKERS = {"plain": "o", "projection head": "^", "augmentation": "s", "adversarial": "D"}


def spearman(x: Any, y: Any) -> float:
    """Spearman rank correlation of the finite pairs (NaN with fewer than 3); see
    :func:`nctransfer.stats.spearman`."""
    return spearman_pairs(x, y)[0]


def _plain_log(axis: Any) -> None:
    """Log-scale axis labelled with plain numbers (0.5, 1, 2) instead of powers of ten; every minor tick is labelled
    when the axis spans less than a decade (call after plotting)."""
    from matplotlib.ticker import FuncFormatter  # deferred: matplotlib is optional (the [report] extra)

    lo, hi = sorted(axis.get_view_interval())
    narrow = lo > 0 and hi / lo < 10
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:.3g}" if narrow or f"{v:.0e}"[0] in "25" else ""))


def _rho_text(rho: float) -> str:
    return "n/a" if math.isnan(rho) else f"{rho:+.2f}"


def _save(fig: Any, path: Path) -> str:
    with atomic_path(path) as tmp:
        for ax in fig.axes:
            for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
                if scale == "log":
                    _plain_log(axis)
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _plt().close(fig)
    return str(path)


def _same(a: Any, b: Any) -> bool:
    return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-5, abs_tol=0.0)


def plot_layer_nc1(records: list[dict[str, Any]], path: str | Path) -> str:
    """Figure 2: NC1 (log scale) on the source training data at every tap, one line per recipe."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    cmap = plt.get_cmap("tab20")
    taps = list(records[0]["source"]["taps"])
    labels = list(taps)
    if len(taps) >= 2 and all(_same(r["source"]["layers"][taps[-2]].get("nc1"), r["source"]["layers"][taps[-1]].get(
            "nc1")) for r in records):  # the last block's pooled output is the encoder output: one point
        taps.pop()
        labels = taps[:-1] + [f"{taps[-1]} (= {PENULTIMATE})"]
    for i, r in enumerate(records):
        layers = r["source"]["layers"]
        vals = [layers[t].get("nc1", float("nan")) for t in taps]
        ax.plot(range(len(taps)), vals, marker=_MARKERS[_kind(r["recipe"])], color=cmap(i % 20), label=r["name"],
                lw=1.2, ms=4)
    ax.set_yscale("log")
    ax.set_xticks(range(len(taps)))
    ax.set_xticklabels(labels, rotation=30, ha="right")
    ax.set_ylabel("NC1 on source training data")
    ax.set_title("Progressive collapse across layers (Li et al., TMLR 2024, fig. 2)")
    fig.legend(fontsize=7, ncol=1, loc="outside right upper")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, Path(path))


def _target_names(records: list[dict[str, Any]]) -> list[str]:
    return [t["target"] for t in records[0]["targets"]]


def _scatter(records: list[dict[str, Any]], path: str | Path, *, x_of: Any, xlabel: str, title: str,
             label_points: bool | None = None) -> str:
    plt = _plt()
    targets = _target_names(records)
    fig, axes = plt.subplots(1, len(targets), figsize=(5.2 * len(targets), 4.3), squeeze=False,
                             layout="constrained")
    if label_points is None:  # names only while they stay readable
        label_points = len(records) <= 24
    for j, (ax, tname) in enumerate(zip(axes[0], targets)):
        xs, ys = [], []
        for r in records:
            x = x_of(r, j)
            y = 100 * r["targets"][j]["probe_accuracy"]
            xs.append(x)
            ys.append(y)
            kind = _kind(r["recipe"])
            ax.scatter([x], [y], color=_LOSS_COLORS.get(r["recipe"]["loss"], "gray"), marker=_MARKERS[kind], s=36,
                       edgecolor="k", lw=0.4)
            if label_points:
                ax.annotate(r["name"], (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points")
        if all(v > 0 for v in xs if math.isfinite(v)):
            ax.set_xscale("log")
        ax.set_title(f"target {tname}: Spearman rho = {_rho_text(spearman(xs, ys))}", fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("transfer accuracy (linear probe, %)")
        ax.grid(alpha=0.3, which="both")
    handles = [plt.Line2D([], [], ls="", marker="o", color=c, label=f"loss {k}") for k, c in _LOSS_COLORS.items()]
    handles += [plt.Line2D([], [], ls="", marker=m, color="gray", label=k) for k, m in _MARKERS.items()]
    fig.legend(handles=handles, fontsize=7, loc="outside right upper")
    fig.suptitle(title, fontsize=10)
    return _save(fig, Path(path))


def plot_source_nc1_vs_accuracy(records: list[dict[str, Any]], path: str | Path) -> str:
    """Figure 4: penultimate NC1 on the source training data vs transfer accuracy, one panel per target."""
    return _scatter(records, path, x_of=lambda r, j: r["source"]["layers"][PENULTIMATE]["nc1"],
                    xlabel="NC1 on source training data (penultimate)",
                    title="Source collapse vs transfer (Li et al., TMLR 2024, fig. 4)")


def plot_target_nc1_vs_accuracy(records: list[dict[str, Any]], path: str | Path) -> str:
    """Figure 5: penultimate NC1 on the target training data vs transfer accuracy, one panel per target."""
    return _scatter(records, path, x_of=lambda r, j: r["targets"][j]["layers"][PENULTIMATE]["nc1"],
                    xlabel="NC1 on target training data (penultimate)",
                    title="Target collapse vs transfer (Li et al., TMLR 2024, fig. 5)")


def head_depth_groups(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Recipes grouped by every setting except the head (depth and width): the lines of figure 3 (groups with at
    least two head depths), each sorted by depth."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        key_d = {k: v for k, v in r["recipe"].items() if k not in ("name", "head_layers", "head_dim")}
        key = repr(sorted(key_d.items()))
        groups.setdefault(key, []).append(r)
    out = {}
    for members in groups.values():
        depths = {m["recipe"]["head_layers"] for m in members}
        if len(depths) >= 2:
            members = sorted(members, key=lambda m: m["recipe"]["head_layers"])
            rec = members[0]["recipe"]
            label = rec["loss"] + ("" if _kind({**rec, "head_layers": 0}) == "plain"
                                   else f" ({_kind({**rec, 'head_layers': 0})})")
            while label in out:
                label += "'"
            out[label] = members
    return out


def plot_head_depth(records: list[dict[str, Any]], path: str | Path) -> str | None:
    """Figure 3: projection-head depth vs source NC1 (left) and vs transfer accuracy on each target.

    Returns ``None`` (no file) when no two recipes differ only by their head depth.
    """
    groups = head_depth_groups(records)
    if not groups:
        return None
    plt = _plt()
    targets = _target_names(records)
    fig, axes = plt.subplots(1, 1 + len(targets), figsize=(4.3 * (1 + len(targets)), 3.8), squeeze=False,
                             layout="constrained")
    for label, members in groups.items():
        loss = members[0]["recipe"]["loss"]
        depth = [m["recipe"]["head_layers"] for m in members]
        style = dict(marker="o", color=_LOSS_COLORS.get(loss, "gray"), label=label)
        axes[0][0].plot(depth, [m["source"]["layers"][PENULTIMATE]["nc1"] for m in members], **style)
        for j in range(len(targets)):
            axes[0][1 + j].plot(depth, [100 * m["targets"][j]["probe_accuracy"] for m in members], **style)
    axes[0][0].set_yscale("log")
    axes[0][0].set_ylabel("source NC1 (penultimate)")
    for j, t in enumerate(targets):
        axes[0][1 + j].set_ylabel("transfer accuracy (%)")
        axes[0][1 + j].set_title(f"target {t}", fontsize=9)
    for ax in axes[0]:
        ax.set_xlabel("projection-head layers")
        ax.grid(alpha=0.3, which="both")
        ax.set_xticks(sorted({m["recipe"]["head_layers"] for g in groups.values() for m in g}))
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Projection-head depth (Li et al., TMLR 2024, fig. 3)", fontsize=10)
    return _save(fig, Path(path))


def write_study_plots(records: list[dict[str, Any]], out: str | Path) -> dict[str, str]:
    """Write the four figures into ``out``; returns ``{kind: path}`` (``head_depth`` only when applicable)."""
    out = Path(out)
    files = {
        "nc1_layers": plot_layer_nc1(records, out / "nc1_layers.png"),
        "source_nc1_vs_accuracy": plot_source_nc1_vs_accuracy(records, out / "source_nc1_vs_accuracy.png"),
        "target_nc1_vs_accuracy": plot_target_nc1_vs_accuracy(records, out / "target_nc1_vs_accuracy.png"),
    }
    head = plot_head_depth(records, out / "head_depth.png")
    if head is not None:
        files["head_depth"] = head
    return files
