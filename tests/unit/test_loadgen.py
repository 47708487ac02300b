"""course.serving.loadgen against a real uvicorn process with known timing (tests/unit/apps/timing_app.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from course.serving import latency, loadgen
from course.serving.server import Server

pytestmark = pytest.mark.unit
BODY = b"{}"


@pytest.fixture(scope="module")
def server():
    with Server("timing_app:app", pythonpath=[Path(__file__).parent / "apps"]) as running:
        yield running


def test_json_body_round_trips():
    body = loadgen.json_body(np.array([[0.5, 1.0]]))
    assert json.loads(body) == {"instances": [[0.5, 1.0]]} and b" " not in body


def test_arrivals_are_poisson_and_reproducible():
    due = loadgen.arrivals(rate=200, n=20_000, seed=3)
    gaps = np.diff(due)
    assert due[0] == 0 and np.all(gaps >= 0)
    assert gaps.mean() == pytest.approx(1 / 200, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.03), "Poisson arrivals: exponential gaps, CV ~1"
    np.testing.assert_array_equal(due, loadgen.arrivals(rate=200, n=20_000, seed=3))
    assert not np.array_equal(due, loadgen.arrivals(rate=200, n=20_000, seed=4))


def test_open_loop_sends_on_its_schedule(server):
    run = loadgen.open_loop(server.url + "/work", BODY, rate=200, n=300, seed=3)
    assert run.n == 300 and run.failed == 0 and run.kind == "open" and run.offered_rate == 200
    np.testing.assert_allclose(run.scheduled, loadgen.arrivals(200, 300, seed=3))
    assert np.all(run.sent >= run.scheduled - 1e-3), "nothing leaves before it is due"
    assert np.median(run.sent - run.scheduled) < 0.005, "requests leave on time when the client is not overloaded"
    assert run.client_cpu_ms_per_request > 0 and run.throughput > 100


def test_open_loop_sees_the_stall_a_closed_loop_hides(server):
    # Every 100th /stall request holds the server for 300 ms. One closed-loop client waits it out and counts one slow
    # request; open-loop arrivals keep coming during the pause and every one of them is late.
    closed = loadgen.closed_loop(server.url + "/stall", BODY, clients=1, n=150, warmup=0)
    opened = loadgen.open_loop(server.url + "/stall", BODY, rate=150, n=150, warmup=0, seed=0)
    closed_ms, open_ms = closed.latency_ms(), opened.latency_ms()
    assert latency.percentile(closed_ms, 95) < 50, "only one closed-loop request met the pause"
    assert latency.percentile(open_ms, 95) > 100, "the requests due during the pause waited for it"
    assert np.sum(open_ms > 100) >= 10
    uncorrected = opened.latency_ms(from_schedule=False)
    assert np.all(uncorrected <= open_ms + 1e-6)


def test_closed_loop_keeps_k_requests_in_flight(server):
    one = loadgen.closed_loop(server.url + "/work", BODY, clients=1, duration=0.5)
    four = loadgen.closed_loop(server.url + "/work", BODY, clients=4, duration=0.5)
    assert one.failed == 0 and four.failed == 0 and one.clients == 1
    # the server does one request at a time: more clients add queueing, not throughput
    assert four.summary().p50 > 2 * one.summary().p50
    assert four.throughput < 1.5 * one.throughput
    assert 0.01 < four.client_cpu_ms_per_request < 5, "CPU per request sent, not per preallocated slot"


def test_capacity_of_a_one_at_a_time_server(server):
    got = loadgen.capacity(server.url + "/work", BODY, clients=4, duration=1.0)
    assert 100 < got < 520, f"2 ms per request, one at a time: at most ~500 req/s, got {got:.0f}"


def test_interleaved_alternates_between_services(server):
    runs = loadgen.interleaved({"work": server.url + "/work", "ok": server.url + "/status/200"}, BODY, n_each=60)
    assert runs["work"].n == runs["ok"].n == 60
    assert runs["work"].summary().p50 > runs["ok"].summary().p50 + 1.0, "/work sleeps 2 ms, /status does not"
    assert np.all(np.diff(np.sort(np.concatenate([runs["work"].sent, runs["ok"].sent]))) >= 0)


def test_interleaved_stops_at_its_duration_with_fewer_requests(server):
    """A slow machine gets the same seconds and fewer requests, not the same requests and more seconds."""
    runs = loadgen.interleaved({"work": server.url + "/work", "ok": server.url + "/status/200"}, BODY,
                               n_each=100_000, duration=0.5)  # fmt: skip
    sent = runs["work"].n + runs["ok"].n
    assert 20 < sent < 2_000 and abs(runs["work"].n - runs["ok"].n) <= 1, (runs["work"].n, runs["ok"].n)
    assert runs["work"].wall_s < 1.5


def test_errors_and_timeouts_are_counted_not_raised(server):
    run = loadgen.closed_loop(server.url + "/status/503", BODY, clients=2, n=10, warmup=0)
    assert run.failed == 10 and set(run.status) == {503} and run.latency_ms().size == 0
    hung = loadgen.open_loop(server.url + "/hang", BODY, rate=50, n=3, timeout=0.3, warmup=0)
    assert set(hung.status) == {0} and hung.errors and "Timeout" in hung.errors[0]
    assert "no successful request" in str(hung)


def test_bad_arguments_say_what_to_do():
    with pytest.raises(ValueError, match="positive"):
        loadgen.open_loop("http://127.0.0.1:9/x", BODY, rate=0, n=1)
    with pytest.raises(ValueError, match="n=<requests> or duration"):
        loadgen.open_loop("http://127.0.0.1:9/x", BODY, rate=10)
    with pytest.raises(ValueError, match="clients"):
        loadgen.closed_loop("http://127.0.0.1:9/x", BODY, clients=0, n=1)


def test_runs_inside_a_running_event_loop(server):
    async def inside_a_notebook():  # Jupyter's kernel already runs an event loop
        return loadgen.closed_loop(server.url + "/work", BODY, clients=1, n=5, warmup=0)

    assert asyncio.run(inside_a_notebook()).failed == 0
