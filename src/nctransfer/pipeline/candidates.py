"""Moved to :mod:`nctransfer.stages.candidates` (the candidates of a run and their extraction, shared by
``rank_models``, ``layers.analyze`` and the pre-training study); the names stay importable here."""

from nctransfer.stages.candidates import (  # moved
    PENULTIMATE,
    RANDOM_PREFIX,
    Candidate,
    Model,
    Run,
    _check_data,
    _data_label,
    _fingerprints,
    _load,
    _load_split,
    _parse_model,
    _prepare_data,
    _probs_from_classifier,
    candidate_name,
    extract_candidates,
    extract_model,
    one_candidate_per_model,
    resolve_taps,
)

__all__ = ["Candidate", "Model", "Run", "PENULTIMATE", "RANDOM_PREFIX", "candidate_name", "extract_candidates",
           "extract_model", "one_candidate_per_model", "resolve_taps"]
