"""course.serving.service (the app plumbing) in-process, and course.serving.server with real uvicorn processes."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from fastapi import HTTPException
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from course.serving import models, service
from course.serving.server import Server

pytestmark = pytest.mark.unit


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.mlp(hidden=8).eval()


def digits(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 784, generator=torch.Generator().manual_seed(seed))


def expected(model: torch.nn.Module, x: torch.Tensor) -> list[int]:
    with torch.inference_mode():
        return model(models.normalize(x)).argmax(1).tolist()


# --- the model slot -------------------------------------------------------------------


def test_slot_swaps_atomically_and_keeps_snapshots():
    slot = service.ModelSlot()
    assert not slot.ready and slot.get() is None and slot.version is None
    a, b = tiny_model(0), tiny_model(1)
    assert slot.swap(a, "a") is None
    snapshot = slot.get()
    previous = slot.swap(b, "b")
    assert previous is snapshot and snapshot.model is a and snapshot.version == "a", "a snapshot outlives a swap"
    assert slot.get().model is b and slot.version == "b"


# --- the app, in-process ----------------------------------------------------------------


def test_health_readiness_and_prediction():
    model = tiny_model()
    with TestClient(service.create_app()) as http:  # no model: alive but not ready
        assert http.get("/healthz").json()["status"] == "ok"
        assert http.get("/readyz").status_code == 503
        refused = http.post("/v1/predict", json={"instances": digits(1).tolist()})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        http.app.state.slot.swap(model, "v7")
        assert http.get("/readyz").json() == {"ready": True, "model_version": "v7"}
        x = digits(5)
        answer = http.post("/v1/predict?probabilities=true", json={"instances": x.tolist()})
        body = answer.json()
        assert answer.status_code == 200 and body["predictions"] == expected(model, x)
        assert body["model_version"] == "v7" and answer.headers["x-model-version"] == "v7"
        assert len(body["probabilities"]) == 5 and abs(sum(body["probabilities"][0]) - 1) < 1e-5
        assert "probabilities" not in http.post("/v1/predict", json={"instances": x.tolist()}).json()
        assert http.post("/v1/noop").json()["ok"] is True


def test_loader_runs_at_startup_and_failures_show_in_readiness():
    gate = threading.Event()

    def slow_loader():
        gate.wait(5)
        return tiny_model(), "late"

    with TestClient(service.create_app(loader=slow_loader)) as http:
        assert http.get("/readyz").status_code == 503 and http.get("/healthz").status_code == 200
        gate.set()
        deadline = time.monotonic() + 5
        while http.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert http.get("/readyz").json()["model_version"] == "late"

    def broken_loader():
        raise FileNotFoundError("no such model")

    with TestClient(service.create_app(loader=broken_loader)) as http:
        deadline = time.monotonic() + 5
        while not http.get("/readyz").json().get("failed") and time.monotonic() < deadline:
            time.sleep(0.01)
        ready = http.get("/readyz")
        assert ready.status_code == 503 and "no such model" in ready.json()["detail"]


def test_request_ids_are_echoed_when_sane_and_generated_otherwise():
    with TestClient(service.create_app(tiny_model(), "v1")) as http:
        echoed = http.post("/v1/predict", json={"instances": digits(1).tolist()}, headers={"X-Request-ID": "abc-1"})
        assert echoed.headers["x-request-id"] == "abc-1" and echoed.json()["request_id"] == "abc-1"
        for bad in ["has space", "x" * 200, "<script>"]:
            fresh = http.post("/v1/noop", headers={"X-Request-ID": bad})
            rid = fresh.headers["x-request-id"]
            assert rid != bad and len(rid) == 32 and fresh.json()["request_id"] == rid
        ids = {http.get("/healthz").headers["x-request-id"] for _ in range(3)}
        assert len(ids) == 3, "each request gets its own id"


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    instances: list[list[float]]


def strict_parse(body: bytes) -> torch.Tensor:
    if body == b"teapot":
        raise HTTPException(418, "I am a teapot", headers={"X-Why": "tea"})
    if body == b"bug":
        raise RuntimeError("a bug in the parser")
    return torch.tensor(Strict.model_validate_json(body).instances)


def test_parser_errors_map_to_status_codes():
    app = service.create_app(tiny_model(), "v1", parse=strict_parse, max_body_bytes=10_000)
    with TestClient(app) as http:
        teapot = http.post("/v1/predict", content=b"teapot")
        assert teapot.status_code == 418 and teapot.json()["detail"] == "I am a teapot"
        assert teapot.headers["x-why"] == "tea" and teapot.json()["request_id"] == teapot.headers["x-request-id"]
        invalid = http.post("/v1/predict", content=b'{"instances": [["x"]]}')
        assert invalid.status_code == 422 and "instances.0.0" in invalid.json()["detail"]
        bug = http.post("/v1/predict", content=b"bug")
        assert bug.status_code == 500 and bug.json()["detail"] == "internal server error"
        wrong_shape = http.post("/v1/predict", content=json.dumps({"instances": [[0.5] * 783]}).encode())
        assert wrong_shape.status_code == 500, "a parser that lets a wrong shape through is a bug: 500"
        big = http.post("/v1/predict", content=b" " * 10_001)
        assert big.status_code == 413 and "10000" in big.json()["detail"]


def test_many_errors_are_summarized():
    try:
        Strict.model_validate({"instances": [["a"] * 10]})
    except Exception as exc:
        text = service.describe(exc, limit=3)
    assert text.count("instances.0.") == 3 and "(and 7 more problems)" in text


def test_rate_limit_is_per_client_and_spares_health_probes():
    counts: dict[str, int] = {}

    def two_each(client: str) -> JSONResponse | None:
        counts[client] = counts.get(client, 0) + 1
        return None if counts[client] <= 2 else JSONResponse({"detail": "slow down"}, 429, {"Retry-After": "9"})

    def by_header(request) -> str:
        return request.headers.get("x-client-id", "anonymous")

    app = service.create_app(tiny_model(), "v1", identify=by_header, limiter=two_each)
    with TestClient(app) as http:
        a = [http.post("/v1/noop", headers={"X-Client-ID": "a"}).status_code for _ in range(3)]
        b = [http.post("/v1/noop", headers={"X-Client-ID": "b"}).status_code for _ in range(2)]
        assert a == [200, 200, 429] and b == [200, 200]
        refused = http.post("/v1/noop", headers={"X-Client-ID": "a"})
        assert refused.headers["retry-after"] == "9" and refused.headers["x-request-id"]
        assert all(http.get("/healthz", headers={"X-Client-ID": "a"}).status_code == 200 for _ in range(3))
        assert "a" in counts and counts["a"] == 4, "health probes never reach the limiter"


def test_one_structured_log_line_per_request(caplog):
    app = service.create_app(tiny_model(), "v3")
    with caplog.at_level(logging.INFO, logger=service.REQUEST_LOG), TestClient(app) as http:
        http.post("/v1/predict", json={"instances": digits(2).tolist()}, headers={"X-Request-ID": "log-me"})
        http.post("/v1/predict", content=b"not json")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == service.REQUEST_LOG]
    assert len(lines) == 2
    first, second = lines
    assert first["request_id"] == "log-me" and first["route"] == "/v1/predict" and first["status"] == 200
    assert first["model_version"] == "v3" and first["client"] == "ip:testclient" and first["latency_ms"] > 0
    assert second["status"] == 400 and set(first) == set(second)


def test_swap_while_a_request_is_in_flight():
    old, new = tiny_model(0), tiny_model(1)
    app = service.create_app(old, "old", debug_delay=True)
    answers = {}
    with TestClient(app) as http:

        def slow():
            answers["slow"] = http.post(
                "/v1/predict", json={"instances": digits(1).tolist()}, headers={"X-Debug-Delay": "0.5"}
            )

        sender = threading.Thread(target=slow)
        sender.start()
        deadline = time.monotonic() + 5
        while http.get("/healthz").json()["in_flight"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        app.state.slot.swap(new, "new")
        fast = http.post("/v1/predict", json={"instances": digits(1).tolist()})
        sender.join(5)
    assert fast.json()["model_version"] == "new"
    assert answers["slow"].json()["model_version"] == "old", "a request finishes on the model it started with"
    assert answers["slow"].headers["x-model-version"] == "old"


def test_debug_delay_is_off_unless_asked_for():
    with TestClient(service.create_app(tiny_model(), "v1", debug_delay=False)) as http:
        start = time.perf_counter()
        http.post("/v1/predict", json={"instances": digits(1).tolist()}, headers={"X-Debug-Delay": "3"})
        assert time.perf_counter() - start < 2


# --- a real server process ----------------------------------------------------------------


def port_is_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_real_server_serves_logs_and_stops(tmp_path):
    model = tiny_model()
    path = service.save_model(model, tmp_path / "tiny.pt")
    server = Server(model=path, model_version="tiny-1", scratch=tmp_path / "server", env={"COURSE_DEBUG_DELAY": "1"})
    with server:
        assert server.url.startswith("http://127.0.0.1:") and server.running
        x = digits(3)
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/healthz").status_code == 200
            answer = http.post("/v1/predict", json={"instances": x.tolist()}, headers={"X-Request-ID": "real-1"})
            assert answer.status_code == 200 and answer.json()["predictions"] == expected(model, x)
            assert answer.headers["x-model-version"] == "tiny-1"
        slow: dict[str, httpx.Response] = {}

        def send_slow():
            slow["r"] = httpx.post(
                server.url + "/v1/predict", json={"instances": x.tolist()}, headers={"X-Debug-Delay": "0.8"}, timeout=10
            )

        sender = threading.Thread(target=send_slow)
        sender.start()
        deadline = time.monotonic() + 5
        while httpx.get(server.url + "/healthz").json()["in_flight"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        code = server.stop()
        sender.join(10)
    assert code is not None and not server.running
    assert slow["r"].status_code == 200, "SIGTERM lets the request in flight finish"
    assert port_is_closed(server.port)
    lines = server.request_log()
    assert any(line["request_id"] == "real-1" and line["status"] == 200 for line in lines)
    assert "Finished server process" in server.log_path.read_text()


PLAIN_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def ready(request):
    return JSONResponse({"ready": True})


def app():
    return Starlette(routes=[Route("/readyz", ready)])
"""

