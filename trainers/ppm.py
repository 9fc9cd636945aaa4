"""The process preference model (SPEC §4-§5) as a Ray Train job.

Ray Data reads the round's shard files, rebuilds each tree and mines its step-level pairs
(``tree.extract.preference_pairs``), one output row per step position with all its positives,
negatives and valid (pos, neg) combinations. The PPM starts from the round's SFT policy with a
one-label sequence-classification head; its score is tanh of the head at the step's last token,
what inference computes with ``actors.engines.hf.ppm_logits`` (``group_logits`` gets the same
numbers sharing each position's common prefix). The loss is Bradley-Terry,
-log σ(r⁺ − r⁻), averaged over a position's combinations, then over positions (plus an optional
penalty on the head's squared output, ``logit_l2``, that keeps scores off tanh's flat tails).
5% of problems are held out; pairwise accuracy on their pairs is saved with the checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import torch

from tree.extract import preference_pairs
from tree.steps import StepFormat


def is_heldout(problem_id: str, frac: float) -> bool:
    """Stable split by problem (never by pair, so no problem leaks across it)."""
    h = int.from_bytes(hashlib.sha256(problem_id.encode()).digest()[:8], "big")
    return h / 2**64 < frac


def pair_groups(tree, per_side: int = 2) -> list[dict]:
    """A tree's pairs, grouped by step position: unique positives, negatives and combinations."""
    groups: dict[tuple, dict] = {}
    for p in preference_pairs(tree, per_side=per_side):
        key = (p["kind"], tuple(p["prefix"]))
        g = groups.setdefault(key, {"kind": p["kind"], "prefix": p["prefix"], "pos": [],
                                    "neg": [], "combos": []})
        for side, steps in (("pos", p["pos"]), ("neg", p["neg"])):
            if steps not in g[side]:
                g[side].append(steps)
        g["combos"].append([g["pos"].index(p["pos"]), g["neg"].index(p["neg"])])
    return list(groups.values())


def ppm_rows(tree, per_side: int = 2, holdout_frac: float = 0.05,
             fmt: StepFormat = StepFormat()) -> list[dict]:
    """``map_trees`` body: one problem's tree → one row per step position."""
    held = is_heldout(tree.problem_id, holdout_frac)
    return [{"problem_id": tree.problem_id, "heldout": held, "kind": g["kind"],
             "question": tree.question,
             "pos_steps": [g["prefix"] + s for s in g["pos"]],
             "neg_steps": [g["prefix"] + s for s in g["neg"]],
             "pos_texts": [fmt.scored_text(tree.question, g["prefix"] + s) for s in g["pos"]],
             "neg_texts": [fmt.scored_text(tree.question, g["prefix"] + s) for s in g["neg"]],
             "combos": g["combos"]}
            for g in pair_groups(tree, per_side)]


class LikelihoodPPM(torch.nn.Module):
    """The trainable likelihood PPM (``actors.engines.likelihood``): a causal LM plus the
    score's scale and offset, which the Bradley-Terry loss trains with it."""

    def __init__(self, lm, beta: float = 1.0, bias: float = 0.0) -> None:
        super().__init__()
        self.lm = lm
        self.beta = torch.nn.Parameter(torch.tensor(float(beta)))
        self.bias = torch.nn.Parameter(torch.tensor(float(bias)))

    def forward(self, seqs, spans, pad_id: int, device) -> torch.Tensor:
        """Raw scores of ``seqs`` (ids, mask), each span of them sharing a prefix."""
        from actors.engines.likelihood import shared_prefix_mean_logprobs

        lp = shared_prefix_mean_logprobs(self.lm, seqs, spans, pad_id, device)
        return self.beta * lp + self.bias


@lru_cache(maxsize=4)
def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, padding_side="left")


def pair_dataset(shard_dir: str, per_side: int, holdout_frac: float, fmt: StepFormat):
    """Ray Dataset of step positions with their pairs, from a round's shards."""
    from trainers.common import map_trees

    return map_trees(shard_dir, ppm_rows,
                     {"per_side": per_side, "holdout_frac": holdout_frac, "fmt": fmt})


