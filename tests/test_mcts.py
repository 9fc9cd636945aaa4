"""Property tests of the search core, driven by the real scripted teacher and the real sandbox."""

from __future__ import annotations

import hashlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rstar.domains import verifier_for
from rstar.domains.arith import generate
from rstar.domains.teacher import ScriptedTeacher
from tree.driver import run_batched
from tree.extract import preference_pairs, sft_examples, trajectories
from tree.mcts import MCTSConfig, TreeSearch
from tree.rows import from_rows, to_rows

VERIFIER = verifier_for("arith")


class HashScorer:
    """A fixed pseudo-random value per partial solution. The real PPM arrives with the trainers;
    the invariants below must hold for any scorer, so an arbitrary deterministic one will do."""

    def score(self, requests):
        out = []
        for r in requests:
            h = hashlib.sha256("".join(r.steps).encode()).digest()
            out.append(h[0] / 127.5 - 1.0)
        return out


def run_trees(sandbox, seed, error_rate, rollouts, candidates, mode, n=3, max_depth=16,
              gold=True):
    problems = generate(n, seed, difficulties=(2, 4, 7))
    cfg = MCTSConfig(rollouts=rollouts, candidates=candidates, value_mode=mode, seed=seed,
                     max_depth=max_depth)
    searches = [TreeSearch(p.id, p.question, p.answer if gold else None, VERIFIER, cfg)
                for p in problems]
    teacher = ScriptedTeacher(error_rate=error_rate)
    scorer = HashScorer() if mode == "ppm" else None
    done = list(run_batched(searches, teacher, sandbox, scorer))
    return sorted(done, key=lambda s: s.tree.problem_id)


params = dict(
    seed=st.integers(0, 10_000),
    error_rate=st.floats(0.0, 0.7),
    rollouts=st.integers(1, 12),
    candidates=st.integers(1, 5),
    mode=st.sampled_from(["terminal", "ppm"]),
    max_depth=st.integers(3, 16),
)
SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(**params)
def test_visit_counts_values_and_dead_nodes(sandbox, seed, error_rate, rollouts, candidates,
                                            mode, max_depth):
    for s in run_trees(sandbox, seed, error_rate, rollouts, candidates, mode, max_depth=max_depth):
        tree = s.tree
        assert tree.root.visits == s.stats.rollouts <= rollouts
        for node in tree.nodes:
            assert -1.0 <= node.q <= 1.0
            assert node.depth <= max_depth
            below = sum(c.visits - c.prior_visits for c in node.children)
            if node.terminal:
                # own terminal visits on top of whatever passed below (dead ends)
                assert node.visits >= node.prior_visits + below
            else:
                assert node.visits == node.prior_visits + below, node.id
            if node.dead:  # never selected, never expanded
                assert node.visits == 0 and not node.children and not node.terminal
                assert node.q == -1.0
            if node.terminal and node.answer is not None:
                assert node.correct == VERIFIER.check(node.answer, tree.gold)
            scored = mode == "ppm" and node.exec_ok and node.parent is not None
            assert (node.prior is not None) == scored == (node.prior_visits == 1)
        # A rollout ends at a terminal: every backed-up visit of the root came from one.
        ends = sum(n.visits - n.prior_visits - sum(c.visits - c.prior_visits for c in n.children)
                   for n in tree.nodes if n.terminal)
        assert ends == tree.root.visits


