"""Search-tree nodes (SPEC §3): one node per generated step, with its statistics and verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator


@dataclass(eq=False)
class Node:
    """One step of a solution. The root (depth 0, empty text) stands for the problem."""

    id: int
    parent: Node | None
    text: str = ""
    depth: int = 0
    children: list[Node] = field(default_factory=list)
    visits: int = 0
    """N: rollouts backed up through this node (plus ``prior_visits``)."""
    value_sum: float = 0.0
    """W: total backed-up value (plus the PPM prior, if any)."""
    prior: float | None = None
    """The scorer's first value for this node (PPM-augmented mode), else None."""
    prior_visits: int = 0
    """1 when ``prior`` was counted as the first visit (W = P(s), N = 1), else 0."""
    exec_ok: bool = True
    """False: the program up to this step failed; the node is dead (never selected or expanded)."""
    exec_error: str | None = None
    terminal: bool = False
    """States an answer, reached max depth, or has no valid continuation."""
    answer: str | None = None
    correct: bool | None = None
    """Verifier's verdict on ``answer`` (terminal nodes with ground truth), else None."""
    exhausted: bool = False
    """Nothing left to explore below (terminal, dead, or every child exhausted)."""
    count: int = 1
    """How many of its parent's expansion's candidates had this text (duplicates are merged into
    one node, SPEC §3, but how often the policy wrote a step is evidence of its probability)."""

    @property
    def q(self) -> float:
        """Q = W / N; dead nodes are -1 (SPEC §2: kept for pair mining with value -1)."""
        if not self.exec_ok:
            return -1.0
        return self.value_sum / self.visits if self.visits else 0.0

    @property
    def dead(self) -> bool:
        return not self.exec_ok

    def path(self) -> list[Node]:
        """Nodes from the first step down to this one (the root excluded)."""
        out: list[Node] = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            out.append(node)
            node = node.parent
        return out[::-1]

    def steps(self) -> list[str]:
        return [n.text for n in self.path()]

    @property
    def share(self) -> float:
        """This step's share of its parent's candidates: the policy's probability, estimated."""
        if self.parent is None:
            return 1.0
        return self.count / max(1, sum(c.count for c in self.parent.children))

    def path_share(self) -> float:
        """The product of ``share`` along the path: the estimated probability that the policy
        writes this whole trajectory."""
        p = 1.0
        for n in self.path():
            p *= n.share
        return p


@dataclass(eq=False)
class Tree:
    """One problem's search tree; ``nodes[i].id == i`` and parents precede children."""

    problem_id: str
    question: str
    gold: str | None = None
    nodes: list[Node] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.nodes:
            self.nodes.append(Node(id=0, parent=None))

    @property
    def root(self) -> Node:
        return self.nodes[0]

    def add(self, parent: Node, text: str) -> Node:
        node = Node(id=len(self.nodes), parent=parent, text=text, depth=parent.depth + 1)
        parent.children.append(node)
        self.nodes.append(node)
        return node

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def terminals(self) -> list[Node]:
        """Ends of complete trajectories (answered, dead-ended or out of depth)."""
        return [n for n in self.nodes if n.terminal and n.exec_ok and n.parent is not None]

    def solved(self) -> bool:
        return any(n.correct for n in self.terminals())
