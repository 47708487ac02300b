"""Load generators for HTTP services: open loop, closed loop, and a capacity probe.

A **closed-loop** client (k clients, each sending its next request when the last
answer arrives) slows down when the server does: while one slow request is in
flight, the requests that would have arrived meanwhile are never sent, so they are
never measured. That is *coordinated omission*, and it hides exactly the tail we
care about. An **open-loop** client sends on a schedule fixed in advance (Poisson
arrivals at a given rate, like independent users) whatever the server does, and
measures each latency from the moment the request was *due*, not from when it
finally left: a request stuck behind a slow one is counted as slow.

The generator must not be the bottleneck. It runs aiohttp on uvloop in a thread of
its own (so it also works inside a Jupyter kernel, which already runs an event
loop) and reports the CPU it spent per request: compare it with the service's, and
measure a no-model control endpoint (`/v1/noop`) beside every serving figure.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from course.serving import latency

JSON_HEADERS = {"content-type": "application/json"}
MAX_ERRORS_KEPT = 5


@dataclass
class Run:
    """What one load run saw, request by request (times in seconds since the run started)."""

    kind: str  # "open" or "closed"
    url: str
    scheduled: np.ndarray  # when each request was due (closed loop: when it was sent)
    sent: np.ndarray  # when it left
    done: np.ndarray  # when its answer (or its error) came back
    status: np.ndarray  # HTTP status; 0 for a transport error or a timeout
    wall_s: float
    client_cpu_s: float  # CPU time of the generator's thread over the whole run
    offered_rate: float | None = None  # requests per second, open loop only
    clients: int | None = None  # closed loop only
    errors: list[str] = field(default_factory=list)  # the first few transport errors, for the report

    @property
    def n(self) -> int:
        return int(self.status.size)

    @property
    def ok(self) -> np.ndarray:
        return self.status == 200

    @property
    def failed(self) -> int:
        return int((~self.ok).sum())

    def latency_ms(self, from_schedule: bool = True) -> np.ndarray:
        """Latencies of the successful requests; from when they were due (open loop) or from when they left."""
        start = self.scheduled if from_schedule else self.sent
        return (self.done - start)[self.ok] * 1e3

    @property
    def throughput(self) -> float:
        """Successful answers per second of wall time."""
        return float(self.ok.sum()) / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def client_cpu_ms_per_request(self) -> float:
        return self.client_cpu_s * 1e3 / max(self.n, 1)

    def summary(self) -> latency.Summary:
        return latency.summarize(self.latency_ms())

    def __str__(self) -> str:
        load = f"{self.offered_rate:.0f} req/s offered" if self.offered_rate else f"{self.clients} client(s)"
        head = f"{self.kind} loop, {load}: {self.n} requests, {self.failed} failed, {self.throughput:.0f} req/s"
        stats = str(self.summary()) if self.ok.any() else "no successful request"
        return f"{head}\n  {stats}\n  client CPU {self.client_cpu_ms_per_request:.3f} ms/request"


def json_body(instances: Any) -> bytes:
    """`{"instances": ...}` as bytes, built once and sent many times (encoding is not part of the measurement)."""
    if hasattr(instances, "tolist"):
        instances = instances.tolist()
    return json.dumps({"instances": instances}, separators=(",", ":")).encode()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop

        return uvloop.new_event_loop
    except ImportError:  # uvloop is Linux/macOS only
        return asyncio.new_event_loop


def _in_thread(make: Callable[[], Coroutine[Any, Any, Any]]) -> tuple[Any, float]:
    """Run a coroutine on a private event loop in a new thread: (its result, that thread's CPU seconds)."""
    box: dict[str, Any] = {}

    def target() -> None:
        cpu0 = time.thread_time()
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                box["value"] = runner.run(make())
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc
        box["cpu"] = time.thread_time() - cpu0

    thread = threading.Thread(target=target, name="course-loadgen", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"], box["cpu"]


class _Recorder:
    """Per-request times and statuses, filled in by concurrent sends on one event loop."""

    def __init__(self, n: int) -> None:
        self.scheduled = np.full(n, np.nan)
        self.sent = np.full(n, np.nan)
        self.done = np.full(n, np.nan)
        self.status = np.zeros(n, dtype=int)
        self.target = np.zeros(n, dtype=int)
        self.errors: list[str] = []
        self.t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.t0

    async def send(self, session: Any, i: int, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        import aiohttp

        self.sent[i] = self.now()
        try:
            async with session.post(url, data=body, headers=dict(headers)) as response:
                await response.read()
                self.status[i] = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.status[i] = 0
            if len(self.errors) < MAX_ERRORS_KEPT:
                self.errors.append(f"{type(exc).__name__}: {exc}")
        self.done[i] = self.now()

    def run(self, kind: str, urls: Sequence[str], wall_s: float, cpu_s: float, **extra: Any) -> list[Run]:
        runs = []
        sent = ~np.isnan(self.sent)  # a duration-bound run leaves preallocated slots unused
        for k, url in enumerate(urls):
            mine = (self.target == k) & sent
            runs.append(
                Run(kind=kind, url=url, scheduled=self.scheduled[mine], sent=self.sent[mine], done=self.done[mine],
                    status=self.status[mine], wall_s=wall_s, client_cpu_s=cpu_s * mine.sum() / max(sent.sum(), 1),
                    errors=list(self.errors), **extra)
            )  # fmt: skip
        return runs


def _session(timeout: float, connections: int) -> Any:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout))


async def _warm(session: Any, urls: Sequence[str], body: bytes, headers: Mapping[str, str], count: int) -> None:
    """Open connections and let the server do its lazy first-request work before anything is measured."""
    for _ in range(count):
        for url in urls:
            async with session.post(url, data=body, headers=dict(headers)) as response:
                await response.read()


def arrivals(rate: float, n: int, seed: int = 0) -> np.ndarray:
    """Send times (s) of `n` Poisson arrivals at `rate`/s: independent users, exponential gaps; the first at 0."""
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=n)
    return np.cumsum(gaps) - gaps[0]