@SETTINGS
@given(**params)
def test_pairs_share_prefix_and_order(sandbox, seed, error_rate, rollouts, candidates, mode,
                                      max_depth):
    for s in run_trees(sandbox, seed, error_rate, rollouts, candidates, mode, max_depth=max_depth):
        tree = s.tree
        nodes = tree.nodes

        def reaches(node, want):
            stack = [node]
            while stack:
                n = stack.pop()
                if want and n.terminal and n.correct:
                    return True
                if not want and (n.dead or (n.terminal and n.correct is False)):
                    return True
                stack.extend(n.children)
            return False

        for pair in preference_pairs(tree):
            assert pair["q_pos"] > pair["q_neg"]
            pos, neg = nodes[pair["pos_node"]], nodes[pair["neg_node"]]
            if pair["kind"] == "step":
                assert pos.parent is neg.parent and pos is not neg
                assert pair["prefix"] == pos.parent.steps()
                assert pair["pos"] == [pos.text] and pair["neg"] == [neg.text]
                assert pos.q == pair["q_pos"] and neg.q == pair["q_neg"]
                assert reaches(pos, True) and reaches(neg, False)
            else:
                assert pair["prefix"] == []
                assert pos.correct is True and neg.correct is False
                assert pair["pos"] == pos.steps() and pair["neg"] == neg.steps()
        for ex in sft_examples(tree):
            end = nodes[ex["node_id"]]
            assert end.correct and all(n.exec_ok for n in end.path())
        good = [t for t in trajectories(tree) if t.correct]
        assert len(sft_examples(tree)) == min(2, len(good))


@SETTINGS
@given(seed=st.integers(0, 10_000), mode=st.sampled_from(["terminal", "ppm"]))
def test_same_seed_same_tree_and_rows_round_trip(sandbox, seed, mode):
    a = run_trees(sandbox, seed, 0.3, 6, 3, mode)
    b = run_trees(sandbox, seed, 0.3, 6, 3, mode)
    for x, y in zip(a, b):
        assert to_rows(x.tree) == to_rows(y.tree)
        (back,) = from_rows(to_rows(x.tree))
        assert to_rows(back) == to_rows(x.tree)


def test_search_beats_one_attempt(sandbox):
    problems = generate(40, 7)
    teacher = ScriptedTeacher(error_rate=0.2)

    def solved(cfg):
        searches = [TreeSearch(p.id, p.question, p.answer, VERIFIER, cfg) for p in problems]
        return sum(s.tree.solved() for s in run_batched(searches, teacher, sandbox))

    assert solved(MCTSConfig(rollouts=8, candidates=4)) > solved(MCTSConfig(rollouts=1,
                                                                            candidates=1)) + 5


def test_test_time_search_without_ground_truth(sandbox):
    (s,) = run_trees(sandbox, 3, 0.3, 8, 3, "ppm", n=1, gold=False)
    assert all(n.correct is None for n in s.tree.nodes)
    assert s.tree.root.visits == s.stats.rollouts > 0
    cfg = MCTSConfig(rollouts=50, candidates=4, value_mode="ppm", max_trajectories=2)
    p = generate(1, 5, difficulties=(6,))[0]
    search = TreeSearch(p.id, p.question, None, VERIFIER, cfg)
    list(run_batched([search], ScriptedTeacher(0.5), sandbox, HashScorer()))
    answered = [n for n in search.tree.terminals() if n.answer is not None and n.exhausted]
    assert len(answered) == 2 and search.stats.rollouts < 50  # stopped by max_trajectories


def test_unvisited_zero_mode_and_c(sandbox):
    # The reference's "unvisited scores 0" option runs and keeps the invariants.
    p = generate(1, 11, difficulties=(5,))[0]
    cfg = MCTSConfig(rollouts=10, candidates=3, unvisited="zero", c_uct=0.5)
    (s,) = list(run_batched([TreeSearch(p.id, p.question, p.answer, VERIFIER, cfg)],
                            ScriptedTeacher(0.3), sandbox))
    assert s.tree.root.visits == s.stats.rollouts


def test_duplicate_candidates_merge_into_counts(sandbox):
    # The teacher writes the right step most of the time, so expansions hold duplicates: each
    # distinct text is one node, and the counts add up to the candidates the policy wrote.
    (s,) = run_trees(sandbox, 21, 0.3, 8, 5, "terminal", n=1)
    expanded = [n for n in s.tree.nodes if n.children]
    assert expanded and any(c.count > 1 for n in expanded for c in n.children)
    for n in expanded:
        assert sum(c.count for c in n.children) == 5
        assert len({c.text.strip() for c in n.children}) == len(n.children)
        assert abs(sum(c.share for c in n.children) - 1.0) < 1e-9
    for end in s.tree.terminals():
        expect = 1.0
        for step in end.path():
            expect *= step.count / sum(c.count for c in step.parent.children)
        assert abs(end.path_share() - expect) < 1e-12



