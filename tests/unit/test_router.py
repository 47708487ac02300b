"""course.llmops.router: the threshold choice, the cost/accuracy curve, and the LLM's intent path."""

from __future__ import annotations

import numpy as np
import pytest

from course.llmops import llm, router
from tests.unit.test_llm import tiny_model, tiny_tokenizer

pytestmark = pytest.mark.unit

CONF = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
OK = np.array([True, True, True, False, True, False, False, False])


def test_choose_threshold_takes_the_lowest_threshold_that_meets_the_target() -> None:
    assert router.choose_threshold(CONF, OK, 0.75, thresholds=[0.9, 0.3, 0.5, 0.7], min_answered=1) == 0.7
    assert router.choose_threshold(CONF, OK, 0.5, thresholds=[0.3, 0.5], min_answered=1) == 0.3
    assert router.choose_threshold(CONF, OK, 1.0, thresholds=[0.3, 0.8, 0.9], min_answered=1) == 0.8


def test_choose_threshold_needs_enough_answers_and_falls_back_to_the_llm_for_everything() -> None:
    assert router.choose_threshold(CONF, OK, 0.75, thresholds=[0.7, 0.9], min_answered=5) == 1.0
    assert router.choose_threshold(CONF, OK, 0.99, min_answered=1) == 0.71, "the default grid steps by 0.01"


def test_the_cost_curve_goes_from_the_classifier_alone_to_the_llm_for_everything() -> None:
    labels = np.array([1, 2, 3, 4])
    clf, llm_pred = np.array([1, 2, 0, 0]), np.array([1, 0, 3, 4])
    curve = router.cost_curve(np.array([0.9, 0.8, 0.3, 0.2]), clf, llm_pred, labels, thresholds=[0.0, 0.5, 1.0])
    assert curve["llm_share"].tolist() == [0.0, 0.5, 1.0]
    assert curve["accuracy"].tolist() == [0.5, 1.0, 0.75]


def test_intent_names_are_words() -> None:
    assert router.intent_name("card_arrival") == "card arrival"


def test_the_llm_path_picks_a_candidate_counts_its_calls_and_keeps_a_ledger() -> None:
    tok, model = tiny_tokenizer(), tiny_model()
    categories = ["card_arrived", "lost_card", "hello_world", "my_card"]
    prices = llm.Prices(prompt_per_million=2.0, completion_per_million=5.0)
    path = router.IntentLLM(tok, model, categories, k=2, prices=prices)
    probabilities = np.array([0.1, 0.5, 0.05, 0.35])
    assert path.candidates(probabilities) == (1, 3)
    answer = path("my card is lost", probabilities)
    assert answer.label in (1, 3) and answer.candidates == (1, 3) and path.calls == 1
    prompt = path.prompt("my card is lost", (1, 3))
    scores = llm.score_options(tok, model, prompt, [" lost card", " my card"])
    assert answer.tokens == scores.tokens and answer.label == (1, 3)[scores.best]
    assert answer.cost_usd == pytest.approx(prices.cost(scores.tokens, 0)), "scoring reads tokens, writes none"
    again = path.answer("my card is lost", probabilities)
    assert again is answer and path.calls == 1, "answer() reuses the ledger"
    path.answer("hello world", probabilities)
    assert path.calls == 2 and len(path.ledger) == 2
