"""course.llmops.service on a tiny random Llama: generation, streaming, deadlines, the prompt cache, usage lines."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from fastapi.testclient import TestClient

from course.llmops import llm, service
from course.llmops.service import PromptCache
from tests.unit.test_llm import tiny_model, tiny_tokenizer

pytestmark = pytest.mark.unit

PRICES = llm.Prices(prompt_per_million=1.0, completion_per_million=3.0)


def body(text: str = "hello my card", max_tokens: int = 5, timeout_s: float = 10.0) -> dict:
    return {"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens, "timeout_s": timeout_s}


@pytest.fixture()
def client():
    app = service.create_llm_app(tiny_tokenizer(), tiny_model(), cache=PromptCache(8), prices=PRICES)
    with TestClient(app) as c:
        yield c


def usage_lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == service.USAGE_LOG]


# --- the prompt cache ---------------------------------------------------------------------------------------------


def test_the_cache_key_covers_messages_and_max_tokens_only() -> None:
    m = [{"role": "user", "content": "hi"}]
    assert PromptCache.key(m, 5) == PromptCache.key([{"content": "hi", "role": "user"}], 5)
    assert PromptCache.key(m, 5) != PromptCache.key(m, 6)
    assert PromptCache.key(m, 5) != PromptCache.key([{"role": "system", "content": "hi"}], 5)


def test_the_cache_evicts_the_least_recently_used_and_never_stores_cut_off_answers() -> None:
    cache = PromptCache(capacity=2)
    answer = {"text": "x", "finish_reason": "stop", "prompt_tokens": 3, "completion_tokens": 1}
    cache.put("a", answer)
    cache.put("b", answer)
    assert cache.get("a") == answer  # a is now the most recent
    cache.put("c", answer)
    assert cache.get("b") is None and cache.get("a") == answer and len(cache) == 2
    assert cache.put("d", {**answer, "finish_reason": "timeout"}) is False and cache.get("d") is None
    assert (cache.hits, cache.misses) == (1 + 1, 2)
    copy = cache.get("a")
    copy["text"] = "changed"
    assert cache.get("a")["text"] == "x", "get returns a copy"
    with pytest.raises(ValueError):
        PromptCache(0)


# --- the routes ---------------------------------------------------------------------------------------------------


def test_a_generation_is_priced_and_its_repeat_comes_from_the_cache_for_free(client, caplog) -> None:
    caplog.set_level(logging.INFO, logger=service.USAGE_LOG)
    first = client.post("/v1/generate", json=body(), headers={"X-Request-ID": "r1"}).json()
    assert first["cached"] is False and first["usage"]["prompt_tokens"] > 0
    usage = first["usage"]
    assert usage["cost_usd"] == pytest.approx(PRICES.cost(usage["prompt_tokens"], usage["completion_tokens"]))
    again = client.post("/v1/generate", json=body(), headers={"X-Request-ID": "r2"}).json()
    assert again["cached"] is True and again["text"] == first["text"]
    assert again["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    other = client.post("/v1/generate", json=body(max_tokens=6)).json()
    assert other["cached"] is False, "another max_tokens is another answer"
    lines = {line["request_id"]: line for line in usage_lines(caplog)}
    assert lines["r1"]["cached"] is False and lines["r2"]["cached"] is True and lines["r2"]["cost_usd"] == 0.0
    assert lines["r2"]["first_token_s"] is None, "a cache hit streams no token"


def test_a_deadline_stops_the_generation_and_its_answer_is_not_cached(client) -> None:
    late = client.post("/v1/generate", json=body(max_tokens=50, timeout_s=1e-6)).json()
    assert late["finish_reason"] == "timeout" and late["usage"]["completion_tokens"] == 0
    again = client.post("/v1/generate", json=body(max_tokens=50, timeout_s=1e-6)).json()
    assert again["cached"] is False


@pytest.mark.parametrize(
    "bad",
    [
        {"messages": [], "max_tokens": 5},
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
        {"messages": [{"role": "robot", "content": "x"}]},
        {"messages": [{"role": "user", "content": "x"}], "temperature": 1.0},
    ],
)
def test_malformed_requests_get_422_before_the_model_runs(client, bad) -> None:
    answer = client.post("/v1/generate", json=bad)
    assert answer.status_code == 422 and answer.json()["request_id"]
    assert client.post("/v1/generate/stream", json=bad).status_code == 422


def test_the_mnist_route_is_refused_and_the_plumbing_is_there(client) -> None:
    assert client.post("/v1/predict", content=b"{}").status_code == 404
    assert client.get("/readyz").json()["model_version"] == llm.MODEL_VERSION
    assert client.post("/v1/generate", json=body()).headers["X-Model-Version"] == llm.MODEL_VERSION


def test_the_stream_sends_the_same_text_as_events_then_its_usage_and_fills_the_cache(client) -> None:
    with client.stream("POST", "/v1/generate/stream", json=body(max_tokens=6)) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data: ") :]) for line in answer.iter_lines() if line.startswith("data: ")]
    assert events[-1]["done"] is True and events[-1]["cached"] is False
    text = "".join(e["text"] for e in events[:-1])
    plain = client.post("/v1/generate", json=body(max_tokens=6)).json()
    assert plain["cached"] is True and plain["text"] == text, "the streamed answer is the cached one"
    with client.stream("POST", "/v1/generate/stream", json=body(max_tokens=6)) as answer:
        replay = [json.loads(line[6:]) for line in answer.iter_lines() if line.startswith("data: ")]
    assert replay[0]["text"] == text and replay[-1]["cached"] is True


def test_a_request_that_cannot_start_before_its_deadline_gets_503(monkeypatch) -> None:
    real = llm.generate

    def slow(*args, **kwargs):
        time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(service.llm, "generate", slow)
    app = service.create_llm_app(tiny_tokenizer(), tiny_model(), cache=None, prices=PRICES)
    with TestClient(app) as c:
        first = threading.Thread(target=lambda: c.post("/v1/generate", json=body(timeout_s=5)))
        first.start()
        time.sleep(0.3)
        busy = c.post("/v1/generate", json=body(text="another", timeout_s=0.2))
        first.join()
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