def test_shards_from_before_the_count_column_still_read(sandbox, tmp_path):
    # A workdir resumed after an upgrade holds shards with and without the ``count`` column.
    import pyarrow.parquet as pq

    from rstar import shards
    from trainers.common import check_shards

    done = run_trees(sandbox, 8, 0.3, 6, 4, "terminal", n=4)
    shards.write_trees(tmp_path / "old.parquet", [s.tree for s in done[:2]], round=1)
    shards.write_trees(tmp_path / "new.parquet", [s.tree for s in done[2:]], round=1)
    old = tmp_path / "old.parquet"
    pq.write_table(pq.read_table(old).drop(["count"]), old)
    check_shards([str(old), str(tmp_path / "new.parquet")])
    back = {t.problem_id: t for t in shards.read_trees(tmp_path)}
    for s in done:
        want = [n.count for n in s.tree.nodes]
        got = [n.count for n in back[s.tree.problem_id].nodes]
        assert got == (want if s in done[2:] else [1] * len(want))
    assert any(c > 1 for s in done[2:] for c in (n.count for n in s.tree.nodes))


class FixedPolicy:
    """Writes one program that prints ``printed``, then boxes ``boxed``."""

    def __init__(self, printed, boxed):
        self.printed, self.boxed = printed, boxed

    def propose(self, requests):
        out = []
        for r in requests:
            if not r.steps:
                step = f"<code>\nx = {self.printed}\nprint(x)\n<end_of_code>"
            else:
                step = f"<answer>\\boxed{{{self.boxed}}}<end_of_answer>"
            out.append([step] * r.n)
        return out


def test_grounded_answers_must_agree_with_what_the_program_printed(sandbox):
    def verdict(printed, boxed, gold, grounded):
        cfg = MCTSConfig(rollouts=1, candidates=1, grounded=grounded)
        (s,) = run_batched([TreeSearch("p", "q?", gold, VERIFIER, cfg)],
                           FixedPolicy(printed, boxed), sandbox)
        (end,) = s.tree.terminals()
        return end.correct

    # A guess beside a program that computed something else: verified only by the answer.
    assert verdict("13.61", "13", "13", grounded=False) is True
    assert verdict("13.61", "13", "13", grounded=True) is False
    # The printed value restated (and 36.0 is 36): correct either way.
    assert verdict("36.0", "36", "36", grounded=True) is True
    assert verdict("5", "5", "6", grounded=True) is False


def test_code_terminals_are_judged_by_the_hidden_tests(sandbox):
    """With a ``ProgramVerifier`` the answer step's content decides nothing: the path's program
    runs against the tests, also when the answer states no value."""
    from rstar.domains import load_domain
    from rstar.domains.code.harness import make_gold

    gold = make_gold("def check(candidate):\n    assert candidate(4) == 16\n", "f")

    class Writes:
        def __init__(self, body, answer):
            self.body, self.answer = body, answer

        def propose(self, requests):
            return [[f"<code>\ndef f(x):\n    return {self.body}\nprint(f(3))\n<end_of_code>"
                     if not r.steps else f"<answer>{self.answer}<end_of_answer>"] * r.n
                    for r in requests]

    def verdict(body, answer):
        cfg = MCTSConfig(rollouts=1, candidates=1)
        (s,) = run_batched([TreeSearch("p", "q", gold, load_domain("code").verifier, cfg)],
                           Writes(body, answer), sandbox)
        (end,) = s.tree.terminals()
        return end.correct

    assert verdict("x * x", "\\boxed{9}") is True
    assert verdict("x * x", "done") is True           # no boxed value: still tested
    assert verdict("x + 6", "\\boxed{9}") is False  # right on the example, wrong on the tests
