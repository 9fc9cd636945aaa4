"""Benchmark and user-data loaders producing one record type, `Problem`.

Every source file is validated row by row.  A bad row is a `DataError`
naming file, line and field; with ``skip_bad=True`` it is skipped, but never
silently: the skipped rows land in a `LoadReport` (pass one in to inspect
them) and a warning with the count and first reasons is logged.
"""

from __future__ import annotations

import bisect
import gzip
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from rstar.grading import extract_answer

__all__ = [
    "BENCHMARKS", "Benchmark", "DataError", "LoadReport", "Problem",
    "default_data_dir", "list_benchmarks", "load_benchmark", "load_jsonl",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    answer: str
    # hash=False: meta is a dict (unhashable); problems still hash by content.
    meta: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "question": self.question, "answer": self.answer, "meta": dict(self.meta)}


class DataError(ValueError):
    """Malformed input; the message always says where (file:line, field)."""


@dataclass
class LoadReport:
    """Outcome of one load; filled in when passed to a loader."""

    path: str = ""
    loaded: int = 0
    skipped: list[DataError] = field(default_factory=list)

    def summary(self, first: int = 3) -> str:
        reasons = "; ".join(str(e) for e in self.skipped[:first])
        more = f" (+{len(self.skipped) - first} more)" if len(self.skipped) > first else ""
        return f"{self.path}: loaded {self.loaded}, skipped {len(self.skipped)} bad rows: {reasons}{more}"


