"""Answer selection at test time (SPEC §3): majority vote and the PPM's two rules."""

from __future__ import annotations

from types import SimpleNamespace

from rstar.evaluate import majority, ppm_select


def end(answer):
    return SimpleNamespace(answer=answer)


def test_majority_normalises_and_breaks_ties_by_order():
    assert majority(["3", "4", "4.0", None, "3"]) == "3"  # 3 and 4 tie at two; 3 came first
    assert majority([None, None]) is None


def test_ppm_best_and_vote_pick_differently_on_the_same_search():
    ends = [end("7"), end("5"), end("5"), end(None), end("5"), end("9")]
    scores = [0.9, 0.8, 0.7, 0.99, 0.6, 0.1]
    # The unanswered terminal never wins, however it scores.
    assert ppm_select(ends, scores, "ppm_best") == "7"
    # Top 4 answered by score: 7, 5, 5, 5 -> the vote says 5; 9 (ranked 5th) never counts.
    assert ppm_select(ends, scores, "ppm_vote") == "5"
    assert ppm_select([end(None)], [1.0], "ppm_best") is None
