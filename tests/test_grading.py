"""Tests for rstar.grading: unit cases, thread safety, pathological inputs,
and agreement on the real benchmark files (skipped if the data is absent).

Misses on real data are printed (visible with `pytest -rA`) and summarised
in a warning so they also show up in the default warnings summary."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rstar import grading
from rstar.grading import equivalent, extract_answer, normalize_answer

DATA_DIR = Path(os.environ.get("RSTAR_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
requires_data = pytest.mark.skipif(
    not DATA_DIR.is_dir(), reason=f"benchmark data not found at {DATA_DIR} (set RSTAR_DATA_DIR)"
)


def _jsonl(name: str) -> list[dict[str, Any]]:
    with open(DATA_DIR / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _rstar(name: str) -> list[dict[str, Any]]:
    return json.loads((DATA_DIR / "rstar_math_eval" / name).read_text(encoding="utf-8"))


def _report(label: str, misses: list[Any], total: int) -> float:
    rate = (total - len(misses)) / total
    print(f"\n{label}: {total - len(misses)}/{total} agree ({rate:.2%})")
    for m in misses:
        print(f"  MISS {m!r}")
    if misses:
        warnings.warn(f"{label}: {len(misses)} of {total} disagree (see -rA output)", stacklevel=2)
    return rate


# ------------------------------------------------------------- extraction

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
        (r"\boxed{\left\{ x^{2} \right\}}", r"\left\{ x^{2} \right\}"),  # nested + escaped braces
        (r"\boxed{\{1,2\}}", r"\{1,2\}"),
        (r"our answer is $\boxed 2$.", "2"),  # MATH train style
        (r"$x^2 + y^2 = \boxed 9$.", "9"),
        (r"\boxed {17}.", "17"),
        (r"first \boxed{1}, then \boxed{2}, finally \boxed{ 3 }", "3"),  # last wins, stripped
        (r"Find $\fbox{12}$.", "12"),
        (r"\boxed{5} then truncated \boxed{\frac{1}{", "5"),  # unclosed last box
        ("no box here", None),
        ("", None),
        (r"\boxedx{3}", None),  # a different command, not \boxed
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


# ------------------------------------------------------------ equivalence

EQUAL = [
    ("28", "28.0"),
    ("1,000", "1000"),
    (r"\frac{1}{2}", "0.5"),
    (r"\dfrac12", r"\frac{1}{2}"),
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
    ("x+1", "1+x"),
    ("$10-4 n$", "10-4n"),
    (r"\text{Evelyn}", "Evelyn"),
    ("3/4", r"\frac{3}{4}"),
    ("025", "25"),
    ("18 dollars", "18"),
    (r"\$18", "18"),
    (r"45^\circ", "45"),
    (r"x = 5", "5"),
    (r"1.5 \times 10^{5}", "150000"),
    (r"(0.5, 2)", r"\left(\frac{1}{2}, 2\right)"),  # element-wise tuple
    (r"[1, 2)", r"[1,2)"),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}"),
    (r"\sqrt{2}/2", r"\frac{\sqrt{2}}{2}"),
    (r"the answer is \boxed{7}", "7"),  # a whole solution as pred
]
NOT_EQUAL = [
    ("27", "28"),
    ("(1,2)", "(2,1)"),
    ("[1,2)", "(1,2)"),
    ("1000000", "1000001"),  # within 1e-6 relative, but exact integers differ
    ("2x", "2"),
    ("10 and 20", "10"),
    ("x+1", "x-1"),
    (r"\frac{1}{3}", "0.3"),
    ("Evelyn", "Bob"),
]


@pytest.mark.parametrize(("pred", "gold"), EQUAL)
def test_equivalent_true(pred: str, gold: str) -> None:
    assert equivalent(pred, gold)


@pytest.mark.parametrize(("pred", "gold"), NOT_EQUAL)
def test_equivalent_false(pred: str, gold: str) -> None:
    assert not equivalent(pred, gold)


@pytest.mark.parametrize("pred", [None, "", "   ", "$$"])
def test_equivalent_empty_prediction_is_false(pred: str | None) -> None:
    assert equivalent(pred, "1") is False


def test_normalize_answer_strips_presentation() -> None:
    assert normalize_answer(r"$\left( 3, \dfrac{\pi}{2} \right)$") == r"(3,\frac{\pi}{2})"
    assert normalize_answer(r"\text{Evelyn}.") == "Evelyn"
    assert normalize_answer(r"10\%") == "10"
    assert normalize_answer(r"a \\ b") == r"a\\b"  # row break survives


PATHOLOGICAL = [
    r"9^{9^{9^9}}",
    r"10^{10^{10}}",
    "9**9**9",
    r"2^{387420489}",
    "1000000000!",
    "{" * 2000 + "1" + "}" * 2000,
    r"\frac{" * 300 + "1" + "}{2}" * 300,
    "1" * 50_000,
    ("x+" * 3000) + "1",
    "5 " + "word " * 990 + "42",  # long prose (under the 5000-char cap):
    "5 " + "abcdefgh" * 600 + "!",  # a units regex once backtracked exponentially
    "word " * 20_000 + "42",  # over the cap: exact string compare only
    r"\boxed{" * 5000,
]


@pytest.mark.parametrize("bad", PATHOLOGICAL, ids=lambda s: s[:20])
def test_pathological_input_is_fast(bad: str) -> None:
    for pred, gold in ((bad, "3"), ("3", bad)):
        start = time.monotonic()
        assert equivalent(pred, gold) is False
        assert time.monotonic() - start < 2.0


def test_pathological_input_is_fast_off_main_thread() -> None:
    # Off the main thread there is no signal timeout: the guards must hold.
    def run() -> list[float]:
        times = []
        for bad in PATHOLOGICAL:
            start = time.monotonic()
            equivalent(bad, "7")  # gold "7": not cached by the main-thread test
            times.append(time.monotonic() - start)
        return times

    with ThreadPoolExecutor(1) as pool:
        times = pool.submit(run).result(timeout=60)
    assert max(times) < 2.0, times


SLOW_SYMBOLIC = [  # Python-level sympy work no pre-check catches; unbounded took 24 s+
    r"(\sin(x)+\cos(x)+\tan(x)+x)^{10}",
    r"\sum_{k=1}^{999} k^{k}",
]


def _bounded_and_clean(expr: str, gold: str) -> float:
    """Grade `expr`, then keep running Python in the same thread: a stray
    budget exception delivered late would surface in the loop."""
    start = time.monotonic()
    assert equivalent(expr, gold) is False
    elapsed = time.monotonic() - start
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        sum(range(100))
    return elapsed


@pytest.mark.parametrize("expr", SLOW_SYMBOLIC)
def test_slow_symbolic_input_is_bounded(expr: str) -> None:
    limit = grading.MATH_VERIFY_BUDGET_S + 2.0  # + polling, unwinding, load
    assert _bounded_and_clean(expr, "3") < limit  # main thread
    with ThreadPoolExecutor(2) as pool:  # worker threads, concurrently
        # Different golds: the same pair would be answered from the cache.
        times = list(pool.map(_bounded_and_clean, [expr, expr], ["4", "5"], timeout=60))
    assert max(times) < 2 * limit, times  # two threads share one GIL


def _check_all(offset: int) -> list[str]:
    """Run every unit case; distinct variable names per call defeat the
    lru_cache so math-verify really runs in this thread."""
    v = f"z_{{{offset}}}"
    cases = [(p, g, True) for p, g in EQUAL] + [(p, g, False) for p, g in NOT_EQUAL]
    cases += [(f"{v}+1", f"1+{v}", True), (f"2{v}", f"{v}+{v}", True), (f"{v}^2", f"2{v}", False)]
    return [f"{p!r} vs {g!r}" for p, g, want in cases if equivalent(p, g) is not want]


def test_equivalent_in_thread() -> None:
    errors: list[BaseException] = []
    wrong: list[str] = []

    def target() -> None:
        try:
            wrong.extend(_check_all(1))
        except BaseException as e:  # noqa: BLE001 - surfaced below
            errors.append(e)

    t = threading.Thread(target=target)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive()
    assert not errors and not wrong, (errors, wrong)


def test_equivalent_in_thread_pool() -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_check_all, range(10, 18), timeout=120))
    assert results == [[]] * 8


def test_outer_alarm_survives_math_verify() -> None:
    # math-verify's signal.alarm(0) would cancel e.g. pytest-timeout's timer.
    old_handler = signal.getsignal(signal.SIGALRM)
    old_timer = signal.getitimer(signal.ITIMER_REAL)
    signal.signal(signal.SIGALRM, lambda *_: None)
    signal.setitimer(signal.ITIMER_REAL, 300.0)
    try:
        assert equivalent("w_{1}+3", "3+w_{1}")  # reaches math-verify
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 0 < remaining <= 300.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, *old_timer)
        signal.signal(signal.SIGALRM, old_handler)


@settings(max_examples=60, deadline=None)
@given(st.fractions(min_value=-10**6, max_value=10**6, max_denominator=10**4))
def test_fraction_forms_agree(q: Any) -> None:
    latex = rf"\frac{{{q.numerator}}}{{{q.denominator}}}" if q.denominator != 1 else str(q.numerator)
    assert equivalent(latex, f"{q.numerator}/{q.denominator}")
    assert equivalent(f"{float(q):.12g}", latex)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789{}^\\$()[],.=+-*/ xfracboxed")), max_size=60),
       st.text(max_size=20))
def test_equivalent_never_raises(pred: str, gold: str) -> None:
    assert equivalent(pred, gold) in (True, False)


# -------------------------------------------------------------- real data

@requires_data
def test_math500_boxed_solution_matches_answer() -> None:
    rows = _jsonl("math500_test.jsonl")
    misses = [(r["unique_id"], extract_answer(r["solution"]), r["answer"]) for r in rows
              if not equivalent(extract_answer(r["solution"]), r["answer"])]
    assert len(rows) == 500
    assert _report("MATH-500 boxed(solution) vs answer", misses, len(rows)) >= 0.99


@requires_data
def test_no_false_positives_on_shuffled_math500() -> None:
    """Guards against over-eager normalisation: pair each gold answer with a
    different problem's answer (fixed permutation); none may match unless
    the two strings are identical.  (~4 s: every pair reaches math-verify.)"""
    golds = [r["answer"] for r in _jsonl("math500_test.jsonl")]
    others = golds[7:] + golds[:7]
    hits = [(p, g) for p, g in zip(others, golds) if p != g and equivalent(p, g)]
    _report("MATH-500 shuffled pairs judged different", hits, len(golds))
    assert hits == []


@requires_data
def test_math_full_vs_rstar_copy() -> None:
    # All 5000 rows (~1 s: nearly every pair settles on the cheap string path).
    full, rstar = _jsonl("math_full_test.jsonl"), _rstar("MATH_test.json")
    assert len(full) == len(rstar) == 5000
    assert all(a["problem"] == b["question"] for a, b in zip(full, rstar))
    misses = []
    for a, b in zip(full, rstar):
        gold = ", ".join(b["answer"]) if isinstance(b["answer"], list) else b["answer"]
        if not equivalent(extract_answer(a["solution"]), gold):
            misses.append((a["idx"], extract_answer(a["solution"]), gold))
    # Known: 12 multi-solution problems where the last \boxed holds one of
    # several answers and rStar's copy lists them all.
    assert _report("MATH-5000 last boxed vs rStar MATH_test.json", misses, len(full)) >= 0.99


@requires_data
def test_gsm8k_answers_are_integers_and_match_rstar() -> None:
    gold = [r["answer"].rsplit("####", 1)[1].strip().replace(",", "") for r in _jsonl("gsm8k_test.jsonl")]
    assert all(re.fullmatch(r"-?\d+", g) for g in gold), [g for g in gold if not re.fullmatch(r"-?\d+", g)]
    ints = [int(g) for g in gold]
    rstar = [r["answer"] for r in _rstar("GSM8K_test.json")]
    assert len(ints) == len(rstar) == 1319
    assert sum("," in a for a in rstar) == 14  # MANIFEST: separators kept on 14 rows
    misses = [(i, a, b) for i, (a, b) in enumerate(zip(ints, rstar)) if a != int(b.replace(",", ""))]
    assert _report("GSM8K #### vs rStar GSM8K_test.json", misses, 1319) == 1.0
    assert all(equivalent(b, str(a)) for a, b in zip(ints, rstar))


@requires_data
def test_aime24_padded_answers_match_rstar() -> None:
    ours, rstar = _jsonl("aime24_test.jsonl"), _rstar("aime2024_test.json")
    assert sum(r["answer"].startswith("0") for r in ours) == 7
    misses = [(a["answer"], b["answer"]) for a, b in zip(ours, rstar) if not equivalent(b["answer"], a["answer"])]
    assert _report("AIME24 vs rStar copy", misses, 30) == 1.0


@requires_data
def test_amc23_float_answers_match_rstar() -> None:
    ours, rstar = _jsonl("amc23_test.jsonl"), _rstar("amc23_test.json")
    assert all(isinstance(r["answer"], float) for r in ours)
    misses = [(a["answer"], b["answer"]) for a, b in zip(ours, rstar)
              if not equivalent(b["answer"], str(a["answer"]))]
    assert _report("AMC23 floats vs rStar strings", misses, 40) == 1.0


@requires_data
@pytest.mark.parametrize(("ours", "theirs"), [
    ("gaokao2023en", "rstar_gaokao2023en"),
    ("olympiadbench", "rstar_olympiadbench"),
    ("collegemath", "rstar_collegemath"),
    ("math500", "rstar_math500"),
])
def test_loaded_copies_agree(ours: str, theirs: str) -> None:
    """Gold answers of the two staged copies, as our loaders produce them."""
    from rstar.data import load_benchmark

    a = load_benchmark(ours, DATA_DIR, skip_bad=True)
    b = load_benchmark(theirs, DATA_DIR, skip_bad=True)
    assert len(a) == len(b)
    misses = [(x.id, x.answer, y.answer) for x, y in zip(a, b) if not equivalent(y.answer, x.answer)]
    assert _report(f"{ours} vs {theirs}", misses, len(a)) >= 0.99


def test_boxed_solutions_grade_against_the_answers_on_the_repos_own_rows() -> None:
    """The same check as on MATH-500 above, on tests/data's rows (runs without the data)."""
    rows = [json.loads(line) for line in
            (Path(__file__).parent / "data" / "math500_test.jsonl").read_text().splitlines()]
    for r in rows:
        assert equivalent(extract_answer(r["solution"]), r["answer"]), r["unique_id"]
    # ...and a wrong answer from another row never matches.
    for r, other in zip(rows, rows[1:] + rows[:1]):
        assert not equivalent(extract_answer(r["solution"]), other["answer"])
