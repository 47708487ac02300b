"""A language model behind lab 08's plumbing: generation, streaming, timeouts, a prompt cache, tokens and cost.

`create_llm_app` takes `course.serving.service.create_app` (request ids, `/healthz`, `/readyz`, the model version
header, one JSON log line per request) and adds two routes:

* `POST /v1/generate`: `{"messages": [{"role": ..., "content": ...}], "max_tokens": 32, "timeout_s": 10}` is
  answered with the text, why it stopped (`finish_reason`: `stop`, `length` or `timeout`), whether it came from
  the cache, and its usage: prompt and completion tokens and their cost at the stated `Prices`;
* `POST /v1/generate/stream`: the same request, answered as server-sent events: one `data: {"text": ...}` event
  per piece of text as soon as the model writes it, then one `data: {"done": true, ...}` event with the usage.
  A client reads the first words after the prompt's processing time instead of after the whole answer, and a
  client that hangs up stops the generation.

One model generates one answer at a time (a second generation in parallel would only make both slower on two
cores), so requests queue for it. `timeout_s` bounds the whole request: the wait in that queue (a request that
cannot start in time gets `503` with `Retry-After`) and the generation (which stops at the deadline and returns
what it has, `finish_reason: "timeout"`).

A *cache* (any object with `key(messages, max_tokens)`, `get(key)` and `put(key, answer)`, such as `PromptCache`)
answers a repeated request without the model: no tokens, no cost, milliseconds. Each generation request adds a
line to the request log (logger `course.serving.requests.llm`, so `Server.request_log()` has it) with its
`request_id`, tokens, cost, `cached` and `finish_reason`, beside the plumbing's own line for the same id.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from course.llmops import llm
from course.serving import service

USAGE_LOG = "course.serving.requests.llm"  # a child of the request log: its lines land in requests.jsonl too
usage_log = logging.getLogger(USAGE_LOG)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=8000)


class GenerateRequest(BaseModel):
    """The body of both generation routes; anything else is refused with 422 before the model is touched."""

    model_config = ConfigDict(extra="forbid")
    messages: list[Message] = Field(min_length=1, max_length=16)
    max_tokens: int = Field(32, ge=1, le=256)
    timeout_s: float = Field(10.0, gt=0, le=120)


class PromptCache:
    """Answers of earlier requests, by a key of everything that decides the answer; least recently used first out.

    The key is a hash of the messages *and* `max_tokens` (a 16-token answer is not the 64-token one), not of
    `timeout_s`, which decides only whether an answer is finished. An answer cut off by its deadline is not
    stored: the next request for it deserves the whole answer. Greedy decoding makes an answer a function of its
    key; with sampling, a cache would have to store one draw and decide that repeating it is fine.
    """

    def __init__(self, capacity: int = 256) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, not {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def key(messages: Sequence[dict[str, str]], max_tokens: int) -> str:
        canonical = json.dumps({"messages": [dict(m) for m in messages], "max_tokens": int(max_tokens)}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            answer = self._items.get(key)
            if answer is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return dict(answer)

    def put(self, key: str, answer: dict[str, Any]) -> bool:
        if answer.get("finish_reason") == "timeout":
            return False
        with self._lock:
            self._items[key] = dict(answer)
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._items)


def _refuse(body: bytes) -> Any:
    raise HTTPException(404, "this service generates text: POST /v1/generate or /v1/generate/stream")


class _HungUp(Exception):
    """The streaming client went away: stop generating for nobody."""


def create_llm_app(
    tokenizer: Any,
    model: Any,
    *,
    version: str = llm.MODEL_VERSION,
    cache: Any | None = None,
    prices: llm.Prices = llm.PRICES,
    title: str = "SmolLM2-135M-Instruct",
) -> FastAPI:
    """The app described in the module docstring, serving `model` (a causal LM) with `tokenizer`."""
    app = service.create_app(model=model, version=version, parse=_refuse, title=title)
    app.state.cache = cache
    turn = threading.Lock()  # one generation at a time

    def parse(body: bytes) -> GenerateRequest:
        try:
            return GenerateRequest.model_validate_json(body)
        except ValidationError as exc:
            raise HTTPException(422, service.describe(exc)) from None

    def log_usage(rid: str, answer: dict[str, Any], cached: bool, seconds: float) -> dict[str, Any]:
        prompt_tokens = 0 if cached else answer["prompt_tokens"]
        completion_tokens = 0 if cached else answer["completion_tokens"]
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cost_usd": prices.cost(prompt_tokens, completion_tokens),
        }
        first = None if cached or answer.get("first_token_s") is None else round(answer["first_token_s"], 4)
        line = {
            "ts": round(time.time(), 3),
            "request_id": rid,
            "event": "llm",
            "cached": cached,
            "finish_reason": answer["finish_reason"],
            **usage,
            "seconds": round(seconds, 4),
            "first_token_s": first,
        }
        usage_log.info(json.dumps(line))
        return usage

    def run(req: GenerateRequest, start: float, on_text: Any = None) -> dict[str, Any]:
        """Generate under the lock; the deadline counts from the request's arrival, queueing included."""
        waited = turn.acquire(timeout=req.timeout_s)
        if not waited:
            raise HTTPException(503, f"busy: no generation could start within {req.timeout_s} s", {"Retry-After": "1"})
        try:
            remaining = max(0.0, req.timeout_s - (time.perf_counter() - start))
            prompt = llm.chat_prompt(tokenizer, [m.model_dump() for m in req.messages])
            out = llm.generate(
                tokenizer, model, prompt, max_new_tokens=req.max_tokens, timeout_s=remaining, on_text=on_text
            )
        finally:
            turn.release()
        return {
            "text": out.text,
            "finish_reason": out.finish_reason,
            "prompt_tokens": out.prompt_tokens,
            "completion_tokens": out.completion_tokens,
            "first_token_s": out.first_token_s,
        }

    def lookup(req: GenerateRequest) -> tuple[str | None, dict[str, Any] | None]:
        if app.state.cache is None:
            return None, None
        key = app.state.cache.key([m.model_dump() for m in req.messages], req.max_tokens)
        return key, app.state.cache.get(key)

    @app.post("/v1/generate")
    async def generate(request: Request) -> JSONResponse:
        start = time.perf_counter()
        rid = service.request_id_of(request)
        try:
            req = parse(await request.body())
            key, answer = lookup(req)
            cached = answer is not None
            if answer is None:
                answer = await run_in_threadpool(run, req, start)
                if key is not None:
                    app.state.cache.put(key, answer)
        except HTTPException as exc:
            return service.error_response(exc.status_code, exc.detail, rid, dict(exc.headers or {}))
        seconds = time.perf_counter() - start
        usage = log_usage(rid, answer, cached, seconds)
        return JSONResponse(
            {
                "text": answer["text"],
                "finish_reason": answer["finish_reason"],
                "cached": cached,
                "usage": usage,
                "seconds": round(seconds, 4),
                "model_version": version,
                "request_id": rid,
            }
        )

    @app.post("/v1/generate/stream")
    async def generate_stream(request: Request) -> Any:
        start = time.perf_counter()
        rid = service.request_id_of(request)
        try:
            req = parse(await request.body())
        except HTTPException as exc:
            return service.error_response(exc.status_code, exc.detail, rid)
        key, cached_answer = lookup(req)
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[Any] = asyncio.Queue()
        hung_up = threading.Event()

        def on_text(piece: str) -> None:
            if hung_up.is_set():
                raise _HungUp
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        def produce() -> None:
            try:
                answer = run(req, start, on_text)
                if key is not None:
                    app.state.cache.put(key, answer)
                loop.call_soon_threadsafe(pieces.put_nowait, ("done", answer))
            except _HungUp:
                loop.call_soon_threadsafe(pieces.put_nowait, ("gone", None))
            except HTTPException as exc:
                loop.call_soon_threadsafe(pieces.put_nowait, ("error", exc))

        async def events() -> AsyncIterator[bytes]:
            def event(payload: dict[str, Any]) -> bytes:
                return f"data: {json.dumps(payload)}\n\n".encode()

            if cached_answer is not None:
                yield event({"text": cached_answer["text"]})
                usage = log_usage(rid, cached_answer, True, time.perf_counter() - start)
                yield event({"done": True, "finish_reason": cached_answer["finish_reason"], "cached": True,
                             "usage": usage, "request_id": rid})  # fmt: skip
                return
            worker = threading.Thread(target=produce, name=f"generate-{rid}", daemon=True)
            worker.start()
            try:
                while True:
                    item = await pieces.get()
                    if isinstance(item, str):
                        yield event({"text": item})
                        continue
                    kind, value = item
                    if kind == "error":
                        yield event({"error": value.detail, "status": value.status_code, "request_id": rid})
                    elif kind == "done":
                        usage = log_usage(rid, value, False, time.perf_counter() - start)
                        yield event({"done": True, "finish_reason": value["finish_reason"], "cached": False,
                                     "usage": usage, "request_id": rid})  # fmt: skip
                    return
            finally:
                hung_up.set()  # a client that hung up (or an answer that is complete): stop the generation

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    return app


def app_from_env() -> FastAPI:
    """What `Server("course.llmops.service:app_from_env")` runs: SmolLM2 from the cache, a `PromptCache`.

    LLM_CACHE_SIZE sets the cache's capacity (0: no cache); LLM_PRICE_PROMPT and LLM_PRICE_COMPLETION the price
    per million tokens.
    """
    tokenizer, model = llm.load_llm()
    size = int(os.environ.get("LLM_CACHE_SIZE", "256"))
    prices = llm.Prices(
        float(os.environ.get("LLM_PRICE_PROMPT", llm.PRICES.prompt_per_million)),
        float(os.environ.get("LLM_PRICE_COMPLETION", llm.PRICES.completion_per_million)),
    )
    return create_llm_app(tokenizer, model, cache=PromptCache(size) if size > 0 else None, prices=prices)
