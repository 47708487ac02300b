"""A scikit-learn model behind the course's REST plumbing, logging every prediction it makes.

`course.serving.service.create_app` is built for any model: `parse` reads the body, `prepare` makes the batch,
the model maps the batch to logits. Here the body is a table,

    POST /v1/predict?probabilities=true
    {"ids": [36224, 36225], "columns": ["age", "job", ...], "rows": [[41, "admin.", ...], [...]]}

the batch is a DataFrame, and the model is a fitted scikit-learn classifier wrapped in `LoggedModel`, which
answers with log-probabilities as logits (the plumbing's softmax gives the probabilities back) and appends one
JSON line per row to the **prediction log**: `{"ts", "id", "p", "version"}`. That log is what a monitor reads:
which model answered each row, with what probability, so prediction drift can be measured per window and
joined with the labels when they arrive.

Models are pickled scikit-learn estimators in a models folder, one file per version (`<version>.pkl`, written
by `save`). `POST /v1/deploy {"version": "v2"}` loads one and swaps it in atomically (`ModelSlot.swap`): requests
in flight finish on the old model. It loads only files of that folder, and the server listens on 127.0.0.1
only; a real service would put this route behind authentication, or follow a registry alias (lab 12).

Run it in a real uvicorn process with `course.serving.server.Server`:

    Server("course.serving.tabular:app_from_env", env=tabular.server_env(models_dir, "v1", log_path))
"""

from __future__ import annotations

import json
import os
import pickle
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from course.serving import service

MODELS_ENV = "COURSE_TABULAR_MODELS"  # folder of <version>.pkl files
VERSION_ENV = "COURSE_TABULAR_VERSION"  # the version served at start
LOG_ENV = "COURSE_PREDICTION_LOG"  # the prediction log (JSON lines)
_VERSION = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class Batch:
    """What `parse_rows` returns: the rows as a DataFrame, and the caller's id for each row."""

    frame: pd.DataFrame
    ids: list[Any]


def parse_rows(body: bytes) -> Batch:
    """`{"ids": [...], "columns": [...], "rows": [[...], ...]}` to a Batch; a 4xx that says why otherwise."""
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise HTTPException(400, f"the body is not JSON ({exc})") from None
    expected = 'expected {"ids": [...], "columns": [names], "rows": [[values], ...]}'
    if not isinstance(payload, dict) or not all(k in payload for k in ("ids", "columns", "rows")):
        raise HTTPException(422, expected)
    ids, columns, rows = payload["ids"], payload["columns"], payload["rows"]
    if not (isinstance(columns, list) and columns and all(isinstance(c, str) for c in columns)):
        raise HTTPException(422, "columns must be a non-empty list of column names")
    if not (isinstance(rows, list) and rows and all(isinstance(r, list) and len(r) == len(columns) for r in rows)):
        raise HTTPException(422, f"rows must be a non-empty list of lists of {len(columns)} values, one per column")
    if not isinstance(ids, list) or len(ids) != len(rows):
        raise HTTPException(422, f"ids must be a list with one id per row ({len(rows)} rows)")
    return Batch(pd.DataFrame(rows, columns=columns), ids)


class PredictionLog:
    """Append-only JSON lines, one per prediction, safe to write from the server's worker threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, ids: list[Any], probabilities: np.ndarray, version: str) -> None:
        now = round(time.time(), 3)
        lines = "".join(
            json.dumps({"ts": now, "id": i, "p": float(p), "version": version}) + "\n"
            for i, p in zip(ids, probabilities, strict=True)
        )
        with self._lock, self.path.open("a") as out:
            out.write(lines)


class LoggedModel:
    """A fitted binary classifier as the service's model: a Batch in, logits out, each prediction logged."""

    def __init__(self, estimator: Any, version: str, log: PredictionLog) -> None:
        self.estimator, self.version, self.log = estimator, version, log
        self.columns = list(getattr(estimator, "feature_names_in_", []))

    def __call__(self, batch: Batch) -> torch.Tensor:
        missing = [c for c in self.columns if c not in batch.frame.columns]
        if missing:
            raise HTTPException(422, f"missing columns: {', '.join(missing)}")
        try:
            p = self.estimator.predict_proba(batch.frame)[:, 1]
        except (ValueError, TypeError) as exc:  # a value the pipeline cannot read, e.g. text in a numeric column
            raise HTTPException(422, f"the model cannot read these rows: {exc}") from None
        self.log.write(batch.ids, p, self.version)
        probabilities = torch.from_numpy(np.stack([1 - p, p], axis=1))
        return torch.log(probabilities.clamp_min(1e-12))


