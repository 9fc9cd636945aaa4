"""The ``rstar`` command line."""

from __future__ import annotations

import argparse
import json
import sys

from rstar.config import ConfigError, SearchRunConfig, field_docs, load_config
from rstar.data import DataError


def _search(args: argparse.Namespace) -> int:
    from rstar.search import run_search

    overrides = {k: v for k, v in {
        "problems": args.problems,
        "seed": args.seed,
        "mcts.rollouts": args.rollouts,
        "mcts.candidates": args.candidates,
        "sandbox.workers": args.sandbox_workers,
    }.items() if v is not None}
    cfg = load_config(SearchRunConfig, args.config, overrides)
    summary = run_search(cfg, args.out, show_progress=not args.quiet)
    _print_summary(summary)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from rstar.config import GenerateConfig
    from rstar.generate import run_generate

    overrides = {k: v for k, v in {
        "problems": args.problems,
        "workers.workers": args.workers,
        "seed": args.seed,
        "round": args.round,
    }.items() if v is not None}
    cfg = load_config(GenerateConfig, args.config, overrides)
    summary = run_generate(cfg, args.workdir, show_progress=not args.quiet)
    print(f"\n{summary['in_shards']}/{summary['problems']} problems in {summary['shard_dir']} "
          f"(missing {summary['missing']}); solved {summary['solved_frac']:.1%}; "
          f"wall {summary['wall_s']:.1f}s")
    print(json.dumps(summary, default=str))
    return 0 if summary["missing"] == 0 else 1


def _print_summary(s: dict) -> None:
    print(f"\nsolved by search: {s['search_solved']:.1%}   by one sampled attempt: "
          f"{s['single_sample_solved']:.1%}   ({s['problems']} problems)")
    print(f"{'difficulty':>10} {'problems':>8} {'search':>8} {'single':>8}")
    for d, row in s["by_difficulty"].items():
        print(f"{d:>10} {row['problems']:>8} {row['search_solved']:>8.1%} "
              f"{row['single_sample_solved']:>8.1%}")
    print(f"nodes {s['nodes']}  dead {s['dead_nodes']}  terminal {s['terminal_nodes']}  "
          f"executions {s['executions']}  sandbox time {s['sandbox_exec_s']:.1f}s "
          f"({s['sandbox_isolation']} isolation)  wall {s['wall_s']:.1f}s")
    print(f"trees: {s['out']} ({s['rows']} rows)")
    print(json.dumps(s))


def _config(args: argparse.Namespace) -> int:
    from rstar.config import GenerateConfig

    classes = {"search": SearchRunConfig, "generate": GenerateConfig}
    for name, tp, default, doc in field_docs(classes[args.kind]):
        shown = "" if default is None and tp[0].isupper() else f" = {default!r}"
        print(f"{name}: {tp}{shown}\n    {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rstar",
        description="rStar-Math on Ray: MCTS over code-augmented steps, a process preference "
        "model, and self-evolution rounds.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("search", help="single-process MCTS on generated arith problems",
                       description="MCTS with the scripted teacher on K generated arith problems "
                       "(the embedded default); trees go to a Parquet file and a summary is "
                       "printed, with one sampled attempt per problem as the baseline.")
    s.add_argument("--config", help="YAML file mapped onto the search config (see rstar config)")
    s.add_argument("--problems", type=int, help="how many problems (default 100)")
    s.add_argument("--rollouts", type=int, help="rollouts per tree (default 8)")
    s.add_argument("--candidates", type=int, help="candidates per expansion (default 4)")
    s.add_argument("--seed", type=int, help="seed for problems, teacher and search (default 0)")
    s.add_argument("--sandbox-workers", type=int, help="sandbox worker processes (default 2)")
    s.add_argument("--out", default="trees.parquet", help="Parquet file for the trees")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_search)

    g = sub.add_parser("generate", help="distributed MCTS data generation on Ray (one round)",
                       description="Search every problem with Ray actors (policy/PPM servers, "
                       "search workers, sandbox pool) and stream the trees into Parquet shards "
                       "under WORKDIR/shards. Without a config: the embedded default (arith + "
                       "scripted teacher, terminal-guided, 8 rollouts) on a local Ray; with "
                       "RAY_ADDRESS set, on that cluster. Rerunning skips problems already done.")
    g.add_argument("--workdir", required=True, help="where shards/ goes (local path or URI)")
    g.add_argument("--config", help="YAML file mapped onto the generate config (rstar config "
                   "generate)")
    g.add_argument("--problems", type=int, help="how many problems (default 200)")
    g.add_argument("--workers", type=int, help="SearchWorker actors (default 2)")
    g.add_argument("--seed", type=int, help="seed for problems and search (default 0)")
    g.add_argument("--round", type=int, help="round number stored in the rows (default 1)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_generate)

    c = sub.add_parser("config", help="print every config field with its type, default and doc",
                       description="Print the documented configuration fields.")
    c.add_argument("kind", nargs="?", default="search", choices=["search", "generate"])
    c.set_defaults(func=_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"rstar: config error: {e}", file=sys.stderr)
        return 2
    except DataError as e:
        print(f"rstar: data error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
