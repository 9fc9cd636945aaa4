"""MCTS over code-augmented steps (SPEC §3), written as a coroutine that never blocks on I/O.

``TreeSearch.run()`` is a generator: it *yields* what it needs — ``Propose`` (next steps from the
policy), ``Execute`` (programs for the sandbox), ``Score`` (PPM values) — and receives the answers
through ``send``. It never calls an engine itself, so a driver can step hundreds of trees and merge
their requests into full batches (``tree.driver``; the Ray ``SearchWorker``). The search is
deterministic given its seed and the answers it receives.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Generator, Literal, Sequence, Union

from .node import Node, Tree
from .protocols import ExecOutcome, ProgramVerifier, ScoreRequest, StepRequest, Verifier
from .steps import StepFormat


@dataclass(frozen=True)
class MCTSConfig:
    """How one tree is searched (SPEC §3). Defaults are the embedded default's round 1."""

    rollouts: int = 8
    """Select-expand-backpropagate iterations per problem (paper: 8 in round 1, 16 later)."""
    candidates: int = 4
    """Next steps sampled per expansion (paper: 8 for data, 32 at test time; reference code 12)."""
    c_uct: float = 2.0
    """Exploration constant c in UCT = Q + c * sqrt(ln N(parent) / N(s))."""
    unvisited: Literal["inf", "zero"] = "inf"
    """UCT of a never-visited child: "inf" tries it before any visited sibling (ours); "zero"
    scores it 0 as the reference code does."""
    max_depth: int = 16
    """A path this many steps deep without an answer is terminal and wrong."""
    value_mode: Literal["terminal", "ppm"] = "terminal"
    """"terminal": terminal-guided annotation (rounds 1-2). "ppm": each new node's first value
    is the scorer's (W = P(s), N = 1), then terminal rewards back-propagate (rounds 3+, test)."""
    max_trajectories: int = 0
    """Stop early once this many distinct terminal trajectories exist (test time: N); 0 = run
    all rollouts."""
    seed: int = 0
    """Base seed; each tree's RNG is seeded from (seed, problem_id)."""
    grounded: bool = False
    """With a gold answer: an answer that disagrees with what its program printed (the last
    line of the last ``<output>``) is wrong, so a guessed answer next to a wrong program is
    not verified (SPEC: the answer alone decides; off keeps that)."""


@dataclass(frozen=True)
class Propose:
    request: StepRequest


@dataclass(frozen=True)
class Execute:
    programs: tuple[str, ...]


@dataclass(frozen=True)
class Score:
    requests: tuple[ScoreRequest, ...]


Op = Union[Propose, Execute, Score]


@dataclass
class SearchStats:
    rollouts: int = 0
    expansions: int = 0
    executions: int = 0
    exec_s: float = 0.0


