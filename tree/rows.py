"""Trees as flat rows (one per node) and back: the storage format of shards (SPEC §4).

Rows are plain dicts so this module needs nothing; ``arrow_schema()`` gives the Parquet schema
(pyarrow is imported only when it is asked for).
"""

from __future__ import annotations

from typing import Any, Iterable

from .node import Node, Tree

# Column name -> pyarrow type name; the order is the Parquet column order.
COLUMNS: dict[str, str] = {
    "problem_id": "string",
    "node_id": "int32",
    "parent_id": "int32",  # -1 for the root
    "depth": "int16",
    "text": "string",
    "q": "float64",
    "visits": "int32",
    "value_sum": "float64",
    "prior": "float64",  # null unless a scorer gave the node its first value
    "count": "int32",  # candidates of the parent's expansion with this text
    "exec_ok": "bool",
    "exec_error": "string",
    "terminal": "bool",
    "answer": "string",
    "correct": "bool",  # null when there is no ground truth or the node is not terminal
    "question": "string",
    "gold": "string",
}

OPTIONAL = frozenset({"count"})
"""Columns added after shards were first written: older shards lack them, readers default them."""


def arrow_schema(extra: dict[str, str] | None = None):
    """The pyarrow schema of tree rows, plus ``extra`` columns (e.g. round) given as type names."""
    import pyarrow as pa

    cols = {**COLUMNS, **(extra or {})}
    # pyarrow spells the boolean type bool_() (bool is a Python builtin).
    return pa.schema([pa.field(name, getattr(pa, "bool_" if typ == "bool" else typ)())
                      for name, typ in cols.items()])


def to_rows(tree: Tree, **extra: Any) -> list[dict[str, Any]]:
    """One dict per node, parents first; ``extra`` values (e.g. ``round=1``) go on every row."""
    return [
        {
            "problem_id": tree.problem_id,
            "node_id": n.id,
            "parent_id": n.parent.id if n.parent is not None else -1,
            "depth": n.depth,
            "text": n.text,
            "q": n.q,
            "visits": n.visits,
            "value_sum": n.value_sum,
            "prior": n.prior,
            "count": n.count,
            "exec_ok": n.exec_ok,
            "exec_error": n.exec_error,
            "terminal": n.terminal,
            "answer": n.answer,
            "correct": n.correct,
            "question": tree.question,
            "gold": tree.gold,
            **extra,
        }
        for n in tree.nodes
    ]


def from_rows(rows: Iterable[dict[str, Any]]) -> list[Tree]:
    """Rebuild trees (several problems may be mixed; order of rows does not matter)."""
    by_problem: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_problem.setdefault(str(row["problem_id"]), []).append(row)
    trees: list[Tree] = []
    for pid, group in by_problem.items():
        group.sort(key=lambda r: int(r["node_id"]))
        ids = [int(r["node_id"]) for r in group]
        if ids != list(range(len(group))):
            raise ValueError(f"problem {pid!r}: node ids are not 0..{len(group) - 1}: {ids[:10]}")
        first = group[0]
        nodes: list[Node] = []
        for r in group:
            parent_id = int(r["parent_id"])
            if (parent_id < 0) != (r["node_id"] == 0) or parent_id >= int(r["node_id"]):
                raise ValueError(f"problem {pid!r}, node {r['node_id']}: bad parent_id {parent_id}")
            parent = nodes[parent_id] if parent_id >= 0 else None
            prior = r.get("prior")
            node = Node(
                id=int(r["node_id"]),
                parent=parent,
                text=r["text"] or "",
                depth=int(r["depth"]),
                visits=int(r["visits"]),
                value_sum=float(r["value_sum"]),
                prior=None if prior is None or prior != prior else float(prior),  # NaN -> None
                prior_visits=0 if prior is None or prior != prior else 1,
                count=int(r.get("count") or 1),  # shards written before the column: 1
                exec_ok=bool(r["exec_ok"]),
                exec_error=r.get("exec_error"),
                terminal=bool(r["terminal"]),
                answer=r.get("answer"),
                correct=None if r.get("correct") is None else bool(r["correct"]),
            )
            if parent is not None:
                parent.children.append(node)
            nodes.append(node)
        trees.append(Tree(problem_id=pid, question=first["question"], gold=first["gold"],
                          nodes=nodes))
    return trees
