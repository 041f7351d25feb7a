"""Budgeted selection by successive halving on a synthetic pool with known truth."""

import json
import math
import zlib

import pytest

from nctransfer.pipeline.select import plan_halving, select, successive_halving

TRUTH = {f"m{i}": 0.55 + 0.04 * i for i in range(8)}  # m7 is the best (0.83)
# the score gets the order badly wrong: the best model is scored 6th of 8
SCORES = {"m0": 5.0, "m1": 8.0, "m2": 6.0, "m3": 7.0, "m4": 1.0, "m5": 2.0, "m6": 4.0, "m7": 3.0}


def noisy_runner(calls=None):
    """Accuracy after r epochs: the truth minus a deterministic noise that shrinks like 0.03 / sqrt(r)."""
    def run(name, r):
        if calls is not None:
            calls.append((name, r))
        u = (zlib.crc32(f"{name}|{r}".encode()) % 1000) / 1000 - 0.5
        return TRUTH[name] + 0.06 * u / math.sqrt(r) - 0.02 / r
    return run


def test_plan_hand_values():
    p = plan_halving(8, 24)  # 8 x 1 + 4 x 2 + 2 x 4 = 24
    assert (p.entrants, p.rounds, p.cost) == (8, ((8, 1), (4, 2), (2, 4)), 24)
    p = plan_halving(8, 23)  # 8 entrants no longer fit; 7: 7 x 1 + 4 x 2 + 2 x 4 = 23
    assert (p.entrants, p.rounds, p.cost) == (7, ((7, 1), (4, 2), (2, 4)), 23)
    p = plan_halving(8, 50)  # r0 = 2: 48
    assert (p.rounds, p.cost) == (((8, 2), (4, 4), (2, 8)), 48)
    p = plan_halving(4, 100, max_resource=3)  # capped: (4, 3), (2, 3) = 18; a bigger r0 changes nothing
    assert (p.rounds, p.cost) == (((4, 3), (2, 3)), 18)
    assert plan_halving(8, 1).entrants == 1 and plan_halving(8, 1).rounds == ()  # not even 2 x 1 epoch fits
    assert plan_halving(8, 3).rounds == ((2, 1),)
    assert plan_halving(8, 4).rounds == ((2, 2),)  # 3 entrants would cost 3 + 4: two run 2 epochs each
    with pytest.raises(ValueError, match="eta"):
        plan_halving(4, 10, eta=1)
    with pytest.raises(ValueError, match="budget"):
        plan_halving(4, -1)


@pytest.mark.parametrize("budget", [0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144])
def test_budget_is_never_exceeded(budget):
    res = successive_halving(SCORES, noisy_runner(), budget)
    assert res.cost <= budget
    assert res.cost == sum(r["cost"] for r in res.runs) == res.plan.cost
    assert res.chosen in TRUTH


def test_finds_the_best_candidate_the_score_misranks():
    res = successive_halving(SCORES, noisy_runner(), budget=48)
    assert res.chosen == "m7"  # the score alone would pick m1 (accuracy 0.59)
    assert max(SCORES, key=SCORES.get) == "m1"
    # what each stage saw
    assert [len(s["candidates"]) for s in res.stages] == [8, 4, 2]
    assert [s["resource"] for s in res.stages] == [2, 4, 8]
    assert res.stages[-1]["kept"] == ["m7"]
    # with too small a budget only the best-scored candidates enter and the score decides
    low = successive_halving(SCORES, noisy_runner(), budget=1)
    assert low.chosen == "m1" and low.runs == [] and low.cost == 0
    two = successive_halving(SCORES, noisy_runner(), budget=3)  # the two best-scored, one epoch each
    assert [r["candidate"] for r in two.runs] == ["m1", "m3"] and two.chosen == "m3"


def test_interrupted_and_resumed_repeats_no_finished_run(tmp_path):
    full = successive_halving(SCORES, noisy_runner(), budget=48)
    calls = []
    inner = noisy_runner(calls)

    def flaky(name, r):
        if len(calls) == 7:
            raise KeyboardInterrupt  # interrupted during the 8th run
        return inner(name, r)

    with pytest.raises(KeyboardInterrupt):
        successive_halving(SCORES, flaky, budget=48, out=tmp_path)
    first = list(calls)
    assert len(first) == 7
    ledger = json.loads((tmp_path / "select_runs.json").read_text())["runs"]
    assert len(ledger) == 7
    res = successive_halving(SCORES, inner, budget=48, out=tmp_path)
    again = calls[7:]
    assert not set(first) & set(again)  # nothing finished was run again
    assert len(first) + len(again) == len(res.runs) == 14
    assert sum(r["reused"] for r in res.runs) == 7
    assert res.chosen == full.chosen and res.cost == full.cost <= 48
    # a third call runs nothing at all
    n = len(calls)
    assert successive_halving(SCORES, inner, budget=48, out=tmp_path).chosen == full.chosen and len(calls) == n


def test_select_api_with_scores_and_runner(tmp_path):
    res = select(list(TRUTH), budget=48, scores=SCORES, runner=noisy_runner(), out=tmp_path)
    assert res.chosen == "m7" and res.unit == "epoch" and res.cost <= 48
    d = res.to_dict()
    assert d["plan"]["rounds"] == [[8, 2], [4, 4], [2, 8]] and json.dumps(d)
    from nctransfer.cli.cmd_select import format_result

    text = format_result(d)
    assert text.startswith("chosen: m7") and "round 2: 2 x 8 epoch(s)" in text
