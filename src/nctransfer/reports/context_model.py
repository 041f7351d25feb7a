"""The content model of a report: the dataclasses a :class:`ReportContext` is made of (cards, ranking table,
evaluation, layer curves, fine-tuning, timings), the display limits and the small text formatters they share.
:func:`nctransfer.reports.context.build_context` fills them from the results structure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nctransfer.reports.schema import is_number

#: rows of the ranking table shown before the rest is folded away (HTML: a ``<details>`` element)
TOP_ROWS = 25
#: warnings listed in the report (all of them stay in results.json)
MAX_WARNINGS = 30

#: figure key -> (alt text, caption)
FIGURE_TEXT: dict[str, tuple[str, str]] = {
    "summary": ("summary", "Left: the recommended score of every candidate against its true accuracy (crosses: "
                           "controls). Middle: neural collapse (NC1) through the depth of each model. Right: cheap "
                           "fine-tuning of the recommended model."),
    "scatter": ("scores vs accuracy", "Each score against the true accuracy; big markers: penultimate features, "
                                      "dots: intermediate taps (bigger = deeper), crosses: controls; framed: "
                                      "recommended score."),
    "layers": ("layer-wise NC1", "NC1 and probe accuracy per tap."),
    "finetune": ("fine-tuning", ""),
    "timings": ("timings", ""),
}

_FT_LABELS = {"linear_probe": "linear probe", "lp": "linear probe", "scl_ft": "SCL FT", "scl": "SCL FT",
              "layer_ft": "Layer FT", "layer": "Layer FT", "full_ft": "full FT", "full": "full FT"}



def pct(v: Any, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage (``"81.0%"``); ``—`` for missing/NaN."""
    return f"{100 * float(v):.{digits}f}%" if is_number(v) else "—"


def method_display(m: str) -> str:
    """Display name of a fine-tuning method (``scl_ft`` -> ``SCL FT``)."""
    return _FT_LABELS.get(m, m)


@dataclass
class Card:
    """One summary card: a kind (``"hero"`` for the recommendation, else ``""``), key, value and a note."""

    kind: str
    key: str
    value: str
    note: str


@dataclass
class RankRow:
    """One candidate of the ranking table."""

    rank: int
    name: str
    top: bool
    recommended: bool
    control: bool
    random_init: bool
    scores: list[str]
    accuracy: str = "—"
    accuracy_fraction: float = 0.0
    truly_best: bool = False
    true_rank: str = "—"
    collapse: list[str] = field(default_factory=list)
    dim: str = "—"


@dataclass
class RankingTable:
    """The candidates from best to worst by the recommended score (pool order without one)."""

    intro: str
    ranked_by: str | None
    truth_source: str | None
    score_labels: list[str]
    has_truth: bool
    collapse_labels: list[str]
    has_dim: bool
    rows: list[RankRow]
    #: rows shown before the rest is folded away (all rows when the table is short)
    shown: int


@dataclass
class EvalCell:
    """A measure of one score's ranking: its value, its ``[lo, hi]`` interval (or ``""``), a heat colour."""

    value: str
    interval: str
    heat: str

    @property
    def text(self) -> str:
        """The value followed by its interval."""
        return self.value + self.interval


@dataclass
class EvalRow:
    """How well one score ranked the candidates."""

    rank: int
    label: str
    recommended: bool
    cells: list[EvalCell]
    coverage: str
    partial: bool
    seconds: str | None


@dataclass
class Evaluation:
    """The evaluation table (sorted by weighted tau) and the baseline sentences."""

    headers: list[str]
    rows: list[EvalRow]
    has_seconds: bool
    baselines: list[str]


@dataclass
class LayerModel:
    """Layer-wise collapse of one model: its taps (rows of formatted cells) and correlations."""

    model: str
    n_taps: int
    correlations: str
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Finetune:
    """Linear probe vs SCL fine-tuning of one model."""

    model: str
    unit: str
    description: str
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Timing:
    """One stage's wall time and share of the total."""

    stage: str
    cached: bool
    seconds: str
    share: float


@dataclass
class ReportContext:
    """Everything a report shows, in display order; built by :func:`build_context`."""

    title: str
    subtitle: list[str]
    cards: list[Card]
    ranking: RankingTable
    evaluation: Evaluation | None
    layers: list[LayerModel]
    finetune: Finetune | None
    timings: list[Timing]
    timings_total: str
    notes: list[str]
    warnings: list[str]
    more_warnings: int
    score_errors: list[tuple[str, str, str]]
    config: list[tuple[str, str]]
    environment: list[tuple[str, str]]
    version: str
    schema: str
    #: figure key -> (alt, caption) for every figure the results can support
    figure_text: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(FIGURE_TEXT))


__all__ = ["TOP_ROWS", "MAX_WARNINGS", "FIGURE_TEXT", "pct", "method_display", "Card", "RankRow", "RankingTable", "EvalCell", "EvalRow", "Evaluation", "LayerModel", "Finetune", "Timing", "ReportContext"]
