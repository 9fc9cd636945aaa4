"""transformers engines: the policy (``HFTextEngine``) and the PPM (``HFScoreEngine``).

They run anywhere torch runs: on CPU for the embedded tiny model and tests, on a GPU on a
cluster when vLLM is not wanted. Both load through ``AutoTokenizer``/``AutoModelFor*``, the path
any Qwen2.5-Math checkpoint (or ``trainers.tiny_model``'s) takes.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence

import torch
from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer,
                          DynamicCache, GenerationConfig)
from transformers.cache_utils import DynamicLayer

from .base import Completion, GenRequest
from .openai import cut_at_stop

Row = tuple[int, int, list[int], int | None]
"""One sampled continuation to generate: (request index, sample index, prompt ids, seed)."""


def _dtype(dtype: str | torch.dtype, device: str) -> torch.dtype:
    """``"auto"``: float32 on CPU (bf16 matmuls are slow and lossy there), bfloat16 on GPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.float32 if device == "cpu" else torch.bfloat16
    return getattr(torch, dtype)


def _context_limit(model: torch.nn.Module, max_context: int | None) -> int:
    """``max_context`` capped at the model's trained positions (a config-wide 4096 must not let
    the 1024-position tiny model run past what it was built for)."""
    limit = int(getattr(model.config, "max_position_embeddings", 0) or 0)
    if max_context and limit:
        return min(int(max_context), limit)
    return int(max_context or limit or 4096)


