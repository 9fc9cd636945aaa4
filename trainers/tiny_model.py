"""The tiny-model factory: a from-scratch Qwen2 policy (and PPM base) that runs on 2 CPU cores.

There is no model hub offline, so the embedded default builds its own checkpoint: a byte-level BPE
trained on arith problems and scripted-teacher solutions, and a randomly initialised
``Qwen2ForCausalLM`` of ~1M parameters. It is saved exactly like a real Qwen2.5-Math checkpoint
(``config.json``, ``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json``,
``generation_config.json``) so every later stage loads it through ``AutoTokenizer`` /
``AutoModelFor*`` and takes the same code path a real checkpoint takes.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from transformers import GenerationConfig, PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

from tree.protocols import Policy, StepRequest
from tree.steps import StepFormat

EOS = "<|endoftext|>"


def special_tokens(fmt: StepFormat = StepFormat()) -> list[str]:
    """``<|endoftext|>`` then every delimiter of ``fmt``, each to be ONE never-split token: engines
    stop on them and the PPM reads its score at the last token, which is a delimiter."""
    delims = [fmt.code_start, fmt.step_end, fmt.code_end, fmt.output_start, fmt.output_end,
              fmt.answer_start, fmt.answer_end, *fmt.extra_stops]
    out = [EOS]
    for tok in delims:
        if tok not in out:  # extra_stops may repeat a delimiter or the eos
            out.append(tok)
    return out


def build_tokenizer(texts: Iterable[str], vocab_size: int = 512,
                    fmt: StepFormat = StepFormat()) -> PreTrainedTokenizerBase:
    """A byte-level BPE trained on ``texts``, returned as a left-padding ``Qwen2Tokenizer``.

    The normaliser, pre-tokenizer and decoder are the ones ``Qwen2Tokenizer.__init__`` builds
    (transformers 5 rebuilds the backend from vocab + merges on load and ignores the pipeline
    stored in tokenizer.json), so training under any other pipeline would make ids change on
    reload. Deterministic in ``texts``.
    """
    specials = special_tokens(fmt)
    backend = Tokenizer(BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
                            fuse_unk=False, byte_fallback=False))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    # Specials first (ids 0..k-1, so <|endoftext|> is 0) and all 256 byte symbols in the base
    # alphabet: any unicode text encodes without an unk token, as with the real Qwen2 vocab.
    trainer = BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                         special_tokens=[AddedToken(t, special=True, normalized=False)
                                         for t in specials],
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    # Train on the pieces between specials: at encode time specials are matched whole before
    # pre-tokenization, so merges spelling out "<end_of_step>" would be wasted vocabulary.
    split = re.compile("|".join(re.escape(t) for t in sorted(specials, key=len, reverse=True)))
    pieces = [piece for text in texts for piece in split.split(text) if piece]
    backend.train_from_iterator(pieces, trainer=trainer)

    # Vocab + merges (and the added tokens below) are all that survive a save/reload round trip
    # (see the docstring).
    vocab: dict[str, int] = backend.get_vocab(with_added_tokens=False)
    merges = _merges_of(backend)
    tok = Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=EOS, eos_token=EOS, pad_token=EOS, bos_token=None,
        extra_special_tokens=specials[1:], padding_side="left",
        model_max_length=1024, clean_up_tokenization_spaces=False,
    )
    # The Qwen2 regex splits " 59" into " ", "5", "9": every number follows the same " " token,
    # so copying a question's number into a step needs an induction head that matches two tokens
    # back. A from-scratch 1M model learns that late and by luck (seed 1's round-1 policy: 10%
    # greedy, seed 0's: 50%). Added tokens " 0".." 9" (matched before the regex, as specials
    # are) key each number's first digit on the word before it; with them the same two round-1
    # datasets (seeds 1 and 0) train policies of 62% and 49% greedy on 100 problems. Real Qwen
    # vocabularies are unchanged.
    tok.add_tokens([f" {d}" for d in range(10)])
    return tok


def _merges_of(backend: Tokenizer) -> list[tuple[str, str]]:
    """The trained merge list, in rank order (read from the serialised model: no getter exists)."""
    merges = json.loads(backend.to_str())["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else (m[0], m[1]) for m in merges]


def tiny_qwen2_config(vocab_size: int, eos_token_id: int = 0, pad_token_id: int = 0,
                      **overrides: Any) -> Qwen2Config:
    """A ~1M-parameter Qwen2 (hidden 128, 4 layers, GQA 4/2 heads) sized for 2 CPU cores:
    ~13k tokens/s of training and ~5k tokens/s of batched generation here, which is what lets
    four self-evolution rounds fit in minutes (a 2.3M model at hidden 192 trains 2x slower)."""
    kw: dict[str, Any] = dict(
        vocab_size=vocab_size, hidden_size=128, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, rms_norm_eps=1e-6,
        tie_word_embeddings=True, use_cache=True,
        # Qwen2 has no bos token; like the real configs, bos_token_id is the eos id.
        bos_token_id=eos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
        # The PPM (sequence classification) pools at the last non-pad token only when it knows
        # the pad id, which it reads from this config.
    )
    kw.update(overrides)
    return Qwen2Config(**kw)


def training_texts(n: int, seed: int = 0, fmt: StepFormat = StepFormat(),
                   error_fraction: float = 0.25, domain: str = "arith") -> list[str]:
    """``n`` rendered problems of a generated domain with full scripted-teacher solutions, an
    ``error_fraction`` of them written with slips (wrong operands/operators, syntax errors) so
    the vocabulary also covers what a sampling policy produces."""
    from rstar.domains import load_domain

    d = load_domain(domain)
    rng = random.Random(f"tiny-texts:{seed}")
    clean, noisy = d.teacher(0.0, fmt), d.teacher(0.3, fmt)
    texts = []
    for i, p in enumerate(d.problems(n, seed)):
        teacher = noisy if rng.random() < error_fraction else clean
        steps = _solve(teacher, p.question, fmt, seed=seed * 100003 + i)
        texts.append(fmt.render(p.question, steps))
    return texts


def _solve(teacher: Policy, question: str, fmt: StepFormat, seed: int) -> list[str]:
    """Steps of one teacher solution, with the program's stdout appended to the code_end step.
    A step whose program fails ends the path there (it would be a dead node in the search)."""
    steps: list[str] = []
    for k in range(16):  # at most 8 ops + print + answer; the bound only guards a teacher bug
        step = teacher.propose([StepRequest(question, tuple(steps), 1, seed + k)])[0][0]
        if fmt.ends_code(step):
            out = _run(fmt.program(steps + [step]))
            if out is None:
                return steps + [step]
            step = fmt.with_output(step, out)
        elif fmt.has_code(step, steps) and _run(fmt.program(steps + [step])) is None:
            return steps + [step]
        steps.append(step)
        if fmt.answer_end in step:
            break
    return steps


def _run(program: str) -> str | None:
    """Stdout of a teacher program, or None if it fails. In-process ``exec`` is fine here: the
    code is a scripted teacher's (ours, or a domain plug-in's, which runs in-process anyway),
    never model output."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            exec(compile(program, "<teacher>", "exec"), {"__name__": "__teacher__"})
    except Exception:
        return None
    return buf.getvalue()


