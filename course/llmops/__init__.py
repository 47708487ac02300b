"""Phase 3, LLMOps (lab 20): retrieval, a small language model, an LLM service and a hybrid router.

- `rag`: the course's own question set (a snapshot of its texts with 71 labelled questions), word-window chunks
  with character offsets, a faiss index of normalized embeddings, and the retrieval metrics recall@k and MRR.
- `llm`: SmolLM2-135M-Instruct offline: loaded from its GGUF file once and cached dequantized under
  `build/models/` (`python -m course.llmops.llm` warms the cache), chat prompts, greedy generation that streams
  and stops at a deadline, candidate scoring by log-likelihood, tokens and their price.
- `service`: that model behind lab 08's plumbing: `/v1/generate`, a streaming `/v1/generate/stream`, a cache for
  repeated prompts, timeouts, and tokens and cost in the request log.
- `router`: a classifier first and the LLM below a confidence threshold: the LLM's intent path, the threshold
  sweep, the cost/accuracy curve and its cost table.

Lab 20 has the learner write their own chunker, metrics, index, cache and router; the reference versions here are
what later labs import and what the lab's locked cells measure with.
"""
