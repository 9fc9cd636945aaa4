"""Answer selection at test time (SPEC §3): majority vote, the PPM's rules, and the votes weighted
by how often the policy wrote each trajectory."""

from __future__ import annotations

from types import SimpleNamespace

from rstar.evaluate import majority, ppm_select, sample_ordering
from tree.node import Tree


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


def test_ppm_weighted_sums_scores_per_answer():
    ends = [end("7"), end("5"), end("5.0"), end(None), end("9")]
    # 7: (0.9+1)/2 = 0.95; 5: 0.3 + 0.3 = 0.6 -> the PPM's confidence outweighs the count.
    assert ppm_select(ends, [0.9, -0.4, -0.4, 1.0, -1.0], "ppm_weighted") == "7"
    # 5: 0.9 + 0.9 = 1.8 beats 7's 0.95; the first spelling of the answer is returned.
    assert ppm_select(ends, [0.9, 0.8, 0.8, 1.0, 0.95], "ppm_weighted") == "5"
    # A score of -1 adds nothing: 9 alone at -1 never beats 5 at -0.9.
    assert ppm_select([end("9"), end("5")], [-1.0, -0.9], "ppm_weighted") == "5"


def test_path_votes_weigh_trajectories_by_how_often_the_policy_wrote_them():
    # The policy wrote step A three times out of four at the root, then A's only continuation
    # (twice, merged into one node); B once, then two different continuations that both answer 9.
    tree = Tree(problem_id="p", question="q")
    a = tree.add(tree.root, "A")
    a.count = 3
    b = tree.add(tree.root, "B")
    a1 = tree.add(a, "A1")
    a1.count = 2
    b1, b2 = tree.add(b, "B1"), tree.add(b, "B2")
    a1.answer, b1.answer, b2.answer = "5", "9", "9.0"
    ends = [b1, a1, b2]
    assert [e.path_share() for e in ends] == [1 / 8, 3 / 4, 1 / 8]
    # Distinct trajectories alone say 9 (two against one) ...
    assert majority([e.answer for e in ends]) == "9"
    # ... their estimated probability says 5 (0.75 against 0.25).
    assert ppm_select(ends, [0.0, 0.0, 0.0], "path_vote") == "5"
    # path_ppm multiplies in (r + 1) / 2: 5 at 0.75 * 0.05 loses to 9 at 0.125 * (1 + 1).
    assert ppm_select(ends, [1.0, -0.9, 1.0], "path_ppm") == "9"
    assert ppm_select(ends, [1.0, 0.0, 1.0], "path_ppm") == "5"
    # The scores do not matter to path_vote.
    assert ppm_select(ends, [1.0, -1.0, 1.0], "path_vote") == "5"


def test_sample_ordering_counts_correct_over_wrong_pairs_within_a_problem():
    verdicts = [[True, False, False], [True, True], [False, True]]
    scores = [[0.5, 0.2, 0.5], [0.1, 0.9], [0.3, -0.3]]
    # Problem 1: beats 0.2 (1), ties 0.5 (half); problem 2: no wrong sample, no pair;
    # problem 3: the correct one scores lower (0). Pairs never cross problems.
    acc, n = sample_ordering(verdicts, scores)
    assert n == 3 and acc == (1 + 0.5 + 0) / 3
    assert sample_ordering([[True], [False]], [[0.9], [0.1]]) == (None, 0)
