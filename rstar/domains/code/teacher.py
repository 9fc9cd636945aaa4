"""The code domain's scripted teacher: a noisy, rule-based policy for the embedded tasks.

Like the arith teacher it stands in for round 1's large bootstrap model offline: it reads only
the prompt and the steps so far and writes SPEC §2 steps — one transformation a step inside the
function it builds, then ``return`` and a call on the docstring's example, then the answer
(the example's output in ``\\boxed{}``). Each step slips with probability ``error_rate``: a wrong
constant, a wrong operation, a skipped clause, or broken code (a dead node in the search).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Sequence

from tree.protocols import StepRequest
from tree.steps import StepFormat

from .tasks import number_slips, operation_slips, parse_prompt

ERROR_KINDS = ("operand", "operator", "skip", "syntax")
_OUTPUT_RE = re.compile(r"<output>(.*?)<end_of_output>", re.S)
_N = r"(\d+)"
# sentence pattern -> statement template ({v}: the variable; {0}, {1}: the pattern's groups)
_TEMPLATES: list[tuple[re.Pattern[str], str]] = [(re.compile(p + "$"), c) for p, c in [
    (r"Keep only the even numbers\.", "{v} = [x for x in {v} if x % 2 == 0]"),
    (r"Keep only the odd numbers\.", "{v} = [x for x in {v} if x % 2 == 1]"),
    (rf"Add {_N} to every number\.", "{v} = [x + {0} for x in {v}]"),
    (rf"Multiply every number by {_N}\.", "{v} = [x * {0} for x in {v}]"),
    (rf"Keep only the numbers greater than {_N}\.", "{v} = [x for x in {v} if x > {0}]"),
    (r"Reverse the (?:list|text)\.", "{v} = {v}[::-1]"),
    (r"Sort the list in increasing order\.", "{v} = sorted({v})"),
    (rf"Drop the first {_N} (?:numbers|characters)\.", "{v} = {v}[{0}:]"),
    (rf"Keep only the first {_N} (?:numbers|characters)\.", "{v} = {v}[:{0}]"),
    (r"Make every letter upper case\.", "{v} = {v}.upper()"),
    (r"Make every letter lower case\.", "{v} = {v}.lower()"),
    (r"Remove every space\.", "{v} = {v}.replace(' ', '')"),
    (r"Replace every '(\w)' with '(\w)'\.", "{v} = {v}.replace('{0}', '{1}')"),
    (r"Add '(\w+)' at the end\.", "{v} = {v} + '{0}'"),
    (r"Add '(\w+)' at the start\.", "{v} = '{0}' + {v}"),
    (rf"Add {_N}\.", "{v} = {v} + {0}"),
    (rf"Subtract {_N}\.", "{v} = {v} - {0}"),
    (rf"Multiply by {_N}\.", "{v} = {v} * {0}"),
    (rf"Divide by {_N}, rounding down\.", "{v} = {v} // {0}"),
    (rf"Take the remainder after dividing by {_N}\.", "{v} = {v} % {0}"),
    (r"Negate it\.", "{v} = -{v}"),
    (rf"If it is greater than {_N}, make it \d+\.", "{v} = min({v}, {0})"),
]]
def statement(sentence: str, var: str) -> str:
    """The correct statement for one clause; ValueError if no template reads it."""
    for pat, code in _TEMPLATES:
        m = pat.match(sentence)
        if m:
            return code.format(*m.groups(), v=var)
    raise ValueError(f"code: no template matches {sentence!r}")


@dataclass
class CodeTeacher:
    """``Policy`` over the embedded code tasks; ``error_rate`` is the per-step chance of a slip."""

    error_rate: float = 0.15
    error_kinds: tuple[str, ...] = ERROR_KINDS
    fmt: StepFormat = StepFormat()

    def propose(self, requests: Sequence[StepRequest]) -> list[list[str]]:
        return [[self._step(req.question, list(req.steps), random.Random(f"{req.seed}:{i}"))
                 for i in range(req.n)] for req in requests]

    def _step(self, prompt: str, steps: list[str], rng: random.Random) -> str:
        fmt = self.fmt
        name, var, clauses, example = parse_prompt(prompt)
        if any(fmt.code_end in s for s in steps):
            m = _OUTPUT_RE.search(steps[-1])
            out = m.group(1).strip() if m else "?"
            return (f"{fmt.answer_start}On the example {name} gives \\boxed{{{out}}}."
                    f"{fmt.answer_end}")
        done = max([int(c) for s in steps for c in re.findall(r"^# Step \d+: \((\d+)\)", s, re.M)]
                   or [0])
        nxt = done + 1
        slip = rng.choice(self.error_kinds) if rng.random() < self.error_rate else None
        if slip == "skip" and nxt < len(clauses):
            nxt, slip = nxt + 1, None
        k = len(steps) + 1
        head = f"{fmt.code_start}\n" if not steps else ""
        sig = f"def {name}({var}):\n" if not steps else ""
        if nxt > len(clauses):
            body = (f"# Step {k}: Return the result and try the example.\n{sig}    return {var}\n"
                    f"print({name}({example}))")
            return f"{head}{body}\n{fmt.code_end}"
        line = statement(clauses[nxt - 1], var)
        if slip == "operand":
            line = _wrong_number(line, rng)
        elif slip == "operator":
            line = _wrong_operation(line, rng)
        elif slip == "syntax":
            line = line + " (" if rng.random() < 0.5 else line.strip()  # unbalanced / unindented
        body = f"# Step {k}: ({nxt}) {clauses[nxt - 1]}\n{sig}    {line}"
        return f"{head}{body}\n{fmt.step_end}"


def _wrong_number(line: str, rng: random.Random) -> str:
    slips = number_slips(line)
    return rng.choice(slips) if slips else _wrong_operation(line, rng)


def _wrong_operation(line: str, rng: random.Random) -> str:
    return rng.choice(operation_slips(line))
