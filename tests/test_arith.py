"""The embedded arith domain and its scripted teacher, run through the real sandbox."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from rstar.domains import verifier_for
from rstar.domains.arith import Op, computes, generate, make_problem, parse_question
from rstar.grading import extract_answer
from rstar.domains.teacher import ScriptedTeacher
from tree.driver import run_batched
from tree.mcts import MCTSConfig, TreeSearch
from tree.protocols import StepRequest
from tree.steps import StepFormat

FMT = StepFormat()


def test_generator_is_deterministic_exact_and_parseable():
    a, b = generate(400, 3), generate(400, 3)
    assert a == b and generate(5, 4) != generate(5, 3)
    kinds = Counter()
    for p in a:
        parsed = parse_question(p.question)
        assert str(parsed.answer) == p.answer and int(p.answer) > 0
        assert parsed.difficulty == p.meta["difficulty"]
        kinds.update(op.kind for op in parsed.ops[1:])
    assert set(kinds) >= {"buy", "give", "receive", "rate_gain", "share", "fraction", "multiply"}
    assert Counter(p.meta["difficulty"] for p in a) == {d: 50 for d in range(1, 9)}


def test_difficulty_knob_bounds():
    rng = random.Random(0)
    for d in range(1, 9):
        assert make_problem(d, rng).difficulty == d
    for bad in (0, 9):
        with pytest.raises(ValueError, match="1..8"):
            make_problem(bad, rng)
    with pytest.raises(ValueError, match="no template"):
        parse_question("Tom has 3 apples. Tom juggles. How many apples does Tom have now?")


def solve_once(problems, teacher, sandbox):
    v = verifier_for("arith")
    cfg = MCTSConfig(rollouts=1, candidates=1)
    searches = [TreeSearch(p.id, p.question, p.answer, v, cfg) for p in problems]
    return {s.tree.problem_id: s.tree for s in run_batched(searches, teacher, sandbox)}


def test_error_free_teacher_solves_everything_in_format(sandbox):
    problems = generate(48, 1)
    v = verifier_for("arith")
    trees = solve_once(problems, ScriptedTeacher(error_rate=0.0), sandbox)
    for p in problems:
        tree = trees[p.id]
        assert tree.solved(), p.question
        (end,) = tree.terminals()
        steps = end.steps()
        assert steps[0].startswith(FMT.code_start + "\n")
        assert all(s.endswith(FMT.step_end) for s in steps[:-2])
        # Divisions are true divisions, so a whole answer may print as "36.0"; it is boxed as
        # printed and graded by value.
        out = re.search(r"<output>(.*)<end_of_output>", steps[-2]).group(1)
        assert FMT.code_end in steps[-2] and float(out) == int(p.answer)
        assert steps[-1].endswith(FMT.answer_end) and f"\\boxed{{{out}}}" in steps[-1]
        assert v.check(extract_answer(steps[-1]), p.answer)
        assert computes(p.question, "\n".join(steps))
        assert len(steps) == p.meta["difficulty"] + 3


@pytest.mark.parametrize("kind", ["operand", "operator", "skip", "syntax"])
def test_each_slip_kind_does_what_it_says(sandbox, kind):
    problems = generate(24, 2, difficulties=(3, 4))
    teacher = ScriptedTeacher(error_rate=1.0, error_kinds=(kind,))
    trees = solve_once(problems, teacher, sandbox)
    for p in problems:
        tree = trees[p.id]
        assert not tree.solved()
        if kind == "syntax":  # the very first step fails in the sandbox: a dead node
            assert tree.nodes[1].dead and tree.nodes[1].exec_error
        elif kind == "skip":  # skipping the start leaves the variable undefined: NameError
            assert tree.nodes[1].dead and "NameError" in tree.nodes[1].exec_error
        else:
            assert all(not n.dead for n in tree.nodes)


def test_teacher_is_independent_of_batching():
    problems = generate(5, 9)
    reqs = [StepRequest(p.question, (), n=4, seed=i) for i, p in enumerate(problems)]
    t = ScriptedTeacher(error_rate=0.5)
    together = t.propose(reqs)
    alone = [t.propose([r])[0] for r in reqs]
    assert together == alone
    assert all(len(c) == 4 for c in together)


def test_a_wrong_number_never_lands_on_the_right_answer():
    # Every operation is one-to-one in the running value (true division), so one wrong
    # number anywhere in a solution changes its answer: the answer-only check cannot pass a
    # lucky slip (with floor division 5-10% of such slips on 5-8 operations did). The
    # programs here are the domain's own expressions, evaluated exactly.
    from fractions import Fraction

    def run(ops, var):
        env = {}
        for op in ops:
            env[var] = eval(op.expr(var).replace(" / ", " * Fraction(1) / "),
                            {"Fraction": Fraction}, env)
        return env[var]

    rng, slips = random.Random(5), 0
    for _ in range(400):
        p = make_problem(rng.randint(2, 8), rng)
        assert run(p.ops, p.item) == p.answer
        i = rng.randrange(len(p.ops))
        op = p.ops[i]
        if op.kind in ("fraction", "multiply"):  # their numbers are words in the question
            continue
        args = list(op.args)
        j = rng.randrange(len(args))
        args[j] = rng.choice([a for a in range(args[j] - 3, args[j] + 4) if a >= 1 and a != args[j]])
        slipped = p.ops[:i] + (Op(op.kind, tuple(args), ""),) + p.ops[i + 1:]
        assert run(slipped, p.item) != p.answer, p.question
        slips += 1
    assert slips > 200


def test_computes_tells_a_lucky_answer_from_a_computed_one():
    p = parse_question("(1) Tom has 20 apples. (2) Tom gives 5 apples to Ann. "
                       "(3) Tom gives 3 apples to Ben. How many apples does Tom have now?")
    right = "# Step 1\napples = 20\n# Step 2\napples = apples - 5\n# Step 3\napples = apples - 3\n"
    swapped = "apples = 20\napples = apples - 3\napples = apples - 5\n"
    assert p.answer == 12 and computes(p.question, right)
    assert not computes(p.question, swapped)  # same answer, operations out of order
    assert not computes(p.question, right.replace("- 3", "- 1 - 2"))