def save(estimator: Any, models_dir: str | os.PathLike[str], version: str) -> Path:
    """Pickle a fitted estimator as `<models_dir>/<version>.pkl`, the file `/v1/deploy` loads."""
    if not _VERSION.fullmatch(version):
        raise ValueError(f"a version is 1-64 letters, digits, '.', '_' or '-', not {version!r}")
    path = Path(models_dir) / f"{version}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        pickle.dump(estimator, out)
    return path


def load(models_dir: str | os.PathLike[str], version: str) -> Any:
    """The estimator `save` wrote. Unpickling runs code: load only files your own pipeline wrote."""
    if not _VERSION.fullmatch(version):
        raise ValueError(f"no such version {version!r}")
    with (Path(models_dir) / f"{version}.pkl").open("rb") as source:
        return pickle.load(source)  # noqa: S301 (files save() wrote into our own models folder)


def create_tabular_app(models_dir: str | os.PathLike[str], version: str, log_path: str | os.PathLike[str]) -> FastAPI:
    """The app: version `version` from `models_dir` served by the shared plumbing, plus `/v1/deploy`."""
    log = PredictionLog(log_path)

    def loader() -> tuple[Any, str]:
        return LoggedModel(load(models_dir, version), version, log), version

    app = service.create_app(
        loader=loader, parse=parse_rows, prepare=lambda batch: batch, title="Term-deposit scoring service"
    )
    slot: service.ModelSlot = app.state.slot

    @app.post("/v1/deploy")
    async def deploy(request: Request) -> JSONResponse:
        """`{"version": "v2"}`: load `<models_dir>/v2.pkl` and serve it from the next request on."""
        rid = service.request_id_of(request)
        try:
            wanted = str(json.loads(await request.body())["version"])
        except (ValueError, KeyError, TypeError):
            return service.error_response(422, 'expected {"version": "<name>"}', rid)
        try:
            estimator = load(models_dir, wanted)
        except (OSError, ValueError) as exc:
            return service.error_response(404, f"cannot load version {wanted!r}: {exc}", rid)
        previous = slot.swap(LoggedModel(estimator, wanted, log), wanted)
        return JSONResponse(
            {"model_version": wanted, "previous": previous.version if previous else None, "request_id": rid}
        )

    return app


def server_env(models_dir: str | os.PathLike[str], version: str, log_path: str | os.PathLike[str]) -> dict[str, str]:
    """The environment `app_from_env` reads, for `Server(..., env=server_env(...))`."""
    return {
        MODELS_ENV: str(Path(models_dir).resolve()),
        VERSION_ENV: version,
        LOG_ENV: str(Path(log_path).resolve()),
    }


def app_from_env() -> FastAPI:
    """The factory `course.serving.server.Server` runs: `course.serving.tabular:app_from_env`."""
    return create_tabular_app(os.environ[MODELS_ENV], os.environ[VERSION_ENV], os.environ[LOG_ENV])


def request_body(frame: pd.DataFrame, ids: Any) -> dict[str, Any]:
    """The JSON body of `/v1/predict` for these rows (NumPy scalars made plain, so any JSON encoder takes it)."""
    split = json.loads(frame.to_json(orient="split", index=False))
    return {
        "ids": [i.item() if hasattr(i, "item") else i for i in ids],
        "columns": split["columns"],
        "rows": split["data"],
    }


def read_log(path: str | os.PathLike[str], offset: int = 0) -> tuple[pd.DataFrame, int]:
    """The prediction log from byte `offset` on, as a DataFrame (ts, id, p, version), and the offset to read next."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=["ts", "id", "p", "version"]), offset
    with path.open("rb") as source:
        source.seek(offset)
        data = source.read()
    complete = data[: data.rfind(b"\n") + 1]  # a line being written is read next time
    rows = [json.loads(line) for line in complete.decode().splitlines() if line.strip()]
    frame = pd.DataFrame(rows, columns=["ts", "id", "p", "version"])
    return frame, offset + len(complete)
