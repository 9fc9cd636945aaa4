"""The embedded domain: multi-step arithmetic word problems with exact integer answers.

A problem is a start quantity and 1-8 operations, each told by one sentence from a template
(buying, giving, receiving, groups of, fractions/halves, rates, multiplying). The same templates
parse a question back into operations, which is how the scripted teacher "reads" a problem: it
sees only the question text, like a language model would.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from rstar.data import Problem

NAMES = ["Tom", "Ann", "Maya", "Leo", "Sara", "Omar", "Lily", "Ivan", "Zoe", "Ben", "Nina", "Raj"]
ITEMS = ["apples", "marbles", "stickers", "cookies", "coins", "cards", "pencils", "shells"]
MAX_VALUE = 5000  # keeps numbers short, so a tiny model's tokens are spent on structure
FRACTIONS = {(1, 2): "half", (1, 3): "a third", (1, 4): "a quarter", (2, 3): "two thirds"}
FRACTION_WORDS = {v: k for k, v in FRACTIONS.items()}


@dataclass(frozen=True)
class Op:
    """One operation: ``kind`` and its integer arguments; ``sentence`` is how the question says it."""

    kind: str
    args: tuple[int, ...]
    sentence: str

    def expr(self, var: str) -> str:
        """The Python expression for the new value of ``var`` (the teacher's correct code)."""
        a = self.args
        return {
            "start": lambda: f"{a[0]}",
            "buy": lambda: f"{var} + {a[0]} * {a[1]}",
            "give": lambda: f"{var} - {a[0]}",
            "receive": lambda: f"{var} + {a[0]}",
            "rate_gain": lambda: f"{var} + {a[0]} * {a[1]}",
            "rate_use": lambda: f"{var} - {a[0]} * {a[1]}",
            # True division, not floor: every operation is then one-to-one in ``var``, so a
            # wrong number early in a solution cannot floor back onto the right answer (with
            # ``//`` most of the search's "correct" 5-8-operation solutions were such lucky
            # hits, docs/results.md E7). The true path divides exactly, so values stay whole.
            "share": lambda: f"{var} / {a[0]}",
            "fraction": lambda: f"{var} - {var} * {a[0]} / {a[1]}",
            "multiply": lambda: f"{var} * {a[0]}",
        }[self.kind]()

    def apply(self, x: int) -> int:
        a = self.args
        return {
            "start": lambda: a[0],
            "buy": lambda: x + a[0] * a[1],
            "give": lambda: x - a[0],
            "receive": lambda: x + a[0],
            "rate_gain": lambda: x + a[0] * a[1],
            "rate_use": lambda: x - a[0] * a[1],
            "share": lambda: x // a[0],
            "fraction": lambda: x - x * a[0] // a[1],
            "multiply": lambda: x * a[0],
        }[self.kind]()


@dataclass(frozen=True)
class ArithProblem:
    name: str
    item: str
    ops: tuple[Op, ...]  # ops[0] is the start quantity

    @property
    def difficulty(self) -> int:
        return len(self.ops) - 1

    @property
    def answer(self) -> int:
        x = 0
        for op in self.ops:
            x = op.apply(x)
        return x

    @property
    def question(self) -> str:
        # Numbered clauses: "(2) ..." is what a step's comment points back to, a one-hop lookup
        # a 1M-parameter model learns in minutes (finding "the sentence after the one the last
        # step restated" is a two-hop lookup it does not).
        body = " ".join(f"({i}) {op.sentence}" for i, op in enumerate(self.ops, 1))
        return f"{body} How many {self.item} does {self.name} have now?"


def _candidates(x: int, name: str, item: str, rng: random.Random) -> list[Op]:
    """Operations that keep the quantity a positive integer below MAX_VALUE."""
    friend = rng.choice([n for n in NAMES if n != name])
    k, m = rng.randint(2, 6), rng.randint(2, 12)
    ops = [
        Op("buy", (k, m), f"{name} buys {k} bags with {m} {item} each."),
        Op("receive", (m,), f"{friend} gives {name} {m} more {item}."),
        Op("rate_gain", (m, k), f"{name} collects {m} {item} per hour for {k} hours."),
    ]
    g = rng.randint(1, max(1, x - 1))
    if x > 1:
        ops.append(Op("give", (g,), f"{name} gives {g} {item} to {friend}."))
    if k * m < x:
        ops.append(Op("rate_use", (m, k), f"{name} uses {m} {item} a day for {k} days."))
    for d in (2, 3, 4, 5):
        if x % d == 0 and x // d > 0:
            ops.append(Op("share", (d,), f"{name} splits them equally into {d} boxes and keeps one box."))
    for (p, q), word in FRACTIONS.items():
        if x % q == 0 and x - x * p // q > 0:
            ops.append(Op("fraction", (p, q), f"{name} gives {word} of them to {friend}."))
    for f, word in ((2, "doubles"), (3, "triples")):
        ops.append(Op("multiply", (f,), f"The number of {item} {name} has {word}."))
    return [op for op in ops if 0 < op.apply(x) < MAX_VALUE]


def make_problem(difficulty: int, rng: random.Random) -> ArithProblem:
    """A problem with ``difficulty`` operations (1-8) after the start quantity."""
    if not 1 <= difficulty <= 8:
        raise ValueError(f"arith difficulty must be in 1..8, got {difficulty}")
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    start = rng.randint(5, 60)
    ops = [Op("start", (start,), f"{name} has {start} {item}.")]
    x = start
    for _ in range(difficulty):
        cands = _candidates(x, name, item, rng)
        # Sentences must be unique (the teacher locates itself by them); prefer a kind not used
        # last, so problems mix templates.
        used = {o.sentence for o in ops}
        cands = [c for c in cands if c.sentence not in used]
        fresh = [c for c in cands if c.kind != ops[-1].kind] or cands
        op = rng.choice(fresh)
        ops.append(op)
        x = op.apply(x)
    return ArithProblem(name=name, item=item, ops=tuple(ops))


def generate(n: int, seed: int, difficulties: tuple[int, ...] = tuple(range(1, 9)),
             prefix: str = "arith") -> list[Problem]:
    """``n`` problems, difficulties cycling through ``difficulties``; deterministic in ``seed``."""
    rng = random.Random(f"arith:{seed}")
    out = []
    for i in range(n):
        p = make_problem(difficulties[i % len(difficulties)], rng)
        out.append(Problem(id=f"{prefix}-{seed}-{i}", question=p.question, answer=str(p.answer),
                           meta={"difficulty": p.difficulty}))
    return out


# -- reading a question back (the teacher's "understanding") -----------------------------------

_NUM = r"(\d+)"
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("start", re.compile(rf"^(\w+) has {_NUM} (\w+)\.$")),
    ("buy", re.compile(rf"^\w+ buys {_NUM} bags with {_NUM} \w+ each\.$")),
    ("receive", re.compile(rf"^\w+ gives \w+ {_NUM} more \w+\.$")),
    ("rate_gain", re.compile(rf"^\w+ collects {_NUM} \w+ per hour for {_NUM} hours\.$")),
    ("give", re.compile(rf"^\w+ gives {_NUM} \w+ to \w+\.$")),
    ("rate_use", re.compile(rf"^\w+ uses {_NUM} \w+ a day for {_NUM} days\.$")),
    ("share", re.compile(rf"^\w+ splits them equally into {_NUM} boxes and keeps one box\.$")),
    ("fraction", re.compile(r"^\w+ gives (half|a third|a quarter|two thirds) of them to \w+\.$")),
    ("multiply", re.compile(r"^The number of \w+ \w+ has (doubles|triples)\.$")),
]


