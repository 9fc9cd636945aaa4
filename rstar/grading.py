"""Answer extraction and equivalence checking for math benchmarks.

`equivalent(pred, gold)` is an OR of checks; any one saying "equal" wins, so
their order cannot change a result and the cheap pure-Python ones (normalised
strings, numbers, element-wise tuples) run before math-verify/sympy, which is
~100x slower.  Most hits never reach sympy.

Bounding time.  math-verify's own timeouts use `signal.alarm`, which works
only in the main thread, so they are passed there and None elsewhere (Ray
threaded actors, thread pools).  Every call also gets a CPU budget enforced
by a watchdog thread (`rstar.budget`), and inputs whose cost lies in one
uninterruptible C call (huge integer powers) are screened out before sympy
sees them (`_too_expensive`).
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from fractions import Fraction
from functools import lru_cache

from math_verify import parse, verify

from rstar.budget import Overrun, keep_outer_alarm, watchdog

__all__ = ["extract_answer", "equivalent", "normalize_answer"]

MAX_ANSWER_CHARS = 5_000  # longer: exact string compare only (no real answer is)
MAX_VERIFY_CHARS = 1_000  # longer: no sympy (its cost grows super-linearly)
MAX_BRACE_DEPTH = 40  # deeper nesting risks recursion blow-ups in the parser
MAX_POWER_DIGITS = 1_000_000  # 2**100000 is instant; 9**387420489 never ends
PARSE_TIMEOUT_S = 2  # main thread only; signal.alarm takes whole seconds
VERIFY_TIMEOUT_S = 2
# CPU-time budget for one math-verify call, in every thread (`rstar.budget`).
MATH_VERIFY_BUDGET_S = 1.5
REL_TOL = 1e-6


# math-verify warns when its timeouts are None; off the main thread that is
# deliberate here (`_Watchdog` bounds time), so the warning is just noise.
for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(lambda r: not r.getMessage().startswith("Timeout is disabled"))


# ---------------------------------------------------------------- extraction

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_TOKEN = re.compile(r"[^\s$]+")


def _brace_pairs(text: str) -> dict[int, int]:
    """Index of each `{` -> its matching `}`, in one pass (per-box scanning
    is quadratic on junk like 5000 unclosed boxes).  Escaped `\\{`, `\\}`
    (literal set braces) are not grouping braces."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    for i, ch in enumerate(text):
        if ch in "{}" and text[i - 1 : i] != "\\":
            if ch == "{":
                stack.append(i)
            elif stack:
                pairs[stack.pop()] = i
    return pairs


