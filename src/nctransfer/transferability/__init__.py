"""Transferability scores (docs/methods.md#transferability): which pre-trained model will transfer best to a target dataset?

Every score is a function of a model's features on the target data (``X [N, d]``, labels ``y [N]``; LEEP and NCE
also need the source classifier's probabilities ``probs [N, C_src]``) and is oriented so that **higher =
predicted to transfer better**. One call for all: :func:`score`; a pool of candidates: :func:`rank`; a ranking
against ground truth: :func:`evaluate`. :data:`METHODS` records each method's paper, inputs, direction, whether it
is pool-relative (NCTI, ETran) and its cost.

Examples:
    >>> import numpy as np
    >>> from nctransfer import transferability as tr
    >>> rng = np.random.default_rng(0); y = np.repeat(np.arange(4), 50)
    >>> X = rng.normal(size=(200, 16)) + 3 * np.eye(16)[y]
    >>> round(tr.score("hscore", X, y), 3) > 0
    True
    >>> tr.list_methods(needs_probs=True)
    ['leep', 'nce']

CUDA tensors: LogME and the ``d x d`` scatter of the other scores are computed on the GPU in float64; the
remaining per-sample steps run on the CPU after one copy (``nctransfer.utils.validation.to_numpy``).
"""

import pandas as pd

from nctransfer.transferability._common import Workspace, set_blas_threads, set_lapack_threads
from nctransfer.transferability.base import METHODS, MethodInfo, get_method, list_methods, register, score

# registration order = column order of rank(): feature-only scores first, then probability-based, pool-relative
from nctransfer.transferability.logme import LogMEResult, logme  # noqa: E402  isort: skip
from nctransfer.transferability.hscore import hscore, reg_hscore  # noqa: E402  isort: skip
from nctransfer.transferability.gbc import gbc  # noqa: E402  isort: skip
from nctransfer.transferability.transrate import transrate  # noqa: E402  isort: skip
from nctransfer.transferability.sfda import SFDAResult, sfda  # noqa: E402  isort: skip
from nctransfer.transferability.collapse_scores import (  # noqa: E402  isort: skip
    ncc_accuracy,
    neg_cdnv,
    neg_log_nc1,
    neg_nc1,
    neg_vci,
)
from nctransfer.transferability.leep import leep  # noqa: E402  isort: skip
from nctransfer.transferability.nce import nce  # noqa: E402  isort: skip
from nctransfer.transferability.ncti import ncti, ncti_combine, ncti_terms  # noqa: E402  isort: skip
from nctransfer.transferability.etran import etran, etran_combine, etran_terms  # noqa: E402  isort: skip
from nctransfer.transferability.nleep import nleep  # noqa: E402  isort: skip
from nctransfer.transferability.parc import parc  # noqa: E402  isort: skip
from nctransfer.transferability.ped import PEDMotion, PEDResult, ped, ped_motion  # noqa: E402  isort: skip
from nctransfer.transferability.ranking import (  # noqa: E402  isort: skip
    EVALUATION_KEYS,
    INTERVAL_KEYS,
    evaluate,
    load_features_file,
    rank,
    read_truth_csv,
)


def methods_table() -> "object":
    """A ``pandas.DataFrame`` describing every registered method (for docs and ``--help``)."""
    rows = []
    for m in METHODS.values():
        rows.append({
            "method": m.name, "title": m.title, "paper": m.reference, "spec": m.spec, "direction": m.direction,
            "inputs": m.inputs, "needs_probs": m.needs_probs, "pool_relative": m.pool_relative,
            "from_stats": m.accepts_stats, "passes": m.passes, "cost": m.cost, "default_in_rank": not m.expensive,
        })
    return pd.DataFrame(rows).set_index("method")


__all__ = [
    "METHODS", "MethodInfo", "register", "get_method", "list_methods", "score", "methods_table",
    "rank", "evaluate", "load_features_file", "read_truth_csv", "EVALUATION_KEYS", "INTERVAL_KEYS", "Workspace",
    "set_blas_threads", "set_lapack_threads",
    "logme", "LogMEResult", "hscore", "reg_hscore", "gbc", "transrate", "sfda", "SFDAResult",
    "neg_nc1", "neg_log_nc1", "neg_vci", "neg_cdnv", "ncc_accuracy", "leep", "nce",
    "ncti", "ncti_terms", "ncti_combine", "etran", "etran_terms", "etran_combine", "nleep", "parc",
    "ped", "ped_motion", "PEDMotion", "PEDResult",
]
