"""``rstar show-tree``: one problem's search tree from the shards as a self-contained HTML page.

Each node shows its step, Q, N, the PPM's first value, whether its program ran, and (for
terminals) its answer and verdict — how users see why the search preferred what it preferred.
"""

from __future__ import annotations

import html
from pathlib import Path

from rstar import shards
from tree.node import Node, Tree
from tree.rows import from_rows

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:70em}
details{margin-left:1.2em;border-left:2px solid #ddd;padding-left:.6em}
summary{cursor:pointer;margin:.15em 0}
pre{background:#f6f6f6;padding:.4em;margin:.2em 0;white-space:pre-wrap;font-size:.85em}
.tag{font-size:.8em;padding:0 .35em;border-radius:.3em;margin-left:.3em}
.ok{background:#d7f5d7}.bad{background:#fbd5d5}.dead{background:#e4e4e4;color:#777}
.best{outline:2px solid #3b82f6}
"""


def find_tree(shard_dir: str | Path, problem_id: str) -> Tree:
    import pyarrow.compute as pc

    table = shards.read_table(shard_dir)
    rows = table.filter(pc.equal(table["problem_id"], problem_id)).to_pylist()
    if not rows:
        known = table.column("problem_id").unique().to_pylist()[:10]
        raise KeyError(f"problem {problem_id!r} is not in {shard_dir} (some ids: {known})")
    (tree,) = from_rows(rows)
    return tree


def _label(n: Node, best: set[int]) -> str:
    bits = [f"<b>#{n.id}</b> Q={n.q:+.2f} N={n.visits}"]
    if n.count > 1:  # the policy wrote this step several times in one expansion
        bits.append(f"written {n.count}x")
    if n.prior is not None:
        bits.append(f"PPM={n.prior:+.2f}")
    if n.dead:
        bits.append(f'<span class="tag dead">failed: {html.escape(n.exec_error or "")}</span>')
    elif n.terminal:
        verdict = {True: ("ok", "correct"), False: ("bad", "wrong"), None: ("", "no verdict")}
        cls, word = verdict[n.correct]
        bits.append(f'<span class="tag {cls}">answer {html.escape(str(n.answer))}: {word}'
                    "</span>")
    first = n.text.strip().splitlines()[0] if n.text.strip() else ""
    bits.append(html.escape(first[:90]))
    cls = ' class="best"' if n.id in best else ""
    return f"<summary{cls}>{' '.join(bits)}</summary>"


def render(tree: Tree) -> str:
    from tree.extract import sft_examples

    best = {n.id for e in sft_examples(tree) for n in tree.nodes[e["node_id"]].path()}

    def node_html(n: Node) -> str:
        kids = sorted(n.children, key=lambda c: -c.q)
        body = f"<pre>{html.escape(n.text)}</pre>" + "".join(node_html(c) for c in kids)
        return f"<details open>{_label(n, best)}{body}</details>"

    root = tree.root
    kids = "".join(node_html(c) for c in sorted(root.children, key=lambda c: -c.q))
    return (f"<!doctype html><meta charset=utf-8><title>{html.escape(tree.problem_id)}</title>"
            f"<style>{_CSS}</style><h2>{html.escape(tree.problem_id)}</h2>"
            f"<p>{html.escape(tree.question)}</p><p>gold: <b>{html.escape(str(tree.gold))}</b>"
            f" · root N={root.visits} · {len(tree.nodes) - 1} nodes · "
            f"{sum(n.dead for n in tree.nodes)} failed · highlighted: the SFT picks</p>{kids}")


def show_tree(shard_dir: str | Path, problem_id: str, out: str | Path) -> Path:
    tree = find_tree(shard_dir, problem_id)
    out = Path(out)
    out.write_text(render(tree))
    return out
