"""A small OpenAI-compatible ``/v1/completions`` server backed by a real ``HFTextEngine``.

Tests the OpenAI client against a real HTTP server and a real model (no mocks). Knobs imitate
servers the client meets in the wild: ``echo_stop=False`` strips the stop string even when asked
to keep it, ``send_stop_reason=False`` omits vLLM's ``stop_reason``, and ``inject`` queues error
responses (status, message) served before the next real ones.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from actors.engines.base import GenRequest
from actors.engines.hf import HFTextEngine


@dataclass
class ServerState:
    engine: HFTextEngine
    model: str = "tiny"
    echo_stop: bool = True
    send_stop_reason: bool = True
    injected: deque[tuple[int, str]] = field(default_factory=deque)
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one generate at a time

    def inject(self, status: int, message: str = "injected", times: int = 1) -> None:
        self.injected.extend([(status, message)] * times)


def _complete(state: ServerState, body: dict[str, Any]) -> dict[str, Any]:
    stops = body.get("stop") or []
    stops = [stops] if isinstance(stops, str) else list(stops)
    n, max_tokens = int(body.get("n", 1)), int(body.get("max_tokens", 16))
    with state.lock:
        eng = state.engine
        eng.max_new_tokens = max_tokens
        eng.temperature = float(body.get("temperature", 1.0))
        eng.top_p = float(body.get("top_p", 1.0))
        comps = eng.generate([GenRequest(body["prompt"], n, body.get("seed"))], stops)[0]
    keep = state.echo_stop and bool(body.get("include_stop_str_in_output", False))
    choices = []
    for i, c in enumerate(comps):
        hit = next((s for s in stops if c.text.endswith(s)), None)
        text = c.text if keep or hit is None else c.text[: -len(hit)]
        # Like vLLM: a stop string or the model's eos is "stop" (stop_reason None for eos).
        finish = "stop" if hit is not None or c.tokens < max_tokens else "length"
        choice: dict[str, Any] = {"index": i, "text": text, "logprobs": None,
                                  "finish_reason": finish}
        if state.send_stop_reason:
            choice["stop_reason"] = hit
        choices.append(choice)
    used = sum(c.tokens for c in comps)
    return {"id": "cmpl-test", "object": "text_completion", "model": state.model,
            "choices": choices,
            "usage": {"prompt_tokens": 0, "completion_tokens": used, "total_tokens": used}}


def _handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status in (429, 503):
                self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": {"message": message, "type": "test", "code": status}})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.rstrip("/") != "/v1/completions":
                return self._error(404, f"no route {self.path}")
            try:
                body = json.loads(raw)
            except ValueError:
                return self._error(400, "body is not JSON")
            state.received.append(body)
            if state.injected:
                return self._error(*state.injected.popleft())
            if body.get("model") != state.model:
                return self._error(404, f"The model `{body.get('model')}` does not exist.")
            if not isinstance(body.get("prompt"), str):
                return self._error(400, "prompt must be a string")
            self._send(200, _complete(state, body))

    return Handler


class OpenAITestServer:
    """``with OpenAITestServer(engine) as srv: srv.base_url`` -> ``http://127.0.0.1:PORT/v1``."""

    def __init__(self, engine: HFTextEngine, model: str = "tiny") -> None:
        self.state = ServerState(engine=engine, model=model)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="openai-test-server",
                                       daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "OpenAITestServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
