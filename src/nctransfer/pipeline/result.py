"""``RankResult``: what :func:`nctransfer.rank_models` returns in Python.

It *is* the JSON-able results dictionary (``res["ranking"]``, ``res["scores"]``, ``res["evaluation"]``, ... keep
working, and ``json.dump(res, f)`` writes the same ``results.json``), with two tables on top:

- :meth:`RankResult.to_frame`: one row per candidate (model or ``model@tap``), in ranking order;
- :meth:`RankResult.evaluation_frame`: one row per transferability score, how well it predicted the ground truth.

Everything in the tables is in their columns and index, never only in ``DataFrame.attrs``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


class RankResult(dict):
    """The results of :func:`nctransfer.rank_models` (a ``dict``; see the module docstring)."""

    @property
    def ranking(self) -> list[str]:
        """Candidate names, best first by the recommended score."""
        return list(self.get("ranking", []))

    @property
    def recommended(self) -> str | None:
        """The top-ranked candidate."""
        return self.get("recommended")

    def to_frame(self) -> Any:
        """One row per candidate, in ranking order (index ``candidate``).

        Columns: ``rank`` (1 = best), ``recommended`` (bool), ``model``, ``tap``, ``tap_index``, ``n_taps``,
        ``dim``, ``pretrained``, ``control``, ``has_probs``, ``truth_accuracy`` (the ground truth: linear-probe or
        fine-tuning test accuracy, or the user's CSV), one column per transferability score (its name, e.g.
        ``logme``; the recommended one is ``self["recommended_score"]``) and one per collapse metric prefixed
        ``collapse.`` (e.g. ``collapse.nc1``). Missing values are NaN.
        """
        cands = {c["name"]: c for c in self.get("candidates", [])}
        ranking = self.ranking
        order = [n for n in ranking if n in cands] + [n for n in cands if n not in ranking]
        truth = (self.get("truth") or {}).get("accuracy", {}) or {}
        scores = self.get("scores", {}) or {}
        collapse = self.get("collapse", {}) or {}
        methods = list(self.get("methods", {}) or {}) or sorted({m for s in scores.values() for m in s})
        metrics = sorted({k for v in collapse.values() for k in (v or {})})
        rows = []
        for i, name in enumerate(order):
            c = cands[name]
            row: dict[str, Any] = {"candidate": name, "rank": i + 1 if name in ranking else np.nan,
                                   "recommended": name == self.recommended}
            for k in ("model", "tap", "tap_index", "n_taps", "dim", "pretrained", "control", "has_probs"):
                row[k] = c.get(k)
            row["truth_accuracy"] = _num(truth.get(name))
            for m in methods:
                row[m] = _num((scores.get(name) or {}).get(m))
            for k in metrics:
                row[f"collapse.{k}"] = _num((collapse.get(name) or {}).get(k))
            rows.append(row)
        df = pd.DataFrame(rows)
        return df.set_index("candidate") if len(df) else df

    def evaluation_frame(self) -> Any:
        """One row per transferability score (index ``score``): how well it ranked the candidates against the
        ground truth.

        Columns: ``label``, ``higher_is_better``, ``recommended`` (the score that ranks the pool), the agreement
        measures of ``self["evaluation"]`` (``weighted_tau``, ``kendall``, ``spearman``, ``pearson``,
        ``top1_regret``), any uncertainty columns of ``self["evaluation_intervals"]`` (e.g. confidence bounds),
        and ``seconds`` (time to compute the score on the pool). Rows sorted by ``weighted_tau``, best first.
        """
        ev = self.get("evaluation", {}) or {}
        extra = self.get("evaluation_intervals", {}) or {}
        meta = self.get("methods", {}) or {}
        secs = self.get("score_seconds", {}) or {}
        names = list(dict.fromkeys([*meta, *ev]))
        rows = []
        for m in names:
            row: dict[str, Any] = {"score": m, "label": (meta.get(m) or {}).get("label", m),
                                   "higher_is_better": (meta.get(m) or {}).get("higher_is_better"),
                                   "recommended": m == self.get("recommended_score")}
            for k, v in (ev.get(m) or {}).items():
                row[k] = _num(v)
            for k, v in (extra.get(m) or {}).items():
                if isinstance(v, (int, float)) or v is None:
                    row[k] = _num(v)
                elif isinstance(v, (list, tuple)) and len(v) == 2:
                    row[f"{k}_low"], row[f"{k}_high"] = _num(v[0]), _num(v[1])
            row["seconds"] = _num(secs.get(m))
            rows.append(row)
        df = pd.DataFrame(rows)
        if not len(df):
            return df
        if "weighted_tau" in df.columns:
            df = df.sort_values("weighted_tau", ascending=False, na_position="last", kind="stable")
        return df.set_index("score")

    def __repr__(self) -> str:
        return (f"RankResult(candidates={len(self.get('candidates', []))}, recommended={self.recommended!r}, "
                f"score={self.get('recommended_score')!r}; .to_frame(), .evaluation_frame(), dict keys "
                f"{list(self)[:6]}...)")


def _num(v: Any) -> float:
    if v is None:
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


__all__ = ["RankResult"]