def extract_answer(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` / ``\fbox{...}`` / ``\boxed 9``.

    The last *complete* box wins, so an unclosed one (truncated generation)
    falls back to the previous answer."""
    boxes = list(_BOX_RE.finditer(text or ""))
    pairs = _brace_pairs(text) if boxes else {}
    for m in reversed(boxes):
        i = m.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "{":
            if i in pairs:
                return text[i + 1 : pairs[i]].strip()
        elif i > m.end():
            # `\boxed 2$.` (MATH train): TeX takes one token; we take the run
            # up to whitespace/`$` like Hendrycks' extractor, minus end punct.
            tok = _TOKEN.match(text, i)
            if tok and tok.group(0).rstrip(".,;"):
                return tok.group(0).rstrip(".,;")
    return None


# ------------------------------------------------------------- normalising

_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|mbox|mathrm|mathbf|operatorname)\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\[!,;: ]|~|\\q?quad")
_FRAC_SHORT = re.compile(r"\\frac\s*(\d)\s*(\d)")  # \frac12 -> \frac{1}{2}
_FRAC_HALF = re.compile(r"\\frac\s*\{([^{}]*)\}\s*(\d)")  # \frac{a}2
_SQRT_SHORT = re.compile(r"\\sqrt\s*(\w)")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°")
# "10 cm", "3 square m^2": a number then only words.  Mandatory whitespace
# between words keeps it linear (`(?:[A-Za-z]{2,}\s*)+$` backtracked
# exponentially on prose); 2+ letters in the first word keep "2x" intact.
_NUM_WITH_UNIT = re.compile(
    r"\s*([-+]?[\d.,]*\d)\s*[A-Za-z]{2,}(?:\^\{?\d\}?)?(?:\s+[A-Za-z]+(?:\^\{?\d\}?)?)*\.?\s*"
)
_LHS = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?\s*=\s*(?=\S)")


def _strip_dollars(s: str) -> str:
    return _UNESCAPED_DOLLAR.sub("", s).strip()


def normalize_answer(s: str) -> str:
    r"""MATH-style canonical string: drops presentation-only LaTeX
    (``\left``, ``\!``, ``\text{}``, degrees, ``$``, spaces) so answers that
    differ only in typesetting compare equal as strings."""
    # Protect `\\` (row/line breaks) so `\\ ` is not read as `\ ` (a space).
    s = _strip_dollars(str(s)).replace("\\\\", "\x00")
    s = s.replace("\n", " ").replace("\\displaystyle", "")
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\\(?:left|right|[Bb]igg?[lr]?)(?![A-Za-z])", "", s)
    s = s.replace("\\leqslant", "\\le").replace("\\leq", "\\le")
    s = s.replace("\\geqslant", "\\ge").replace("\\geq", "\\ge").replace("\\neq", "\\ne")
    s = _DEGREES.sub("", s)
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "")
    # `\3040`: some copies (rStar's College Math) mangled `\$ 3040` this way;
    # no LaTeX command starts with a digit, so the backslash carries nothing.
    s = re.sub(r"\\(?=\d)", "", s)
    s = _SPACING.sub(" ", s)
    for _ in range(3):  # nested \text{\textbf{..}}; bounded, never loops forever
        s = _TEXT_CMD.sub(r"\1", s)
    if m := _NUM_WITH_UNIT.fullmatch(s):
        s = m.group(1)
    s = _LHS.sub("", s)  # "x = 5" -> "5"
    s = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF.sub(r"\\frac{\1}{\2}", s)
    s = _SQRT_SHORT.sub(r"\\sqrt{\1}", s)
    s = re.sub(r"\s+", "", s)
    s = re.sub(r"(?<![\d}])\.(\d)", r"0.\1", s)  # .5 -> 0.5
    s = re.sub(r"(\d)\.0+(?!\d)", r"\1", s)  # 28.0 -> 28
    s = s.rstrip(".")
    if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", s):  # 1,000 -> 1000
        s = s.replace(",", "")
    return s.replace("\x00", "\\\\")


# ----------------------------------------------------------- numeric check

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_SCI = re.compile(rf"({_NUM})\s*(?:\\times|\\cdot|\*|x)\s*10\^\{{?([-+]?\d+)\}}?")
_FRAC_NUM = re.compile(rf"([-+]?)\\frac\{{({_NUM})\}}\{{({_NUM})\}}")
_SLASH_NUM = re.compile(rf"({_NUM})/({_NUM})")


def _to_number(s: str) -> tuple[Fraction | float, bool] | None:
    """(value, exact) for plain numbers, fractions, percentages and
    scientific notation; None for anything symbolic."""
    s = normalize_answer(s)
    if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    try:
        if (m := _SCI.fullmatch(s)) and abs(int(m.group(2))) <= 300:
            return float(m.group(1)) * 10.0 ** int(m.group(2)), False
        if m := _FRAC_NUM.fullmatch(s):
            v = Fraction(m.group(2)) / Fraction(m.group(3))
            return (-v if m.group(1) == "-" else v), True
        if m := _SLASH_NUM.fullmatch(s):
            return Fraction(m.group(1)) / Fraction(m.group(2)), True
        if re.fullmatch(_NUM, s):
            return (float(s), False) if "e" in s.lower() else (Fraction(s), True)
    except (ValueError, ZeroDivisionError, OverflowError):
        pass
    return None


def _numeric_equal(a: str, b: str) -> bool:
    x, y = _to_number(a), _to_number(b)
    if x is None or y is None:
        return False
    (vx, exact_x), (vy, exact_y) = x, y
    # Exact integers must match exactly: 1000000 vs 1000001 is wrong even
    # though it is within the 1e-6 relative tolerance used for decimals.
    if exact_x and exact_y and (vx == vy or Fraction(vx).denominator == Fraction(vy).denominator == 1):
        return vx == vy
    try:
        return math.isclose(float(vx), float(vy), rel_tol=REL_TOL, abs_tol=1e-12)
    except OverflowError:
        return False


# -------------------------------------------------------- tuple/intervals

def _split_top_level(s: str) -> list[str] | None:
    """Split "(a,b,c)" into parts at depth-0 commas; None if not a tuple."""
    if len(s) < 2 or s[0] not in "([" or s[-1] not in ")]":
        return None
    parts, depth, start = [], 0, 1
    for i in range(1, len(s) - 1):
        depth += (s[i] in "([{") - (s[i] in ")]}")
        if depth < 0:
            return None  # "(1)+(2)" is not a tuple
        if s[i] == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:-1])
    return parts if depth == 0 and len(parts) > 1 else None


def _cheap_equal(pred: str, gold: str) -> bool:
    np_, ng = normalize_answer(pred), normalize_answer(gold)
    if np_ and np_ == ng:
        return True
    if _numeric_equal(pred, gold):
        return True
    tp, tg = _split_top_level(np_), _split_top_level(ng)
    if tp and tg and len(tp) == len(tg) and np_[0] + np_[-1] == ng[0] + ng[-1]:
        return all(_cheap_equal(a, b) for a, b in zip(tp, tg))
    return False


# ------------------------------------------------------------ math-verify

_POW = re.compile(r"\^|\*\*")
# Factorials/binomials may run as one C call (gmpy's fac/bincoef when gmpy2
# is installed), which no deadline can interrupt.
_COMBINATORIAL = re.compile(r"\\[dt]?binom(?![A-Za-z])|\\choose(?![A-Za-z])|(?<!\\)!(?!=)")


def _exponents(s: str) -> Iterator[tuple[str, str, int]]:
    """(char before the ^, exponent, index after it) for every ^ / ** in s."""
    for m in _POW.finditer(s):
        before, i = s[m.start() - 1 : m.start()], m.end()
        while i < len(s) and s[i] == " ":
            i += 1
        if i < len(s) and s[i] in "{(":
            close, depth = "}" if s[i] == "{" else ")", 0
            for j in range(i, len(s)):
                depth += (s[j] == s[i]) - (s[j] == close)
                if depth == 0:
                    yield before, s[i + 1 : j], j + 1
                    break
            else:
                yield before, s[i:], len(s)
        else:
            tok = re.match(r"\\?[A-Za-z]+|[\d.]+|.?", s[i:])
            assert tok is not None  # `.?` always matches
            yield before, tok.group(0), i + tok.end()


def _has_variable(s: str) -> bool:
    r"""Letters outside `\commands`, except the constant e: sympy keeps such
    expressions symbolic instead of computing a number."""
    return re.search(r"[A-DF-Za-df-z]", re.sub(r"\\[A-Za-z]+", "", s)) is not None


def _too_expensive(s: str) -> bool:
    """Cheap pre-check for work a deadline cannot interrupt: a single C-level
    big-int operation (9^{9^9} has 369M digits) or parser recursion.  Slow
    Python-level sympy work is bounded by `_Watchdog` instead.  Flagged
    inputs are still compared as strings and numbers; only math-verify is
    skipped."""
    if len(s) > MAX_VERIFY_CHARS:
        return True
    depth = max_depth = 0
    for ch in s:
        depth += (ch == "{") - (ch == "}")
        max_depth = max(max_depth, depth)
    if max_depth > MAX_BRACE_DEPTH:
        return True
    digits = re.findall(r"\d+", s)
    combinatorial = _COMBINATORIAL.search(s) is not None
    if combinatorial and any(len(d) > 4 for d in digits):
        return True  # 51015! overran the budget: long C-level multiplications
    # Digits a power could materialise: longest literal times the product of
    # all numeric exponents catches (10^{900})^{99999} as well as 9^{9^9}.
    budget = max((len(d) for d in digits), default=1)
    for before, exp, end in _exponents(s):
        if _has_variable(exp):
            continue
        if _POW.search(exp) or _POW.match(s[end:].lstrip()):
            return True  # numeric tower
        if combinatorial and before.isdigit():
            return True  # (10^9)!, \binom{10^9}{10^5}
        for num in re.findall(r"\d+", exp):
            budget *= max(int(num), 1) if len(num) <= 6 else MAX_POWER_DIGITS + 1
            if budget > MAX_POWER_DIGITS:
                return True
    # (5!)! or 99!!: a factorial of a factorial outgrows any literal bound.
    return re.search(r"!\s*\)?\s*!", s) is not None


_warm_lock = threading.Lock()
_warmed_up = False


def _mv_parse(tex: str, timeout: int | None) -> list[object]:
    # \boxed{} makes math-verify take the whole string as one expression
    # (`$..$` would trip over `\$` and split on prose like "and").
    return parse(f"\\boxed{{{_strip_dollars(tex)}}}", parsing_timeout=timeout)  # type: ignore[arg-type]


def _warm_up() -> None:
    """First parses build the LaTeX parser's caches (~1 s for a matrix); pay
    that once, under a loose budget, not inside a real call's budget."""
    global _warmed_up
    with _warm_lock:
        if not _warmed_up:
            with watchdog.budget(30.0):
                for tex in (r"\begin{pmatrix}\frac{1}{2}&\sqrt{3}\\x^{2}&y\end{pmatrix}", r"(1,2]\cup\{3\}"):
                    verify(_mv_parse(tex, None), _mv_parse(tex, None), timeout_seconds=None)
            _warmed_up = True


def _math_verify(pred: str, gold: str) -> bool:
    if _too_expensive(pred) or _too_expensive(gold):
        return False
    on_main = threading.current_thread() is threading.main_thread()
    p_to = PARSE_TIMEOUT_S if on_main else None
    v_to = VERIFY_TIMEOUT_S if on_main else None
    try:
        if not _warmed_up:
            _warm_up()
        with keep_outer_alarm() if on_main else nullcontext(), watchdog.budget(MATH_VERIFY_BUDGET_S):
            g, p = _mv_parse(gold, p_to), _mv_parse(pred, p_to)
            return bool(g and p and verify(g, p, timeout_seconds=v_to))
    except (Exception, Overrun):  # noqa: BLE001 - grading must never raise
        return False


# ------------------------------------------------------------------- public

def _grade(pred: str, gold: str) -> bool:
    try:
        if _cheap_equal(pred, gold):
            return True
    except Exception:  # noqa: BLE001 - fall through to math-verify
        pass
    return _math_verify(pred, gold)


# Search rollouts grade the same (pred, gold) pairs over and over.  Only
# short pairs are cached (bounded memory: 8192 x 2 x 1000 chars at most).
_grade_cached = lru_cache(maxsize=8192)(_grade)


def equivalent(pred: str | None, gold: str) -> bool:
    """True if `pred` is mathematically the same answer as `gold`.

    Never raises; False for None/empty predictions.  `gold` is the reference
    (math-verify's comparison is not symmetric)."""
    try:
        if pred is None or gold is None:
            return False
        pred, gold = str(pred).strip(), str(gold).strip()
        if "\\boxed" in pred or "\\fbox" in pred:  # a whole solution was passed
            pred = extract_answer(pred) or ""
        if not pred or not gold:
            return False
        if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
            return pred == gold  # no real answer is this long; don't parse junk
        if len(pred) > MAX_VERIFY_CHARS or len(gold) > MAX_VERIFY_CHARS:
            return _grade(pred, gold)
        return _grade_cached(pred, gold)
    except Exception:  # noqa: BLE001 - e.g. RecursionError from a parser
        return False
