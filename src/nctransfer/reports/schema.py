"""The results structure shared by :func:`nctransfer.rank_models`, ``results.json`` and the report renderers.

One plain, JSON-serialisable ``dict`` (schema ``"nctransfer.results/1"``). Only ``candidates`` and ``scores``
are required; every other section is optional and the report simply leaves out what is absent (a run with
no ground truth has no evaluation, a run of penultimate features has no layer-wise curves, ...).

Keys:
    schema (str): ``"nctransfer.results/1"``.
    title (str, optional): report title.
    data (dict, optional): the target task: ``name``, ``n_train``, ``n_test``, ``n_classes``, ``classes`` (list
        of class names), ``image_size``, ``per_class``, ``test_per_class``, ``seed``.
    candidates (list[dict]): one entry per ranked candidate, in pool order: ``name`` (unique, the key used
        everywhere else, ``"<model>"`` for penultimate features and ``"<model>@<tap>"`` for a tap of a
        model), ``model`` (the model spec), ``tap`` (``"penultimate"`` or a unit name), ``tap_index`` (0-based
        depth of the tap, the penultimate tap last), ``n_taps``, ``dim`` (feature width), ``pretrained``
        (bool), ``control`` (bool: a deliberately bad candidate such as a randomly initialised model).
    methods (dict, optional): per transferability method its metadata from the registry: ``label``,
        ``higher_is_better``, ``pool_relative``, ``needs_probs``, ``reference``.
    scores (dict): ``{candidate: {method: float}}``; every score is oriented so that higher = predicted to
        transfer better (docs/methods.md#transferability). A score that could not be computed is ``None`` (JSON ``null``).
    score_errors (dict, optional): ``{candidate: {method: message}}`` for the ``None`` entries.
    score_seconds (dict, optional): ``{method: seconds}`` summed over the pool.
    collapse (dict, optional): ``{candidate: {metric: float}}`` collapse metrics of the training features
        (docs/methods.md#collapse-metrics; ``nc1``, ``vci``, ``cdnv``, ``ncc_accuracy``, ...).
    truth (dict, optional): the ground truth: ``kind`` (``"probe"``, ``"finetune"`` or ``"csv"``), ``source``
        (a one-line description), ``accuracy`` (``{candidate: float in [0, 1]}``), ``details``
        (``{candidate: {...}}``, e.g. the probe's chosen ``C``).
    evaluation (dict, optional): ``{method: {"weighted_tau", "kendall", "spearman", "pearson",
        "top1_regret"}}`` of each score's ranking against ``truth`` (docs/methods.md#transferability).
    recommended_score (str, optional): the method used to rank the pool (must be in ``scores``).
    ranking (list[str], optional): candidates from best to worst by ``recommended_score``.
    recommended (str, optional): ``ranking[0]``.
    layers (dict, optional): ``{model: {"taps": [{"tap", "index", "dim", "nc1", "probe_accuracy", ...}],
        "correlations": {"spearman_nc1_accuracy": float, ...}}}``: layer-wise collapse (docs/methods.md#layer-wise).
    finetune (dict, optional): ``model``, ``unit``, ``epochs``, ``description`` and ``methods``:
        ``{method: {"test_accuracy", "penultimate_nc1", "trainable_percent", "trainable_params",
        "seconds_per_epoch", "peak_memory_mb"}}`` (linear probe vs SCL FT, docs/methods.md#finetuning).
    timings (dict, optional): ``{stage: seconds}`` in the order the stages ran; ``cached`` stages may be listed
        in ``timings_cached`` (list of stage names).
    config (dict, optional): the resolved configuration.
    environment (dict, optional): :func:`nctransfer.utils.repro.environment_stamp`.
    warnings (list[str], optional): warnings raised during the run, shown in the report.
    notes (list[str], optional): why some scores were skipped (e.g. LEEP without source probabilities at a tap).
    extraction (dict, optional): per model ``{"seconds", "from_cache", "taps", "n_train", "n_test"}``.
    seconds_total (float, optional): wall time of the whole run.

Candidates may also carry ``has_probs`` (source-classifier probabilities were available for LEEP/NCE).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from nctransfer.exceptions import InputValueError

SCHEMA = "nctransfer.results/1"

#: evaluation measures in display order, with their labels and whether higher is better
EVALUATION_MEASURES: tuple[tuple[str, str, bool], ...] = (
    ("weighted_tau", "weighted τ", True),
    ("kendall", "Kendall τ", True),
    ("spearman", "Spearman ρ", True),
    ("pearson", "Pearson r", True),
    ("top1_regret", "top-1 regret", False),
)

#: measures that carry a 95% bootstrap interval (``<key>_lo``, ``<key>_hi`` in the evaluation)
INTERVAL_MEASURES: tuple[str, ...] = ("weighted_tau", "spearman", "top1_regret")


def interval_suffix(e: Mapping[str, Any], key: str, scale: float = 1.0, digits: int = 3, sign: bool = True) -> str:
    """`` [lo, hi]`` of ``key``'s bootstrap interval in an evaluation dict (empty without one)."""
    lo, hi = e.get(f"{key}_lo"), e.get(f"{key}_hi")
    if key not in INTERVAL_MEASURES or lo is None or hi is None:
        return ""
    try:
        lo, hi = float(lo) * scale, float(hi) * scale
    except (TypeError, ValueError):
        return ""
    if lo != lo or hi != hi:
        return ""
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    return f" [{f.format(lo)}, {f.format(hi)}]"


