"""The code domain: a problem is a function to write (signature + docstring, as HumanEval); the
steps build it as code-augmented reasoning, each step's program run in the sandbox; the final
answer step states its output on the docstring's example, and the path's program is verified by
the problem's hidden unit tests (``harness``), which never appear in the prompt or in anything the model sees.

A problem's ``answer`` (its gold) is JSON: ``{"test": "def check(candidate): ...",
"entry_point": NAME, "prompt": CODE}``; the prompt's code (imports, helpers) runs before the
candidate's, as HumanEval's evaluation does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from rstar.grading import extract_answer

from . import harness


@dataclass(frozen=True)
class CodeVerifier:
    """``ProgramVerifier``: the answer step states what the function gives on the docstring's
    example (``\\boxed{...}``: its behaviour, which votes group by); whether the function is
    right is decided only by running the hidden tests against the program."""

    def extract(self, step: str) -> str | None:
        return extract_answer(step)

    def check(self, answer: str | None, gold: str) -> bool:
        # An example's output says little about correctness: grading goes through the tests.
        return False

    def test_program(self, program: str, gold: str) -> tuple[str, str]:
        return harness.test_program(program, gold)

    def passed(self, outcome, token: str) -> bool:
        return harness.passed(outcome, token)


def load_code_problems(source: str) -> list:
    """HumanEval by name, or a JSONL file of ``{task_id|id, prompt|question, test, entry_point}``
    rows; a row without tests or entry point is an error naming the file and line, and so is a
    problem whose shipped ``canonical_solution`` fails its own tests (``check_canonical``)."""
    from rstar.data import load_benchmark

    if source.endswith(".jsonl"):
        probs = _read_jsonl(source)
    else:
        probs = load_benchmark(source)
        for p in probs:
            harness.parse_gold(p.answer, f"{source}: {p.id}")
    check_canonical(probs, source)
    return probs


_CHECKED: set = set()


def check_canonical(problems: list, source: str = "problems") -> None:
    """Run every shipped ``canonical_solution`` against its problem's tests in the sandbox
    (once per process and problem set); ValueError naming each problem whose tests fail it."""
    from rstar.config import SandboxConfig
    from sandbox import Sandbox

    todo = [p for p in problems if isinstance(p.meta.get("canonical_solution"), str)]
    key = (source, tuple((p.id, p.answer, p.meta["canonical_solution"]) for p in todo))
    if not todo or hash(key) in _CHECKED:
        return
    jobs = [harness.test_program(p.question + p.meta["canonical_solution"], p.answer)
            for p in todo]
    with Sandbox(isolation=SandboxConfig().isolation, workers=2,
                 preload=(*SandboxConfig().preload, *CodeDomain.preload)) as sb:
        outcomes = sb.run_many([src for src, _ in jobs])
    bad = [p.id for p, (_, tok), res in zip(todo, jobs, outcomes) if not harness.passed(res, tok)]
    if bad:
        raise ValueError(f"{source}: the tests of {len(bad)} problem(s) fail their own "
                         f"canonical_solution: {', '.join(bad[:10])}")
    _CHECKED.add(hash(key))


def _read_jsonl(source: str) -> list:
    from rstar.data import DataError, Problem

    out = []
    with open(source, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{source}:{line_no}"
            try:
                row = json.loads(line)
            except ValueError as e:
                raise DataError(f"{where}: not JSON ({e})") from None
            pid = row.get("task_id") or row.get("id")
            prompt = row.get("prompt") or row.get("question")
            if not pid or not isinstance(prompt, str) or not prompt.strip():
                raise DataError(f"{where}: needs task_id (or id) and prompt (or question)")
            gold = harness.make_gold(row.get("test") or "", row.get("entry_point") or "", prompt)
            try:
                harness.parse_gold(gold, f"{where} ({pid})")
            except ValueError as e:
                raise DataError(str(e)) from None
            meta = {k: v for k, v in row.items() if k not in ("test", "prompt", "question")}
            out.append(Problem(id=str(pid), question=prompt, answer=gold, meta=meta))
    return out


class CodeDomain:
    """Function-writing problems verified by hidden unit tests: generated ones (``tasks``, with
    a scripted teacher) for the offline loop, HumanEval or JSONL files for real models."""

    name = "code"
    preload = ("typing",)   # HumanEval prompts import it; importing it per job costs ~10 ms
    generated = True
    verifier = CodeVerifier()

    def problems(self, n, seed, difficulties=(), prefix="code"):
        from .tasks import generate

        return generate(n, seed, tuple(difficulties) or tuple(range(1, 9)), prefix=prefix or "code")

    def load(self, source: str) -> list:
        return load_code_problems(source)

    def audit(self, question: str, solution: str) -> tuple[int, bool]:
        """(the task's difficulty, whether a solution writes the teacher's statement for every
        clause, in order). Stricter than being right: a program that differs only where the
        task's other steps make no difference also passes every test (docs/results.md)."""
        import re

        from .tasks import parse_prompt
        from .teacher import statement

        _, var, clauses, _ = parse_prompt(question)
        written = re.findall(rf"^\s+({re.escape(var)} = .*?)\s*$", solution, re.M)
        return len(clauses), written == [statement(c, var) for c in clauses]

    def teacher(self, error_rate, fmt):
        from .teacher import CodeTeacher

        return CodeTeacher(error_rate=error_rate, fmt=fmt)