def make_tiny_model(out_dir: str | Path, seed: int = 0, n_texts: int = 2000, vocab_size: int = 512,
                    fmt: StepFormat = StepFormat(), domain: str = "arith",
                    **config_overrides: Any) -> Path:
    """Build tokenizer (trained on ``domain``'s teacher texts) + randomly initialised Qwen2 into
    ``out_dir``; same seed, same bytes."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(training_texts(n_texts, seed, fmt, domain=domain),
                          vocab_size=vocab_size, fmt=fmt)
    eos = tok.convert_tokens_to_ids(EOS)
    config = tiny_qwen2_config(len(tok), eos_token_id=eos, pad_token_id=eos, **config_overrides)
    tok.model_max_length = config.max_position_embeddings  # so truncation agrees with the model
    # The initialiser draws from the global RNG; fork it so building a model does not perturb
    # the caller's torch random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def param_count(model: torch.nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def quick_trained(out_dir: str | Path, steps: int = 120) -> tuple[Path, Path]:
    """(policy, ppm) dirs for tests and benchmarks: the tiny Qwen2 after ``steps`` plain SFT
    steps on scripted-teacher solutions (~40 s for 120), so most steps it writes run (a random
    model's all die at the first expansion, leaving nothing to value), and a PPM initialised
    from it with a seeded head. Not a round of ``rstar evolve``: it has no Ray, no mining."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    out = Path(out_dir)
    base = make_tiny_model(out / "base", seed=0)
    tok = AutoTokenizer.from_pretrained(base)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(base)
        texts = training_texts(16 * 40, seed=1)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        for i in range(steps):
            enc = tok(texts[(i % 40) * 16:(i % 40 + 1) * 16], return_tensors="pt",
                      padding=True, add_special_tokens=False)
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            model(**enc, labels=labels).loss.backward()
            opt.step()
            opt.zero_grad()
        model.save_pretrained(out / "policy")
        tok.save_pretrained(out / "policy")
        ppm = AutoModelForSequenceClassification.from_pretrained(out / "policy", num_labels=1)
        torch.nn.init.normal_(ppm.score.weight, std=0.05)
        ppm.save_pretrained(out / "ppm")
        tok.save_pretrained(out / "ppm")
    return out / "policy", out / "ppm"
