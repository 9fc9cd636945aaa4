"""Parquet shards of search trees: one row per node (schema ``tree.rows``), plus ``round``.

A shard is written under a hidden temporary name and renamed when complete, so readers (and a
rerun after a crash) only ever see whole shards. Paths may be local or any URI pyarrow's
filesystems understand (s3://, gs://, ...), which is what a multi-node cluster needs.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterable

from tree.node import Tree
from tree.rows import arrow_schema, from_rows, to_rows

EXTRA_COLUMNS = {"round": "int16"}


def filesystem(path: str | Path):
    import pyarrow.fs as pafs

    path = str(path)
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)


def shard_files(shard_dir: str | Path) -> list[str]:
    """Complete shard files in a directory (temporary files are hidden and skipped)."""
    import pyarrow.fs as pafs

    fs, root = filesystem(shard_dir)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        return []
    sel = pafs.FileSelector(root, recursive=False)
    return sorted(i.path for i in fs.get_file_info(sel)
                  if i.is_file and i.base_name.endswith(".parquet")
                  and not i.base_name.startswith("."))


def write_shard(shard_dir: str | Path, rows: list[dict], name: str | None = None) -> str:
    """Write rows as one shard (temporary name, then rename); returns its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, root = filesystem(shard_dir)
    fs.create_dir(root, recursive=True)
    name = name or f"part-{uuid.uuid4().hex[:12]}.parquet"
    final = f"{root}/{name}"
    tmp = f"{root}/.{name}.tmp"
    table = pa.Table.from_pylist(rows, schema=arrow_schema(EXTRA_COLUMNS))
    with fs.open_output_stream(tmp) as f:
        pq.write_table(table, f)
    fs.move(tmp, final)
    return final


def read_table(shard_dir: str | Path, columns: list[str] | None = None):
    """All complete shards of a directory as one pyarrow Table (empty table if none)."""
    import pyarrow as pa

    files = shard_files(shard_dir)
    schema = arrow_schema(EXTRA_COLUMNS)
    if not files:
        return schema.empty_table() if columns is None else schema.empty_table().select(columns)
    tables = [read_shard(shard_dir, f, columns) for f in files]
    # Shards from before a column was added (tree.rows.OPTIONAL) lack it: null-filled here.
    return pa.concat_tables(tables, promote_options="default")


def read_shard(shard_dir: str | Path, file: str, columns: list[str] | None = None):
    """One shard file (as ``shard_files(shard_dir)`` lists it) as a pyarrow Table."""
    import pyarrow.parquet as pq

    try:
        return pq.read_table(file, columns=columns, filesystem=filesystem(shard_dir)[0])
    except Exception as e:  # a truncated or foreign file: say which one
        raise ValueError(f"corrupt shard {file}: {e}") from e


def problem_ids(shard_dir: str | Path) -> set[str]:
    """Problems that already have a tree in the shards (for resume and dedupe)."""
    return set(read_table(shard_dir, ["problem_id"]).column("problem_id").unique().to_pylist())


def read_trees(shard_dir: str | Path) -> list[Tree]:
    return from_rows(read_table(shard_dir).to_pylist())


def write_trees(path: str | Path, trees: Iterable[Tree], round: int = 0) -> int:
    """All trees into a single Parquet file (``rstar search``); returns the row count."""
    rows = [r for t in trees for r in to_rows(t, round=round)]
    p = Path(path)
    write_shard(p.parent, rows, name=p.name)
    return len(rows)
