"""``AsyncVLLMTextEngine``: the vLLM policy engine the Ray server runs, fed request by request.

``vllm.LLM.generate`` serves a batch to its end, so while its slowest sequence finishes, new
requests from the trees wait for the next call and the engine runs half empty. vLLM's
``AsyncLLM`` batches continuously instead: each request joins the running batch as soon as a
tree produces it and leaves when it is done. Same requests, seeds and stop handling as
``VLLMTextEngine``, whose set-up this reuses.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Sequence

from .base import Completion, GenRequest
from .vllm import VLLMTextEngine, _import_vllm


class AsyncVLLMTextEngine(VLLMTextEngine):
    def start(self) -> None:
        _import_vllm()
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.async_llm import AsyncLLM

        # Built outside an event loop (the actor's constructor): vLLM starts its output
        # handler on the loop of the first request.
        self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**self.args))
        self.tokenizer = self.engine.get_tokenizer()
        self._final_only = RequestOutputKind.FINAL_ONLY

    async def agenerate(self, requests: Sequence[GenRequest],
                        stops: Sequence[str]) -> list[list[Completion]]:
        return list(await asyncio.gather(*(self._one(r, stops) for r in requests)))

    async def _one(self, r: GenRequest, stops: Sequence[str]) -> list[Completion]:
        made = self.request(r, stops, output_kind=self._final_only)
        if made is None:
            return [Completion("", 0)] * r.n
        final = None
        async for final in self.engine.generate(made[0], made[1], request_id=uuid.uuid4().hex):
            pass
        return self.completions(final, stops)

    def generate(self, requests: Sequence[GenRequest],
                 stops: Sequence[str]) -> list[list[Completion]]:
        """The blocking interface, for callers outside an event loop."""
        return asyncio.run(self.agenerate(requests, stops))

    def close(self) -> None:
        self.engine.shutdown()