PARENT = """
import sys, time
from course.serving.server import Server
server = Server("plain_app:app", pythonpath=[sys.argv[1]], scratch=sys.argv[2]).start()
print(server.proc.pid, server.port, flush=True)
time.sleep(60)
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in {"Z", "X"}


def test_server_dies_with_its_parent(tmp_path):
    """Any app factory runs (here a torch-free one, quick to start); the watchdog stops it when the parent dies."""
    (tmp_path / "plain_app.py").write_text(PLAIN_APP)
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path), str(tmp_path / "server")], stdout=subprocess.PIPE, text=True
    )
    try:
        pid, port = map(int, parent.stdout.readline().split())
        assert alive(pid) and not port_is_closed(port)
        parent.send_signal(signal.SIGKILL)  # no atexit, no finalizer: only the server's watchdog can notice
        parent.wait(5)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(pid), "the server outlived the process that started it"
        assert port_is_closed(port)
    finally:
        if parent.poll() is None:
            parent.kill()


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{}", 422, "instances"),
        (b"", 400, "not JSON"),
        (b"\xff\xfe", 400, "not JSON"),
        (b'{"instances": "x"}', 422, "784"),
        (b'{"instances": [[1, 2]]}', 422, "784"),
        (b'{"instances": []}', 422, "at least one image"),
        (b"[1, 2]", 422, "instances"),
    ],
)
def test_the_lenient_parser_answers_malformed_bodies_with_a_4xx_that_says_why(body, status, says):
    with TestClient(service.create_app(models.mlp(), "v-test")) as http:
        response = http.post("/v1/predict", content=body)
    assert response.status_code == status, response.text
    assert says in response.json()["detail"]


def test_the_plumbing_serves_a_model_of_another_kind_through_prepare():
    """A tabular model: parse gives feature rows, prepare makes the batch, the model is any callable to logits."""

    def parse(body: bytes) -> list[list[float]]:
        return json.loads(body)["rows"]

    def positive_if_first_feature_is(rows: torch.Tensor) -> torch.Tensor:
        return torch.stack([-rows[:, 0], rows[:, 0]], dim=1)

    app = service.create_app(positive_if_first_feature_is, "rules-1", parse=parse, prepare=torch.tensor)
    with TestClient(app) as http:
        answer = http.post("/v1/predict", json={"rows": [[1.0, 0.0], [-2.0, 5.0]]})
    assert answer.status_code == 200 and answer.json()["predictions"] == [1, 0]


# --- opt-in evidence: Prometheus metrics and predictions in the log ------------------------------


def scraped(http: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(sample name, sorted labels): value}, read with prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    answer = http.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def test_metrics_and_prediction_logging_are_off_by_default(caplog):
    app = service.create_app(tiny_model())
    with caplog.at_level(logging.INFO, logger=service.REQUEST_LOG), TestClient(app) as http:
        assert http.get("/metrics").status_code == 404
        http.post("/v1/predict", json={"instances": digits(2).tolist()})
    line = json.loads(caplog.records[-1].getMessage())
    assert "predictions" not in line and http.app.state.metrics is None


def test_metrics_count_requests_latency_and_predicted_classes():
    model = tiny_model()
    x = digits(6)
    with TestClient(service.create_app(model, "v3", metrics=True)) as http:
        for _ in range(2):
            assert http.post("/v1/predict", json={"instances": x.tolist()}).status_code == 200
        assert http.post("/v1/predict", content=b"{}").status_code == 422
        assert http.get("/no/such/path/12345").status_code == 404
        assert http.get("/v1/predict").status_code == 405
        http.get("/healthz")
        samples = scraped(http)
        again = scraped(http)
    predict = (("model_version", "v3"), ("route", "/v1/predict"))
    assert samples[("http_requests_total", (*predict, ("status", "200")))] == 2
    assert samples[("http_requests_total", (*predict, ("status", "422")))] == 1
    assert samples[("http_requests_total", (*predict, ("status", "405")))] == 1, "a wrong method keeps its route"
    assert samples[("http_requests_total", (("model_version", "v3"), ("route", "unmatched"), ("status", "404")))] == 1
    assert not any("12345" in str(key) for key in samples), "a made-up path must not become a label value"
    assert samples[("http_request_duration_seconds_count", predict)] == 4
    assert samples[("http_request_duration_seconds_bucket", (("le", "+Inf"), *predict))] == 4
    assert 0 < samples[("http_request_duration_seconds_sum", predict)] < 10
    counted = {dict(k)["predicted"]: v for (name, k), v in samples.items() if name == "model_predictions_total"}
    wanted = {str(c): 2.0 * expected(model, x).count(c) for c in set(expected(model, x))}
    assert counted == wanted, "every answered instance counts once under its predicted class, 422s never"
    assert again[("http_requests_total", (("model_version", "v3"), ("route", "/metrics"), ("status", "200")))] == 1


def test_metrics_of_two_apps_in_one_process_are_separate():
    with TestClient(service.create_app(tiny_model(), "a", metrics=True)) as a:
        a.post("/v1/predict", json={"instances": digits(1).tolist()})
        with TestClient(service.create_app(tiny_model(), "b", metrics=True)) as b:
            assert not any(name == "http_requests_total" for name, _ in scraped(b)), "b has answered nothing yet"
        assert any(dict(labels).get("model_version") == "a" for _, labels in scraped(a))


def test_log_predictions_writes_what_was_answered(caplog):
    model = tiny_model()
    x = digits(3)
    app = service.create_app(model, "v1", log_predictions=True)
    with caplog.at_level(logging.INFO, logger=service.REQUEST_LOG), TestClient(app) as http:
        http.post("/v1/predict", json={"instances": x.tolist()}, headers={"X-Request-ID": "p-1"})
        http.post("/v1/predict", content=b"{}", headers={"X-Request-ID": "p-2"})
        http.post("/v1/noop", headers={"X-Request-ID": "p-3"})
    lines = {line["request_id"]: line for line in (json.loads(r.getMessage()) for r in caplog.records)}
    assert lines["p-1"]["predictions"] == expected(model, x)
    assert "predictions" not in lines["p-2"] and "predictions" not in lines["p-3"], "only answers have predictions"
