"""The product end to end: :func:`rank_models` (models or taps x a dataset -> scores, collapse, ground truth,
evaluation, report) and the recommended score (:mod:`nctransfer.pipeline.recommended`)."""

from nctransfer.pipeline.candidates import Candidate
from nctransfer.pipeline.config import RankConfig
from nctransfer.pipeline.core import FINETUNE_DEFAULTS, PROBE_C_GRID, RANDOM_PREFIX, rank_models, write_outputs
from nctransfer.pipeline.result import RankResult
from nctransfer.pipeline.select import SelectResult, plan_halving, select, successive_halving
from nctransfer.pipeline.select_config import SelectConfig
from nctransfer.pipeline.recommended import (
    DEFAULT_RECOMMENDED,
    percentile_ranks,
    register_rank_average,
)

__all__ = [
    "DEFAULT_RECOMMENDED", "FINETUNE_DEFAULTS", "PROBE_C_GRID", "RANDOM_PREFIX",
    "Candidate", "RankConfig", "RankResult", "percentile_ranks", "rank_models", "register_rank_average", "write_outputs",
    "SelectConfig", "SelectResult", "plan_halving", "select", "successive_halving",
]
