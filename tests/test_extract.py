"""Extraction rules (SPEC §4) on a hand-built tree whose pairs are worked out by hand."""

from __future__ import annotations

from tree.extract import difficulty, preference_pairs, sft_examples
from tree.node import Tree
from tree.rows import from_rows, to_rows


def build() -> Tree:
    t = Tree(problem_id="p", question="Q?", gold="5")

    def add(parent, text, n, w, terminal=False, answer=None, dead=False):
        node = t.add(parent, text)
        node.visits, node.value_sum = n, w
        node.exec_ok = not dead
        if terminal:
            node.terminal, node.answer, node.correct = True, answer, answer == "5"
        return node

    r = t.root
    a = add(r, "a", 4, 2.0)                              # Q 0.5, leads right and wrong
    add(a, "a1", 3, 3.0, terminal=True, answer="5")     # correct
    add(a, "a2", 1, -1.0, terminal=True, answer="6")    # wrong
    b = add(r, "b", 2, -2.0)                             # Q -1, wrong only
    add(b, "b1", 2, -2.0, terminal=True, answer="7")
    add(r, "c", 0, 0.0, dead=True)                       # dead: Q -1
    d = add(r, "d", 2, 0.0)                              # Q 0
    d1 = add(d, "d1", 1, 1.0)
    add(d1, "d1a", 1, 1.0, terminal=True, answer="5")
    d2 = add(d, "d2", 1, -1.0)
    add(d2, "d2a", 1, -1.0, terminal=True, answer="8")
    r.visits = 8
    return t


def as_set(pairs):
    return {(p["kind"], tuple(p["prefix"]), tuple(p["pos"]), tuple(p["neg"])) for p in pairs}


def test_pairs_exactly():
    t = build()
    expected = {
        # root: positives a (0.5), d (0); negatives b (-1), c (dead, -1; tie broken by id)
        ("step", (), ("a",), ("b",)), ("step", (), ("a",), ("c",)),
        ("step", (), ("d",), ("b",)), ("step", (), ("d",), ("c",)),
        # under d: d1 (1.0) vs d2 (-1.0); under a only answer steps, paired below
        ("step", ("d",), ("d1",), ("d2",)),
        # final: best correct a-a1 (mean .75), d-d1-d1a (.667); worst wrong b-b1 (-1), d-d2-d2a
        ("final", (), ("a", "a1"), ("b", "b1")), ("final", (), ("a", "a1"), ("d", "d2", "d2a")),
        ("final", (), ("d", "d1", "d1a"), ("b", "b1")),
        ("final", (), ("d", "d1", "d1a"), ("d", "d2", "d2a")),
    }
    pairs = preference_pairs(t)
    assert len(pairs) == len(expected)
    assert as_set(pairs) == expected


def test_sft_and_difficulty():
    t = build()
    assert [e["steps"] for e in sft_examples(t)] == [["a", "a1"], ["d", "d1", "d1a"]]
    assert [e["steps"] for e in sft_examples(t, top_k=1)] == [["a", "a1"]]
    assert difficulty(t) == "medium"


def test_min_q_breaks_ties_and_dirty_paths_are_dropped():
    t = Tree(problem_id="p", question="Q?", gold="1")
    x = t.add(t.root, "x")
    x.visits, x.value_sum = 2, 0.0                       # path x-x1: qs (0, 1): mean .5 min 0
    x1 = t.add(x, "x1")
    x1.visits, x1.value_sum, x1.terminal, x1.answer, x1.correct = 1, 1.0, True, "1", True
    y = t.add(t.root, "y")
    y.visits, y.value_sum = 2, 1.0                       # path y-y1: qs (.5, .5): mean .5 min .5
    y1 = t.add(y, "y1")
    y1.visits, y1.value_sum, y1.terminal, y1.answer, y1.correct = 2, 1.0, True, "1", True
    assert [e["steps"] for e in sft_examples(t, top_k=1)] == [["y", "y1"]]
    assert difficulty(t) == "easy"
    assert preference_pairs(t) == []                     # nothing wrong to contrast with
    y.exec_ok = False                                    # a failed execution on the path
    assert [e["steps"] for e in sft_examples(t)] == [["x", "x1"]]


def test_no_pairs_without_right_answers():
    t = build()
    for n in t.nodes:
        if n.correct:
            n.correct = False
    assert preference_pairs(t) == [] and difficulty(t) == "hard"
    assert sft_examples(t) == []


def test_rows_round_trip():
    t = build()
    rows = to_rows(t, round=2)
    assert {r["round"] for r in rows} == {2}
    (back,) = from_rows(reversed(rows))
    assert to_rows(back, round=2) == rows
    assert as_set(preference_pairs(back)) == as_set(preference_pairs(t))
