"""Phase 1, ML foundations (labs 01-06), and training at scale (lab 14).

- `training`: progress bars, evaluation in inference mode, prediction in batches, a loss History.
- `text`: the offline MiniLM encoder and mean pooling (lab 05, and the RAG lab 20).
- `distributed`: torchrun jobs bound to 127.0.0.1, results collected by rank (lab 14).
"""
