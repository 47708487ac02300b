"""Phase 2, production serving (labs 07-13).

- `models`: the small MNIST models the serving labs start from, trained once and cached.
- `artifacts`: content-addressed model files, parity checks, model cards (lab 07).
- `service`: the FastAPI plumbing every service shares: request ids, health, readiness, limits, logs (lab 08).
- `server`: that app in a real uvicorn process on 127.0.0.1, started and stopped by its owner.
- `tabular`: a scikit-learn model behind that plumbing, logging every prediction; `/v1/deploy` swaps versions.
- `latency`: percentiles with distribution-free confidence intervals (labs 09, 10).
- `loadgen`: open- and closed-loop load over aiohttp, with the client's own CPU cost (labs 09, 10).
- `experiments`: sticky traffic splitting, A/B statistics, canary guardrails (lab 13).
"""
