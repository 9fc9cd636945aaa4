"""``rstar generate``: one round of distributed MCTS data generation on Ray.

The driver starts (or joins, with ``RAY_ADDRESS``) a Ray cluster, creates the actors — policy
servers, optional PPM servers, sandbox actors, the problem queue, the shard writer and the
search workers — queues every problem not already in ``WORKDIR/shards/``, and watches: a worker
that dies has its leases returned to the queue and is replaced. It returns when every problem's
tree is in the shards, so rerunning it on the same workdir resumes where a crash left off.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from rstar import shards
from rstar.config import GenerateConfig
from rstar.data import Problem, load_benchmark, load_jsonl


def make_problems(cfg: GenerateConfig) -> list[Problem]:
    """The round's problems: generated arith, or the first N of a benchmark / JSONL file."""
    if cfg.domain == "arith":
        from rstar.domains.arith import generate

        return generate(cfg.problems, cfg.seed, cfg.arith.difficulties)
    if not cfg.data:
        raise ValueError("domain 'math' needs `data`: a benchmark name or a JSONL path")
    probs = load_jsonl(cfg.data) if cfg.data.endswith(".jsonl") else load_benchmark(cfg.data)
    return probs[: cfg.problems]


def required_cpus(cfg: GenerateConfig) -> float:
    w = cfg.workers
    ppm = cfg.ppm.num_cpus * cfg.ppm.replicas if cfg.ppm.kind != "none" else 0.0
    return (cfg.policy.num_cpus * cfg.policy.replicas + ppm
            + w.sandbox_cpus * w.sandbox_actors + w.worker_cpus * w.workers)


def init_ray(cfg: GenerateConfig | None = None, min_cpus: float = 0.0) -> None:
    """Join ``RAY_ADDRESS`` if set, else start a local Ray with at least the CPUs this config's
    actors reserve (``min_cpus`` for callers that run several configs, like ``rstar evolve``)."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
    else:
        # Ray 2.60 turns token auth on after the first ray.init(); our own local cluster needs
        # none (unless the user asked for it).
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        # CPU reservations are scheduling hints; a laptop may oversubscribe them, and must, or
        # actors that do not fit would wait forever.
        need = max(min_cpus, required_cpus(cfg) if cfg is not None else 0.0)
        cpus = max(os.cpu_count() or 1, math.ceil(need))
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)


def server_options(engine, name: str) -> dict:
    """Ray options pinning a server to its GPUs (a placement group for tensor parallelism)."""
    opts: dict = {"name": name, "max_restarts": 3, "max_task_retries": 3,
                  "num_cpus": engine.num_cpus}
    if engine.num_gpus > 0:
        if engine.tensor_parallel_size > 1:
            from ray.util.placement_group import placement_group
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            pg = placement_group([{"GPU": 1, "CPU": 1}] * engine.tensor_parallel_size)
            opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                placement_group=pg, placement_group_capture_child_tasks=True)
            opts["num_gpus"] = 0  # vLLM's workers take the bundles' GPUs
        else:
            opts["num_gpus"] = engine.num_gpus
    return opts


class Cluster:
    """The actors of one generation run (created by ``start``, torn down by ``shutdown``)."""

    def __init__(self, cfg: GenerateConfig, workdir: str) -> None:
        from actors.policy_server import PolicyServer
        from actors.queue import ProblemQueue
        from actors.reward_server import RewardServer
        from actors.sandbox_pool import SandboxActor
        from actors.writer import ShardWriter

        self.cfg, w = cfg, cfg.workers
        tag = f"{os.getpid()}-{int(time.time())}"
        self.queue = ProblemQueue.options(name=f"problem-queue-{tag}").remote(w.lease_s)
        self.writer = ShardWriter.options(name=f"shard-writer-{tag}").remote(
            shard_dir(workdir), cfg.round, w.flush_trees, w.flush_s)
        self.policies = [
            PolicyServer.options(**server_options(cfg.policy, f"policy-server-{i}-{tag}")).remote(
                cfg.policy, cfg.format, cfg.arith.teacher_error_rate, f"policy-{i}")
            for i in range(cfg.policy.replicas)]
        self.scorers = []
        if cfg.mcts.value_mode == "ppm":
            if cfg.ppm.kind == "none":
                raise ValueError("mcts.value_mode 'ppm' needs a PPM engine (ppm.kind: hf|vllm)")
            self.scorers = [
                RewardServer.options(**server_options(cfg.ppm, f"reward-server-{i}-{tag}"))
                .remote(cfg.ppm, cfg.format, f"ppm-{i}") for i in range(cfg.ppm.replicas)]
        self.sandboxes = [
            SandboxActor.options(name=f"sandbox-{i}-{tag}", num_cpus=w.sandbox_cpus,
                                 max_restarts=3, max_task_retries=3).remote(cfg.sandbox)
            for i in range(w.sandbox_actors)]
        self.tag = tag
        self.workers: dict[str, tuple[object, object]] = {}
        self.spawned = 0

    def servers(self) -> list[tuple[str, object, float]]:
        """(name, handle, start timeout) of every engine server; the name says what it runs,
        e.g. ``policy-0 (vllm: /path/to/model)``."""
        out = []
        for role, engine, handles in (("policy", self.cfg.policy, self.policies),
                                      ("ppm", self.cfg.ppm, self.scorers)):
            what = f"{engine.kind}: {engine.model}" if engine.model else engine.kind
            out += [(f"{role}-{i} ({what})", h, engine.start_timeout_s)
                    for i, h in enumerate(handles)]
        return out

    def wait_ready(self) -> None:
        """Return once every server's engine and every sandbox has started; raise
        ``EngineFailure`` with the cause if one could not, or did not within its timeout."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        from actors.health import EngineFailure, creation_error

        waits = [(name, h.ready.remote(), t) for name, h, t in self.servers()]
        waits += [(f"sandbox-{i}", s.stats.remote(), 120.0) for i, s in enumerate(self.sandboxes)]
        t0 = time.monotonic()
        for name, ref, timeout in waits:
            try:
                ray.get(ref, timeout=max(1.0, timeout - (time.monotonic() - t0)))
            except GetTimeoutError:
                raise EngineFailure(f"{name} did not start within {timeout:.0f} s (`ray status` "
                                    "shows actors waiting for resources, if any)") from None
            except RayActorError as e:
                raise EngineFailure(f"{name} could not start: {creation_error(e)}") from None

    def spawn_worker(self) -> str:
        from actors.search_worker import SearchWorker

        i = self.spawned
        self.spawned += 1
        wid = f"search-worker-{i}"
        policy = self.policies[i % len(self.policies)]
        scorer = self.scorers[i % len(self.scorers)] if self.scorers else None
        handle = SearchWorker.options(name=f"{wid}-{self.tag}",
                                      num_cpus=self.cfg.workers.worker_cpus).remote(
            wid, self.cfg, self.queue, policy, self.sandboxes, self.writer, scorer)
        self.workers[wid] = (handle, handle.run.remote())
        return wid


