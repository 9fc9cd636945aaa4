"""Benchmarks by their public Hugging Face Hub datasets, for machines without a local copy.

``load_benchmark(name)`` reads the local file when ``RSTAR_DATA_DIR`` (or the default lookup)
has it and falls back to ``load(name)`` here: ``datasets.load_dataset(id, config, split=...)``,
cached where ``datasets`` caches (``HF_DATASETS_CACHE``, default ``~/.cache/huggingface``), each
row mapped by the same adapter as the local copy to the same ``Problem`` (ids included: a row
without a native id is numbered from 1, as a JSONL line is). Needs ``pip install rstar[hub]``.
The column layouts below are the datasets' published ones; the download itself needs the Hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from rstar import data


class HubSource(NamedTuple):
    id: str            # the Hub dataset id
    config: str | None
    split: str
    adapter: data.Adapter


def _amc23(row: dict[str, Any]) -> data._Parsed:
    # math-ai/amc23 names the problem `question` where the Qwen copy says `problem`.
    if "problem" not in row and "question" in row:
        row = {**row, "problem": row["question"]}
    return data._qwen_style(row)


HUB: dict[str, HubSource] = {
    "math500": HubSource("HuggingFaceH4/MATH-500", None, "test", data._math500),
    "gsm8k": HubSource("openai/gsm8k", "main", "test", data._gsm8k),
    "gsm8k_train": HubSource("openai/gsm8k", "main", "train", data._gsm8k),
    "aime24": HubSource("HuggingFaceH4/aime_2024", None, "train", data._qwen_style),
    "amc23": HubSource("math-ai/amc23", None, "test", _amc23),
    "humaneval": HubSource("openai/openai_humaneval", None, "test", data._humaneval),
}


def from_rows(name: str, rows, *, label: str = "", skip_bad: bool = False,
              report: data.LoadReport | None = None) -> list[data.Problem]:
    """``Problem``s from rows in the Hub layout of ``name`` (a ``datasets.Dataset`` or any
    iterable of dicts); a bad row is a ``DataError`` naming the row and field."""
    src = HUB[name]
    label = label or f"{src.id} [{src.split}]"
    records = ((f"{label} row {i}", i + 1, dict(row)) for i, row in enumerate(rows))
    return data.from_records(records, label, src.adapter, name, skip_bad, report)


def load(name: str, *, skip_bad: bool = False, report: data.LoadReport | None = None,
         local: Path | None = None) -> list[data.Problem]:
    """Download (or reuse the cached) Hub dataset of ``name`` and map its rows."""
    src = HUB[name]
    where = f" (no local copy at {local})" if local is not None else ""
    try:
        import datasets
    except ImportError:
        raise data.DataError(f"benchmark {name!r}{where}: loading {src.id} from the Hub needs "
                             "`datasets` (pip install 'rstar[hub]')") from None
    try:
        rows = datasets.load_dataset(src.id, src.config, split=src.split)
    except Exception as e:  # offline, unknown revision, gated...: say which dataset and why
        raise data.DataError(f"benchmark {name!r}{where}: cannot load {src.id} "
                             f"(split {src.split!r}) from the Hub: {type(e).__name__}: {e}") from e
    return from_rows(name, rows, skip_bad=skip_bad, report=report)
