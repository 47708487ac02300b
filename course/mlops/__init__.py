"""Phase 3, MLOps and evals (labs 12 and 15-22).

- `registry`: an MLflow model registry on SQLite, aliases, and a server that follows an alias (lab 12).
"""
