"""Staging an incident on a real service, and the image properties that explain one (lab 19).

An incident retrospective works from evidence: the service's structured logs, its Prometheus metrics, labels that
arrive later, and the inputs themselves. This module holds what produces and reads that evidence and is not the
investigation itself:

* **image properties** a model's errors can depend on, one number per image: `saturation` (the share of inked
  pixels at full white: a scanner with its gain turned up) and `stroke_interior` (the share of inked pixels inside
  a stroke rather than on its edge: thick pens). Each is computed the same way for any batch, so a property found
  to matter in an incident becomes a slice in the next evaluation;
* **input transforms** that make a client's images differ in those properties: `brighten`, `thicken`;
* `EightBitInput`, an input step that turns the service's float pixels into 8-bit levels before a network (a
  release that wants its serving path to read images exactly as its training data were stored). It is a module of
  the library so that a server process can unpickle a registered model that carries it;
* `replay`: traffic to a real server in fixed windows of time, with an action at any point (a promotion, a
  rollback) and a scrape of `/metrics` at the end of every window: what a monitoring system would have recorded;
* `histogram_quantile`: a quantile from a Prometheus histogram's cumulative buckets, as PromQL computes it.

Windows are 0-based: window k holds the times `t0 + k * width <= t < t0 + (k + 1) * width`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from course.serving import models

# --- image properties and transforms (batches (N, 28, 28) of pixels in [0, 1]) ------------------


def _inked(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 3:
        raise ValueError(f"expected a batch of images (N, 28, 28), got shape {tuple(images.shape)}")
    return images > 0


def saturation(images: torch.Tensor) -> torch.Tensor:
    """Per image, the share of inked pixels (> 0) that are at full white (1.0); 0 for a blank image.

    Scanned MNIST digits have a few saturated pixels at the core of their strokes (median 1%); a scanner whose
    gain is turned up clips most of the stroke to 1.0 (median above 60%).
    """
    inked = _inked(images)
    full = (images >= 1.0) & inked
    return full.sum((1, 2)) / inked.sum((1, 2)).clamp(min=1)


def stroke_interior(images: torch.Tensor) -> torch.Tensor:
    """Per image, the share of inked pixels whose four neighbours are inked too: near 0.5 for a thin pen, 0.7 thick.

    Unlike the amount of ink, it does not change when the strokes get brighter or dimmer, only when they get
    wider, so it separates "thick" from "bright".
    """
    inked = _inked(images).to(torch.float32)
    padded = F.pad(inked, (1, 1, 1, 1))
    neighbours = padded[:, :-2, 1:-1] * padded[:, 2:, 1:-1] * padded[:, 1:-1, :-2] * padded[:, 1:-1, 2:]
    return (neighbours * inked).sum((1, 2)) / inked.sum((1, 2)).clamp(min=1)


def thicken(images: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Strokes `size - 1` pixels wider (a grey dilation: each pixel takes the brightest value around it)."""
    if size % 2 != 1:
        raise ValueError(f"size must be odd (the image must not move), got {size}")
    return F.max_pool2d(images.unsqueeze(1), size, stride=1, padding=size // 2).squeeze(1)


def brighten(images: torch.Tensor, gain: float = 1.6) -> torch.Tensor:
    """Pixels times `gain`, clipped at 1.0: what a scanner with its gain turned up sends (the strokes saturate)."""
    return (images * gain).clamp(0.0, 1.0)


# --- a network behind an 8-bit input step ------------------------------------------------------


class EightBitInput(nn.Module):
    """`net` behind a step that turns normalized input back into pixel levels 0..255, as 8-bit images are stored.

    The step computes `round(pixel * scale) mod 256` (8-bit arithmetic wraps around) and normalizes the levels as
    `course.serving.models.normalize` does for uint8 images. With `scale=255` it changes nothing a network could
    notice (pixels are rounded to the nearest of 256 levels). The scale is a parameter because the lab's incident
    turns on it.
    """

    def __init__(self, net: nn.Module, scale: float = 255.0) -> None:
        super().__init__()
        self.net = net
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x * models.STD + models.MEAN  # undo the service's normalization
        levels = torch.remainder(torch.round(pixels * self.scale), 256)
        return self.net(models.normalize(levels.to(torch.uint8)))


# --- traffic in windows, with actions and metric scrapes ---------------------------------------


@dataclass(frozen=True)
class Request:
    """One request to send: its id, the client it comes from (sent as X-Client-ID), and its JSON body."""

    request_id: str
    client: str
    body: bytes


@dataclass
class Answer:
    """What the client saw: status 0 when no HTTP answer came at all (a refused connection, a timeout)."""

    request_id: str
    client: str
    window: int  # the window it was scheduled in
    sent: float  # time.time(), comparable with the server's log lines
    done: float = float("nan")
    status: int = 0
    version: str | None = None  # X-Model-Version
    predictions: list[int] | None = None
    error: str | None = None


@dataclass(frozen=True)
class Scrape:
    """The text of `/metrics` at time `ts`, taken when window `window` was over (-1: before the first)."""

    window: int
    ts: float
    text: str


@dataclass
class Replay:
    t0: float  # time.time() at the start of window 0
    width: float  # seconds per window
    answers: list[Answer] = field(default_factory=list)
    scrapes: list[Scrape] = field(default_factory=list)
    actions: dict[tuple[int, int], tuple[float, Any]] = field(default_factory=dict)  # (w, k) -> (time, result)

    def window_of(self, ts: float) -> int:
        """The 0-based window a time falls in."""
        return int((ts - self.t0) // self.width)


def replay(
    url: str,
    windows: Sequence[Sequence[Request]],
    *,
    width: float,
    first_window: int = 0,
    t0: float | None = None,
    actions: Mapping[tuple[int, int], Callable[[], Any]] | None = None,
    scrape: bool = True,
    spread: float = 0.6,
    workers: int = 8,
    timeout: float = 10.0,
) -> Replay:
    """Send `windows[i]` during window `first_window + i`, evenly over its first `spread` of the time.

    Each window waits for the answers of the one before (so a window's answers stay in it unless the server is
    very slow), then its requests leave on a fixed schedule whatever the answers do (open loop, from `workers`
    threads). `actions[(w, k)]` is called just before request k of window w is sent, or, with k equal to the
    number of requests of w, once all of them are answered and the window's scrape is taken: a promotion between
    two windows, a rollback in the middle of one. An action runs on the scheduling thread and its result is kept
    in `Replay.actions`. `t0` defaults to a moment just after the first scrape; a later replay of the same
    incident passes the same `t0` and its `first_window`.
    """
    import httpx

    actions = dict(actions or {})
    if not 0 < spread <= 1:
        raise ValueError(f"spread must be in (0, 1], got {spread}")
    with (
        httpx.Client(base_url=url, timeout=timeout, limits=httpx.Limits(max_connections=workers)) as http,
        ThreadPoolExecutor(workers, thread_name_prefix="replay") as pool,
    ):

        def take_scrape(window: int) -> None:
            if scrape:
                text = http.get("/metrics").raise_for_status().text
                result.scrapes.append(Scrape(window, time.time(), text))

        def act(window: int, k: int) -> None:
            action = actions.get((window, k))
            if action is not None:
                result.actions[(window, k)] = (time.time(), action())

        def send(request: Request, window: int) -> Answer:
            answer = Answer(request.request_id, request.client, window, sent=time.time())
            headers = {"Content-Type": "application/json", "X-Request-ID": request.request_id}
            try:
                response = http.post(
                    "/v1/predict", content=request.body, headers={**headers, "X-Client-ID": request.client}
                )
                answer.status = response.status_code
                answer.version = response.headers.get("x-model-version")
                if response.status_code == 200:
                    answer.predictions = response.json()["predictions"]
                else:
                    answer.error = response.text[:200]
            except httpx.HTTPError as exc:
                answer.error = f"{type(exc).__name__}: {exc}"
            answer.done = time.time()
            return answer

        result = Replay(t0=0.0, width=width)
        take_scrape(first_window - 1)
        result.t0 = t0 if t0 is not None else time.time() + 0.05
        for i, requests in enumerate(windows):
            window = first_window + i
            start = result.t0 + window * width
            if (wait := start - time.time()) > 0:
                time.sleep(wait)
            begin = max(start, time.time())
            step = max(start + spread * width - begin, 0.0) / max(len(requests), 1)
            futures: list[Future[Answer]] = []
            for k, request in enumerate(requests):
                act(window, k)
                if (wait := begin + k * step - time.time()) > 0:
                    time.sleep(wait)
                futures.append(pool.submit(send, request, window))
            result.answers.extend(future.result() for future in futures)
            take_scrape(window)
            act(window, len(requests))
    return result


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float:
    """The q-quantile of a Prometheus histogram from its cumulative buckets {upper bound `le`: count}.

    As PromQL's `histogram_quantile`: find the bucket the q-th observation falls in and interpolate linearly
    inside it (from 0 for the first bucket). The answer is only as fine as the buckets: an observation of 3 ms in
    a 2.5-5 ms bucket is "somewhere in between". When the rank falls in the `+Inf` bucket, the largest finite bound
    is returned; with no observations, NaN.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1], got {q}")
    bounds = sorted(buckets)
    if not bounds or bounds[-1] != float("inf"):
        raise ValueError("a histogram's buckets end with le=+Inf, which counts every observation")
    total = buckets[bounds[-1]]
    if total <= 0:
        return float("nan")
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, count
    return lower


def request_body(image: torch.Tensor) -> bytes:
    """The JSON body of a request for one image (28, 28): `{"instances": [[784 numbers]]}`, 4 decimals."""
    return json.dumps(
        {"instances": [[round(v, 4) for v in image.reshape(-1).tolist()]]}, separators=(",", ":")
    ).encode()
