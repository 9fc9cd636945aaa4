"""Held-out measurement with its uncertainty: accuracies per difficulty with 95% Wilson
intervals, paired differences (the same problems under two policies or two answer rules) with
95% normal intervals, and the per-difficulty plot beside ``summary.png``."""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959964


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of k successes in n trials ((0, 1) for n = 0): unlike
    p ± 1.96·se it stays inside [0, 1] and is honest at 0% and 100%."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + Z95 ** 2 / n
    mid = (p + Z95 ** 2 / (2 * n)) / den
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / den
    return round(max(0.0, mid - half), 4), round(min(1.0, mid + half), 4)


def accuracy(verdicts: Sequence[bool]) -> dict:
    """{"acc", "n", "ci"} of one list of per-problem verdicts."""
    k, n = sum(map(bool, verdicts)), len(verdicts)
    return {"acc": round(k / n, 4) if n else None, "n": n, "ci": list(wilson(k, n))}


def by_difficulty(difficulties: Sequence[int], verdicts: Sequence[bool]) -> dict[str, dict]:
    """``accuracy`` per difficulty (keys are strings: they go to JSON), in difficulty order."""
    groups: dict[int, list[bool]] = {}
    for d, ok in zip(difficulties, verdicts):
        groups.setdefault(int(d), []).append(bool(ok))
    return {str(d): accuracy(groups[d]) for d in sorted(groups)}


def paired_difference(a: Sequence[bool], b: Sequence[bool]) -> dict:
    """Mean of a − b over problems both were measured on (a[i] and b[i] are the same problem),
    with a 95% interval from the per-problem differences' spread: pairing removes the problems'
    own difficulty from the noise, so it is much tighter than comparing two accuracies."""
    n = min(len(a), len(b))
    if n == 0:
        return {"diff": None, "n": 0, "ci": [None, None]}
    d = [float(bool(x)) - float(bool(y)) for x, y in zip(a[:n], b[:n])]
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / max(1, n - 1)
    half = Z95 * math.sqrt(var / n)
    return {"diff": round(mean, 4), "n": n, "ci": [round(mean - half, 4), round(mean + half, 4)]}


def subset(difficulties: Sequence[int], verdicts: Sequence[bool], keep) -> list[bool]:
    """The verdicts of problems whose difficulty ``keep`` accepts."""
    return [ok for d, ok in zip(difficulties, verdicts) if keep(int(d))]


def difficulty_plot(rows: list[dict], path) -> None:
    """Greedy accuracy per difficulty, one line per round that measured it, with its intervals
    as error bars, and the bootstrap teacher's single attempt for comparison."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))

    def line(per: dict, label: str, **kw) -> None:
        xs = [int(d) for d in per]
        ys = [per[d]["acc"] for d in per]
        lo = [y - per[d]["ci"][0] for d, y in zip(per, ys)]
        hi = [per[d]["ci"][1] - y for d, y in zip(per, ys)]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=2, label=label, **kw)

    teacher = next((r["teacher_by_difficulty"] for r in rows if r.get("teacher_by_difficulty")),
                   None)
    if teacher:
        line(teacher, "bootstrap teacher (1 attempt)", linestyle="--", color="gray")
    for r in rows:
        if r.get("policy_greedy_by_difficulty"):
            line(r["policy_greedy_by_difficulty"], f"round {r['round']} greedy "
                 f"(n={r.get('greedy_problems', '?')})")
    ax.set_xlabel("operations in the question")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("held-out accuracy by difficulty (95% intervals)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def difficulty_of(problem) -> int | None:
    """A problem's difficulty: arith's operation count, or a benchmark's level if it has one."""
    meta = getattr(problem, "meta", None) or {}
    d = meta.get("difficulty", meta.get("level"))
    try:
        return int(d) if d is not None else None
    except (TypeError, ValueError):
        return None


def eval_rows(problems, verdicts: dict[str, list[bool]]) -> list[dict]:
    """One row per held-out problem (``eval.jsonl``): its id, difficulty and each measure's
    verdict (a measure run on fewer problems has no key on the rest)."""
    rows = []
    for i, p in enumerate(problems):
        row = {"id": p.id, "difficulty": difficulty_of(p)}
        row.update({k: v[i] for k, v in verdicts.items() if i < len(v)})
        rows.append(row)
    return rows


