"""What the policy and PPM jobs share: running a Ray Train job, saving Hugging Face checkpoints,
schedules, and throughput bookkeeping."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch


class NoTrainingData(ValueError):
    """A round produced nothing to train on (no correct trajectory, no preference pair)."""


def run_job(train_fn: Callable[[dict], None], loop_config: dict, datasets: dict, *,
            num_workers: int, use_gpu: bool, storage_path: str, name: str,
            cpus_per_worker: int = 1, show_progress: bool = False, on_step=None):
    """Run ``train_fn`` as a ``TorchTrainer`` job (CPU workers here, GPU workers on a cluster).

    ``show_progress``: a bar on the driver's terminal follows the job's optimizer steps
    (``trainers.progress``: why the workers' own lines do not reach it); ``on_step(step,
    scalars)``: called on the driver with rank 0's scalars of every optimizer step."""
    import ray.train
    from ray.train.torch import TorchTrainer

    watcher = None
    if show_progress or on_step is not None:
        from trainers.progress import Watcher

        watcher = Watcher(name, bar=show_progress, on_step=on_step)
        loop_config = {**loop_config, "progress": watcher.board,
                       "track_steps": on_step is not None}
    trainer = TorchTrainer(
        train_fn,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                               resources_per_worker={"CPU": cpus_per_worker}),
        run_config=ray.train.RunConfig(storage_path=storage_path, name=name),
        datasets=datasets,
    )
    if watcher is not None:
        watcher.start()  # fit() stays on the main thread (Ray Train handles signals there)
    try:
        return trainer.fit()
    finally:
        if watcher is not None:
            watcher.stop()


def set_threads(cpus: int) -> None:
    """Ray sets OMP_NUM_THREADS=1 in workers; a CPU worker that reserved more cores uses them."""
    import ray.train.torch

    if ray.train.torch.get_device().type == "cpu":
        torch.set_num_threads(max(1, cpus))


def check_shards(files: list[str], shard_dir: str = "") -> None:
    """Fail early, naming the file, on a shard that is not a readable tree table (``files`` as
    ``rstar.shards.shard_files(shard_dir)`` lists them; local paths need no ``shard_dir``)."""
    import pyarrow.parquet as pq

    from rstar.shards import EXTRA_COLUMNS, filesystem
    from tree.rows import COLUMNS, OPTIONAL

    need = (set(COLUMNS) - OPTIONAL) | set(EXTRA_COLUMNS)
    for f in files:
        fs, path = (filesystem(shard_dir)[0], f) if shard_dir else filesystem(f)
        try:
            with fs.open_input_file(path) as fh:
                names = set(pq.ParquetFile(fh).schema_arrow.names)
        except Exception as e:
            raise ValueError(f"corrupt shard {f}: {e}") from None
        if not need <= names:
            raise ValueError(f"shard {f} lacks columns {sorted(need - names)}")


def map_trees(shard_dir: str | list[str], fn: Callable, fn_kwargs: dict):
    """Ray Data: read one or several rounds' shards and apply ``fn(tree, **fn_kwargs)``, which
    returns a list of output rows, to every tree.

    One task reads a few whole shard files: a tree never spans files (``ShardWriter`` writes
    whole trees, each problem once a round), so no groupby shuffle is needed. The shuffle cost
    8-13 s per call here whatever the size (100 problems or 4,000), and a round mines its own
    shards and replays older ones for both jobs.
    """
    import logging

    import ray.data

    from rstar.shards import shard_files

    # Ray Data's per-execution progress logs drown the trainers' own lines on a terminal.
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # ... and turning them off logs a warning about it, once per process.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)

    dirs = [shard_dir] if isinstance(shard_dir, str) else list(shard_dir)
    items = []
    for d in map(str, dirs):
        files = shard_files(d)
        check_shards(files, d)
        items += [{"dir": d, "file": f} for f in files]
    if not items:
        raise FileNotFoundError(f"no shards in {', '.join(map(str, dirs))} (run rstar generate "
                                f"first)")
    blocks = max(1, min(len(items), 2 * int(ray.cluster_resources().get("CPU", 1))))
    return ray.data.from_items(items, override_num_blocks=blocks).flat_map(
        _mine_file, fn_kwargs={"fn": fn, "kwargs": fn_kwargs})