def shard_dir(workdir: str | Path) -> str:
    return f"{str(workdir).rstrip('/')}/shards"


def run_generate(cfg: GenerateConfig, workdir: str | Path, show_progress: bool = True,
                 on_started=None, problems: list[Problem] | None = None) -> dict:
    """Generate the round's trees into ``WORKDIR/shards``; returns a summary.

    ``problems`` replaces the config's problem source (``rstar evolve`` passes its pools);
    ``on_started(cluster)`` is called once the workers run (tests use it to kill one).
    """
    import ray
    from tqdm import tqdm

    from actors import metrics

    t0 = time.perf_counter()
    workdir = str(workdir)
    problems = problems if problems is not None else make_problems(cfg)
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise ValueError("problem ids are not unique")
    done_before = shards.problem_ids(shard_dir(workdir)) & set(ids)
    todo = [p for p in problems if p.id not in done_before]
    summary: dict = {"problems": len(problems), "skipped_already_done": len(done_before)}
    if todo:
        check_engines(cfg)
        init_ray(cfg)
        cluster = Cluster(cfg, workdir)
        try:
            cluster.wait_ready()
            ray.get(cluster.queue.put.remote(todo))
            for _ in range(cfg.workers.workers):
                cluster.spawn_worker()
            if on_started is not None:
                on_started(cluster)
            summary.update(_watch(cluster, len(todo), show_progress, tqdm, metrics))
        finally:
            _shutdown(cluster)
    table = shards.read_table(shard_dir(workdir), ["problem_id", "terminal", "correct"])
    rows = table.to_pylist()
    in_shards = {r["problem_id"] for r in rows} & set(ids)
    solved = {r["problem_id"] for r in rows if r["terminal"] and r["correct"]} & set(ids)
    summary.update(
        in_shards=len(in_shards),
        missing=len(set(ids) - in_shards),
        solved_frac=len(solved) / max(1, len(problems)),
        wall_s=round(time.perf_counter() - t0, 2),
        shard_dir=shard_dir(workdir),
    )
    return summary


def check_engines(cfg: GenerateConfig) -> None:
    """Config errors vLLM would hit only once its actor starts (head size, dtype), now."""
    from actors.engines.factory import check_engine
    from rstar.configio import ConfigError

    for where, engine in (("policy", cfg.policy), ("ppm", cfg.ppm)):
        if where == "ppm" and cfg.mcts.value_mode != "ppm":
            continue
        try:
            check_engine(engine, where)
        except (ValueError, ImportError) as e:
            raise ConfigError(str(e)) from None


