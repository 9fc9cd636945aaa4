"""``TextEngine`` over any OpenAI-compatible text-completions server (vLLM, SGLang, TGI, ...).

This is how a big bootstrap policy served elsewhere is used: ``POST {base_url}/completions`` with
the rendered prompt, ``n`` samples and the step delimiters as stops. Only the stdlib is used
(``urllib``), so no HTTP client dependency is added.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from tree.steps import StepFormat

from .base import Completion, GenRequest


class OpenAIEngineError(RuntimeError):
    """A request the server rejected (4xx) or that kept failing after all retries."""


class OpenAITextEngine:
    """Text completions from an OpenAI-compatible server.

    * The requests of one ``generate`` call are sent concurrently (``concurrency`` threads): a
      serving engine batches them itself, and per-request ``seed`` s make results independent of
      batching where the server honours them (vLLM does).
    * Connection errors, timeouts, 5xx and 429 are retried ``max_retries`` times with
      exponential backoff (honouring ``Retry-After``); any other 4xx raises at once with the URL
      and the server's message, since retrying a bad request cannot help.
    * Stop strings are kept: ``include_stop_str_in_output`` (a vLLM extension, ignored elsewhere)
      asks the server to keep them. A server that strips them anyway reports
      ``finish_reason == "stop"``; the matched stop is re-appended from ``stop_reason`` when the
      server sends it (vLLM; ``None`` there means the model's eos, and nothing is appended). With
      no ``stop_reason`` at all (e.g. OpenAI itself) it is guessed: ``fmt.answer_end`` if the text
      contains ``fmt.answer_start``, else ``fmt.step_end``. The guess cannot tell a stripped
      ``code_end`` from ``step_end`` (the code block then stays open and the search goes on), and
      an eos stop also gets ``step_end`` appended.
    * ``Completion.tokens`` is the response's ``usage.completion_tokens`` split across the
      choices by text length, or ~4 characters a token when the server sends no usage.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, max_tokens: int = 256,
                 temperature: float = 1.0, top_p: float = 1.0, timeout_s: float = 120.0,
                 max_retries: int = 5, concurrency: int = 16, backoff_s: float = 0.5,
                 fmt: StepFormat = StepFormat()) -> None:
        self.url = base_url.rstrip("/") + "/completions"
        self.model, self.fmt = model, fmt
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.max_tokens, self.temperature, self.top_p = max_tokens, temperature, top_p
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        self.concurrency = max(1, concurrency)

    def generate(self, requests: Sequence[GenRequest],
                 stops: Sequence[str]) -> list[list[Completion]]:
        if not requests:
            return []
        workers = min(self.concurrency, len(requests))
        if workers == 1:
            return [self._one(r, stops) for r in requests]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai-engine") as pool:
            return list(pool.map(lambda r: self._one(r, stops), requests))

    # -- one request ----------------------------------------------------------------------------

    def _one(self, req: GenRequest, stops: Sequence[str]) -> list[Completion]:
        if req.n <= 0:
            return []
        payload: dict[str, Any] = {
            "model": self.model, "prompt": req.prompt, "n": req.n, "max_tokens": self.max_tokens,
            "temperature": self.temperature, "top_p": self.top_p,
            "include_stop_str_in_output": True,
        }
        if stops:
            payload["stop"] = list(stops)
        if req.seed is not None:
            payload["seed"] = req.seed
        body = self._post(payload)
        choices = sorted(body.get("choices", []), key=lambda c: c.get("index", 0))
        if len(choices) != req.n:
            raise OpenAIEngineError(
                f"POST {self.url}: asked for n={req.n} choices, got {len(choices)}")
        texts = [self._finish(c, stops) for c in choices]
        usage = (body.get("usage") or {}).get("completion_tokens")
        return [Completion(t, k) for t, k in zip(texts, _split_tokens(texts, usage))]

    def _finish(self, choice: dict[str, Any], stops: Sequence[str]) -> str:
        text = cut_at_stop(choice.get("text") or "", stops)
        if choice.get("finish_reason") != "stop" or any(text.endswith(s) for s in stops if s):
            return text
        if "stop_reason" in choice:
            reason = choice["stop_reason"]
            # vLLM: the matched stop string, None for eos, an int for a stop token id.
            return text + reason if isinstance(reason, str) and reason in stops else text
        fmt = self.fmt
        guess = fmt.answer_end if fmt.answer_start in text else fmt.step_end
        return text + guess if guess in stops else text

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            wait = self.backoff_s * 2 ** attempt
            try:
                req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return json.loads(resp.read().decode())
            except urllib.error.HTTPError as e:
                detail = _error_text(e)
                if e.code != 429 and e.code < 500:
                    raise OpenAIEngineError(f"POST {self.url} -> HTTP {e.code}: {detail}") from None
                last = f"HTTP {e.code}: {detail}"
                retry_after = e.headers.get("Retry-After") if e.headers else None
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    wait = float(retry_after)
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError,
                    socket.timeout, TimeoutError) as e:  # refused, reset, half-sent response
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            except json.JSONDecodeError as e:  # a proxy's HTML error page, a truncated body
                last = f"invalid JSON in response: {e}"
            if attempt < self.max_retries:
                time.sleep(min(wait, 30.0))  # a long Retry-After still re-tries within 30 s
        raise OpenAIEngineError(
            f"POST {self.url} failed after {self.max_retries + 1} attempts: {last}")


def _error_text(e: urllib.error.HTTPError) -> str:
    """The server's error message (OpenAI-style ``{"error": {"message": ...}}``) or raw body."""
    try:
        raw = e.read().decode(errors="replace")
    except Exception:
        return str(e.reason)
    try:
        err = json.loads(raw).get("error", raw)
        return str(err.get("message", err) if isinstance(err, dict) else err)[:500]
    except (ValueError, AttributeError):
        return raw[:500] or str(e.reason)


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to and including the earliest stop string in it (unchanged if none); at equal
    positions the longest stop wins. Shared with ``hf`` (it lives here because this module needs
    only the stdlib)."""
    hits = [(text.find(s), -len(s), s) for s in stops if s and s in text]
    if not hits:
        return text
    pos, _, s = min(hits)
    return text[: pos + len(s)]


def _split_tokens(texts: list[str], total: int | None) -> list[int]:
    """Per-choice token counts: ``total`` split by text length (sums to ``total``), else ~4 chars
    a token (at least 1 for a non-empty text)."""
    if not isinstance(total, int) or total < 0:
        return [max(1, round(len(t) / 4)) if t else 0 for t in texts]
    chars = sum(len(t) for t in texts)
    if chars == 0:
        base = [total // len(texts)] * len(texts)
        base[0] += total - sum(base)
        return base
    out = [total * len(t) // chars for t in texts]
    out[max(range(len(texts)), key=lambda i: len(texts[i]))] += total - sum(out)
    return out
