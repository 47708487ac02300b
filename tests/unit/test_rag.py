"""course.llmops.rag: the question set, word-window chunks, the faiss index, recall@k and MRR."""

from __future__ import annotations

import numpy as np
import pytest

from course.data import DatasetError
from course.llmops import rag
from course.llmops.rag import Chunk, Document, Question

pytestmark = pytest.mark.unit

DOC = Document("d1", "Doc one", "test", "alpha beta  gamma\ndelta epsilon zeta eta theta iota kappa")


# --- the dataset ----------------------------------------------------------------------------------------------


def test_the_committed_question_set_loads_and_every_answer_is_in_its_document() -> None:
    documents, questions = rag.load_course_qa()
    assert len(documents) >= 15 and 40 <= len(questions) <= 80
    by_id = {d.doc_id: d for d in documents}
    assert len(by_id) == len(documents), "document ids are unique"
    assert len({q.qid for q in questions}) == len(questions), "question ids are unique"
    for q in questions:
        start, end = rag.answer_span(q, by_id)
        assert by_id[q.doc_id].text[start:end] == q.answer


def test_a_question_whose_answer_is_not_in_its_document_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(rag, "verify", lambda rel, root: tmp_path / rel.split("/")[-1])
    (tmp_path / "corpus.jsonl").write_text('{"doc_id": "a", "title": "A", "source": "s", "text": "one two"}\n')
    (tmp_path / "questions.jsonl").write_text('{"qid": "q1", "question": "?", "doc_id": "a", "answer": "three"}\n')
    with pytest.raises(DatasetError, match="q1"):
        rag.load_course_qa(tmp_path)


def test_answer_span_takes_documents_as_a_list_or_a_mapping() -> None:
    q = Question("q", "which?", "d1", "gamma\ndelta")
    assert rag.answer_span(q, [DOC]) == rag.answer_span(q, {"d1": DOC}) == (12, 23)
    with pytest.raises(ValueError, match="not found"):
        rag.answer_span(Question("q", "?", "d1", "omega"), [DOC])


# --- chunks ---------------------------------------------------------------------------------------------------


def test_chunks_are_windows_of_words_whose_offsets_point_into_the_document() -> None:
    chunks = rag.chunk_words(DOC, size=4, overlap=1)
    assert [c.text.split() for c in chunks] == [
        ["alpha", "beta", "gamma", "delta"],
        ["delta", "epsilon", "zeta", "eta"],
        ["eta", "theta", "iota", "kappa"],
    ]
    for c in chunks:
        assert DOC.text[c.start : c.end] == c.text and c.doc_id == "d1"
    assert chunks[0].text == "alpha beta  gamma\ndelta", "a chunk keeps the document's own spacing and line breaks"


def test_the_last_window_ends_at_the_last_word_and_short_documents_are_one_chunk() -> None:
    chunks = rag.chunk_words(DOC, size=4, overlap=0)
    assert [len(c.text.split()) for c in chunks] == [4, 4, 2]
    assert chunks[-1].end == len(DOC.text)
    assert [c.text for c in rag.chunk_words(DOC, size=50)] == [DOC.text]
    assert rag.chunk_words(Document("e", "E", "s", "   \n"), size=3) == []


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (3, 3), (3, -1), (2, 5)])
def test_impossible_windows_are_refused(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="overlap"):
        rag.chunk_words(DOC, size=size, overlap=overlap)


def test_chunk_corpus_and_titles() -> None:
    other = Document("d2", "Doc two", "test", "one two three")
    chunks = rag.chunk_corpus([DOC, other], size=5)
    assert [c.doc_id for c in chunks] == ["d1", "d1", "d2"]
    assert rag.with_titles(chunks, [DOC, other])[-1] == "Doc two\none two three"


def test_a_chunk_is_relevant_when_it_holds_at_least_half_of_the_answer() -> None:
    text = DOC.text
    span = (text.index("gamma"), text.index("epsilon") + len("epsilon"))  # "gamma\ndelta epsilon"
    chunks = [
        Chunk("d1", 0, text.index("delta") + 5, text[: text.index("delta") + 5]),  # holds "gamma\ndelta": 11 of 19
        Chunk("d1", text.index("epsilon"), len(text), text[text.index("epsilon") :]),  # holds "epsilon": 7 of 19
        Chunk("d2", 0, len(text), text),  # the same characters, another document
    ]
    assert rag.relevant_chunks(chunks, "d1", span) == {0}
    assert rag.relevant_chunks(chunks, "d1", span, min_fraction=0.3) == {0, 1}


# --- the index ------------------------------------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_index_ranks_by_cosine_like_brute_force() -> None:
    rng = np.random.default_rng(0)
    vectors, queries = _unit(rng.normal(size=(50, 8))), _unit(rng.normal(size=(5, 8)))
    index = rag.VectorIndex(8).add(vectors)
    scores, ids = index.search(queries, k=4)
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :4]
    assert ids == expected.tolist() and len(index) == 50
    assert np.allclose(scores, np.take_along_axis(queries @ vectors.T, expected, axis=1), atol=1e-5)


def test_the_index_refuses_unnormalized_or_misshapen_vectors_and_never_returns_padding_ids() -> None:
    index = rag.VectorIndex(3)
    with pytest.raises(ValueError, match="normalize"):
        index.add(np.array([[3.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="shape"):
        index.add(np.ones((2, 4)) / 2)
    index.add(np.eye(3)[:2])
    scores, ids = index.search(np.eye(3)[:1], k=10)
    assert ids == [[0, 1]] and scores.shape == (1, 2), "faiss pads with -1 when k > n; those are dropped"
    assert rag.VectorIndex(3).search(np.eye(3)[:1], k=3)[1] == [[]]


# --- metrics --------------------------------------------------------------------------------------------------


def test_recall_at_k_counts_questions_with_a_relevant_result_in_the_first_k() -> None:
    results = [[3, 1, 2], [5, 6, 7], [9, 8, 4]]
    relevant = [{1}, {7, 6}, {0}]
    assert rag.recall_at_k(results, relevant, 1) == 0.0
    assert rag.recall_at_k(results, relevant, 2) == pytest.approx(2 / 3)
    assert rag.recall_at_k(results, relevant, 10) == pytest.approx(2 / 3), "a question with no hit stays a miss"
    assert rag.recall_at_k([np.array([4, 2])], [{2}], 2) == 1.0, "ids may come as numpy integers"


def test_mrr_is_the_mean_of_one_over_the_first_relevant_rank() -> None:
    results = [[3, 1, 2], [5, 6, 7], [9, 8, 4]]
    relevant = [{1}, {7, 6}, {0}]
    assert rag.mean_reciprocal_rank(results, relevant) == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert rag.mean_reciprocal_rank([[1]], [{1}]) == 1.0


@pytest.mark.parametrize("metric", ["recall", "mrr"])
def test_metrics_refuse_mismatched_or_empty_inputs(metric: str) -> None:
    def call(results, relevant):
        if metric == "recall":
            return rag.recall_at_k(results, relevant, 1)
        return rag.mean_reciprocal_rank(results, relevant)

    with pytest.raises(ValueError):
        call([[1]], [{1}, {2}])
    with pytest.raises(ValueError):
        call([], [])
    if metric == "recall":
        with pytest.raises(ValueError, match="k"):
            rag.recall_at_k([[1]], [{1}], 0)