class TreeSearch:
    """Searches one problem. Without ground truth (``gold=None``) terminal rewards are the
    terminal's PPM score (test time, SPEC §3)."""

    def __init__(
        self,
        problem_id: str,
        question: str,
        gold: str | None,
        verifier: Verifier,
        config: MCTSConfig = MCTSConfig(),
        fmt: StepFormat = StepFormat(),
    ) -> None:
        self.tree = Tree(problem_id=problem_id, question=question, gold=gold)
        self.verifier = verifier
        self.cfg = config
        self.fmt = fmt
        self.rng = random.Random(f"{config.seed}:{problem_id}")
        self.stats = SearchStats()
        # Graded by running hidden tests (the code domain) rather than by comparing answers.
        self._by_tests = gold is not None and isinstance(verifier, ProgramVerifier)

    # -- the coroutine -------------------------------------------------------------------------

    def run(self) -> Generator[Op, object, Tree]:
        root = self.tree.root
        for _ in range(self.cfg.rollouts):
            if root.exhausted or self._enough_trajectories():
                break
            node = self._select(root)
            while not node.terminal:
                if node.depth >= self.cfg.max_depth:
                    self._mark_terminal(node, None)
                    break
                valid = yield from self._expand(node)
                if not valid:  # every candidate failed: a dead end, terminal and wrong
                    self._mark_terminal(node, None)
                    break
                node = self._pick(node, valid)
            self._backpropagate(node, self._reward(node))
            self.stats.rollouts += 1
        return self.tree

    # -- selection -----------------------------------------------------------------------------

    def _select(self, node: Node) -> Node:
        """Descend by UCT among valid, non-exhausted children to a node with no children."""
        while node.children:
            live = [c for c in node.children if not c.exhausted]
            node = self._pick(node, live)
        return node

    def _uct(self, parent: Node, child: Node) -> float:
        if child.visits == 0:
            return math.inf if self.cfg.unvisited == "inf" else 0.0
        explore = math.sqrt(math.log(max(parent.visits, 1)) / child.visits)
        return child.q + self.cfg.c_uct * explore

    def _pick(self, parent: Node, children: Sequence[Node]) -> Node:
        scores = [self._uct(parent, c) for c in children]
        best = max(scores)
        # Ties (typically several unvisited children) are broken by the tree's seeded RNG.
        return self.rng.choice([c for c, s in zip(children, scores) if s == best])

    # -- expansion -----------------------------------------------------------------------------

    def _expand(self, node: Node) -> Generator[Op, object, list[Node]]:
        self.stats.expansions += 1
        steps = node.steps()
        request = StepRequest(
            question=self.tree.question,
            steps=tuple(steps),
            n=self.cfg.candidates,
            seed=self.rng.getrandbits(31),
            problem_id=self.tree.problem_id,
        )
        texts = yield Propose(request)
        seen: dict[str, Node] = {}
        children: list[Node] = []
        for text in texts:  # type: ignore[union-attr]
            key = text.strip()
            if not key:
                continue
            if key in seen:  # one node per distinct step (SPEC §3); the count keeps the evidence
                seen[key].count += 1
                continue
            seen[key] = self.tree.add(node, text)
            children.append(seen[key])

        to_run = [c for c in children if self.fmt.has_code(c.text, steps)]
        if to_run:
            programs = tuple(self.fmt.program(steps + [c.text]) for c in to_run)
            results: Sequence[ExecOutcome] = yield Execute(programs)  # type: ignore[misc]
            self.stats.executions += len(programs)
            for child, res in zip(to_run, results):
                self.stats.exec_s += res.duration_s
                if not res.ok:
                    child.exec_ok, child.exec_error, child.exhausted = False, res.error, True
                elif self.fmt.ends_code(child.text):
                    child.text = self.fmt.with_output(child.text, res.stdout)

        valid = [c for c in children if c.exec_ok]
        judged = []
        for child in valid:
            answer = self.verifier.extract(child.text)
            if answer is None and self._by_tests and self.fmt.answer_end in child.text:
                answer = ""  # a finished program, its behaviour unstated: the tests still judge it
            if answer is not None or self.fmt.answer_end in child.text:
                # Not exhausted yet: a later selection reaches it and backs up its reward.
                self._mark_terminal(child, answer)
                if answer is not None and self._by_tests:
                    judged.append(child)
        if judged:  # the path's whole program against the hidden tests, in the sandbox too
            jobs = [self.verifier.test_program(self.fmt.program(steps + [c.text]),  # type: ignore[attr-defined]
                                               self.tree.gold) for c in judged]
            outcomes: Sequence[ExecOutcome] = yield Execute(tuple(src for src, _ in jobs))  # type: ignore[misc]
            self.stats.executions += len(jobs)
            for child, (_, token), res in zip(judged, jobs, outcomes):
                self.stats.exec_s += res.duration_s
                child.correct = self.verifier.passed(res, token)  # type: ignore[attr-defined]

        if valid and self.cfg.value_mode == "ppm":
            reqs = tuple(ScoreRequest(self.tree.question, tuple(steps + [c.text])) for c in valid)
            values: Sequence[float] = yield Score(reqs)  # type: ignore[misc]
            for child, v in zip(valid, values):
                v = max(-1.0, min(1.0, float(v)))
                child.prior, child.prior_visits = v, 1
                child.visits, child.value_sum = 1, v
        if not valid:
            self._update_exhausted(node)
        return valid

    # -- evaluation and backpropagation ---------------------------------------------------------

    def _mark_terminal(self, node: Node, answer: str | None) -> None:
        node.terminal, node.answer = True, answer
        if self._by_tests:
            node.correct = False  # until its test job says otherwise (``_expand``)
        elif self.tree.gold is not None:
            node.correct = answer is not None and self.verifier.check(answer, self.tree.gold)
            if node.correct and self.cfg.grounded:
                printed = self._printed(node)
                node.correct = printed is None or self.verifier.check(answer, printed)

    def _printed(self, node: Node) -> str | None:
        """The last line the path's program printed, or None if no step ran code to the end."""
        start, end = self.fmt.output_start, self.fmt.output_end
        while node is not None:
            if start in node.text:
                out = node.text.rsplit(start, 1)[1].split(end, 1)[0]
                lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
                return lines[-1] if lines else ""
            node = node.parent
        return None

    def _reward(self, node: Node) -> float:
        if self.tree.gold is not None:
            return 1.0 if node.correct else -1.0
        if node.answer is None:  # dead end or out of depth: wrong whatever the PPM says
            return -1.0
        return node.prior if node.prior is not None else 0.0

    def _backpropagate(self, node: Node, reward: float) -> None:
        node.exhausted = True  # a terminal is evaluated once; revisiting it adds nothing
        cur: Node | None = node
        while cur is not None:
            cur.visits += 1
            cur.value_sum += reward
            cur = cur.parent
        self._update_exhausted(node.parent)

    def _update_exhausted(self, node: Node | None) -> None:
        while node is not None and node.children and all(c.exhausted for c in node.children):
            node.exhausted = True
            node = node.parent

    def _enough_trajectories(self) -> bool:
        k = self.cfg.max_trajectories
        if k <= 0:
            return False
        done = sum(1 for n in self.tree.nodes if n.terminal and n.exhausted and n.answer is not None)
        return done >= k
