"""Lab 20: plausible wrong answers that must lose points, and the solution's milestone figure."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "20-llmops-rag"

MUTANTS = [
    Mutant(
        "recall@k looks at k + 1 results (k off by one)",
        cell="ex-metrics",
        old="hits += any(int(i) in rel for i in list(res)[:k])",
        new="hits += any(int(i) in rel for i in list(res)[:k + 1])",
        loses=["test-metrics"],
    ),
    Mutant(
        "MRR without the reciprocal: the mean rank of the first hit",
        cell="ex-metrics",
        old="total += 1.0 / rank",
        new="total += rank",
        loses=["test-metrics"],
    ),
    Mutant(
        "wrong relevance labels: every chunk of the right document counts, answer or not",
        cell="ex-metrics",
        old="if c.doc_id == doc_id and min(c.end, end) - max(c.start, start) >= need > 0}",
        new="if c.doc_id == doc_id}",
        loses=["test-metrics"],
    ),
    Mutant(
        "structured output accepted without validation (model_construct)",
        cell="ex-structured",
        old="value = CitedAnswer.model_validate_json(reply[first:last + 1])",
        new="value = CitedAnswer.model_construct(**json.loads(reply[first:last + 1]))",
        loses=["test-structured"],
    ),
    Mutant(
        "groundedness checked against the question instead of the chunks in the prompt",
        cell="ex-rag",
        old="groundedness(result.value.answer, [c.text for c in used])",
        new="groundedness(result.value.answer, [question.question])",
        loses=["test-rag-eval"],
    ),
    Mutant(
        "the prompt cache ignores max_tokens: a 16-token answer is served for a 64-token request",
        cell="ex-cache",
        old='canonical = json.dumps({"messages": [dict(m) for m in messages], "max_tokens": int(max_tokens)}, '
        "sort_keys=True)",
        new='canonical = json.dumps({"messages": [dict(m) for m in messages]}, sort_keys=True)',
        loses=["test-cache"],
    ),
    Mutant(
        "the threshold is chosen on the test traffic instead of the validation messages",
        cell="ex-threshold",
        old="THRESHOLD = choose_threshold(VAL_CONF, VAL_CORRECT,",
        new="THRESHOLD = choose_threshold(TEST_CONF, TEST_CORRECT,",
        loses=["test-threshold"],
    ),
    Mutant(
        "the router counts cache hits as LLM calls",
        cell="ex-router",
        old="self.cache_hits += 1\n",
        new="self.cache_hits += 1\n                self.llm_calls += 1\n",
        loses=["test-router"],
    ),
]


def test_solution_router_cuts_llm_calls_well_past_the_bar(solution_milestone):
    found = solution_milestone(LAB)
    assert found.passed and found.measured >= 75.0, found.describe()