def _mine_file(item: dict, fn: Callable, kwargs: dict) -> list[dict]:
    """``map_trees``' task body: one shard file's trees through ``fn``."""
    from rstar.shards import read_shard
    from tree.rows import from_rows

    rows = read_shard(item["dir"], item["file"]).to_pylist()
    return [out for tree in from_rows(rows) for out in fn(tree, **kwargs)]


def sample_at_most(ds, cap: float, seed: int):
    """About ``cap`` rows of Ray Dataset ``ds`` drawn at random, materialized (0: all of it)."""
    ds = ds.materialize()  # once: counting a lazy pipeline would run it a second time
    n = ds.count()
    if cap and n > cap:
        ds = ds.random_sample(cap / n, seed=seed).materialize()
    return ds


def n_distinct(ds, column: str) -> int:
    """Distinct values of ``column`` in a materialized Ray Dataset, counted from its Arrow blocks
    (``Dataset.unique`` runs an aggregation job: ~3 s here, for a few thousand rows)."""
    import pyarrow as pa
    import ray

    blocks = ray.get(ds.select_columns([column]).to_arrow_refs())
    tables = pa.concat_tables(blocks, promote_options="default") if blocks else None
    return len(tables.column(column).unique()) if tables is not None else 0


def with_min_steps(tc, min_steps: int, n: int):
    """``tc`` (a TrainConfig) with its epochs raised until ``n`` examples make about
    ``min_steps`` optimizer steps (rounded: a set a few examples short of a multiple must not
    double the job). Small rounds need it: a fresh model or head needs a few hundred steps."""
    import dataclasses

    return dataclasses.replace(tc, epochs=max(tc.epochs, round(min_steps * tc.batch_size / n)))


def linear_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int):
    """Linear warm-up then linear decay to zero (the paper's schedule, plus a short warm-up)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Stepper:
    """AdamW with gradient accumulation, clipping and the linear schedule, shared by both jobs.

    ``micro(loss)`` backpropagates one micro-batch and returns True when it completed an
    optimizer step (every ``batch_size / (micro_batch_size * world)`` micro-batches).
    """

    def __init__(self, model: torch.nn.Module, tc: dict, n_items: int, world: int) -> None:
        micro = tc["micro_batch_size"]
        self.accum = max(1, tc["batch_size"] // (micro * world))
        self.total = -(-n_items // (micro * world * self.accum)) * tc["epochs"]
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=tc["lr"], weight_decay=tc["weight_decay"])
        self.sched = linear_schedule(self.opt, self.total, int(self.total * tc["warmup_frac"]))
        self.micros = self.steps = 0

    @property
    def lr(self) -> float:
        """The learning rate the schedule has reached (that of the next step)."""
        return float(self.sched.get_last_lr()[0])

    def micro(self, loss: torch.Tensor) -> bool:
        (loss / self.accum).backward()
        self.micros += 1
        if self.micros % self.accum:
            return False
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self.steps += 1
        return True


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DDP/FSDP wrappers."""
    return getattr(model, "module", model)


def report_checkpoint(metrics: dict, save: Callable[[str], None]) -> None:
    """Every worker reports; rank 0 also hands over a checkpoint that ``save(dir)`` wrote."""
    import ray.train

    if ray.train.get_context().get_world_rank() == 0:
        with tempfile.TemporaryDirectory() as d:
            save(d)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
    else:
        ray.train.report(metrics)


def absolute(path: str) -> str:
    """A local path made absolute (URIs unchanged). Ray Train runs its workers in a directory of
    their own, where a relative path the user typed (``--workdir runs/x``) points elsewhere."""
    return path if not path or "://" in path else str(Path(path).expanduser().resolve())


def model_ref(name: str) -> str:
    """A model to load: absolute if it is a local directory, else as given (a hub id such as
    ``Qwen/Qwen2.5-Math-7B``, which transformers downloads)."""
    return absolute(name) if name and Path(name).expanduser().exists() else name


def storage_path(workdir: str) -> str:
    """Where Ray Train keeps a round's job state: WORKDIR/ray_train (absolute, as Ray needs)."""
    return f"{absolute(workdir)}/ray_train"