def group_logits(model, tok, groups: list[list[str]], device):
    """The head's output (before tanh) for every text of every group, flattened in order: what
    ``actors.engines.hf.ppm_logits`` gives each text alone.

    A step position's texts share the question and the steps so far — most of their tokens — so
    each group's common token prefix runs once (``shared_prefix_logits``; about half the tokens
    through the model). A model wrapped for DDP/FSDP must see one forward pass per backward
    pass, so wrapped models (several workers) score each text whole."""
    from actors.engines.hf import ppm_logits, shared_prefix_logits

    texts = [x for g in groups for x in g]
    if getattr(model, "module", None) is not None:
        enc = tok(texts, add_special_tokens=False, padding=True, return_tensors="pt")
        return ppm_logits(model, enc["input_ids"].to(device), enc["attention_mask"].to(device))
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    spans, k = [], 0
    for g in groups:
        spans.append((k, len(g)))
        k += len(g)
    return shared_prefix_logits(model, ids, spans, tok.pad_token_id, device)


def raw_scores(model, tok, groups: list[list], device, fmt: StepFormat | None = None):
    """The PPM's raw scores (before tanh) of every text of every group, flattened in order:
    a group is a list of texts (scalar head) or, for a likelihood PPM, of (question, steps)."""
    inner = getattr(model, "module", model)
    if not isinstance(inner, LikelihoodPPM):
        return group_logits(model, tok, groups, device)
    from actors.engines.likelihood import encode_pieces

    seqs = [encode_pieces(tok, (fmt or StepFormat()).pieces(q, steps), tok.model_max_length)
            for g in groups for q, steps in g]
    spans, k = [], 0
    for g in groups:   # a position's texts share the question and the steps before it
        spans.append((k, len(g)))
        k += len(g)
    return model(seqs, spans, tok.pad_token_id, device)


def _members(g: dict, likelihood: bool) -> list:
    if not likelihood:
        return list(g["pos_texts"]) + list(g["neg_texts"])
    return [(g["question"], list(s)) for s in list(g["pos_steps"]) + list(g["neg_steps"])]


def group_loss_and_hits(model, tok, groups: list[dict], device, logit_l2: float = 0.0,
                        fmt: StepFormat | None = None) -> tuple:
    """Mean Bradley-Terry loss over positions (each the mean over its combinations), plus how
    many combinations the model orders correctly and how many there are.

    ``logit_l2`` adds that multiple of the mean squared head output (before tanh): the BT loss
    alone drives easy pairs' scores into tanh's flat tails, where a pair ordered wrongly gets
    almost no gradient (``PPMTrainConfig.logit_l2``)."""
    import torch
    import torch.nn.functional as F

    spans, k = [], 0
    for g in groups:
        spans.append((k, len(g["pos_texts"])))
        k += len(g["pos_texts"]) + len(g["neg_texts"])
    lik = isinstance(getattr(model, "module", model), LikelihoodPPM)
    raw = raw_scores(model, tok, [_members(g, lik) for g in groups], device, fmt).float()
    r = torch.tanh(raw)
    losses, hits, n = [], 0, 0
    for g, (start, n_pos) in zip(groups, spans):
        combos = torch.as_tensor([list(c) for c in g["combos"]], dtype=torch.long)
        rp = r[start + combos[:, 0]]
        rn = r[start + n_pos + combos[:, 1]]
        losses.append(-F.logsigmoid(rp - rn).mean())
        hits += int((rp > rn).sum())
        n += len(combos)
    loss = torch.stack(losses).mean()
    if logit_l2:
        loss = loss + logit_l2 * (raw ** 2).mean()
    return loss, hits, n