class _FieldError(Exception):
    """Raised by adapters; the loader adds file/line to build a DataError."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"field {field_name!r}: {reason}")


class _Parsed(NamedTuple):
    native_id: Any  # None -> fall back to the row position
    question: str
    answer: str
    meta: dict[str, Any]


Adapter = Callable[[dict[str, Any]], _Parsed]


class Benchmark(NamedTuple):
    file: str  # relative to the data dir
    adapter: Adapter


# ------------------------------------------------------------ field helpers

_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def _text(row: dict[str, Any], name: str) -> str:
    if name not in row:
        raise _FieldError(name, "missing")
    value = row[name]
    if value is None:
        raise _FieldError(name, "null")
    if not isinstance(value, str):
        raise _FieldError(name, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise _FieldError(name, "empty")
    return value


def _answer(row: dict[str, Any], name: str) -> str:
    """Answers may be numbers in the source (AMC23 stores 27.0): render
    integral floats as integers so "27.0" never leaks into exact matching."""
    if name not in row:
        raise _FieldError(name, "missing")
    value = row[name]
    if isinstance(value, bool):  # bool is an int subclass; never an answer
        raise _FieldError(name, "expected a string or number, got bool")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return _text(row, name).strip()


def _no_dollars(s: str) -> str:
    """Drop inline-math delimiters but keep escaped `\\$` (currency)."""
    return _UNESCAPED_DOLLAR.sub("", s).strip()


def _rest(row: dict[str, Any], *used: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in used}


def _nonempty(name: str, answer: str) -> str:
    if not answer.strip():
        raise _FieldError(name, "empty")
    return answer


# ---------------------------------------------------------------- adapters

def _gsm8k(row: dict[str, Any]) -> _Parsed:
    rationale = _text(row, "answer")
    if "####" not in rationale:
        raise _FieldError("answer", "no '####' final-answer marker")
    gold = rationale.rsplit("####", 1)[1].strip().replace(",", "")
    return _Parsed(None, _text(row, "question"), _nonempty("answer", gold), {"solution": rationale})


def _math500(row: dict[str, Any]) -> _Parsed:
    return _Parsed(row.get("unique_id"), _text(row, "problem"), _answer(row, "answer"),
                   _rest(row, "problem", "answer", "unique_id"))


def _boxed_solution(row: dict[str, Any]) -> str:
    found = extract_answer(_text(row, "solution"))
    if not found:
        raise _FieldError("solution", "no non-empty \\boxed{} answer")
    return found


def _math_full(row: dict[str, Any]) -> _Parsed:
    return _Parsed(row.get("idx"), _text(row, "problem"), _boxed_solution(row), _rest(row, "problem", "idx"))


def _math_train(row: dict[str, Any]) -> _Parsed:
    # The staged file pre-extracted `answer`; it is null where the solution
    # uses `\boxed 2` (no braces), so recover those from the solution.
    answer = _boxed_solution(row) if row.get("answer", "") is None else _answer(row, "answer")
    return _Parsed(row.get("unique_id"), _text(row, "problem"), answer,
                   _rest(row, "problem", "answer", "unique_id"))


def _minerva(row: dict[str, Any]) -> _Parsed:
    return _Parsed(row.get("idx"), _text(row, "problem"), _boxed_solution(row), _rest(row, "problem", "idx"))


def _qwen_style(row: dict[str, Any]) -> _Parsed:
    """AIME24 / AMC23 (Qwen2.5-Math copies): `problem` + `answer` + `id`.
    AIME answers stay as shipped ("025"); grading compares numerically."""
    return _Parsed(row.get("id"), _text(row, "problem"), _answer(row, "answer"),
                   _rest(row, "problem", "answer", "id"))


def _dollar_answer(row: dict[str, Any]) -> _Parsed:
    """Gaokao / College Math: answers are wrapped in `$...$`."""
    answer = _nonempty("answer", _no_dollars(_answer(row, "answer")))
    return _Parsed(None, _text(row, "question"), answer, _rest(row, "question", "answer"))


def _olympiadbench(row: dict[str, Any]) -> _Parsed:
    question = _text(row, "question")
    context = row.get("context")
    if isinstance(context, str) and context.strip():
        question = f"{context.strip()}\n{question}"
    finals = row.get("final_answer")
    if not isinstance(finals, list) or not finals:
        raise _FieldError("final_answer", "expected a non-empty list")
    if not all(isinstance(a, str) and _no_dollars(a) for a in finals):
        raise _FieldError("final_answer", "contains an empty or non-string item")
    # final_answer stays in meta as a list for unordered multi-answer grading.
    answer = ", ".join(_no_dollars(a) for a in finals)
    return _Parsed(row.get("id"), question, answer, _rest(row, "question", "id"))


def _humaneval(row: dict[str, Any]) -> _Parsed:
    # The gold of the code domain (rstar.domains.code): hidden tests, entry point, and the
    # prompt's code (imports, helpers), which runs before the candidate's.
    entry_point, task_id = _text(row, "entry_point"), _text(row, "task_id")
    answer = json.dumps({"test": _text(row, "test"), "entry_point": entry_point,
                         "prompt": _text(row, "prompt")})
    return _Parsed(task_id, _text(row, "prompt"), answer,
                   {**_rest(row, "prompt", "test"), "entry_point": entry_point, "task_id": task_id})


def _rstar(row: dict[str, Any]) -> _Parsed:
    """rStar eval copies: `index`, `question`, `answer`; MATH_test.json has 4
    multi-solution rows whose answer is a list."""
    value = row.get("answer")
    if isinstance(value, list):
        if not value or not all(isinstance(a, str) and a.strip() for a in value):
            raise _FieldError("answer", "list with empty or non-string items")
        answer = ", ".join(a.strip() for a in value)
    else:
        answer = _answer(row, "answer")
    return _Parsed(row.get("index"), _text(row, "question"), answer, _rest(row, "question", "answer", "index"))


def _rstar_gsm8k(row: dict[str, Any]) -> _Parsed:
    # 14 answers keep thousands separators ("2,125"); match the GSM8K loader.
    parsed = _rstar(row)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", parsed.answer):
        parsed = parsed._replace(answer=parsed.answer.replace(",", ""))
    return parsed


BENCHMARKS: dict[str, Benchmark] = {
    "gsm8k": Benchmark("gsm8k_test.jsonl", _gsm8k),
    "gsm8k_train": Benchmark("gsm8k_train.jsonl", _gsm8k),
    "math500": Benchmark("math500_test.jsonl", _math500),
    "math": Benchmark("math_full_test.jsonl", _math_full),
    "math_train": Benchmark("math_train.jsonl", _math_train),
    "minerva": Benchmark("minerva_math_test.jsonl", _minerva),
    "aime24": Benchmark("aime24_test.jsonl", _qwen_style),
    "amc23": Benchmark("amc23_test.jsonl", _qwen_style),
    "gaokao2023en": Benchmark("gaokao2023en_test.jsonl", _dollar_answer),
    "olympiadbench": Benchmark("olympiadbench_test.jsonl", _olympiadbench),
    "collegemath": Benchmark("college_math_test.jsonl", _dollar_answer),
    "humaneval": Benchmark("HumanEval.jsonl", _humaneval),
    "rstar_gsm8k": Benchmark("rstar_math_eval/GSM8K_test.json", _rstar_gsm8k),
    "rstar_math": Benchmark("rstar_math_eval/MATH_test.json", _rstar),
    "rstar_math500": Benchmark("rstar_math_eval/math500_test.json", _rstar),
    "rstar_aime24": Benchmark("rstar_math_eval/aime2024_test.json", _rstar),
    "rstar_amc23": Benchmark("rstar_math_eval/amc23_test.json", _rstar),
    "rstar_gaokao2023en": Benchmark("rstar_math_eval/gaokao2023en_test.json", _rstar),
    "rstar_olympiadbench": Benchmark("rstar_math_eval/olympiadbench_test.json", _rstar),
    "rstar_collegemath": Benchmark("rstar_math_eval/collegemath_test.json", _rstar),
    "rstar_omni": Benchmark("rstar_math_eval/omni_test.json", _rstar),
}


def list_benchmarks() -> list[str]:
    return list(BENCHMARKS)


# ------------------------------------------------------------------ reading

def _read_text(path: Path) -> str:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8-sig") as f:
                return f.read()
        return path.read_text(encoding="utf-8-sig")  # -sig: tolerate a BOM
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read: {e}") from e


def _records(path: Path) -> Iterator[tuple[str, int, Any]]:
    """Yield (location, position, parsed object or DataError) per row, where
    position is the 1-based line (JSONL) or 0-based item index (`.json`
    arrays; each element is decoded separately so its line is known)."""
    text = _read_text(path)
    is_array = path.name.removesuffix(".gz").endswith(".json")
    if not is_array:
        # split("\n"), not splitlines(): JSON strings may hold raw U+2028 etc.
        for lineno, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue  # blank lines (e.g. trailing) carry no row
            try:
                yield f"{path}:{lineno}", lineno, json.loads(line)
            except json.JSONDecodeError as e:
                yield f"{path}:{lineno}", lineno, DataError(f"{path}:{lineno}: invalid JSON: {e}")
        return
    newlines = [m.start() for m in re.finditer("\n", text)]
    decoder, ws = json.JSONDecoder(), re.compile(r"\s*")
    pos = ws.match(text, 0).end()  # type: ignore[union-attr]
    if text[pos : pos + 1] != "[":
        raise DataError(f"{path}: expected a JSON array (top-level '[')")
    pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]
    item = 0
    while text[pos : pos + 1] != "]":
        lineno = bisect.bisect_left(newlines, pos) + 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            # After a syntax error there is no reliable resync point.
            raise DataError(f"{path}:{e.lineno}: invalid JSON: {e}") from None
        yield f"{path}:{lineno}: item {item}", item, obj
        item += 1
        pos = ws.match(text, pos).end()  # type: ignore[union-attr]
        if text[pos : pos + 1] == ",":
            pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]
        elif text[pos : pos + 1] != "]":
            lineno = bisect.bisect_left(newlines, pos) + 1
            raise DataError(f"{path}:{lineno}: invalid JSON: expected ',' or ']' after item {item - 1}")


def _load(path: Path, adapter: Adapter, id_prefix: str, skip_bad: bool,
          report: LoadReport | None, id_as_is: bool = False) -> list[Problem]:
    return from_records(_records(path), str(path), adapter, id_prefix, skip_bad, report, id_as_is)


def from_records(records, label: str, adapter: Adapter, id_prefix: str, skip_bad: bool,
                 report: LoadReport | None, id_as_is: bool = False) -> list[Problem]:
    """Problems from ``(where, position, row)`` triples (a file's lines, a Hub dataset's rows):
    every row through ``adapter``, duplicate ids refused, bad rows raised or reported."""
    rep = report if report is not None else LoadReport()
    rep.path, rep.loaded, rep.skipped = label, 0, []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for where, position, obj in records:
        try:
            if isinstance(obj, DataError):
                raise obj
            if not isinstance(obj, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            try:
                native, question, answer, meta = adapter(obj)
            except _FieldError as e:
                raise DataError(f"{where}: {e}") from None
            if native is None:  # no id in the data: use the row's position
                native = position
            pid = str(native) if id_as_is else f"{id_prefix}/{native}"
            if pid in seen:
                raise DataError(f"{where}: duplicate id {pid!r} (first at {seen[pid]})")
            seen[pid] = where
            problems.append(Problem(pid, question, answer, meta))
        except DataError as e:
            if not skip_bad:
                raise
            rep.skipped.append(e)
    rep.loaded = len(problems)
    if rep.skipped:
        logger.warning("%s", rep.summary())
    return problems


# ------------------------------------------------------------------- public

def load_jsonl(path: str | os.PathLike[str], *, question_field: str = "question",
               answer_field: str = "answer", id_field: str | None = None,
               skip_bad: bool = False, report: LoadReport | None = None) -> list[Problem]:
    """Load any JSONL (or `.json` array, `.gz` too) of question/answer rows.

    Ids are `<file stem>/<line number>` unless `id_field` names a column, in
    which case its value is used verbatim.  Numeric answers become strings."""
    p = Path(path)

    def adapter(row: dict[str, Any]) -> _Parsed:
        native = None
        if id_field is not None:
            if row.get(id_field) is None or str(row[id_field]).strip() == "":
                raise _FieldError(id_field, "missing" if id_field not in row else "empty")
            native = row[id_field]
        return _Parsed(native, _text(row, question_field), _answer(row, answer_field),
                       _rest(row, question_field, answer_field))

    stem = p.name.split(".")[0]
    return _load(p, adapter, stem, skip_bad, report, id_as_is=id_field is not None)


def default_data_dir() -> Path:
    """$RSTAR_DATA_DIR, else the shared data checkout next to the repo
    (<repo>/../shared/data), else ./data."""
    env = os.environ.get("RSTAR_DATA_DIR")
    if env:
        return Path(env)
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    return shared if shared.is_dir() else Path("data")


def load_benchmark(name: str, data_dir: str | os.PathLike[str] | None = None, *,
                   skip_bad: bool = False, report: LoadReport | None = None) -> list[Problem]:
    """Load a registered benchmark as `Problem`s with ids `<name>/<native id>`: the local copy
    in ``data_dir`` (default: `default_data_dir`) when it has one, else, for the benchmarks
    with a public Hub dataset (`rstar.hub.HUB`), that dataset through `datasets`."""
    if name not in BENCHMARKS:
        raise DataError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
    spec = BENCHMARKS[name]
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    local = root / spec.file
    if not local.exists():
        from rstar import hub

        if name in hub.HUB:
            return hub.load(name, skip_bad=skip_bad, report=report, local=local)
    return _load(local, spec.adapter, name, skip_bad, report)