class _Health:
    """Polls every server's ``health()`` without blocking the watch loop on a restarting one."""

    def __init__(self, cluster: Cluster) -> None:
        self.servers = cluster.servers()
        self.pending: dict = {}

    def check(self) -> None:
        import ray
        from ray.exceptions import RayActorError

        from actors.health import EngineFailure

        for name, handle, _ in self.servers:
            if name not in self.pending:
                self.pending[name] = handle.health.remote()
        ready, _ = ray.wait(list(self.pending.values()), num_returns=len(self.pending),
                            timeout=0.1)
        for name, ref in list(self.pending.items()):
            if ref not in ready:
                continue   # restarting (Ray replaces a crashed server): ask again later
            del self.pending[name]
            try:
                error = ray.get(ref)
            except RayActorError as e:
                raise EngineFailure(f"{name} died and was not replaced: {e}") from None
            if error:
                raise EngineFailure(f"{name}'s engine failed: {error}")


def _watch(cluster: Cluster, total: int, show_progress: bool, tqdm, metrics) -> dict:
    """Wait for every queued problem, replacing dead workers; returns run counters. A server
    whose engine fails ends the run (``EngineFailure``): its problems would only fail too."""
    import ray
    from ray.exceptions import RayActorError  # noqa: F401  (ActorDiedError's base)

    health = _Health(cluster)
    replaced = 0
    last_done, last_change, warned = -1, time.monotonic(), False
    with tqdm(total=total, desc="generate", unit="problem", disable=not show_progress) as bar:
        while True:
            refs = {run: wid for wid, (_, run) in cluster.workers.items()}
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0.5)
            for ref in ready:
                wid = refs[ref]
                try:
                    ray.get(ref)
                    error = "returned before it was stopped"
                except RayActorError as e:  # killed (ray.kill, kill -9) or its node died
                    error = f"died: {type(e).__name__}"
                except Exception as e:  # a bug in the worker: replace it, but not forever
                    error = f"failed: {e}"
                # Its problems go back to the queue and a new worker takes its place.
                ray.get(cluster.queue.release.remote(wid))
                del cluster.workers[wid]
                replaced += 1
                print(f"rstar: {wid} {error}; its leases were returned to the queue")
                if replaced > 4 * max(1, cluster.cfg.workers.workers):
                    raise RuntimeError(f"search workers keep failing (last: {wid} {error})")
                cluster.spawn_worker()
            health.check()
            q = ray.get(cluster.queue.stats.remote())
            metrics.get("queue_depth").set(q["pending"])
            metrics.get("problems_leased").set(q["leased"])
            bar.n = q["done"] - len(q["failed"])  # in the shards; failed ones are not done
            bar.set_postfix(leased=q["leased"], requeued=q["requeued"], failed=len(q["failed"]),
                            refresh=False)
            bar.refresh()
            if q["pending"] == 0 and q["leased"] == 0:
                break
            if q["done"] != last_done:
                last_done, last_change = q["done"], time.monotonic()
            elif not warned and time.monotonic() - last_change > 180:
                warned = True  # most often: actors waiting for CPUs/GPUs the cluster lacks
                print("rstar: no problem finished for 3 minutes; `ray status` shows actors "
                      "waiting for resources, if any")
    for handle, _ in cluster.workers.values():
        handle.stop.remote()
    results = []
    for wid, (_, run) in list(cluster.workers.items()):
        try:
            results.append(ray.get(run, timeout=60))
        except Exception:
            pass
    policy_stats = ray.get([p.stats.remote() for p in cluster.policies])
    ppm_stats = ray.get([p.stats.remote() for p in cluster.scorers])
    sandbox_stats = ray.get([s.stats.remote() for s in cluster.sandboxes])
    fallbacks = [s["isolation_fallback"] for s in sandbox_stats if s.get("isolation_fallback")]
    return {
        "written_now": ray.get(cluster.writer.stats.remote())["new"],
        "failed": q["failed"],
        "requeued": q["requeued"],
        "workers_replaced": replaced,
        "rollouts": sum(r["rollouts"] for r in results),
        "policy": policy_stats,
        "ppm_scored": sum(p["requests"] for p in ppm_stats),
        "sandbox_jobs": sum(s.get("jobs", 0) for s in sandbox_stats),
        # What the sandbox actors got, on whichever nodes they run (the driver's check at start
        # only sees its own machine).
        "sandbox_isolation": ",".join(sorted({str(s.get("isolation")) for s in sandbox_stats})),
        "sandbox_fallback": fallbacks[0] if fallbacks else None,
    }


def _shutdown(cluster: Cluster) -> None:
    import ray

    try:  # let the sandboxes stop their worker processes; a dead one has none left
        ray.get([s.close.remote() for s in cluster.sandboxes], timeout=30)
    except Exception:
        pass
    for actor in [cluster.queue, cluster.writer, *cluster.policies, *cluster.scorers,
                  *cluster.sandboxes, *(h for h, _ in cluster.workers.values())]:
        ray.kill(actor)
