"""Exact, additive, streaming sufficient statistics of labelled features (spec section 0)."""

from nctransfer.stats.feature_stats import FeatureStats

__all__ = ["FeatureStats"]
