"""Training data from finished trees (SPEC §4): difficulty, policy SFT picks, PPM preference pairs.

Pure functions of a ``Tree``: the trainers call them per problem (inside Ray Data tasks),
so nothing here looks across problems.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .node import Node, Tree

Difficulty = Literal["easy", "medium", "hard"]


@dataclass(frozen=True)
class Trajectory:
    """A root-to-terminal path."""

    node: Node

    @property
    def steps(self) -> list[str]:
        return self.node.steps()

    @property
    def qs(self) -> list[float]:
        return [n.q for n in self.node.path()]

    @property
    def mean_q(self) -> float:
        qs = self.qs
        return sum(qs) / len(qs)

    @property
    def min_q(self) -> float:
        return min(self.qs)

    @property
    def correct(self) -> bool:
        return bool(self.node.correct)

    @property
    def clean(self) -> bool:
        """No failed execution on the path (SFT data must not contain one)."""
        return all(n.exec_ok for n in self.node.path())


def trajectories(tree: Tree) -> list[Trajectory]:
    """Every complete trajectory with a verdict (terminals judged against ground truth)."""
    return [Trajectory(t) for t in tree.terminals() if t.correct is not None]


def difficulty(tree: Tree) -> Difficulty:
    """easy: every trajectory correct; medium: mixed; hard: none correct (or none at all)."""
    return classify([t.correct for t in trajectories(tree)])


def classify(verdicts: list[bool]) -> Difficulty:
    """The difficulty class of a problem whose trajectories got these verdicts."""
    if verdicts and all(verdicts):
        return "easy"
    return "medium" if any(verdicts) else "hard"


def _rank_best(trajs: list[Trajectory]) -> list[Trajectory]:
    # Highest mean Q first; ties by highest min Q, then by node id so the order is total.
    return sorted(trajs, key=lambda t: (-t.mean_q, -t.min_q, t.node.id))


def sft_examples(tree: Tree, top_k: int = 2) -> list[dict]:
    """Top-k correct, clean trajectories by mean Q (ties: min Q) — the policy's SFT set."""
    good = [t for t in trajectories(tree) if t.correct and t.clean]
    return [
        {
            "problem_id": tree.problem_id,
            "question": tree.question,
            "steps": t.steps,
            "mean_q": t.mean_q,
            "min_q": t.min_q,
            "node_id": t.node.id,
        }
        for t in _rank_best(good)[:top_k]
    ]


def _outcomes(tree: Tree) -> tuple[dict[int, bool], dict[int, bool]]:
    """Per node: does its subtree hold a correct terminal / a wrong one? Dead nodes count as
    wrong (SPEC §2 keeps them, valued -1, for pair mining)."""
    good: dict[int, bool] = {}
    bad: dict[int, bool] = {}
    for node in reversed(tree.nodes):  # children have larger ids than their parent
        g = bool(node.terminal and node.exec_ok and node.correct)
        b = node.dead or bool(node.terminal and node.correct is False)
        for c in node.children:
            g, b = g or good[c.id], b or bad[c.id]
        good[node.id], bad[node.id] = g, b
    return good, bad


def preference_pairs(tree: Tree, per_side: int = 2) -> list[dict]:
    """Step-level preference pairs (SPEC §4), only for problems with correct and wrong answers.

    Each pair: ``prefix`` (steps shared by both), ``pos`` and ``neg`` (the step lists that follow
    it), their Q values, and ``kind`` ("step" for one sibling step, "final" for full
    trajectories — final answers rarely share a prefix, so that position uses whole solutions).
    """
    trajs = trajectories(tree)
    right = [t for t in trajs if t.correct]
    wrong_answered = [t for t in trajs if not t.correct and t.node.answer is not None]
    if not right or not any(not t.correct for t in trajs):
        return []
    good, bad = _outcomes(tree)
    pairs: list[dict] = []

    def emit(prefix: list[str], pos, neg, q_pos: float, q_neg: float, kind: str) -> None:
        pairs.append(
            {
                "problem_id": tree.problem_id,
                "question": tree.question,
                "prefix": prefix,
                "pos": pos.steps[len(prefix) :] if kind == "final" else [pos.text],
                "neg": neg.steps[len(prefix) :] if kind == "final" else [neg.text],
                "q_pos": q_pos,
                "q_neg": q_neg,
                "kind": kind,
                "pos_node": pos.node.id if kind == "final" else pos.id,
                "neg_node": neg.node.id if kind == "final" else neg.id,
            }
        )

    for node in tree.nodes:
        if node.dead or len(node.children) < 2:
            continue
        # Non-final positions: answer steps are paired below as full trajectories.
        kids = [c for c in node.children if not (c.terminal and c.answer is not None)]
        pos = sorted((c for c in kids if good[c.id]), key=lambda c: (-c.q, c.id))[:per_side]
        neg = sorted((c for c in kids if bad[c.id]), key=lambda c: (c.q, c.id))[:per_side]
        prefix = node.steps()
        for p in pos:
            for n in neg:
                if p is not n and p.q > n.q:
                    emit(prefix, p, n, p.q, n.q, "step")

    best = _rank_best(right)[:per_side]
    worst = sorted(wrong_answered, key=lambda t: (t.mean_q, t.min_q, t.node.id))[:per_side]
    for p in best:
        for n in worst:
            if p.mean_q > n.mean_q:
                emit([], p, n, p.mean_q, n.mean_q, "final")
    return pairs
