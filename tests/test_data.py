"""Tests for rstar.data: error reporting on bad input (tmp files) and the
registry against the real staged files (skipped if the data is absent)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest

from rstar.data import (
    BENCHMARKS, DataError, LoadReport, Problem, default_data_dir, list_benchmarks,
    load_benchmark, load_jsonl,
)

DATA_DIR = Path(os.environ.get("RSTAR_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
requires_data = pytest.mark.skipif(
    not DATA_DIR.is_dir(), reason=f"benchmark data not found at {DATA_DIR} (set RSTAR_DATA_DIR)"
)


def _write(path: Path, rows: list[Any | str]) -> Path:
    """Rows that are str are written verbatim (to inject broken JSON)."""
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


GOOD = {"question": "1+1?", "answer": "2"}


# ---------------------------------------------------------------- bad input

def test_malformed_row_names_file_and_line(tmp_path: Path) -> None:
    f = _write(tmp_path / "broken.jsonl", [GOOD, GOOD, '{"question": "x", "answer": ', GOOD])
    with pytest.raises(DataError, match=r"broken\.jsonl:3: invalid JSON: Expecting value"):
        load_jsonl(f)


def test_missing_answer_names_file_line_and_field(tmp_path: Path) -> None:
    f = _write(tmp_path / "qa.jsonl", [GOOD, {"question": "no answer here"}])
    with pytest.raises(DataError, match=r"qa\.jsonl:2: field 'answer': missing$"):
        load_jsonl(f)


@pytest.mark.parametrize(("row", "reason"), [
    ({"question": "q", "answer": ""}, "field 'answer': empty"),
    ({"question": "q", "answer": None}, "field 'answer': null"),
    ({"question": "q", "answer": True}, "field 'answer': expected a string or number, got bool"),
    ({"question": "", "answer": "1"}, "field 'question': empty"),
    ({"question": ["q"], "answer": "1"}, "field 'question': expected a string, got list"),
    ([1, 2], "expected a JSON object, got list"),
])
def test_bad_field_values(tmp_path: Path, row: Any, reason: str) -> None:
    f = _write(tmp_path / "bad.jsonl", [row])
    with pytest.raises(DataError, match=re.escape(f"bad.jsonl:1: {reason}")):
        load_jsonl(f)


def test_unknown_benchmark_lists_known_names() -> None:
    with pytest.raises(DataError, match=r"unknown benchmark 'foo' \(known: gsm8k, .*math500.*\)") as e:
        load_benchmark("foo")
    assert all(name in str(e.value) for name in list_benchmarks())


def test_missing_file_names_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'nope.jsonl'}: file not found")):
        load_jsonl(tmp_path / "nope.jsonl")
    # A benchmark without a Hub source (rstar.hub.HUB); those with one: test_hub_fallback_*.
    with pytest.raises(DataError, match="minerva_math_test.jsonl: file not found"):
        load_benchmark("minerva", tmp_path)


def test_skip_bad_skips_and_reports(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = _write(tmp_path / "mixed.jsonl", [GOOD, "not json", {"question": "q"}, GOOD, {"question": "q", "answer": " "}])
    report = LoadReport()
    with caplog.at_level(logging.WARNING, logger="rstar.data"):
        problems = load_jsonl(f, skip_bad=True, report=report)
    assert [p.id for p in problems] == ["mixed/1", "mixed/4"]
    assert report.loaded == 2 and len(report.skipped) == 3
    assert [str(e).split(": ", 1)[0].rsplit(":", 1)[1] for e in report.skipped] == ["2", "3", "5"]
    assert "skipped 3 bad rows" in caplog.text and "mixed.jsonl:2: invalid JSON" in caplog.text


def test_skip_bad_without_report_still_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = _write(tmp_path / "m.jsonl", [GOOD, "{"])
    with caplog.at_level(logging.WARNING, logger="rstar.data"):
        assert len(load_jsonl(f, skip_bad=True)) == 1
    assert "skipped 1 bad rows" in caplog.text


def test_duplicate_ids_are_an_error(tmp_path: Path) -> None:
    rows = [{"uid": "a", **GOOD}, {"uid": "b", **GOOD}, {"uid": "a", **GOOD}]
    f = _write(tmp_path / "dup.jsonl", rows)
    with pytest.raises(DataError, match=r"dup\.jsonl:3: duplicate id 'a' \(first at .*dup\.jsonl:1\)"):
        load_jsonl(f, id_field="uid")
    report = LoadReport()
    assert [p.id for p in load_jsonl(f, id_field="uid", skip_bad=True, report=report)] == ["a", "b"]
    assert len(report.skipped) == 1


def test_missing_id_field(tmp_path: Path) -> None:
    f = _write(tmp_path / "ids.jsonl", [GOOD])
    with pytest.raises(DataError, match=r"ids\.jsonl:1: field 'uid': missing"):
        load_jsonl(f, id_field="uid")


def test_json_array_errors_name_line_and_item(tmp_path: Path) -> None:
    f = tmp_path / "arr.json"
    f.write_text('[\n  {"question": "a", "answer": "1"},\n  {"question": "b",\n   "answer": ""}\n]\n')
    with pytest.raises(DataError, match=r"arr\.json:3: item 1: field 'answer': empty"):
        load_jsonl(f)
    f.write_text('[\n  {"question": "a", "answer": "1"},\n  {"question": "b" "answer": "2"}\n]')
    with pytest.raises(DataError, match=r"arr\.json:3: invalid JSON"):
        load_jsonl(f)
    f.write_text('{"question": "a", "answer": "1"}')
    with pytest.raises(DataError, match="expected a JSON array"):
        load_jsonl(f)


# ------------------------------------------------------------- good input

def test_custom_field_names(tmp_path: Path) -> None:
    rows = [{"uid": "p1", "prompt": "2+3?", "target": 5, "level": 1},
            {"uid": "p2", "prompt": "half?", "target": 0.5},
            {"uid": "p3", "prompt": "Name?", "target": " Evelyn "}]
    f = _write(tmp_path / "mine.jsonl", rows)
    problems = load_jsonl(f, question_field="prompt", answer_field="target", id_field="uid")
    assert [(p.id, p.question, p.answer) for p in problems] == [
        ("p1", "2+3?", "5"), ("p2", "half?", "0.5"), ("p3", "Name?", "Evelyn")]
    assert problems[0].meta == {"uid": "p1", "level": 1}


def test_default_ids_blank_lines_gzip_and_arrays(tmp_path: Path) -> None:
    f = tmp_path / "plain.jsonl"
    f.write_text(json.dumps(GOOD) + "\n\n" + json.dumps(GOOD) + "\n")
    assert [p.id for p in load_jsonl(f)] == ["plain/1", "plain/3"]  # ids are line numbers
    gz = tmp_path / "packed.jsonl.gz"
    with gzip.open(gz, "wt") as g:
        g.write(json.dumps(GOOD) + "\n")
    assert load_jsonl(gz)[0].id == "packed/1"
    arr = tmp_path / "arr.json"
    arr.write_text(json.dumps([GOOD, GOOD]))
    assert [p.id for p in load_jsonl(arr)] == ["arr/0", "arr/1"]


def test_bom_crlf_and_unicode_line_separators(tmp_path: Path) -> None:
    # A raw U+2028 inside a JSON string is valid; str.splitlines() would cut it.
    rows = [json.dumps({"question": q, "answer": "1"}, ensure_ascii=False) for q in ("a\u2028b", "c")]
    f = tmp_path / "u.jsonl"
    f.write_text("\ufeff" + rows[0] + "\r\n" + rows[1] + "\n", encoding="utf-8")
    assert [(p.id, p.question) for p in load_jsonl(f)] == [("u/1", "a\u2028b"), ("u/2", "c")]


def test_problem_record() -> None:
    p = Problem("x/1", "q", "a", {"k": 1})
    assert p.to_dict() == {"id": "x/1", "question": "q", "answer": "a", "meta": {"k": 1}}
    assert hash(p) == hash(Problem("x/1", "q", "a", {"other": 2}))  # meta is not hashed
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.answer = "b"  # type: ignore[misc]


def test_gsm8k_adapter_on_tmp_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "gsm8k_test.jsonl", [
        {"question": "q1", "answer": "3 * 700 = <<3*700=2100>>2100\n#### 2,100"},
        {"question": "q2", "answer": "no marker"},
    ])
    monkeypatch.setenv("RSTAR_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    with pytest.raises(DataError, match=r"gsm8k_test\.jsonl:2: field 'answer': no '####'"):
        load_benchmark("gsm8k")
    [p] = load_benchmark("gsm8k", skip_bad=True)
    assert (p.id, p.answer) == ("gsm8k/1", "2100") and "<<" in p.meta["solution"]


# -------------------------------------------------------------- real data

def _manifest_rows() -> dict[str, int]:
    """file -> expected rows, parsed from the MANIFEST table itself."""
    text = (DATA_DIR / "MANIFEST.md").read_text(encoding="utf-8")
    return {m[1]: int(m[2]) for m in re.finditer(r"^\| `([^`]+)` \|(?:[^|]*\|){4} (\d+) \(", text, re.M)}


# Rows that are bad in the staged files, so the benchmark needs skip_bad=True.
KNOWN_BAD = {
    "math_train": 2,  # train/number_theory/7115.json, 7117.json: solution has an empty \boxed{}
    "gaokao2023en": 2,  # lines 168/193: answer "" (it is embedded in the question text)
    "rstar_gaokao2023en": 2,  # same two problems (items 167/192)
    "rstar_omni": 9,  # items 4146, 4160, ...: answer ""
}


@requires_data
@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_benchmark_loads_with_manifest_counts(name: str) -> None:
    expected = _manifest_rows()[BENCHMARKS[name].file]
    bad = KNOWN_BAD.get(name, 0)
    report = LoadReport()
    problems = load_benchmark(name, DATA_DIR, skip_bad=bad > 0, report=report)
    for e in report.skipped:
        print(f"SKIPPED {e}")
    assert (len(problems), len(report.skipped)) == (expected - bad, bad)
    assert all(p.id.startswith(f"{name}/") and p.question.strip() and p.answer.strip() for p in problems)
    if bad:
        with pytest.raises(DataError, match=r"field '(answer|solution)': "):
            load_benchmark(name, DATA_DIR)


@requires_data
def test_adapter_details_on_real_data() -> None:
    amc = load_benchmark("amc23", DATA_DIR)
    assert amc[0].answer == "27" and all(re.fullmatch(r"-?\d+", p.answer) for p in amc)
    train = {p.id: p.answer for p in load_benchmark("math_train", DATA_DIR, skip_bad=True)}
    assert train["math_train/train/algebra/24014.json"] == "2"  # `\boxed 2` rows recovered
    assert train["math_train/train/algebra/25040.json"] == "9"
    oly = load_benchmark("olympiadbench", DATA_DIR)
    assert {"answer_type", "is_multiple_answer", "final_answer", "unit"} <= set(oly[0].meta)
    assert sum(p.meta["is_multiple_answer"] for p in oly) == 94 and "$" not in "".join(p.answer for p in oly)
    he = load_benchmark("humaneval", DATA_DIR)
    assert he[0].meta["task_id"] == "HumanEval/0" and json.loads(he[0].answer)["entry_point"] == "has_close_elements"
    assert "def check(candidate)" in he[0].answer
    gsm, rgsm = load_benchmark("gsm8k", DATA_DIR), load_benchmark("rstar_gsm8k", DATA_DIR)
    assert [p.answer for p in gsm] == [p.answer for p in rgsm]  # commas removed on both
    assert [p.question for p in load_benchmark("math500", DATA_DIR)] == \
        [p.question for p in load_benchmark("rstar_math500", DATA_DIR)]
    multi = [p for p in load_benchmark("rstar_math", DATA_DIR) if p.id == "rstar_math/334"]
    assert multi[0].answer == "3, -3"  # list-valued answers joined


def test_default_data_dir_points_next_to_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RSTAR_DATA_DIR", raising=False)
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    assert default_data_dir() == (shared if shared.is_dir() else Path("data"))


# ------------------------------------------------- the repo's own rows (no benchmark files)

TEST_DATA = Path(__file__).resolve().parent / "data"


def test_shipped_rows_load_through_the_benchmark_adapters() -> None:
    gsm = load_benchmark("gsm8k", TEST_DATA)
    assert len(gsm) == 10 and gsm[0].id == "gsm8k/1" and gsm[0].answer == "27"
    assert all(re.fullmatch(r"\d+", p.answer) and "####" in p.meta["solution"] for p in gsm)
    m500 = load_benchmark("math500", TEST_DATA)
    assert [p.id for p in m500][:1] == ["math500/test/prealgebra/1.json"]
    assert [p.answer for p in m500] == ["11", "\\frac{3}{4}", "7", "5\\sqrt{2}"]
    assert m500[0].meta["level"] == 1 and "solution" in m500[0].meta
    assert [p.answer for p in load_benchmark("amc23", TEST_DATA)] == ["21", "2.5"]
    he = load_benchmark("humaneval", TEST_DATA)
    assert he[0].meta["entry_point"] == "add"
    assert json.loads(he[0].answer) == {"test": json.loads(he[0].answer)["test"],
                                        "entry_point": "add", "prompt": he[0].question}


def test_a_benchmark_missing_from_the_data_dir_names_file_and_dir(tmp_path: Path) -> None:
    with pytest.raises((DataError, FileNotFoundError), match=r"math500_test\.jsonl"):
        load_benchmark("math500", tmp_path)


# ------------------------------------------------------------ Hub datasets

REPO_ROWS = Path(__file__).parent / "data"   # the repo's own rows in the local files' layout


def _hub_file(tmp_path: Path, name: str, rows: list[dict], fmt: str) -> Any:
    """``rows`` written as the Hub would serve them (Parquet or JSONL), read back through
    ``datasets`` as a downloaded split is."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / f"{name}.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), f)
    else:
        _write(f, rows)
    return datasets.load_dataset("parquet" if fmt == "parquet" else "json", data_files=str(f),
                                 split="train", cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("name,fmt", [("math500", "parquet"), ("gsm8k", "jsonl"),
                                      ("amc23", "parquet"), ("humaneval", "parquet")])
def test_hub_layout_rows_map_to_the_same_problems(tmp_path: Path, name: str, fmt: str) -> None:
    from rstar import hub

    local = load_benchmark(name, REPO_ROWS)
    rows = [json.loads(ln) for ln in (REPO_ROWS / BENCHMARKS[name].file).read_text().splitlines()
            if ln.strip()]
    # The Hub's own column layouts where they differ from the local copies.
    if name == "math500":
        rows = [{**r, "level": int(r["level"]) if str(r.get("level", "")).isdigit() else 1}
                for r in rows]
    if name == "amc23":
        rows = [{"id": r["id"], "question": r["problem"], "answer": r["answer"], "url": r["url"]}
                for r in rows]
    got = hub.from_rows(name, _hub_file(tmp_path, name, rows, fmt))
    assert [(p.id, p.question, p.answer) for p in got] == [
        (p.id, p.question, p.answer) for p in local]


def test_hub_rows_with_a_bad_field_are_named(tmp_path: Path) -> None:
    from rstar import hub

    rows = [{"question": "1+1?", "answer": "#### 2"}, {"question": "2+2?", "answer": "four"}]
    with pytest.raises(DataError, match=r"openai/gsm8k \[test\] row 1: field 'answer': no '####'"):
        hub.from_rows("gsm8k", _hub_file(tmp_path, "g", rows, "jsonl"))
    report = LoadReport()
    assert len(hub.from_rows("gsm8k", rows, skip_bad=True, report=report)) == 1
    assert len(report.skipped) == 1


def test_hub_fallback_names_the_missing_copy_and_the_dataset(tmp_path: Path) -> None:
    """No local copy: load_benchmark goes to the Hub; offline (HF_HUB_OFFLINE, as this machine
    must be) the error names both the local path looked at and the Hub dataset. The download
    itself is not exercised here (no network)."""
    import subprocess
    import sys

    code = ("from rstar.data import load_benchmark, DataError\n"
            f"try:\n    load_benchmark('math500', {str(tmp_path)!r})\n"
            "except DataError as e:\n    print(e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120).stdout
    assert f"no local copy at {tmp_path / 'math500_test.jsonl'}" in out, out
    assert "cannot load HuggingFaceH4/MATH-500" in out, out