def heldout_accuracy(model, tok, groups: list[dict], device,
                     fmt: StepFormat | None = None) -> dict:
    """Pairwise accuracy on held-out positions, overall and per pair kind: "step" (sibling steps)
    and "final" (whole trajectories), which differ a lot in how hard they are to judge."""
    import torch

    hits: dict[str, int] = {}
    seen: dict[str, int] = {}
    with torch.no_grad():
        for kind in sorted({g["kind"] for g in groups}):
            # Scored 16 positions at a time, similar lengths together (a text's score does not
            # depend on its batch).
            mine = sorted((g for g in groups if g["kind"] == kind),
                          key=lambda g: sum(map(len, g["pos_texts"])))
            for i in range(0, len(mine), 16):
                _, h, n = group_loss_and_hits(model, tok, mine[i:i + 16], device, fmt=fmt)
                hits[kind] = hits.get(kind, 0) + h
                seen[kind] = seen.get(kind, 0) + n
    n_all = sum(seen.values())
    out = {"pair_acc": sum(hits.values()) / max(1, n_all), "heldout_pairs": n_all}
    for kind in ("step", "final"):
        out[f"pair_acc_{kind}"] = hits.get(kind, 0) / max(1, seen.get(kind, 0))
        out[f"heldout_pairs_{kind}"] = seen.get(kind, 0)
    return out


def _position_key(g: dict) -> tuple:
    """A total order on step positions by content (``epochs_of``: one seed, one run)."""
    return (str(g["problem_id"]), str(g["kind"]), [str(t) for t in g["pos_texts"]],
            [str(t) for t in g["neg_texts"]])


def train_fn(config: dict) -> None:
    """Runs on every Ray Train worker."""
    import ray.train
    import ray.train.torch
    import torch
    from transformers import AutoModelForSequenceClassification

    from trainers.common import (Meter, Stepper, epochs_of, report_checkpoint, set_threads,
                                 unwrap)
    from trainers.progress import tell

    tc = config["train"]
    set_threads(tc["cpus_per_worker"])
    ctx = ray.train.get_context()
    world, rank = ctx.get_world_size(), ctx.get_world_rank()
    tok = _tokenizer(config["init_model"])
    torch.manual_seed(tc["seed"])  # the new scalar head is drawn from the global RNG
    fmt = config["fmt"]
    if config["score"] == "likelihood":
        from transformers import AutoModelForCausalLM

        model = LikelihoodPPM(AutoModelForCausalLM.from_pretrained(
            config["init_model"], dtype=getattr(torch, tc["dtype"])))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            config["init_model"], num_labels=1, dtype=getattr(torch, tc["dtype"]))
        model.config.pad_token_id = tok.pad_token_id  # pool at the last real token
    model = ray.train.torch.prepare_model(model, parallel_strategy=tc["strategy"]
                                          if world > 1 else None)
    device = ray.train.torch.get_device()
    stepper = Stepper(model, tc, config["n_train"], world)
    shard = ray.train.get_dataset_shard("train")
    meter, hits, seen = Meter(), 0, 0
    model.train()
    for epoch, batches in epochs_of(shard, tc["micro_batch_size"], tc["epochs"],
                                    tc["cache_data"], tc["seed"],
                                    sort_key=lambda g: sum(map(len, g["pos_texts"])),
                                    order_key=_position_key):
        for groups in batches:
            loss, h, n = group_loss_and_hits(model, tok, groups, device, config["logit_l2"],
                                             fmt)
            meter.add(sum(len(g["pos_texts"]) + len(g["neg_texts"]) for g in groups),
                      float(loss))
            hits, seen = hits + h, seen + n
            if not stepper.micro(loss) or rank != 0:
                continue
            tell(config, {"loss": meter.last, "lr": stepper.lr,
                          "texts_per_s": meter.rate(world)},
                 step=stepper.steps, total=stepper.total, loss=f"{meter.last:.3f}",
                 texts_s=f"{meter.rate(world):.0f}")
            if stepper.steps % tc["log_every"] == 0:
                w = meter.window()
                print(f"[train-ppm] epoch {epoch + 1}/{tc['epochs']} step {stepper.steps}/"
                      f"{stepper.total} loss {w['loss']:.4f} train pair acc "
                      f"{hits / max(1, seen):.3f}", flush=True)
                hits = seen = 0
    metrics = {"train_loss": meter.last_loss(), "steps": stepper.steps,
               "train_texts_per_s": meter.rate(world)}
    model.eval()
    tell(config, step=stepper.steps, total=stepper.total, phase="held-out pairs")
    metrics.update(heldout_accuracy(model, tok, config["heldout"], device, fmt))

    def save(d: str) -> None:
        m = unwrap(model)
        if isinstance(m, LikelihoodPPM):
            from actors.engines.likelihood import write_meta

            m.lm.save_pretrained(d, safe_serialization=True)
            write_meta(d, float(m.beta), float(m.bias))
            metrics.update(beta=float(m.beta), bias=float(m.bias))
        else:
            m.save_pretrained(d, safe_serialization=True)
        tok.save_pretrained(d)
        Path(d, "ppm_metrics.json").write_text(json.dumps(metrics, indent=2))

    report_checkpoint(metrics, save)


