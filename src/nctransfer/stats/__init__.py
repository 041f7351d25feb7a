"""Exact, additive, streaming sufficient statistics of labelled features (docs/methods.md#notation)."""

from nctransfer.stats.correlation import spearman
from nctransfer.stats.feature_stats import FeatureStats
from nctransfer.stats.labelled import LabelledFeatures

__all__ = ["FeatureStats", "LabelledFeatures", "spearman"]