def coverage_text(e: Mapping[str, Any]) -> str:
    """``"n/N"`` models scored, with ``" partial"`` when the score covers only part of the pool (else ``""``)."""
    n, pool = e.get("n_scored"), e.get("n_pool")
    try:
        n, pool = int(n), int(pool)
    except (TypeError, ValueError):
        return ""
    return f"{n}/{pool}" + (" partial" if n < pool else "")


def baseline_lines(results: Mapping[str, Any]) -> list[str]:
    """Plain sentences on the static baselines and the random score (``results["baselines"]``): each baseline's
    weighted tau with its interval, the random score's range, and every score that does not beat them."""
    b = results.get("baselines") or {}
    if not b:
        return []
    out = []
    parts = []
    for name, e in (b.get("evaluation") or {}).items():
        v = e.get("weighted_tau")
        if v is not None and v == v:
            parts.append(f"{name.replace('_', ' ')} {float(v):+.3f}{interval_suffix(e, 'weighted_tau')}")
    if parts:
        out.append("Static baselines (weighted τ [95% CI]): " + "; ".join(parts) + ".")
    r = b.get("random") or {}
    if r.get("weighted_tau_lo") is not None:
        out.append(f"A random score: weighted τ {float(r['weighted_tau_mean']):+.3f} on average, 95% of random orders "
                   f"within [{float(r['weighted_tau_lo']):+.3f}, {float(r['weighted_tau_hi']):+.3f}]; top-1 regret "
                   f"{100 * float(r['top1_regret_mean']):.1f} points on average.")
    losers = [(m, v["verdict"]) for m, v in (b.get("verdicts") or {}).items()
              if v.get("beats_random") is False or v.get("not_beaten")]
    for m, verdict in losers:
        out.append(f"{method_label(results, m)} {verdict}")
    return out


#: collapse metrics shown in the ranking table when present (key, label)
COLLAPSE_COLUMNS: tuple[tuple[str, str], ...] = (("nc1", "NC1"), ("vci", "VCI"), ("cdnv", "CDNV"))


