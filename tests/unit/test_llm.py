"""course.llmops.llm on a tiny random Llama: the cache of dequantized weights, greedy streaming, scoring, prices.

The real SmolLM2 takes seconds to load; these tests build a 2-layer model and a word-level tokenizer in
milliseconds, and check each function against the slow, obvious computation.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers

from course.llmops import llm

pytestmark = pytest.mark.unit

WORDS = ["[PAD]", "[UNK]", "</s>", "hello", "world", "card", "arrived", "lost", "my", "is", "the", "a", "?", "."]
WORDS += [f"w{i}" for i in range(30)]


def tiny_tokenizer() -> transformers.PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", eos_token="</s>"
    )
    tok.chat_template = "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}assistant"
    return tok


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, eos_token_id=2, pad_token_id=0, bos_token_id=None,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def tok() -> transformers.PreTrainedTokenizerFast:
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_model()


def greedy_without_cache(model: torch.nn.Module, ids: list[int], steps: int) -> list[int]:
    out = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=torch.tensor([ids + out])).logits[0, -1]
            out.append(int(logits.argmax()))
    return out


# --- generation -----------------------------------------------------------------------------------------------


def test_greedy_generation_with_the_kv_cache_matches_recomputing_everything(tok, model) -> None:
    prompt = "hello my card is lost"
    expected = greedy_without_cache(model, tok(prompt)["input_ids"], 6)
    if 2 in expected:
        expected = expected[: expected.index(2)]
    pieces: list[str] = []
    out = llm.generate(tok, model, prompt, max_new_tokens=6, on_text=pieces.append)
    assert out.text == tok.decode(expected, skip_special_tokens=True)
    assert "".join(pieces) == out.text, "the streamed pieces add up to the answer"
    assert out.completion_tokens == len(expected) and out.prompt_tokens == 5
    assert out.finish_reason == ("length" if len(expected) == 6 else "stop")
    assert out.seconds > 0 and (out.first_token_s is None or out.first_token_s <= out.seconds)


def test_generation_stops_at_a_stop_string_and_at_the_deadline(tok, model) -> None:
    full = llm.generate(tok, model, "hello world", max_new_tokens=8)
    words = full.text.split()
    if len(words) >= 3:
        cut = llm.generate(tok, model, "hello world", max_new_tokens=8, stop=[words[2]])
        assert cut.finish_reason == "stop" and words[2] not in cut.text.split()[2:3]
    late = llm.generate(tok, model, "hello world", max_new_tokens=8, timeout_s=0.0)
    assert late.finish_reason == "timeout" and late.completion_tokens == 0 and late.text == ""


def test_chat_prompt_and_token_counts(tok) -> None:
    messages = [{"role": "system", "content": "a"}, {"role": "user", "content": "hello"}]
    assert llm.chat_prompt(tok, messages, prefill="the") == "system a user hello assistantthe"
    assert llm.count_tokens(tok, "hello world ?") == 3


# --- scoring --------------------------------------------------------------------------------------------------


def test_scores_of_options_over_a_shared_cache_equal_one_full_forward_per_option(tok, model) -> None:
    prompt, options = "my card", ["is lost", "arrived", "is the w3 w4"]
    scores = llm.score_options(tok, model, prompt, options)
    p = tok(prompt)["input_ids"]
    for i, option in enumerate(options):
        o = tok(option)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([p + o])).logits[0], -1)
        expected = sum(float(logp[len(p) + j - 1, o[j]]) for j in range(len(o)))
        assert scores.logprobs[i] == pytest.approx(expected, abs=1e-4)
    assert scores.option_tokens == [2, 1, 4] and scores.prompt_tokens == 2 and scores.tokens == 9
    assert scores.best == int(np.argmax(scores.logprobs))
    with pytest.raises(ValueError):
        llm.score_options(tok, model, prompt, [])


# --- prices and the cache -------------------------------------------------------------------------------------


def test_prices_are_per_million_tokens_and_a_generation_knows_its_cost() -> None:
    prices = llm.Prices(prompt_per_million=1.0, completion_per_million=4.0)
    assert prices.cost(1_000_000, 0) == 1.0 and prices.cost(500, 250) == pytest.approx(0.0015)
    g = llm.Generation("x", 1000, 100, "stop", 0.1, 0.01)
    assert g.cost(prices) == pytest.approx(0.0014)


def test_a_cold_cache_is_filled_once_and_then_loaded_with_the_same_weights(tmp_path, monkeypatch) -> None:
    gguf = tmp_path / llm.GGUF_FILE
    gguf.write_bytes(b"not really gguf")
    monkeypatch.setattr(llm, "gguf_path", lambda: gguf)
    source = tiny_model(seed=3)
    calls = []

    def dequantize():
        calls.append(1)
        return tiny_tokenizer(), source

    monkeypatch.setattr(llm, "_from_gguf", dequantize)
    cache = tmp_path / "cache"
    assert not llm.cache_is_warm(cache)
    llm.load_llm(cache)
    assert llm.cache_is_warm(cache) and calls == [1]
    assert json.loads((cache / "course-cache.json").read_text())["bytes"] == gguf.stat().st_size
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in cache.iterdir()), "readable by a grader's other user"
    tok, again = llm.load_llm(cache)
    assert calls == [1], "a warm cache is read, not rebuilt"
    x = torch.tensor([[3, 4, 5]])
    with torch.no_grad():
        assert torch.equal(again(input_ids=x).logits, source(input_ids=x).logits)
    assert tok("hello world")["input_ids"] == [3, 4]
    gguf.write_bytes(b"another release of the file")  # a different file: the cache is stale
    assert not llm.cache_is_warm(cache)
    llm.load_llm(None)
    assert calls == [1, 1] and not (tmp_path / "cache.tmp").exists()


def test_a_cache_that_cannot_be_written_costs_time_not_the_model(tmp_path, monkeypatch) -> None:
    gguf = tmp_path / llm.GGUF_FILE
    gguf.write_bytes(b"x")
    monkeypatch.setattr(llm, "gguf_path", lambda: gguf)
    monkeypatch.setattr(llm, "_from_gguf", lambda: (tiny_tokenizer(), tiny_model()))

    def read_only(*args):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(llm, "_save", read_only)
    tok, model = llm.load_llm(tmp_path / "cache")
    assert tok("hello")["input_ids"] == [3] and not model.training