def summarize(rows: list[dict], measures: Sequence[str]) -> dict:
    """For each measure in ``rows``: ``<m>_ci`` (its accuracy's 95% interval), ``<m>_n`` and,
    where the problems have difficulties, ``<m>_by_difficulty``."""
    out: dict = {}
    for m in measures:
        have = [r for r in rows if m in r]
        if not have:
            continue
        a = accuracy([r[m] for r in have])
        out[f"{m}_n"], out[f"{m}_ci"] = a["n"], a["ci"]
        if all(r["difficulty"] is not None for r in have):
            out[f"{m}_by_difficulty"] = by_difficulty([r["difficulty"] for r in have],
                                                      [r[m] for r in have])
    return out


def _paired(first: list[dict], last: list[dict], a: str, b: str, keep=lambda d: True) -> dict:
    """``paired_difference`` of measure ``a`` in ``last`` and ``b`` in ``first`` over the
    problems (matched by id) that have both and whose difficulty ``keep`` accepts."""
    other = {r["id"]: r for r in first}
    pairs = [(r[a], other[r["id"]][b]) for r in last
             if a in r and r["id"] in other and b in other[r["id"]]
             and (r["difficulty"] is None or keep(r["difficulty"]))]
    return paired_difference([x for x, _ in pairs], [y for _, y in pairs])


def targets(rows: list[dict], first_eval: list[dict], last_eval: list[dict], cfg) -> dict:
    """The targets of ``cfg`` (an ``EvolveConfig``), checked on the rounds so far and stored in
    the last round's object of ``summary.json`` with their margins and 95% intervals, so a miss
    says by how much: the loop's time (search and training: the sum of ``wall_s − eval_s``) and
    the whole command's; the policy's greedy gain from the first round to the last, on all
    held-out problems and on the hard ones (``hard_from`` operations and up), paired by
    problem; and the last round's search against its maj@N on the same problems."""
    t = cfg.targets
    wall = round(sum(r.get("wall_s") or 0 for r in rows), 1)
    loop = round(sum((r.get("wall_s") or 0) - (r.get("eval_s") or 0) for r in rows), 1)
    out: dict = {"rounds": len(rows), "wall_s_total": wall, "loop_s_total": loop}
    checks = []
    if cfg.time_budget_s > 0:
        out.update(loop_budget_s=cfg.time_budget_s, loop_met=loop <= cfg.time_budget_s)
        checks.append(out["loop_met"])
    if cfg.total_budget_s > 0:
        out.update(total_budget_s=cfg.total_budget_s, total_met=wall <= cfg.total_budget_s)
        checks.append(out["total_met"])
    if len(rows) > 1:
        out["greedy_first"] = rows[0].get("policy_greedy_acc")
        out["greedy_last"] = rows[-1].get("policy_greedy_acc")
        g = _paired(first_eval, last_eval, "greedy", "greedy")
        h = _paired(first_eval, last_eval, "greedy", "greedy", lambda d: d >= t.hard_from)
        out.update(greedy_gain=g, greedy_gain_goal=t.greedy_gain,
                   greedy_gain_met=g["diff"] is not None and g["diff"] >= t.greedy_gain,
                   hard_gain=h, hard_from=t.hard_from, hard_gain_goal=t.hard_gain,
                   hard_gain_met=h["diff"] is not None and h["diff"] >= t.hard_gain)
        checks += [out["greedy_gain_met"], out["hard_gain_met"]]
    s = _paired(last_eval, last_eval, "search", "maj")
    if s["n"]:
        out.update(search_minus_maj=s, search_margin_goal=t.search_margin,
                   search_met=s["diff"] >= t.search_margin)
        checks.append(out["search_met"])
    # Met only when every target could be checked: one round has no gain to show.
    out["all_met"] = "greedy_gain" in out and "search_minus_maj" in out and all(checks)
    return out


def targets_line(t: dict) -> str:
    """The targets in one line for the plot, e.g. ``loop 14.2/15 min met; ...``."""
    def mark(ok: bool) -> str:
        return "met" if ok else "missed"

    def diff(d: dict) -> str:
        return f"{d['diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"

    parts = []
    if "loop_met" in t:
        parts.append(f"loop {t['loop_s_total'] / 60:.1f}/{t['loop_budget_s'] / 60:.0f} min "
                     f"{mark(t['loop_met'])}")
    if t.get("greedy_gain", {}).get("diff") is not None:
        parts.append(f"greedy {diff(t['greedy_gain'])} {mark(t['greedy_gain_met'])}")
    if t.get("hard_gain", {}).get("diff") is not None:
        parts.append(f"{t['hard_from']}+ ops {diff(t['hard_gain'])} {mark(t['hard_gain_met'])}")
    if "search_minus_maj" in t:
        parts.append(f"search-maj {diff(t['search_minus_maj'])} {mark(t['search_met'])}")
    return "targets: " + "; ".join(parts)