def parse_question(question: str) -> ArithProblem:
    """Inverse of ``ArithProblem.question``; raises ValueError on text the templates don't cover."""
    sentences = [re.sub(r"^\(\d+\)\s*", "", s)
                 for s in re.split(r"(?<=\.)\s+", question.strip())]
    if not sentences or not sentences[-1].startswith("How many"):
        raise ValueError(f"not an arith question: {question[:80]!r}")
    ops: list[Op] = []
    name = item = ""
    for s in sentences[:-1]:
        for kind, pat in _PATTERNS:
            m = pat.match(s)
            if not m:
                continue
            if kind == "start":
                name, item = m.group(1), m.group(3)
                args: tuple[int, ...] = (int(m.group(2)),)
            elif kind == "fraction":
                args = FRACTION_WORDS[m.group(1)]
            elif kind == "multiply":
                args = (2 if m.group(1) == "doubles" else 3,)
            else:
                args = tuple(int(g) for g in m.groups())
            ops.append(Op(kind, args, s))
            break
        else:
            raise ValueError(f"arith: no template matches {s!r}")
    if not ops or ops[0].kind != "start":
        raise ValueError(f"arith: question does not start with a quantity: {question[:80]!r}")
    return ArithProblem(name=name, item=item, ops=tuple(ops))


def computes(question: str, solution: str) -> bool:
    """Whether a solution's code assigns, in order, exactly the question's operations (the
    teacher's correct expressions): a correct *answer* whose code does not is a lucky hit. Used
    to audit the SFT data a round's search verified by its answer alone; never by the search."""
    p = parse_question(question)
    code = re.findall(rf"^{re.escape(p.item)} = (.*?)\s*$", solution, re.M)
    return code == [op.expr(p.item) for op in p.ops]


class ArithDomain:
    """The embedded default: generated word problems of 1-8 operations, a scripted noisy
    teacher, integer answers in ``\\boxed{}`` (graded like math)."""

    name = "arith"
    preload = ()
    generated = True

    def __init__(self) -> None:
        from .math import MathVerifier

        self.verifier = MathVerifier()

    def problems(self, n, seed, difficulties=(), prefix="arith"):
        return generate(n, seed, tuple(difficulties) or tuple(range(1, 9)), prefix=prefix or "arith")

    def load(self, source: str) -> list:
        from .math import load_problems

        return load_problems(source)

    def teacher(self, error_rate, fmt):
        from .teacher import ScriptedTeacher

        return ScriptedTeacher(error_rate=error_rate, fmt=fmt)

    def audit(self, question: str, solution: str) -> tuple[int, bool]:
        """(the question's difficulty, whether a verified solution really computes it)."""
        return len(parse_question(question).ops) - 1, computes(question, solution)