def epochs_of(shard, batch_size: int, epochs: int, cache: bool, seed: int,
              prepare: Callable[[dict], dict | None] = lambda r: r, sort_key=None,
              order_key=None, short_first: bool = False):
    """Yield (epoch, batches); a batch is a list of rows, each passed through ``prepare`` (which
    may drop it by returning None); the batch order is shuffled every epoch.

    ``cache``: read the worker's Ray Data shard once and replay it (small rounds: a fresh Ray Data
    execution costs seconds on a laptop); then, with ``sort_key``, batches hold rows of similar
    length (little padding: about 2x the tokens/s here), and with ``order_key`` (a total order on
    rows' content) the seeded shuffle starts from that order, so one seed gives one run: Ray Data
    hands rows over in whatever order its tasks finish (two runs of round 1 on identical data
    and seed trained policies of 34% and 50% greedy accuracy before this). Otherwise the shard
    is streamed every epoch with a local row shuffle, as data larger than a worker's memory needs.
    ``short_first`` (with ``cache`` and ``sort_key``): the first epoch runs its batches in
    ``sort_key`` order instead of shuffled (a curriculum: short examples first).
    """
    import random

    def rows_of(batch: dict) -> list[dict]:
        keys = list(batch)
        return [dict(zip(keys, vals)) for vals in zip(*(batch[k] for k in keys))]

    cached = None
    if cache:
        rows = [r for r in map(prepare, shard.iter_rows()) if r is not None]
        if order_key is not None:
            rows.sort(key=order_key)
        random.Random(seed).shuffle(rows)
        if sort_key is not None:
            rows.sort(key=sort_key)
        cached = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    for epoch in range(epochs):
        if cached is not None:
            batches = cached[:]
        else:
            batches = []
            for b in shard.iter_batches(batch_size=batch_size, batch_format="numpy",
                                        local_shuffle_buffer_size=4 * batch_size,
                                        local_shuffle_seed=seed + epoch):
                kept = [r for r in map(prepare, rows_of(b)) if r is not None]
                if kept:
                    batches.append(kept)
        if not (short_first and epoch == 0 and cached is not None and sort_key is not None):
            random.Random(seed + epoch).shuffle(batches)
        yield epoch, batches


def export_checkpoint(checkpoint, dest: str | Path) -> str:
    """Copy the job's final checkpoint to ``dest`` (a local path or a pyarrow URI), replacing it
    atomically on local disks so readers never see half a model."""
    dest = str(dest)
    if "://" in dest:
        import pyarrow.fs as pafs

        with checkpoint.as_directory() as src:
            pafs.copy_files(src, dest)
        return dest
    parent = Path(dest).resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=parent))
    try:
        checkpoint.to_directory(str(tmp))
        old = None
        if Path(dest).exists():
            old = parent / f".old-{Path(dest).name}-{os.getpid()}"
            Path(dest).rename(old)
        tmp.rename(dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


class Meter:
    """Tokens/s and running loss for progress lines and ``train_metrics.json``."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.tokens = 0
        self.loss_sum = 0.0
        self.loss_n = 0

    def add(self, tokens: int, loss: float) -> None:
        self.tokens += tokens
        self.loss_sum += loss
        self.loss_n += 1
        self.last = loss

    def last_loss(self) -> float:
        """Mean loss since the last progress line (the last batch's if none since)."""
        return self.loss_sum / self.loss_n if self.loss_n else getattr(self, "last", 0.0)

    def rate(self, world: int = 1) -> float:
        """Items (tokens, texts) per second over the whole job, summed over ``world`` workers."""
        return self.tokens * world / max(1e-9, time.perf_counter() - self.t0)

    def window(self) -> dict[str, Any]:
        out = {"loss": self.loss_sum / max(1, self.loss_n),
               "tokens_per_s": self.tokens / max(1e-9, time.perf_counter() - self.t0)}
        self.loss_sum, self.loss_n = 0.0, 0
        return out


def pad_batch(seqs: list[list[int]], pad_id: int, labels: list[list[int]] | None = None):
    """Right-pad token lists into tensors (input_ids, attention_mask[, labels])."""
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    lab = torch.full((len(seqs), n), -100, dtype=torch.long) if labels is not None else None
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
        if lab is not None:
            lab[i, : len(s)] = torch.tensor(labels[i], dtype=torch.long)  # type: ignore[index]
    return (ids, mask, lab) if lab is not None else (ids, mask)


def resolve_format(fmt, model_path: str):
    """``fmt`` as the model's engines render it: a chat prompt through its tokenizer's chat
    template (``StepFormat.chat``), so training texts match what the policy and PPM see."""
    if not fmt.chat:
        return fmt
    from transformers import AutoTokenizer

    return fmt.for_tokenizer(AutoTokenizer.from_pretrained(model_path))
