"""A hybrid router: a cheap classifier answers when it is confident, a language model below a threshold.

The classifier (a logistic regression on MiniLM embeddings) costs a fraction of a millisecond per message; the
LLM path costs a forward pass of a 135M-parameter model, tokens that a hosted model would bill, and a few hundred
milliseconds. The router spends the expensive path only where the cheap one is unsure.

A 135M model cannot pick one of 77 intents from nothing, so the LLM path here is given the classifier's top-k
candidates: their names go into the prompt, and the model *scores* each name as the continuation
(`course.llmops.llm.score_options`: one pass over the prompt, one batched pass over the options) instead of
writing free text that would have to be parsed and could name an intent that does not exist.

`IntentLLM` keeps a ledger of every call it made (`calls`, `ledger`), so that an evaluation can count LLM calls
and reuse answers without trusting the caller's own bookkeeping. `choose_threshold` and `cost_curve` are the
reference versions of lab 20's exercises.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from course.llmops import llm

SYSTEM = "You sort the messages that customers send to a bank by their intent."


def intent_name(category: str) -> str:
    """`card_arrival` -> `card arrival`: the words a language model has seen, not an identifier."""
    return category.replace("_", " ")


@dataclass(frozen=True)
class LLMAnswer:
    """The intent the LLM path chose, among which candidates, and what the call cost."""

    label: int
    candidates: tuple[int, ...]
    tokens: int
    seconds: float
    cost_usd: float


@dataclass(frozen=True)
class Decision:
    """How the router answered one message: `path` is `classifier`, `llm` (a model call) or `cache` (none)."""

    text: str
    label: int
    path: str
    confidence: float
    tokens: int
    seconds: float


class IntentLLM:
    """The LLM path: SmolLM2 picks one of the classifier's `k` most probable intents, by log-likelihood."""

    def __init__(
        self, tokenizer: Any, model: Any, categories: Sequence[str], k: int = 5, prices: llm.Prices = llm.PRICES
    ) -> None:
        self.tokenizer, self.model = tokenizer, model
        self.categories = list(categories)
        self.k = k
        self.prices = prices
        self.calls = 0
        self.ledger: dict[tuple[str, tuple[int, ...]], LLMAnswer] = {}

    def candidates(self, probabilities: np.ndarray) -> tuple[int, ...]:
        order = np.argsort(-np.asarray(probabilities), kind="stable")
        return tuple(int(i) for i in order[: self.k])

    def prompt(self, text: str, candidates: Sequence[int]) -> str:
        names = "; ".join(intent_name(self.categories[c]) for c in candidates)
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Message: {text.strip()}\nWhich intent is it: {names}?"},
        ]
        return llm.chat_prompt(self.tokenizer, messages, prefill="Intent:")

    def __call__(self, text: str, probabilities: np.ndarray) -> LLMAnswer:
        """One LLM call (always: caching is the caller's business), recorded in the ledger."""
        candidates = self.candidates(probabilities)
        start = time.perf_counter()
        options = [" " + intent_name(self.categories[c]) for c in candidates]
        scores = llm.score_options(self.tokenizer, self.model, self.prompt(text, candidates), options)
        seconds = time.perf_counter() - start
        answer = LLMAnswer(
            label=candidates[scores.best],
            candidates=candidates,
            tokens=scores.tokens,
            seconds=seconds,
            cost_usd=self.prices.cost(scores.tokens, 0),  # scoring reads tokens and writes none
        )
        self.calls += 1
        self.ledger[(text, candidates)] = answer
        return answer

    def answer(self, text: str, probabilities: np.ndarray) -> LLMAnswer:
        """The ledger's answer for this message and these candidates, or a new call: for evaluations."""
        recorded = self.ledger.get((text, self.candidates(probabilities)))
        return recorded if recorded is not None else self(text, probabilities)


# --- choosing the threshold, and what it costs ------------------------------------------------------------------

THRESHOLDS = np.round(np.arange(0.0, 1.0, 0.01), 2)


def choose_threshold(
    confidence: np.ndarray,
    correct: np.ndarray,
    target: float,
    thresholds: Sequence[float] = THRESHOLDS,
    min_answered: int = 30,
) -> float:
    """The lowest threshold at which the classifier's answers (confidence >= threshold) are right >= `target`.

    Lowest, because every message below the threshold costs an LLM call; at least `min_answered` answers, because
    a precision measured on three messages says nothing. Measured on validation messages, never on the messages
    the router will be judged on. 1.0 (everything to the LLM) when no threshold qualifies.
    """
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=bool)
    for threshold in sorted(float(t) for t in thresholds):
        answered = confidence >= threshold
        if answered.sum() >= min_answered and correct[answered].mean() >= target:
            return threshold
    return 1.0


def cost_curve(
    confidence: np.ndarray,
    clf_pred: np.ndarray,
    llm_pred: np.ndarray,
    labels: np.ndarray,
    thresholds: Sequence[float] = THRESHOLDS,
) -> dict[str, np.ndarray]:
    """For each threshold: the share of messages sent to the LLM and the router's accuracy.

    Needs both paths' answers for every message (so it is computed on a sample where the LLM answered all).
    """
    confidence = np.asarray(confidence, dtype=float)
    share, accuracy = [], []
    for t in thresholds:
        to_llm = confidence < t
        pred = np.where(to_llm, llm_pred, clf_pred)
        share.append(float(to_llm.mean()))
        accuracy.append(float(np.mean(pred == labels)))
    return {
        "threshold": np.asarray(thresholds, dtype=float),
        "llm_share": np.array(share),
        "accuracy": np.array(accuracy),
    }
