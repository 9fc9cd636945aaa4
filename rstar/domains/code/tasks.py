"""The embedded code domain: small function-writing tasks with hidden unit tests.

A task is a function of one argument (a list of integers, a text, or an integer) that applies
1-8 numbered transformations in turn; the difficulty is how many. The docstring states them and
one example; the hidden tests call the function on eight other inputs, chosen to fail every
one-clause slip. The same templates parse a
prompt back into transformations, which is how the scripted teacher "reads" a task.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from rstar.data import Problem

from .harness import make_gold

KINDS = {"list": ("transform_list", "xs", "list"), "text": ("transform_text", "s", "str"),
         "number": ("transform_number", "n", "int")}
WORDS = ["apple", "kiwi", "banana", "plum", "fig", "cherry", "lime", "grape"]


@dataclass(frozen=True)
class Op:
    """One transformation: ``kind`` with its argument; ``sentence`` is how the docstring says it."""

    kind: str
    arg: int | str | None
    sentence: str

    def code(self, v: str) -> str:
        """The statement that applies it to variable ``v`` (the teacher's correct code)."""
        a = self.arg
        return {
            "keep_even": f"{v} = [x for x in {v} if x % 2 == 0]",
            "keep_odd": f"{v} = [x for x in {v} if x % 2 == 1]",
            "add_each": f"{v} = [x + {a} for x in {v}]",
            "mul_each": f"{v} = [x * {a} for x in {v}]",
            "keep_above": f"{v} = [x for x in {v} if x > {a}]",
            "reverse": f"{v} = {v}[::-1]",
            "sort": f"{v} = sorted({v})",
            "drop": f"{v} = {v}[{a}:]",
            "take": f"{v} = {v}[:{a}]",
            "upper": f"{v} = {v}.upper()",
            "lower": f"{v} = {v}.lower()",
            "no_spaces": f"{v} = {v}.replace(' ', '')",
            "swap_letter": f"{v} = {v}.replace({a[0]!r}, {a[1]!r})" if isinstance(a, str) else "",
            "append": f"{v} = {v} + {a!r}",
            "prepend": f"{v} = {a!r} + {v}",
            "add": f"{v} = {v} + {a}",
            "sub": f"{v} = {v} - {a}",
            "mul": f"{v} = {v} * {a}",
            "floordiv": f"{v} = {v} // {a}",
            "mod": f"{v} = {v} % {a}",
            "negate": f"{v} = -{v}",
            "cap": f"{v} = min({v}, {a})",
        }[self.kind]

    def apply(self, x):
        a = self.arg
        return {
            "keep_even": lambda: [y for y in x if y % 2 == 0],
            "keep_odd": lambda: [y for y in x if y % 2 == 1],
            "add_each": lambda: [y + a for y in x],
            "mul_each": lambda: [y * a for y in x],
            "keep_above": lambda: [y for y in x if y > a],
            "reverse": lambda: x[::-1],
            "sort": lambda: sorted(x),
            "drop": lambda: x[a:],
            "take": lambda: x[:a],
            "upper": lambda: x.upper(),
            "lower": lambda: x.lower(),
            "no_spaces": lambda: x.replace(" ", ""),
            "swap_letter": lambda: x.replace(a[0], a[1]),
            "append": lambda: x + a,
            "prepend": lambda: a + x,
            "add": lambda: x + a,
            "sub": lambda: x - a,
            "mul": lambda: x * a,
            "floordiv": lambda: x // a,
            "mod": lambda: x % a,
            "negate": lambda: -x,
            "cap": lambda: min(x, a),
        }[self.kind]()


def _ops_for(kind: str, rng: random.Random) -> list[Op]:
    k = rng.randint(2, 9)
    if kind == "list":
        return [Op("keep_even", None, "Keep only the even numbers."),
                Op("keep_odd", None, "Keep only the odd numbers."),
                Op("add_each", k, f"Add {k} to every number."),
                Op("mul_each", k, f"Multiply every number by {k}."),
                Op("keep_above", k, f"Keep only the numbers greater than {k}."),
                Op("reverse", None, "Reverse the list."),
                Op("sort", None, "Sort the list in increasing order."),
                Op("drop", k % 4 + 1, f"Drop the first {k % 4 + 1} numbers."),
                Op("take", k, f"Keep only the first {k} numbers.")]
    if kind == "text":
        a, b = rng.sample("aeiourst", 2)
        word = rng.choice(["xy", "ok", "zz", "end", "go"])
        return [Op("upper", None, "Make every letter upper case."),
                Op("lower", None, "Make every letter lower case."),
                Op("reverse", None, "Reverse the text."),
                Op("no_spaces", None, "Remove every space."),
                Op("swap_letter", a + b, f"Replace every '{a}' with '{b}'."),
                Op("append", word, f"Add '{word}' at the end."),
                Op("prepend", word, f"Add '{word}' at the start."),
                Op("take", k + 3, f"Keep only the first {k + 3} characters."),
                Op("drop", k % 3 + 1, f"Drop the first {k % 3 + 1} characters.")]
    return [Op("add", k, f"Add {k}."), Op("sub", k, f"Subtract {k}."),
            Op("mul", k % 4 + 2, f"Multiply by {k % 4 + 2}."),
            Op("floordiv", k % 4 + 2, f"Divide by {k % 4 + 2}, rounding down."),
            Op("mod", k + 3, f"Take the remainder after dividing by {k + 3}."),
            Op("negate", None, "Negate it."),
            Op("cap", 10 * k, f"If it is greater than {10 * k}, make it {10 * k}.")]


def _input(kind: str, rng: random.Random):
    if kind == "list":
        return [rng.randint(0, 20) for _ in range(rng.randint(4, 8))]
    if kind == "text":
        return " ".join(rng.sample(WORDS, rng.randint(2, 3)))
    return rng.randint(-50, 200)


@dataclass(frozen=True)
class CodeTask:
    kind: str
    ops: tuple[Op, ...]
    example: object
    hidden: tuple

    @property
    def name(self) -> str:
        return KINDS[self.kind][0]

    @property
    def var(self) -> str:
        return KINDS[self.kind][1]

    def run(self, x):
        for op in self.ops:
            x = op.apply(x)
        return x

    @property
    def prompt(self) -> str:
        name, var, typ = KINDS[self.kind]
        # Numbered clauses, one a line: a step's comment cites "(k)", the one-hop lookup a 1M
        # model learns (as in arith).
        lines = [f'def {name}({var}: {typ}) -> {typ}:', f'    """Return {var} after these steps:']
        lines += [f"    ({i}) {op.sentence}" for i, op in enumerate(self.ops, 1)]
        lines += [f"    >>> {name}({self.example!r})", f"    {self.run(self.example)!r}", '    """']
        return "\n".join(lines) + "\n"

    @property
    def tests(self) -> str:
        body = [f"    assert candidate({x!r}) == {self.run(x)!r}" for x in self.hidden]
        return "def check(candidate):\n" + "\n".join(body) + "\n"


# A wrong operation a hasty writer picks instead (same shape, other meaning): the teacher's
# "operator" slips, and the mutants the hidden tests are chosen to tell apart.
SWAPS = [("% 2 == 0", "% 2 == 1"), ("% 2 == 1", "% 2 == 0"), (" > ", " >= "), (".upper()", ".lower()"),
         (".lower()", ".upper()"), ("[::-1]", "[1:]"), ("sorted(", "list("), (" // ", " / "),
         (" % ", " // "), (" - ", " + "), (" + ", " - "), (" * ", " + "), ("min(", "max(")]


def number_slips(line: str) -> list[str]:
    """``line`` with one constant off by one or two (not a parity test's or a reversal's,
    which are no constants of the task)."""
    out = []
    fixed = [m.span() for m in re.finditer(r"% 2 == \d|\[::-1\]", line)]
    for m in re.finditer(r"\d+", line):
        if any(a <= m.start() < b for a, b in fixed):
            continue
        for d in (-2, -1, 1, 2):
            if int(m.group()) + d >= 1:
                out.append(line[: m.start()] + str(int(m.group()) + d) + line[m.end():])
    return out


def operation_slips(line: str) -> list[str]:
    """``line`` with one operation swapped for a similar one (or its value negated)."""
    out = [line.replace(a, b, 1) for a, b in SWAPS if a in line]
    return out or [line.replace(" = ", " = -", 1)]


def _behaviour(kind: str, lines: list[str], inputs: list):
    """What a function made of ``lines`` returns on each input (an exception counts as a value).
    In-process ``exec`` is fine: the lines are this module's own templates and their slips."""
    var = KINDS[kind][1]
    src = f"def f({var}):\n" + "".join(f"    {ln}\n" for ln in lines) + f"    return {var}\n"
    ns: dict = {}
    exec(compile(src, "<mutant>", "exec"), ns)
    out = []
    for x in inputs:
        try:
            out.append(repr(ns["f"](x)))
        except Exception as e:
            out.append(type(e).__name__)
    return out


def _discriminating(kind: str, ops: tuple[Op, ...], pool: list, n: int) -> list:
    """``n`` inputs from ``pool`` chosen so that every slip the teacher can make in one clause
    (a constant, an operation, a skipped clause) fails at least one of them where any input
    tells it apart: random inputs alone let many wrong programs pass (`x >= 6` for `x > 6`)."""
    var = KINDS[kind][1]
    right = [op.code(var) for op in ops]
    mutants = []
    for i, line in enumerate(right):
        for wrong in (*number_slips(line), *operation_slips(line), None):
            mutants.append(right[:i] + ([wrong] if wrong else []) + right[i + 1:])
    truth = _behaviour(kind, right, pool)
    alive = []
    for m in mutants:
        got = _behaviour(kind, m, pool)
        kills = {j for j, (a, b) in enumerate(zip(got, truth)) if a != b}
        if kills:
            alive.append(kills)
    chosen: list[int] = []
    while alive and len(chosen) < n:
        best = max(range(len(pool)), key=lambda j: (sum(j in k for k in alive), -j))
        chosen.append(best)
        alive = [k for k in alive if best not in k]
    chosen += [j for j in range(len(pool)) if j not in chosen][: max(0, n - len(chosen))]
    return [pool[j] for j in chosen]


def make_task(difficulty: int, rng: random.Random, kind: str | None = None) -> CodeTask:
    """A task of ``difficulty`` transformations (1-8) on a random (or the given) input kind."""
    if not 1 <= difficulty <= 8:
        raise ValueError(f"code difficulty must be in 1..8, got {difficulty}")
    kind = kind or rng.choice(list(KINDS))
    ops: list[Op] = []
    for _ in range(difficulty):
        used = {o.sentence for o in ops}
        cands = [o for o in _ops_for(kind, rng) if o.sentence not in used
                 and (not ops or o.kind != ops[-1].kind)]
        ops.append(rng.choice(cands))
    example = _input(kind, rng)
    pool = [_input(kind, rng) for _ in range(40)]
    return CodeTask(kind, tuple(ops), example, tuple(_discriminating(kind, tuple(ops), pool, 8)))


def generate(n: int, seed: int, difficulties: tuple[int, ...] = tuple(range(1, 9)),
             prefix: str = "code") -> list[Problem]:
    """``n`` tasks, difficulties cycling through ``difficulties``; deterministic in ``seed``."""
    rng = random.Random(f"code:{seed}")
    out = []
    for i in range(n):
        t = make_task(difficulties[i % len(difficulties)], rng)
        out.append(Problem(id=f"{prefix}-{seed}-{i}", question=t.prompt,
                           answer=make_gold(t.tests, t.name, t.prompt),
                           meta={"difficulty": len(t.ops), "entry_point": t.name}))
    return out


# -- reading a prompt back (the teacher's "understanding") --------------------------------------

_SIG = re.compile(r"^def (\w+)\((\w+): (\w+)\)", re.M)
_CLAUSE = re.compile(r"^\s+\((\d+)\) (.+)$", re.M)
_EXAMPLE = re.compile(r"^\s+>>> \w+\((.*)\)$", re.M)


def parse_prompt(prompt: str) -> tuple[str, str, list[str], str]:
    """(function name, argument name, clause sentences, example argument source) of a task
    prompt; ValueError on text that is not one."""
    sig, ex = _SIG.search(prompt), _EXAMPLE.search(prompt)
    clauses = [m.group(2) for m in _CLAUSE.finditer(prompt)]
    if not sig or not ex or not clauses:
        raise ValueError(f"not a code task prompt: {prompt[:80]!r}")
    return sig.group(1), sig.group(2), clauses, ex.group(1)