def open_loop(
    url: str,
    body: bytes,
    rate: float,
    *,
    n: int | None = None,
    duration: float | None = None,
    seed: int = 0,
    timeout: float = 10.0,
    warmup: int = 10,
    headers: Mapping[str, str] = JSON_HEADERS,
) -> Run:
    """Poisson arrivals at `rate` requests/s, `n` of them (or `duration` seconds' worth), whatever the server does.

    Latency is measured from each request's scheduled time. Requests that do not
    get an answer within `timeout` seconds count as failed (status 0).
    """
    if rate <= 0 or not math.isfinite(rate):
        raise ValueError(f"rate must be a positive number of requests per second, not {rate}")
    if n is None:
        if duration is None:
            raise ValueError("say how long to run: n=<requests> or duration=<seconds>")
        n = max(1, math.ceil(rate * duration))
    due = arrivals(rate, n, seed)

    async def main() -> tuple[_Recorder, float]:
        async with _session(timeout, connections=0) as session:
            await _warm(session, [url], body, headers, warmup)
            rec = _Recorder(n)
            rec.scheduled[:] = due
            tasks = []
            for i in range(n):
                while (delay := due[i] - rec.now()) > 0:  # timers may wake a little early: never send before due
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(rec.send(session, i, url, body, headers)))
            await asyncio.gather(*tasks)
            return rec, rec.now()

    (rec, wall), cpu = _in_thread(main)
    return rec.run("open", [url], wall, cpu, offered_rate=float(rate))[0]


def _closed(
    urls: Sequence[str], body: bytes, clients: int, n: int | None, duration: float | None, *,
    timeout: float, warmup: int, headers: Mapping[str, str], shuffle_seed: int | None,
) -> list[Run]:  # fmt: skip
    if clients < 1:
        raise ValueError(f"clients must be at least 1, not {clients}")
    if n is None and duration is None:
        raise ValueError("say how long to run: n=<requests> or duration=<seconds>")
    capacity = n if n is not None else 200_000  # preallocated slots for a duration-bounded run
    rng = np.random.default_rng(shuffle_seed)

    def order() -> Iterator[int]:
        """Targets round-robin, each round in a fresh random order so neither always goes first."""
        for _ in itertools.count():
            yield from (rng.permutation(len(urls)) if shuffle_seed is not None else range(len(urls)))

    async def main() -> tuple[_Recorder, float]:
        async with _session(timeout, connections=clients) as session:
            await _warm(session, urls, body, headers, warmup)
            rec = _Recorder(capacity)
            counter, targets = itertools.count(), order()
            deadline = rec.now() + duration if duration is not None else math.inf

            async def client() -> None:
                while True:
                    i = next(counter)
                    if i >= capacity or rec.now() > deadline:
                        return
                    k = int(next(targets))
                    rec.target[i] = k
                    rec.scheduled[i] = rec.now()
                    await rec.send(session, i, urls[k], body, headers)

            await asyncio.gather(*(client() for _ in range(clients)))
            return rec, rec.now()

    (rec, wall), cpu = _in_thread(main)
    return rec.run("closed", list(urls), wall, cpu, clients=clients)


def closed_loop(
    url: str,
    body: bytes,
    clients: int = 1,
    *,
    n: int | None = None,
    duration: float | None = None,
    timeout: float = 10.0,
    warmup: int = 10,
    headers: Mapping[str, str] = JSON_HEADERS,
) -> Run:
    """`clients` concurrent clients, each sending its next request as soon as its last answer arrives."""
    return _closed([url], body, clients, n, duration, timeout=timeout, warmup=warmup, headers=headers,
                   shuffle_seed=None)[0]  # fmt: skip


def interleaved(
    urls: Mapping[str, str],
    body: bytes,
    n_each: int,
    *,
    seed: int = 0,
    duration: float | None = None,
    timeout: float = 10.0,
    warmup: int = 10,
    headers: Mapping[str, str] = JSON_HEADERS,
) -> dict[str, Run]:
    """One client alternating between services (in a random order each round): a fair A/B timing.

    Two builds measured one after the other see different background load (a grader
    running another notebook, a compaction, a browser); interleaved, they see the same.
    `duration` caps the wall time: a machine 3x slower then sends fewer requests in the
    same seconds instead of taking 3x as long (the counts, and so the confidence of each
    percentile, are in the returned runs).
    """
    names = list(urls)
    runs = _closed([urls[k] for k in names], body, 1, n_each * len(names), duration, timeout=timeout, warmup=warmup,
                   headers=headers, shuffle_seed=seed)  # fmt: skip
    return dict(zip(names, runs, strict=True))


def capacity(
    url: str, body: bytes, *, clients: int = 8, duration: float = 2.0, headers: Mapping[str, str] = JSON_HEADERS
) -> float:
    """The most requests/s the service answers: closed loop with enough clients to keep it always busy."""
    run = closed_loop(url, body, clients, duration=duration, headers=headers)
    if run.failed:
        raise RuntimeError(f"{run.failed} of {run.n} requests failed while probing capacity: {run.errors[:2]}")
    return run.throughput
