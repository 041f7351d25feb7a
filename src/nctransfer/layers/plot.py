"""The layer-wise figure (Li et al., TMLR 2024, figure 9 style): NC1 and probe accuracy per tap; accuracy against NC1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nctransfer.utils.extras import require_extra
from nctransfer.utils.io import atomic_path


def plot_layers(analysis: Any, path: Any = None, title: str | None = None, dpi: int = 120) -> Any:
    """Draw :class:`~nctransfer.layers.analysis.LayerAnalysis` (see its ``plot``); PNG written atomically."""
    require_extra("report", "nctransfer.layers.plot")  # matplotlib is optional: say which extra installs it
    import matplotlib  # deferred on purpose: the [report] extra, imported only to draw

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = analysis.rows
    taps = [r["tap"] for r in rows]
    x = np.arange(len(rows))
    nc1 = np.array([r.get("nc1", np.nan) for r in rows], dtype=float)
    key = "probe_accuracy" if any("probe_accuracy" in r for r in rows) else "ncc_test_accuracy"
    acc = np.array([r.get(key, np.nan) for r in rows], dtype=float)
    label = "linear-probe test accuracy" if key == "probe_accuracy" else "NCC test accuracy"
    fig, (ax1, ax3) = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [1.7, 1]})
    ax1.plot(x, nc1, "o-", color="tab:blue", label="NC1 (train)")
    if np.all(nc1[np.isfinite(nc1)] > 0):
        ax1.set_yscale("log")
    ax1.set_ylabel("NC1 (train, lower = more collapsed)", color="tab:blue")
    ax1.set_xticks(x)
    ax1.set_xticklabels(taps, rotation=60, ha="right", fontsize=7)
    ax1.set_xlabel("tap (forward order)")
    ax2 = ax1.twinx()
    ax2.plot(x, acc * 100, "s--", color="tab:red", label=label)
    ax2.set_ylabel(f"{label} (%)", color="tab:red")
    ax1.grid(alpha=0.3)
    ax1.set_title("collapse and transfer per layer")
    sc = ax3.scatter(nc1, acc * 100, c=x, cmap="viridis", s=36)
    for xi, (a, b) in enumerate(zip(nc1, acc)):
        if xi in (0, len(rows) - 1) or rows[xi]["tap"] == "penultimate":
            ax3.annotate(rows[xi]["tap"], (a, b * 100), fontsize=7, xytext=(4, 2), textcoords="offset points")
    if np.all(nc1[np.isfinite(nc1)] > 0):
        ax3.set_xscale("log")
    ax3.set_xlabel("NC1 (train)")
    ax3.set_ylabel(f"{label} (%)")
    corr = analysis.correlations
    rho = next((v for k, v in corr.items() if k.startswith("spearman_nc1")), float("nan"))
    ax3.set_title(f"accuracy vs NC1 (Spearman rho = {rho:.2f})")
    ax3.grid(alpha=0.3)
    fig.colorbar(sc, ax=ax3, label="tap index")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
        plt.close(fig)
    return fig