def train_ppm(cfg, workdir: str | Path, shard_dir: str | None = None,
              out_dir: str | None = None, replay_dirs: list[str] = (),
              show_progress: bool = False, on_step=None) -> dict:
    """Pairs from ``WORKDIR/shards``, init from ``WORKDIR/policy`` → ``WORKDIR/ppm``.

    ``replay_dirs``: earlier rounds' shards; a random sample of their training positions fills
    the set up to ``cfg.max_positions`` (their held-out problems join the held-out set).
    ``show_progress``: a bar of the job's optimizer steps on the terminal; ``on_step(step,
    scalars)``: each step's loss, lr and texts/s, on the driver (``rstar.tracking``)."""
    from ray.data.expressions import col

    from trainers.common import (NoTrainingData, absolute, export_checkpoint, model_ref,
                                 resolve_format, run_job, sample_at_most, storage_path,
                                 with_min_steps)
    from trainers.sft import write_metrics

    workdir = absolute(str(workdir))
    shard_dir = absolute(shard_dir or f"{workdir}/shards")
    out_dir = absolute(out_dir or f"{workdir}/ppm")
    init = model_ref(cfg.init_model) or f"{workdir}/policy"
    found = "://" in init or Path(init, "config.json").exists()
    fmt = resolve_format(cfg.format, init) if found else cfg.format
    pairs = pair_dataset(shard_dir, cfg.per_side, cfg.holdout_frac, fmt)  # checks shards
    if not found:
        raise FileNotFoundError(f"PPM init checkpoint not found: {init} (run train-policy "
                                f"first, or set init_model)")
    tc = cfg.train
    groups = pairs.materialize()
    train = sample_at_most(groups.filter(expr=~col("heldout")), cfg.max_positions,
                           tc.seed)
    heldout = groups.filter(expr=col("heldout")).take_all()
    n_own = train.count()
    if n_own == 0:
        raise NoTrainingData(f"{shard_dir}: no preference pairs (no problem has both correct "
                             f"and wrong trajectories)")
    replayed = 0
    if replay_dirs and (not cfg.max_positions or n_own < cfg.max_positions):
        old = pair_dataset(list(replay_dirs), cfg.per_side, cfg.holdout_frac,
                           fmt).materialize()
        room = cfg.max_positions - n_own if cfg.max_positions else 0
        extra = sample_at_most(old.filter(expr=~col("heldout")), room, tc.seed)
        replayed = extra.count()
        train = train.union(extra).materialize()
        heldout += old.filter(expr=col("heldout")).take_all()
    n_train = n_own + replayed
    tc = with_min_steps(tc, cfg.min_steps, n_train)
    result = run_job(train_fn, {"train": asdict(tc), "init_model": init, "n_train": n_train,
                                "logit_l2": cfg.logit_l2, "score": cfg.score, "fmt": fmt,
                                "heldout": heldout},
                     {"train": train}, num_workers=tc.num_workers, use_gpu=tc.use_gpu,
                     cpus_per_worker=tc.cpus_per_worker, storage_path=storage_path(workdir),
                     name="ppm", show_progress=show_progress, on_step=on_step)
    export_checkpoint(result.checkpoint, out_dir)
    metrics = dict(result.metrics)
    metrics.update(positions=n_train, replayed_positions=replayed, epochs=tc.epochs,
                   heldout_positions=len(heldout), init_model=init)
    write_metrics(out_dir, metrics)
    return metrics

