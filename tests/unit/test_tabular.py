"""course.serving.tabular: a scikit-learn pipeline behind the shared plumbing, its prediction log, and /v1/deploy."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from course.serving import tabular

pytestmark = pytest.mark.unit

ROWS = pd.DataFrame({"a": [0.0, 1, 2, 3, 4, 5], "c": ["x", "y", "x", "y", "x", "y"]})
LABELS = [0, 0, 0, 1, 1, 1]


def fitted(flip: bool = False):
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["c"]), ("passthrough", ["a"])), LogisticRegression()
    )
    return model.fit(ROWS, [1 - y for y in LABELS] if flip else LABELS)


@pytest.fixture()
def served(tmp_path):
    """A client of the app serving v1 (v2 saved beside it, predicting the opposite), and the log's path."""
    models = tmp_path / "models"
    tabular.save(fitted(), models, "v1")
    tabular.save(fitted(flip=True), models, "v2")
    log = tmp_path / "predictions.jsonl"
    with TestClient(tabular.create_tabular_app(models, "v1", log)) as http:
        deadline = time.monotonic() + 10
        while http.get("/readyz").status_code != 200:  # the model loads in a thread at startup
            assert time.monotonic() < deadline, "the model did not load"
            time.sleep(0.02)
        yield http, log


def test_predictions_come_back_as_probabilities_and_every_row_is_logged(served):
    http, log = served
    answer = http.post("/v1/predict?probabilities=true", json=tabular.request_body(ROWS, np.arange(10, 16)))
    assert answer.status_code == 200 and answer.headers["x-model-version"] == "v1"
    body = answer.json()
    expected = fitted().predict_proba(ROWS)[:, 1]
    assert np.allclose([p[1] for p in body["probabilities"]], expected)
    assert body["predictions"] == (expected > 0.5).astype(int).tolist()
    logged, offset = tabular.read_log(log)
    assert logged["id"].tolist() == list(range(10, 16)) and set(logged["version"]) == {"v1"}
    assert np.allclose(logged["p"], expected) and offset == log.stat().st_size


def test_read_log_continues_from_an_offset_and_leaves_a_partial_line(served, tmp_path):
    http, log = served
    http.post("/v1/predict", json=tabular.request_body(ROWS.head(2), [1, 2]))
    first, offset = tabular.read_log(log)
    http.post("/v1/predict", json=tabular.request_body(ROWS.tail(1), [3]))
    with log.open("a") as out:
        out.write('{"ts": 1, "id": 9')  # a line still being written
    more, offset2 = tabular.read_log(log, offset)
    assert first["id"].tolist() == [1, 2] and more["id"].tolist() == [3]
    assert offset2 < log.stat().st_size
    assert tabular.read_log(tmp_path / "missing.jsonl")[0].empty


def test_deploy_swaps_the_model_and_the_log_names_the_version(served):
    http, log = served
    swapped = http.post("/v1/deploy", json={"version": "v2"})
    assert swapped.status_code == 200 and swapped.json()["previous"] == "v1"
    answer = http.post("/v1/predict?probabilities=true", json=tabular.request_body(ROWS, np.arange(6)))
    assert answer.headers["x-model-version"] == "v2"
    assert np.allclose([p[1] for p in answer.json()["probabilities"]], fitted(flip=True).predict_proba(ROWS)[:, 1])
    assert set(tabular.read_log(log)[0]["version"]) == {"v2"}
    assert http.post("/v1/deploy", json={"version": "../v1"}).status_code == 404  # only files of the models folder
    assert http.post("/v1/deploy", json={"version": "v9"}).status_code == 404
    assert http.post("/v1/deploy", content=b"{}").status_code == 422


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"not json", 400, "not JSON"),
        (b"{}", 422, "expected"),
        (json.dumps({"ids": [1], "columns": [], "rows": [[1]]}).encode(), 422, "columns"),
        (json.dumps({"ids": [1], "columns": ["a", "c"], "rows": [[1]]}).encode(), 422, "rows"),
        (json.dumps({"ids": [1, 2], "columns": ["a", "c"], "rows": [[1, "x"]]}).encode(), 422, "one id per row"),
        (json.dumps({"ids": [1], "columns": ["a"], "rows": [[1]]}).encode(), 422, "missing columns: c"),
        (json.dumps({"ids": [1], "columns": ["a", "c"], "rows": [["high", "x"]]}).encode(), 422, "cannot read"),
    ],
)
def test_bad_bodies_get_a_4xx_that_says_why_and_nothing_is_logged(served, body, status, says):
    http, log = served
    answer = http.post("/v1/predict", content=body)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["detail"]
    assert tabular.read_log(log)[0].empty


def test_request_body_is_plain_json_and_versions_are_checked(tmp_path):
    frame = pd.DataFrame({"n": np.array([1, 2], dtype=np.int64), "f": [0.5, np.float64(1.5)], "s": ["a", "b"]})
    body = tabular.request_body(frame, np.array([7, 8]))
    rows = [[1, 0.5, "a"], [2, 1.5, "b"]]
    assert json.loads(json.dumps(body)) == {"ids": [7, 8], "columns": ["n", "f", "s"], "rows": rows}
    with pytest.raises(ValueError):
        tabular.save(fitted(), tmp_path, "../escape")
    with pytest.raises(ValueError):
        tabular.load(tmp_path, "a/b")


def test_server_env_names_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = tabular.server_env("models", "v1", "logs/p.jsonl")
    assert env[tabular.VERSION_ENV] == "v1"
    assert env[tabular.MODELS_ENV] == str(tmp_path / "models")
    assert env[tabular.LOG_ENV] == str(tmp_path / "logs" / "p.jsonl")
