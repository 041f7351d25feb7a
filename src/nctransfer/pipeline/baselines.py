"""Moved to :mod:`nctransfer.stages.baselines` (the evaluation stage, shared by every runner, uses them); the names
stay importable here."""

from nctransfer.stages.baselines import (  # moved
    CHANCE_IMAGENET,
    SOURCE_ACCURACY,
    STATIC_BASELINES,
    baseline_verdicts,
    evaluate_baselines,
    source_accuracy,
    static_baseline_scores,
)

__all__ = ["CHANCE_IMAGENET", "SOURCE_ACCURACY", "STATIC_BASELINES", "source_accuracy", "static_baseline_scores",
           "evaluate_baselines", "baseline_verdicts"]
