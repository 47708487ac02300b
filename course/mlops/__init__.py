"""Phase 3, MLOps and evals (labs 12 and 15-22).

- `registry`: an MLflow model registry on SQLite, aliases, and a server that follows an alias (lab 12).
- `drift`: PSI, per-feature tests with a correction for their number, a domain classifier, a k-of-m alert,
  base-rate-free metrics for late labels, and Evidently's report of the same two samples (lab 18).
- `evals`: a fingerprinted golden set with its slices, behavioural transforms, calibration error, two models served
  side by side for a latency SLO, and the containers a deploy gate reads and writes (lab 17).
- `incidents`: image properties that explain a model's errors, traffic replayed in time windows with metric
  scrapes, histogram quantiles (lab 19).
- `tracking`: what a reproducible run records (git state, code and environment fingerprints, dataset inputs), and
  a real `mlflow server` on 127.0.0.1 for the UI and the REST API (lab 15).
- `validation`: corrupted batches that list the violations they carry and a score for a validator's report, label
  noise planted in chosen rows, simulated data sources (lab 16).
"""