def is_number(v: Any) -> bool:
    """True for a finite real number (``None``, NaN and Inf are not)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def format_number(v: Any, digits: int = 4) -> str:
    """A number to ``digits`` significant digits (scientific outside [1e-3, 1e5)); ``—`` for missing/NaN."""
    if not is_number(v):
        return "—"
    v = float(v)
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.{max(digits - 1, 1)}e}"
    return f"{v:.{digits}g}"


def check_results(results: Any) -> dict[str, Any]:
    """Check the structure described in this module's docstring; return it.

    Raises:
        InputValueError: naming the missing or malformed key, what was expected and what was given.
    """
    if not isinstance(results, Mapping):
        raise InputValueError(f"results must be a dict (see nctransfer.reports.schema); got {type(results).__name__}.")
    for key in ("candidates", "scores"):
        if key not in results:
            raise InputValueError(f"results is missing the required key {key!r}; it has keys {sorted(results)}.")
    cands = results["candidates"]
    if not isinstance(cands, list) or not cands:
        raise InputValueError(f"results['candidates'] must be a non-empty list of dicts; got {cands!r:.200}.")
    names = []
    for i, c in enumerate(cands):
        if not isinstance(c, Mapping) or "name" not in c:
            raise InputValueError(f"results['candidates'][{i}] must be a dict with a 'name'; got {c!r:.200}.")
        names.append(c["name"])
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputValueError(f"results['candidates'] has duplicate names {dup}.")
    scores = results["scores"]
    if not isinstance(scores, Mapping):
        raise InputValueError(f"results['scores'] must be a dict {{candidate: {{method: value}}}}; got "
                              f"{type(scores).__name__}.")
    missing = [n for n in names if n not in scores]
    if missing:
        raise InputValueError(f"results['scores'] has no entry for candidate(s) {missing}.")
    rec = results.get("recommended_score")
    if rec is not None and not any(rec in scores[n] for n in names):
        raise InputValueError(f"results['recommended_score'] = {rec!r} is not a method in results['scores'] "
                              f"(methods: {method_names(results)}).")
    truth = results.get("truth")
    if truth is not None and not isinstance(truth.get("accuracy", None), Mapping):
        raise InputValueError("results['truth'] must hold an 'accuracy' dict {candidate: accuracy}.")
    return dict(results)


def candidate_names(results: Mapping[str, Any]) -> list[str]:
    """Candidate names in pool order."""
    return [c["name"] for c in results["candidates"]]


def method_names(results: Mapping[str, Any]) -> list[str]:
    """Every method that has a score for at least one candidate, in first-seen order."""
    seen: dict[str, None] = {}
    for name in candidate_names(results):
        for m in results["scores"].get(name, {}):
            seen.setdefault(m, None)
    return list(seen)


def method_label(results: Mapping[str, Any], method: str) -> str:
    """Display label of a method (its registry label, else the method name)."""
    meta = (results.get("methods") or {}).get(method) or {}
    return str(meta.get("label") or method)


def ranking_order(results: Mapping[str, Any], method: str | None = None) -> list[str]:
    """Candidates from best to worst by ``method`` (default: the recommended score, else the pool order).

    Candidates without a finite score go last, in pool order. Ties keep pool order.
    """
    names = candidate_names(results)
    method = method or results.get("recommended_score")
    if method is None:
        return names
    scores = results["scores"]

    def key(item: tuple[int, str]) -> tuple[int, float, int]:
        i, n = item
        v = scores.get(n, {}).get(method)
        return (0, -float(v), i) if is_number(v) else (1, 0.0, i)

    return [n for _, n in sorted(enumerate(names), key=key)]


def true_ranks(results: Mapping[str, Any]) -> dict[str, int]:
    """1-based rank of each candidate by true accuracy (best = 1); empty without truth."""
    acc = ((results.get("truth") or {}).get("accuracy")) or {}
    vals = [(n, acc[n]) for n in candidate_names(results) if is_number(acc.get(n))]
    vals.sort(key=lambda t: -float(t[1]))
    return {n: i + 1 for i, (n, _) in enumerate(vals)}
