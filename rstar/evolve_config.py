"""Typed configuration of ``rstar evolve``: the schedule of rounds, the held-out measurement,
the targets and the whole loop (the search and training configs it nests: ``rstar.config``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from rstar.config import (EngineConfig, GenerateConfig, PolicyTrainConfig, PPMTrainConfig,
                          TrainConfig)
from rstar.tracking import TrackingConfig
from tree.mcts import MCTSConfig


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
    prefilter_max: float = 0.0
    """While fewer than ``problems`` are left, extend the draw up to this multiple (0: one draw
    of ``prefilter``): a stronger policy solves more of a fixed draw, which left late rounds
    searching half of what they asked for."""
    sft_probe: float = 0.0
    """Rounds that train the base model, generated domains: the least greedy accuracy the new
    policy must reach on ``sft_probe_problems`` fresh problems drawn like the round's pool; below
    it, SFT reruns on another data order (up to ``sft_attempts`` runs, the best kept): whether
    the from-scratch model learns to copy numbers within its epochs depends on the order
    (docs/results.md R1). 0: no probe."""
    sft_probe_problems: int = 100
    """Problems in that probe (greedy decoding costs seconds)."""
    sft_attempts: int = 1
    """Most SFT runs the probe may ask for (each costs the round's SFT time again)."""
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
    select: Select = "ppm_best"
    """How the search's answer is picked, reported as ``search_acc`` (every rule is reported
    too, on the same trees; ``rstar.evaluate.ppm_select``); the paper's: the PPM's best."""


def _default_schedule() -> tuple[RoundSpec, ...]:
    # Why these sizes, epochs and learning rates: docs/deviations.md and docs/results.md.
    # Round 1: the teacher's pool is 80% 1-4 and 20% 5-8 operations, so the policy learns to
    # cite every clause number; its PPM would be too weak to use, so none is trained. Rounds
    # 2-4 search only the frontier (what the previous policy does not solve greedily) and
    # continue SFT on everything verified so far (``replay_ratio: -1``; docs/results.md F2).
    frontier = dict(prefilter=2.0, prefilter_max=6.0, rollouts=16, sft_epochs=2, sft_lr=1e-3)
    return (
        RoundSpec(problems=4000, difficulties=(1, 2, 3, 4) * 4 + (5, 6, 7, 8), rollouts=8,
                  temperature=0.7, sft_epochs=6, train_ppm=False, sft_probe=0.5,
                  sft_attempts=2),
        RoundSpec(problems=120, difficulties=(3, 4, 5, 6, 7, 8), **frontier),
        RoundSpec(problems=100, difficulties=(4, 5, 6, 7, 8), value_mode="ppm", **frontier),
        RoundSpec(problems=80, difficulties=(5, 6, 7, 8), value_mode="ppm", escalate=(32,),
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
    ppm_train: PPMTrainConfig = field(default_factory=lambda: PPMTrainConfig(
        min_steps=100, max_positions=1600))
    """PPM settings (100 steps: the likelihood PPM starts from the policy's own likelihood,
    which already orders most pairs; docs/results.md L2)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Held-out evaluation."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """TensorBoard / W&B logging of training steps and round metrics (``rstar.tracking``)."""
