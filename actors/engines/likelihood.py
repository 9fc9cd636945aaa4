"""The likelihood PPM: a causal LM (initialised from the round's policy) whose score of a
partial solution is tanh(beta * mean log p(the tokens the policy wrote) + bias).

Its checkpoint is a plain causal-LM checkpoint plus ``ppm.json`` (``{"score": "likelihood",
"beta": .., "bias": ..}``); ``rstar.ppm_kind`` tells the two PPM kinds apart by that file. The
Bradley-Terry loss trains the LM itself (``trainers.ppm``), so what a wrong step looks like is
learned where the policy already computes it: the probability of each token. A 1M-parameter
PPM with a scalar head at the last token never learned to read a wrong copied number there
(docs/results.md, L2). Text is tokenised piece by piece (``StepFormat.pieces``), exactly as
SFT tokenised what the policy learned; the prompt and the sandbox's output are context only.

``mean_logprobs`` is shared by the trainer and ``HFLikelihoodEngine`` (one definition of the
score); ``actors.engines.vllm.VLLMLikelihoodEngine`` computes the same from vLLM's prompt
log-probabilities.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import torch

from tree.protocols import ScoreRequest
from tree.steps import StepFormat

META = "ppm.json"


def read_meta(model_dir: str | Path) -> dict:
    """A likelihood PPM's ``ppm.json``, or {} (a scalar-head PPM, or a hub id)."""
    f = Path(model_dir, META)
    return json.loads(f.read_text()) if f.exists() else {}


def write_meta(model_dir: str | Path, beta: float, bias: float) -> None:
    Path(model_dir, META).write_text(json.dumps({"score": "likelihood", "beta": beta,
                                                 "bias": bias}, indent=2))


def encode_pieces(tok, pieces: Sequence[tuple[str, bool]],
                  max_len: int | None = None) -> tuple[list[int], list[int]]:
    """(ids, mask) of a text given as ``StepFormat.pieces``; mask 1 on the policy's tokens. A
    text over ``max_len`` tokens keeps its end (the step being judged)."""
    ids: list[int] = []
    mask: list[int] = []
    for text, own in pieces:
        piece = tok(text, add_special_tokens=False)["input_ids"]
        ids += piece
        mask += [int(own)] * len(piece)
    if max_len is not None and len(ids) > max_len:
        ids, mask = ids[-max_len:], mask[-max_len:]
    return ids, mask


def mean_logprobs(model, seqs: Sequence[tuple[list[int], list[int]]], pad_id: int,
                  device) -> torch.Tensor:
    """Per sequence, the mean log-probability the causal LM ``model`` gives its masked tokens
    (0 for a sequence with none). Right-padded, one forward pass; the LM head runs only at the
    positions that predict a masked token (a 150k vocabulary times every position would not
    fit)."""
    width = max(len(ids) for ids, _ in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(seqs), width), dtype=torch.long)
    want = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, (s, m) in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        att[i, :len(s)] = 1
        want[i, :len(m)] = torch.tensor(m, dtype=torch.bool)
    want[:, 0] = False   # the first token has no prediction
    ids, att, want = ids.to(device), att.to(device), want.to(device)
    hidden = model.base_model(input_ids=ids, attention_mask=att).last_hidden_state
    at = want[:, 1:]
    logits = model.get_output_embeddings()(hidden[:, :-1][at]).float()
    lp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:][at][:, None]).squeeze(-1)
    rows = torch.arange(len(seqs), device=device)[:, None].expand_as(at)[at]
    total = torch.zeros(len(seqs), device=device).index_add(0, rows, lp)
    return total / at.sum(-1).clamp(min=1)


