"""The scripted teacher: a noisy, rule-based policy for arith problems.

It stands in for round 1's large bootstrap model (the paper's 236B DeepSeek-Coder) so the whole
loop runs offline on a laptop. It implements the same ``Policy`` protocol a language model engine
does, reads only the question and the steps so far, and writes steps in the SPEC §2 format. Each
step goes wrong with probability ``error_rate`` in one of the ways a model slips: a wrong operand,
a wrong operator, a skipped step, or a syntax slip (which fails in the sandbox, making a dead
node). Search has to find the correct path among such candidates, which is the point.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Sequence

from tree.protocols import StepRequest
from tree.steps import StepFormat

from .arith import ArithProblem, Op, parse_question

ERROR_KINDS = ("operand", "operator", "skip", "syntax")
_OUTPUT_RE = re.compile(r"<output>(.*?)<end_of_output>", re.S)


@dataclass
class ScriptedTeacher:
    """Policy protocol over arith problems. ``error_rate`` is the per-step chance of a slip."""

    error_rate: float = 0.15
    error_kinds: tuple[str, ...] = ERROR_KINDS
    fmt: StepFormat = StepFormat()

    def propose(self, requests: Sequence[StepRequest]) -> list[list[str]]:
        out = []
        for req in requests:
            problem = parse_question(req.question)
            # One RNG per candidate, from the request's seed: independent of batching.
            out.append([self._step(problem, list(req.steps), random.Random(f"{req.seed}:{i}"))
                        for i in range(req.n)])
        return out

    # -- one step ------------------------------------------------------------------------------

    def _step(self, problem: ArithProblem, steps: list[str], rng: random.Random) -> str:
        fmt, var = self.fmt, problem.item
        if any(fmt.code_end in s for s in steps):
            return self._answer(problem, steps[-1])
        done = self._ops_done(problem, steps)
        nxt = done + 1
        slip = rng.choice(self.error_kinds) if rng.random() < self.error_rate else None
        if slip == "skip" and nxt < len(problem.ops):
            nxt += 1  # jump over one operation, as a hasty solver does
            slip = None
        k = len(steps) + 1
        if nxt >= len(problem.ops):
            body = f"# Step {k}: Print the final answer.\nprint({var})"
            end = fmt.code_end
        else:
            op = problem.ops[nxt]
            expr = op.expr(var)
            if slip == "operand":
                expr = _wrong_operand(expr, rng)
            elif slip == "operator":
                expr = _wrong_operator(expr, rng)
            # The comment cites the clause it works on, "(n)", and restates it: the step's
            # reasoning, and how a reader (or the teacher itself) tells which operation a step
            # implements. Citing makes a skipped clause visible in the step itself ("Step 2:
            # (3)"); without the number, telling a skip needs a two-hop lookup in the question,
            # which the 1M PPM never learned (48% held-out pair accuracy on skips).
            body = f"# Step {k}: ({nxt + 1}) {op.sentence}\n{var} = {expr}"
            end = fmt.step_end
        if slip == "syntax":
            body = _syntax_slip(body, var, rng)
        start = fmt.code_start + "\n" if not steps else ""
        return f"{start}{body}\n{end}"

    @staticmethod
    def _ops_done(problem: ArithProblem, steps: list[str]) -> int:
        """Index of the last operation a previous step worked on (-1: none yet)."""
        done = -1
        for i, op in enumerate(problem.ops):
            if any(op.sentence in s for s in steps):
                done = i
        return done

    def _answer(self, problem: ArithProblem, last: str) -> str:
        m = _OUTPUT_RE.search(last)
        value = m.group(1).strip() if m else "?"
        return (f"{self.fmt.answer_start}{problem.name} has \\boxed{{{value}}} {problem.item} "
                f"now.{self.fmt.answer_end}")


def _wrong_operand(expr: str, rng: random.Random) -> str:
    nums = list(re.finditer(r"\d+", expr))
    if not nums:
        return expr
    m = rng.choice(nums)
    wrong = max(1, int(m.group()) + rng.choice([-3, -2, -1, 1, 2, 3]))
    if wrong == int(m.group()):
        wrong += 1
    return expr[: m.start()] + str(wrong) + expr[m.end():]


def _wrong_operator(expr: str, rng: random.Random) -> str:
    ops = list(re.finditer(r" (\+|-|\*|/) ", expr))
    if not ops:  # a bare number (the start): misread it instead
        return _wrong_operand(expr, rng)
    m = rng.choice(ops)
    swap = {"+": "-", "-": "+", "*": "+", "/": "*"}[m.group(1)]
    return expr[: m.start()] + f" {swap} " + expr[m.end():]


def _syntax_slip(body: str, var: str, rng: random.Random) -> str:
    """Break the step's code so that *this* step fails when executed."""
    lines = body.split("\n")
    code = lines[-1]
    lhs, eq, rhs = code.partition(" = ")
    kind = rng.choice(["paren", "name", "dangling"])
    if kind == "name" and eq and var in rhs:
        code = lhs + eq + rhs.replace(var, var[:-1], 1)  # a misspelt variable: NameError
    elif kind == "dangling":
        code = code + " *"  # a dangling operator: SyntaxError
    else:
        code = code + ")"  # an unmatched parenthesis: SyntaxError
    return "\n".join(lines[:-1] + [code])