class _GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys/values live in a buffer grown by doubling.

    The stock layer ``torch.cat`` s the whole cache onto each new token, copying it every decode
    step: two thirds of CPU decode time at a few hundred tokens of context. Here a step writes in
    place and ``keys``/``values`` are views of the buffer (contiguous in head_dim, as SDPA needs).
    """

    _buf: tuple[torch.Tensor, torch.Tensor] | None = None

    def __init__(self, capacity: int = 0) -> None:
        super().__init__()
        self.capacity = capacity  # prompt + new tokens: sized right, the buffer never regrows

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object,
               **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n, add = self.get_seq_length(), key_states.shape[-2]
        buf = self._buf
        # Re-buffer when full, or when keys were replaced or reset (reorder_cache after a shared
        # prefill, batch_select_indices, reset): the buffer no longer holds them.
        if (buf is None or n + add > buf[0].shape[-2] or buf[0].shape[0] != key_states.shape[0]
                or (n and self.keys.data_ptr() != buf[0].data_ptr())):
            b, h, _, d = key_states.shape
            cap = self.capacity if n + add <= self.capacity else 2 * (n + add)
            buf = (key_states.new_empty(b, h, cap, d),
                   value_states.new_empty(b, h, cap, value_states.shape[-1]))
            if n:
                buf[0][:, :, :n] = self.keys
                buf[1][:, :, :n] = self.values
            self._buf = buf
        buf[0][:, :, n:n + add] = key_states
        buf[1][:, :, n:n + add] = value_states
        self.keys, self.values = buf[0][:, :, :n + add], buf[1][:, :, :n + add]
        return self.keys, self.values


def _growing_cache(config: object, capacity: int) -> DynamicCache:
    """A ``DynamicCache`` for ``config`` with plain layers swapped for ``_GrowingLayer`` s."""
    cache = DynamicCache(config=config)
    cache.layers = [_GrowingLayer(capacity) if type(layer) is DynamicLayer else layer
                    for layer in cache.layers]
    return cache


@contextlib.contextmanager
def _seeded(seed: int | None, device: str) -> Iterator[None]:
    """Sample under ``seed`` without disturbing the caller's global torch RNG (HF ``generate``
    takes no generator, so the global one is forked and seeded instead)."""
    if seed is None:
        yield
        return
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class HFTextEngine:
    """``TextEngine`` over ``model.generate``: one batched call per chunk of rows.

    * Stops: delimiters are single special tokens in the rStar-Math vocabularies, so stops that
      encode to one token are passed as extra ``eos_token_id``s (exact and cheap); any other stop
      string goes to transformers' ``stop_strings``. The text is cut after the first stop string
      it contains (kept), and at the model's eos (dropped).
    * Seeding: a batched HF ``generate`` cannot seed per request. Each chunk (of at most
      ``max_batch_seqs`` rows / ``max_batch_tokens`` padded tokens) is sampled under the seed of
      its first request, so the same call gives the same completions, but a request's samples
      depend on what it was batched with (unlike vLLM, which seeds per request).
    * Context: a prompt of ``max_context`` tokens or more gets ``n`` completions with empty text
      and 0 tokens (no crash: the search treats them as failed proposals); other rows are cut so
      prompt + completion fit in ``max_context``.
    """

    def __init__(self, model_path: str | Path, device: str = "cpu",
                 dtype: str | torch.dtype = "auto", max_batch_tokens: int = 65536,
                 max_batch_seqs: int = 64, max_new_tokens: int = 256, temperature: float = 1.0,
                 top_p: float = 1.0, max_context: int | None = None) -> None:
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path), padding_side="left")
        self.model = AutoModelForCausalLM.from_pretrained(
            str(model_path), dtype=_dtype(dtype, device)).to(device).eval()
        self.max_batch_tokens, self.max_batch_seqs = max_batch_tokens, max_batch_seqs
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.max_context = _context_limit(self.model, max_context)
        # Every end-of-sequence id the checkpoint declares (instruct models list several).
        gen_eos = self.model.generation_config.eos_token_id
        gen_eos = gen_eos if isinstance(gen_eos, list) else [gen_eos]
        self.eos_ids: list[int] = list(dict.fromkeys(
            i for i in [self.tokenizer.eos_token_id, *gen_eos] if i is not None))
        pad = self.tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else self.eos_ids[0]
        # A checkpoint's generation_config (e.g. Qwen's top_k=20, repetition_penalty=1.05) would
        # fill every knob not passed explicitly; reset it so this engine's settings are the only
        # sampling controls, as with vLLM's explicit SamplingParams.
        self.model.generation_config = GenerationConfig(
            bos_token_id=self.model.generation_config.bos_token_id, eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id)

    def _stop_ids(self, stops: Sequence[str]) -> tuple[list[int], list[str]]:
        """(token ids of single-token stops, stop strings that need string matching)."""
        ids, strings = [], []
        for s in stops:
            enc = self.tokenizer.encode(s, add_special_tokens=False)
            if len(enc) == 1:
                ids.append(enc[0])
            else:
                strings.append(s)
        return ids, strings

    def generate(self, requests: Sequence[GenRequest],
                 stops: Sequence[str]) -> list[list[Completion]]:
        out: list[list[Completion]] = [[Completion("", 0)] * r.n for r in requests]
        stop_ids, stop_strings = self._stop_ids(stops)
        rows: list[Row] = []  # over-long (or empty) prompts never get one
        for i, r in enumerate(requests):
            ids = self.tokenizer.encode(r.prompt, add_special_tokens=False)
            if not ids or len(ids) >= self.max_context:
                continue
            rows.extend((i, j, ids, r.seed) for j in range(r.n))
        for chunk in self._chunks(rows):
            texts = self._generate_chunk([ids for _, _, ids, _ in chunk], chunk[0][3],
                                         stop_ids, stop_strings, stops)
            for (i, j, _, _), comp in zip(chunk, texts):
                out[i][j] = comp
        return out

    def _chunks(self, rows: list[Row]) -> Iterator[list[Row]]:
        """Consecutive rows, at most ``max_batch_seqs`` of them and ``max_batch_tokens`` padded
        tokens (rows x (longest prompt + max_new_tokens)) per ``generate`` call."""
        chunk: list[Row] = []
        longest = 0
        for row in rows:
            width = max(longest, len(row[2])) + self.max_new_tokens
            full = len(chunk) >= self.max_batch_seqs
            if chunk and (full or (len(chunk) + 1) * width > self.max_batch_tokens):
                yield chunk
                chunk, longest = [], 0
            chunk.append(row)
            longest = max(longest, len(row[2]))
        if chunk:
            yield chunk

    def _prefill_shared(self, prompts: list[list[int]], input_ids: torch.Tensor,
                        mask: torch.Tensor, capacity: int) -> DynamicCache:
        """KV cache of each distinct prompt computed once and copied to its ``n`` rows.

        HF ``generate`` would prefill every row, i.e. a tree node's prompt ``n`` times; with long
        prompts that prefill dominates on CPU. All but the last column is run here (positions as
        ``generate`` derives them from the mask), so ``generate`` continues from the cache with
        just the last prompt token. An empty cache (``generate`` prefills) when no prompt repeats.
        """
        cache = _growing_cache(self.model.config, capacity)
        index: dict[tuple[int, ...], int] = {}
        rows = [index.setdefault(tuple(p), len(index)) for p in prompts]
        if len(index) == len(prompts) or input_ids.shape[1] < 2:
            return cache
        first = torch.tensor([rows.index(u) for u in range(len(index))], device=input_ids.device)
        ids, m = input_ids[first, :-1], mask[first, :-1]
        pos = (m.long().cumsum(-1) - 1).masked_fill(m == 0, 0)
        self.model(input_ids=ids, attention_mask=m, position_ids=pos, past_key_values=cache,
                   use_cache=True, logits_to_keep=1)
        cache.reorder_cache(torch.tensor(rows, device=input_ids.device))
        return cache

    @torch.inference_mode()
    def _generate_chunk(self, prompts: list[list[int]], seed: int | None, stop_ids: list[int],
                        stop_strings: list[str], stops: Sequence[str]) -> list[Completion]:
        width = max(map(len, prompts))
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for k, ids in enumerate(prompts):  # left padding: every row's next token is at column -1
            input_ids[k, width - len(ids):] = torch.tensor(ids)
            mask[k, width - len(ids):] = 1
        max_new = min(self.max_new_tokens, self.max_context - min(map(len, prompts)))
        sample = self.temperature > 0
        kwargs: dict = dict(
            max_new_tokens=max_new, do_sample=sample, pad_token_id=self.pad_id,
            eos_token_id=[*self.eos_ids, *stop_ids],
        )
        if sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=0)
        if stop_strings:
            kwargs.update(stop_strings=stop_strings, tokenizer=self.tokenizer)
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        cache = self._prefill_shared(prompts, input_ids, mask, width + max_new)
        with _seeded(seed, self.device):
            seqs = self.model.generate(input_ids=input_ids, attention_mask=mask,
                                       past_key_values=cache, **kwargs)
        new = seqs[:, width:].tolist()
        # Rows that finished early are filled with pad; pad == eos for Qwen, and is never text.
        ends, eos = set(stop_ids), {*self.eos_ids, self.pad_id}
        out = []
        for ids, gen in zip(prompts, new):
            gen = gen[: self.max_context - len(ids)]  # rows sharing a longer budget: cut to theirs
            n_tok, keep = len(gen), len(gen)
            for t, tok in enumerate(gen):
                if tok in ends:
                    n_tok = keep = t + 1
                    break
                if tok in eos:  # generated, but not text
                    n_tok, keep = t + 1, t
                    break
            text = self.tokenizer.decode(gen[:keep], skip_special_tokens=False,
                                         clean_up_tokenization_spaces=False)
            out.append(Completion(cut_at_stop(text, stops), n_tok))
        return out


class HFScoreEngine:
    """``ScoreEngine`` over a 1-label ``AutoModelForSequenceClassification`` (the PPM).

    Score = tanh of the head's logit at each text's last token. transformers' generic
    sequence-classification head (``GenericForSequenceClassification.forward``) pools at the
    rightmost token that is not ``config.pad_token_id``; texts are left-padded here with explicit
    position ids, so a text's score does not depend on what it is batched with. Two caveats, both
    harmless for ``StepFormat.scored_text`` (which ends with a delimiter): a text ending with the
    pad token (eos for Qwen) is read at its last non-pad token, and a text longer than
    ``max_context`` is cut from the left (the score is read at the end).
    """

    def __init__(self, model_path: str | Path, device: str = "cpu",
                 dtype: str | torch.dtype = "auto", max_batch_seqs: int = 64,
                 max_context: int | None = None) -> None:
        self.device, self.max_batch_seqs = device, max_batch_seqs
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path), padding_side="left",
                                                       truncation_side="left")
        self.model = AutoModelForSequenceClassification.from_pretrained(
            str(model_path), num_labels=1, dtype=_dtype(dtype, device)).to(device).eval()
        if self.model.config.pad_token_id is None:  # else HF refuses batches > 1
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.max_context = _context_limit(self.model, max_context)

    def score(self, texts: Sequence[str]) -> list[float]:
        out: list[float] = []
        for k in range(0, len(texts), self.max_batch_seqs):
            out.extend(torch.tanh(self.logits(texts[k:k + self.max_batch_seqs])).tolist())
        return out

    @torch.inference_mode()
    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        """Raw head outputs (before tanh), float32 on CPU, one per text."""
        if not texts:
            return torch.zeros(0)
        ids = self.tokenizer(list(texts), add_special_tokens=False, truncation=True,
                             max_length=self.max_context)["input_ids"]
        # A search scores an expansion's candidates together: they share the question and the
        # path, which then runs through the model once (as the PPM trainer does).
        return shared_prefix_logits(self.model, ids, prefix_groups(ids),
                                    self.tokenizer.pad_token_id, self.device).float().cpu()


def prefix_groups(ids: list[list[int]], min_share: float = 0.5,
                  max_group: int = 16) -> list[tuple[int, int]]:
    """(start, length) runs of consecutive texts sharing at least ``min_share`` of the shorter
    one's tokens with the run's first text."""
    spans, s = [], 0
    for i in range(1, len(ids) + 1):
        if (i == len(ids) or i - s >= max_group or common_prefix([ids[s], ids[i]])
                < min_share * min(len(ids[s]), len(ids[i]))):
            spans.append((s, i - s))
            s = i
    return spans


def common_prefix(seqs: list[list[int]]) -> int:
    """Length of the token prefix all ``seqs`` share, leaving each at least one token of its
    own (the one the head reads)."""
    n = min(len(x) for x in seqs) - 1
    for i in range(max(0, n)):
        if any(x[i] != seqs[0][i] for x in seqs[1:]):
            return i
    return max(0, n)


def shared_prefix_logits(model: torch.nn.Module, ids: list[list[int]],
                         spans: list[tuple[int, int]], pad_id: int, device) -> torch.Tensor:
    """``ppm_logits`` of every text in ``ids``, each group ``spans[k]`` = (start, length) of
    texts running its common token prefix once: the prefix's key/value cache is copied to the
    group's texts, which continue from it (equal to scoring each text alone up to float
    rounding; about half the tokens through the model for a search's sibling candidates)."""
    cut = [common_prefix(ids[s:s + n]) for s, n in spans]
    if not ids:
        return torch.zeros(0)
    if min(cut) == 0:   # a one-token text: nothing to share
        width = max(map(len, ids))
        x = torch.tensor([[pad_id] * (width - len(t)) + t for t in ids])
        m = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in ids])
        return ppm_logits(model, x.to(device), m.to(device))
    # Prefixes left-padded (positions count real tokens, as in ppm_logits) ...
    width = max(cut)
    pre = torch.full((len(spans), width), pad_id, dtype=torch.long)
    pmask = torch.zeros_like(pre)
    for i, ((s, _), c) in enumerate(zip(spans, cut)):
        pre[i, width - c:] = torch.tensor(ids[s][:c])
        pmask[i, width - c:] = 1
    out = model(input_ids=pre.to(device), attention_mask=pmask.to(device),
                position_ids=(pmask.cumsum(-1) - 1).clamp(min=0).to(device), use_cache=True)
    # ... each text's rest right-padded after its group's cache, so the head's pooling (the
    # rightmost non-pad token) lands on the text's last token.
    owner = torch.tensor([i for i, (_, n) in enumerate(spans) for _ in range(n)])
    cache = out.past_key_values
    cache.batch_select_indices(owner.to(device))
    rests = [ids[s + j][c:] for (s, n), c in zip(spans, cut) for j in range(n)]
    rw = max(map(len, rests))
    rest = torch.tensor([r + [pad_id] * (rw - len(r)) for r in rests])
    rmask = torch.tensor([[1] * len(r) + [0] * (rw - len(r)) for r in rests])
    start = torch.tensor(cut)[owner]
    res = model(input_ids=rest.to(device),
                attention_mask=torch.cat([pmask[owner], rmask], 1).to(device),
                position_ids=(start[:, None] + torch.arange(rw)[None]).to(device),
                past_key_values=cache, use_cache=True)
    return res.logits[:, 0]


def ppm_logits(model: torch.nn.Module, input_ids: torch.Tensor,
               attention_mask: torch.Tensor) -> torch.Tensor:
    """The PPM head's output at each (left-padded) text's last token; ``tanh`` of it is the
    score. The PPM trainer calls this same function, so training and inference read the score
    identically (SPEC §5)."""
    # Positions count real tokens only, as they would in an unpadded forward pass.
    pos = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    res = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos,
                use_cache=False)
    return res.logits[:, 0]