def shared_prefix_mean_logprobs(model, seqs: Sequence[tuple[list[int], list[int]]],
                                spans: Sequence[tuple[int, int]], pad_id: int,
                                device) -> torch.Tensor:
    """``mean_logprobs`` of every sequence, each group ``spans[k]`` = (start, length) running
    its common token prefix once (siblings of a search's expansion, or a step position's
    pairs in training, share the question and the steps so far: most of their tokens). The
    prefix's key/value cache is copied to its group's sequences, which continue from it."""
    from .hf import common_prefix

    cut = [common_prefix([seqs[i][0] for i in range(s, s + n)]) for s, n in spans]
    if min(cut) == 0:
        return mean_logprobs(model, seqs, pad_id, device)
    head, body = model.get_output_embeddings(), model.base_model

    def token_lps(hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        lp = torch.log_softmax(head(hidden).float(), -1)
        return lp.gather(-1, targets[:, None]).squeeze(-1)

    # The prefixes, left-padded: a prefix's last position is the batch's last column.
    width = max(cut)
    pre = torch.full((len(spans), width), pad_id, dtype=torch.long)
    pmask = torch.zeros_like(pre)
    for g, ((s, _), c) in enumerate(zip(spans, cut)):
        pre[g, width - c:] = torch.tensor(seqs[s][0][:c])
        pmask[g, width - c:] = 1
    out = body(input_ids=pre.to(device), attention_mask=pmask.to(device),
               position_ids=(pmask.cumsum(-1) - 1).clamp(min=0).to(device), use_cache=True)
    # The prefix's own tokens (shared by its group): a token at column j is predicted at j - 1.
    want = torch.zeros_like(pre, dtype=torch.bool)
    for g, ((s, _), c) in enumerate(zip(spans, cut)):
        want[g, width - c + 1:] = torch.tensor(seqs[s][1][1:c], dtype=torch.bool)
    at = want[:, 1:].to(device)
    lp = token_lps(out.last_hidden_state[:, :-1][at], pre[:, 1:].to(device)[at])
    rows = torch.arange(len(spans), device=device)[:, None].expand_as(at)[at]
    pre_sum = torch.zeros(len(spans), device=device).index_add(0, rows, lp)
    pre_n = at.sum(-1)
    # Each sequence's rest, right-padded after its group's cache; its first token is predicted
    # by the prefix's last position.
    owner = torch.tensor([g for g, (_, n) in enumerate(spans) for _ in range(n)])
    rests = [(seqs[s + j][0][c:], seqs[s + j][1][c:]) for (s, n), c in zip(spans, cut)
             for j in range(n)]
    rw = max(len(r) for r, _ in rests)
    rest = torch.tensor([r + [pad_id] * (rw - len(r)) for r, _ in rests])
    rmask = torch.tensor([[1] * len(r) + [0] * (rw - len(r)) for r, _ in rests])
    rwant = torch.tensor([m + [0] * (rw - len(m)) for _, m in rests], dtype=torch.bool)
    cache = out.past_key_values
    cache.batch_select_indices(owner.to(device))
    start = torch.tensor(cut)[owner]
    res = body(input_ids=rest.to(device),
               attention_mask=torch.cat([pmask[owner], rmask], 1).to(device),
               position_ids=(start[:, None] + torch.arange(rw)[None]).to(device),
               past_key_values=cache, use_cache=True)
    # Column i of the rest is predicted by the hidden state before it: the prefix's last for i
    # = 0, the rest's column i - 1 after that.
    hidden = torch.cat([out.last_hidden_state[owner.to(device), -1:], res.last_hidden_state[:, :-1]], 1)
    rat = rwant.to(device)
    lp = token_lps(hidden[rat], rest.to(device)[rat])
    rows = torch.arange(len(rests), device=device)[:, None].expand_as(rat)[rat]
    total = torch.zeros(len(rests), device=device).index_add(0, rows, lp) + pre_sum[owner]
    return total / (rat.sum(-1) + pre_n[owner]).clamp(min=1)


def score(mean_lp: float, meta: dict) -> float:
    """The PPM score of a mean log-probability under ``meta``'s scale and offset."""
    return math.tanh(meta["beta"] * mean_lp + meta["bias"])


class HFLikelihoodEngine:
    """Mean log-probabilities of pieced texts with transformers (CPU or GPU)."""

    def __init__(self, model_path: str | Path, device: str = "cpu", dtype="auto",
                 max_batch_seqs: int = 32, max_context: int | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from .hf import _context_limit, _dtype

        self.device, self.max_batch_seqs = device, max_batch_seqs
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path))
        self.model = AutoModelForCausalLM.from_pretrained(
            str(model_path), dtype=_dtype(dtype, device)).to(device).eval()
        self.max_context = _context_limit(self.model, max_context)
        self.pad_id = self.tokenizer.pad_token_id or 0

    @torch.inference_mode()
    def mean_logprobs(self, texts: Sequence[Sequence[tuple[str, bool]]]) -> list[float]:
        from .hf import prefix_groups

        seqs = [encode_pieces(self.tokenizer, p, self.max_context) for p in texts]
        out: list[float] = []
        # A search scores an expansion's candidates together: their shared question and path
        # run through the model once.
        for k in range(0, len(seqs), self.max_batch_seqs):
            part = seqs[k:k + self.max_batch_seqs]
            spans = prefix_groups([ids for ids, _ in part])
            out += shared_prefix_mean_logprobs(self.model, part, spans, self.pad_id,
                                               self.device).tolist()
        return out


class LikelihoodScorer:
    """``Scorer`` over an engine with ``mean_logprobs(pieced texts)`` and the PPM's
    ``ppm.json``."""

    def __init__(self, engine, meta: dict, fmt: StepFormat = StepFormat()) -> None:
        from .base import _for_engine

        self.engine, self.meta, self.fmt = engine, meta, _for_engine(fmt, engine)

    def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        lps = self.engine.mean_logprobs([self.fmt.pieces(r.question, r.steps)
                                         for r in requests])
        return [score(v, self.meta) for v in lps]
