"""The stages every runner calls: evaluating a pool of candidates, one named step at a time.

A *candidate* (:class:`Candidate`) is a model, or one tap of a model, with its features on a target's training
and test splits. :func:`nctransfer.rank_models` reads its settings (:class:`~nctransfer.pipeline.RankConfig`),
turns them into the typed settings of each stage (:mod:`nctransfer.stages.settings`) and runs:

1. **extract** (:func:`extract_candidates`, :mod:`nctransfer.stages.candidates`): each model loaded, each split
   loaded with the model's own preprocessing, features extracted once at every tap (cached);
2. **score** (:func:`score_candidates`, :mod:`nctransfer.stages.scoring`): every transferability score, one
   candidate at a time (:func:`score_one`) then combined across the pool (:func:`combine_pool`);
3. **collapse** (:func:`collapse_metrics`, :mod:`nctransfer.stages.collapse`): every collapse metric of each
   candidate's training features;
4. **ground truth** (:func:`truth_by_probe`, :mod:`nctransfer.stages.truth`): the linear probe's test accuracy
   (fine-tuning as ground truth, a layer above, is :mod:`nctransfer.pipeline.stages`);
5. **evaluate** (:func:`evaluate_candidates`, :mod:`nctransfer.stages.evaluation`): each score's ranking against
   the ground truth, with bootstrap intervals and static baselines (:mod:`nctransfer.stages.baselines`);
6. **layer curves** (:func:`layer_curves`): per model, collapse and accuracy across its taps;

then :mod:`nctransfer.reports` writes ``results.json``, ``scores.csv`` and the report. Each stage result is cached
by :class:`ResultCache` under a digest of the candidate's arrays and the stage's settings, so a repeated or
extended run computes only what is new.

``nctransfer.layers.analyze`` runs stages 1, 3 and 4 on the taps of one model; the pre-training study
(:mod:`nctransfer.pretrain.study`) scores each recipe with :func:`score_one` and combines the recipes with
:func:`combine_pool`. These modules sit between ``extract`` and ``layers`` in the package's layering, so every
runner above can call them.
"""

from nctransfer.stages.cache import ResultCache, array_digest
from nctransfer.stages.candidates import (
    PENULTIMATE,
    RANDOM_PREFIX,
    Candidate,
    Model,
    Run,
    candidate_name,
    candidates_of,
    extract_candidates,
    extract_model,
    extract_splits,
    one_candidate_per_model,
    resolve_taps,
)
from nctransfer.stages.collapse import collapse_metrics, collapse_values, layer_curves
from nctransfer.stages.evaluation import POINT_KEYS, evaluate_candidates, method_meta
from nctransfer.stages.scoring import candidate_entry, combine_pool, score_candidates, score_one
from nctransfer.stages.settings import CollapseSettings, ExtractionSettings, ProbeSettings, ScoringSettings
from nctransfer.stages.truth import probe_candidate, truth_by_probe, truth_samples

__all__ = [
    "Candidate", "CollapseSettings", "ExtractionSettings", "Model", "PENULTIMATE", "POINT_KEYS", "ProbeSettings",
    "RANDOM_PREFIX", "ResultCache", "Run", "ScoringSettings", "array_digest", "candidate_entry", "candidate_name",
    "candidates_of", "collapse_metrics", "collapse_values", "combine_pool", "evaluate_candidates",
    "extract_candidates", "extract_model", "extract_splits", "layer_curves", "method_meta",
    "one_candidate_per_model", "probe_candidate", "resolve_taps", "score_candidates", "score_one", "truth_by_probe",
    "truth_samples",
]
