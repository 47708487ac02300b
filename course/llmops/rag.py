"""Retrieval for RAG: the course's question set, word-window chunks, a faiss index, recall@k and MRR.

The corpus is a snapshot of the course's own texts (the introductions of labs 01-14 and sections of the course
map and the README) with 71 questions written for it, each labelled with the document and the exact words that
answer it. It is committed under `datasets/course-qa/` and checksummed like every dataset, so an evaluation run
today and one run next year score the same text: a lab whose introduction is edited does not move the numbers.

Labelling the *answer span*, not a chunk, is what lets one question set judge every chunking: a chunk is relevant
to a question when it holds (most of) the answer's characters, whatever its size or boundaries. The functions
here are the reference versions; lab 20 has the learner write their own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from course.data import DatasetError, verify
from course.paths import DATASETS

CORPUS = "course-qa/corpus.jsonl"
QUESTIONS = "course-qa/questions.jsonl"
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Document:
    """One section of the course's texts: `text` is what is chunked, `title` says where it comes from."""

    doc_id: str
    title: str
    source: str
    text: str


@dataclass(frozen=True)
class Question:
    """A question, the document that answers it and the answer's exact words in that document."""

    qid: str
    question: str
    doc_id: str
    answer: str


@dataclass(frozen=True)
class Chunk:
    """`text == document.text[start:end]`: the offsets tie a chunk back to its source, and to answer spans."""

    doc_id: str
    start: int
    end: int
    text: str


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_course_qa(root: Path = DATASETS) -> tuple[list[Document], list[Question]]:
    """The corpus and the labelled questions, verified by sha256; every answer must occur in its document."""
    documents = [Document(**row) for row in _jsonl(verify(CORPUS, root))]
    questions = [Question(**row) for row in _jsonl(verify(QUESTIONS, root))]
    by_id = {d.doc_id: d for d in documents}
    for q in questions:
        if q.doc_id not in by_id or q.answer not in by_id[q.doc_id].text:
            raise DatasetError(f"question {q.qid}: its answer is not in document {q.doc_id!r}")
    return documents, questions


def answer_span(question: Question, documents: Mapping[str, Document] | Iterable[Document]) -> tuple[int, int]:
    """Character offsets [start, end) of the question's answer in its document (the first occurrence)."""
    by_id = documents if isinstance(documents, Mapping) else {d.doc_id: d for d in documents}
    text = by_id[question.doc_id].text
    start = text.find(question.answer)
    if start < 0:
        raise ValueError(f"question {question.qid}: answer not found in {question.doc_id}")
    return start, start + len(question.answer)


def chunk_words(document: Document, size: int, overlap: int = 0) -> list[Chunk]:
    """Windows of `size` words, each starting `size - overlap` words after the previous one.

    Words are runs of non-space characters, and a chunk's text is the document's own text from its first word to
    its last (line breaks and markdown kept), so offsets stay exact. The last window ends at the last word; a
    document shorter than `size` is one chunk, an empty one none.
    """
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need size >= 1 and 0 <= overlap < size, got size={size}, overlap={overlap}")
    spans = [m.span() for m in _WORD.finditer(document.text)]
    chunks, first = [], 0
    while first < len(spans):
        words = spans[first : first + size]
        start, end = words[0][0], words[-1][1]
        chunks.append(Chunk(document.doc_id, start, end, document.text[start:end]))
        if first + size >= len(spans):
            break
        first += size - overlap
    return chunks


def chunk_corpus(documents: Iterable[Document], size: int, overlap: int = 0) -> list[Chunk]:
    return [chunk for document in documents for chunk in chunk_words(document, size, overlap)]


def with_titles(chunks: Sequence[Chunk], documents: Iterable[Document]) -> list[str]:
    """The text to embed for each chunk: its document's title, a newline, the chunk.

    A 32-word window of a lab's introduction rarely says which lab it is from; the title puts that back.
    """
    titles = {d.doc_id: d.title for d in documents}
    return [f"{titles[c.doc_id]}\n{c.text}" for c in chunks]


def relevant_chunks(chunks: Sequence[Chunk], doc_id: str, span: tuple[int, int], min_fraction: float = 0.5) -> set[int]:
    """Indices of the chunks of `doc_id` that hold at least `min_fraction` of the answer span's characters."""
    start, end = span
    need = min_fraction * (end - start)
    return {i for i, c in enumerate(chunks) if c.doc_id == doc_id and min(c.end, end) - max(c.start, start) >= need > 0}


# --- the index ---------------------------------------------------------------------


class VectorIndex:
    """Exact nearest neighbours by cosine similarity: faiss's inner-product index over unit vectors.

    For unit vectors the inner product *is* the cosine, so the vectors must be L2-normalized (as
    `course.foundations.text.embed` returns them); `add` refuses others rather than rank by length. A flat index
    compares the query with every vector: exact, and fast enough for thousands of chunks; approximate indexes
    (IVF, HNSW) pay off from about a million.
    """

    def __init__(self, dim: int) -> None:
        import faiss

        self.dim = dim
        self.index = faiss.IndexFlatIP(dim)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @staticmethod
    def _as_matrix(vectors: object, dim: int) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != dim:
            raise ValueError(f"expected vectors of shape (n, {dim}), got {x.shape}")
        return x

    def add(self, vectors: object) -> VectorIndex:
        x = self._as_matrix(vectors, self.dim)
        norms = np.linalg.norm(x, axis=1)
        if len(x) and not np.allclose(norms, 1.0, atol=1e-3):
            raise ValueError("normalize the vectors to unit length first: inner product equals cosine only then")
        self.index.add(x)
        return self

    def search(self, queries: object, k: int) -> tuple[np.ndarray, list[list[int]]]:
        """(scores, ids): for each query, up to k ids of the most similar vectors, best first."""
        q = self._as_matrix(queries, self.dim)
        k_eff = min(k, len(self))
        if k_eff < 1:
            return np.zeros((len(q), 0), dtype=np.float32), [[] for _ in range(len(q))]
        scores, ids = self.index.search(q, k_eff)
        return scores, [[int(i) for i in row if i >= 0] for row in ids]


# --- metrics -----------------------------------------------------------------------


def recall_at_k(results: Sequence[Sequence[int]], relevant: Sequence[Collection[int]], k: int) -> float:
    """Share of questions with at least one relevant id among their first k results.

    With one answer per question this is the recall of the answer (some papers say hit rate@k or success@k). A
    question with no relevant chunk at all counts as a miss: dropping it would flatter the retriever.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    if len(results) != len(relevant):
        raise ValueError(f"{len(results)} result lists but {len(relevant)} relevance sets")
    if not results:
        raise ValueError("no questions to score")
    hits = [any(int(i) in set(rel) for i in list(res)[:k]) for res, rel in zip(results, relevant, strict=True)]
    return float(np.mean(hits))


def mean_reciprocal_rank(results: Sequence[Sequence[int]], relevant: Sequence[Collection[int]]) -> float:
    """Mean over questions of 1 / (rank of the first relevant result), ranks from 1; 0 when none is returned."""
    if len(results) != len(relevant):
        raise ValueError(f"{len(results)} result lists but {len(relevant)} relevance sets")
    if not results:
        raise ValueError("no questions to score")
    reciprocal = []
    for res, rel in zip(results, relevant, strict=True):
        rel = set(rel)
        rank = next((r for r, i in enumerate(res, start=1) if int(i) in rel), None)
        reciprocal.append(0.0 if rank is None else 1.0 / rank)
    return float(np.mean(reciprocal))
