"""A model behind a REST API: the plumbing that labs 08-13 share.

`create_app()` builds a FastAPI app around a `ModelSlot` (the model being served
and its version, swappable atomically while requests are in flight). What a lab
teaches is plugged in, not built in:

* `parse(body: bytes) -> tensor` turns a request body into pixels in [0, 1] and
  refuses bad input by raising `HTTPException(4xx, message)` or a pydantic
  `ValidationError` (answered 422 with pydantic's messages). Anything else it
  raises is a bug and is answered 500. The default, `parse_lenient`, checks
  nothing the model does not need: it is for load tests of well-formed traffic
  (labs 09-10); lab 08 is where the real validation is written.
* `prepare(parsed) -> tensor` turns what `parse` returned into the model's input
  batch. The default, `as_images`, normalizes MNIST pixels; a service for another
  kind of model (tabular features, text) passes its own, and its model is any
  callable from that batch to logits of shape (N, classes).
* `identify(request) -> str` names the client a request counts against (default:
  the peer address) and `limiter(client) -> Response | None` returns None to let
  a request through or the refusal to send (a 429 with Retry-After). The default
  is no limiter: lab 08 writes the per-client one.

The plumbing itself is fixed: request ids (the caller's `X-Request-ID` when it is
sane, a fresh one otherwise, echoed in a header and in every JSON body we write),
`X-Model-Version` on every answer once a model is loaded, liveness (`/healthz`,
which also counts the /v1 requests in flight) and readiness (`/readyz`: 503 until
a model is loaded), versioned routes under `/v1`, a body-size cap (413), and one
JSON log line per request on the logger `course.serving.requests`.
`course.serving.server.Server` runs such an app in a real uvicorn process and
sends those lines to a file.

Two opt-ins, both off by default, turn the service into evidence for an incident
(lab 19): `metrics=True` serves `/metrics` in Prometheus' text format (requests by
route template, status and model version, a latency histogram, predicted classes
by model version), and `log_predictions=True` adds each answer's `predictions` to
its log line, so that labels arriving later can be joined to what was answered.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import Match
from torch import nn

from course.serving import contract, models

Parser = Callable[[bytes], Any]  # body -> tensor (N, 784), (N, 28, 28) or (N, 1, 28, 28) of pixels in [0, 1]
Prepare = Callable[[Any], torch.Tensor]  # what parse returned -> the model's input batch
Identify = Callable[[Request], str]
Limiter = Callable[[str], Response | None]
Loader = Callable[[], tuple[nn.Module, str]]

REQUEST_LOG = "course.serving.requests"  # one JSON object per line, one line per request
ERROR_LOG = "course.serving.errors"  # tracebacks of 500s and failed model loads
VERSIONED = "/v1/"  # routes under this prefix are rate limited; /healthz and /readyz never are
MAX_DEBUG_DELAY_S = 5.0
# seconds; a request of the MNIST service takes a few milliseconds, a stalled one seconds
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

request_log = logging.getLogger(REQUEST_LOG)
error_log = logging.getLogger(ERROR_LOG)


# --- the model being served -------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """A model and the version it is served under, always read and replaced together."""

    model: nn.Module
    version: str


class ModelSlot:
    """The model being served, replaced atomically.

    A request takes one snapshot with `get()` and uses it to the end, so a `swap()`
    while it is in flight never mixes two models in one answer: requests that
    started before the swap finish on the old model, later ones get the new one.
    """

    def __init__(self, model: nn.Module | None = None, version: str | None = None) -> None:
        self._lock = threading.Lock()
        self._current: Loaded | None = None
        self.error: str | None = None  # why the last load failed, for /readyz
        if model is not None:
            self.swap(model, version or "unversioned")

    def get(self) -> Loaded | None:
        return self._current  # one reference read: atomic

    def swap(self, model: nn.Module, version: str) -> Loaded | None:
        """Serve `model` as `version` from the next request on; returns what was served before."""
        if hasattr(model, "eval"):  # a torch module; other callables (a wrapped scikit-learn model) have no mode
            model.eval()
        with self._lock:
            previous, self._current = self._current, Loaded(model, str(version))
            self.error = None
        return previous

    @property
    def ready(self) -> bool:
        return self._current is not None

    @property
    def version(self) -> str | None:
        current = self._current
        return current.version if current else None


def save_model(model: nn.Module, path: Path) -> Path:
    """Write a whole module (architecture and weights) for a server process to load."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model, path)
    return path


def load_model(spec: str) -> tuple[nn.Module, str]:
    """`pretrained:mlp` / `pretrained:cnn` (course.serving.models), or a file from `save_model`.

    A file is unpickled, which can run code: load only files you wrote yourself.
    """
    if spec.startswith("pretrained:"):
        recipe = models.Recipe(arch=spec.split(":", 1)[1])
        return models.pretrained(recipe), f"{recipe.arch}-{recipe.key()}"
    path = Path(spec)
    model = torch.load(path, weights_only=False, map_location="cpu")
    if not isinstance(model, nn.Module):
        raise TypeError(f"{path} holds a {type(model).__name__}, not a torch.nn.Module: write it with save_model()")
    return model, path.stem


def loader_from_env() -> Loader | None:
    """COURSE_MODEL (a spec for `load_model`) and COURSE_MODEL_VERSION, as set by `Server(model=...)`."""
    spec = os.environ.get("COURSE_MODEL")
    if not spec:
        return None

    def load() -> tuple[nn.Module, str]:
        model, version = load_model(spec)
        return model, os.environ.get("COURSE_MODEL_VERSION") or version

    return load


# --- defaults for the pluggable parts ---------------------------------------------


def parse_lenient(body: bytes) -> torch.Tensor:
    """`{"instances": [...]}` to a float tensor: what load tests send, checked as cheaply as possible.

    Lenient about form (strings that JSON turns into numbers, extra fields), never careless:
    a body that is not a batch of 784 pixels in [0, 1] gets a 4xx that says what was
    expected, never a 500 (a fuzzer found `{}`, then 1e308, answering 500). Lab 08 writes
    the strict validation a public API needs.
    """
    try:
        payload = json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise HTTPException(400, f'the body is not JSON ({exc}); send {{"instances": [[784 numbers], ...]}}') from None
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if not isinstance(instances, list) or not instances:
        raise HTTPException(422, 'expected a JSON object {"instances": [[784 numbers], ...]} with at least one image')
    try:  # each image on its own: one batch may mix 784-vectors and 28x28 images
        x = torch.stack([torch.tensor(image, dtype=torch.float32).reshape(784) for image in instances])
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise HTTPException(422, "instances must be a list of images, each 784 numbers or 28 rows of 28") from None
    if not (torch.isfinite(x).all() and (x >= 0).all() and (x <= 1).all()):  # 1e308 is JSON, but not a pixel
        raise HTTPException(422, "pixels must be numbers in [0, 1] (divide 0-255 values by 255)")
    return x


def peer_address(request: Request) -> str:
    """The address of the TCP peer: every client behind one address shares it."""
    return f"ip:{request.client.host}" if request.client else "ip:unknown"


def request_id_of(request: Request) -> str:
    """The id of the request being served (set by the middleware before any route runs)."""
    return getattr(request.state, "request_id", "")


def describe(error: ValidationError, limit: int = 5) -> str:
    """Pydantic's errors as one line a client can act on: `where: what` for the first few."""
    parts = []
    for err in error.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = error.error_count() - limit
    return "invalid request: " + "; ".join(parts) + (f" (and {more} more problems)" if more > 0 else "")


def error_response(status: int, detail: Any, request_id: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "request_id": request_id}, status_code=status, headers=headers)


# --- metrics, when asked for -------------------------------------------------------


class ServiceMetrics:
    """The Prometheus metrics of one app, in a registry of its own.

    A registry per app (not prometheus_client's global one) lets several apps live in
    one process, as they do in tests, without sharing or clashing counters. Labels are
    bounded on purpose: the route *template* (`/v1/predict`, never a raw path a client
    made up, which would grow one series per typo), the status code, the model version,
    and the predicted class. A client id is not a label: clients are unbounded.
    """

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by route template, status code and the model version that answered",
            ["route", "status", "model_version"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time from the request's arrival to its answer, by route template and model version",
            ["route", "model_version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "model_predictions",
            "Predicted classes, one per answered instance, by model version",
            ["model_version", "predicted"],
            registry=self.registry,
        )

    def observe(
        self, route: str, status: int, version: str | None, seconds: float, predictions: list[Any] | None
    ) -> None:
        served = version or "none"
        self.requests.labels(route, str(status), served).inc()
        self.latency.labels(route, served).observe(seconds)
        for predicted in predictions or ():
            self.predictions.labels(served, str(predicted)).inc()

    def exposition(self) -> Response:
        """Everything in the registry, in the text format a Prometheus server scrapes."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def route_template(app: FastAPI, request: Request) -> str:
    """The path of the route a request matches (`/v1/predict`), or `unmatched`: a bounded label."""
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:  # PARTIAL: the path matched, the method did not (405)
            return getattr(route, "path", "unmatched")
    return "unmatched"


# --- the app ----------------------------------------------------------------------


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def as_images(x: Any) -> torch.Tensor:
    """What `parse` returned, as normalized model input (N, 1, 28, 28); a wrong shape is a bug in `parse`."""
    x = torch.as_tensor(x)
    if x.ndim not in (2, 3, 4) or x.shape[0] == 0 or x[0].numel() != 784:
        raise ValueError(f"parse() returned shape {tuple(x.shape)}; expected (N, 784), (N, 28, 28) or (N, 1, 28, 28)")
    return models.normalize(x.to(torch.float32))


def create_app(
    model: nn.Module | None = None,
    version: str | None = None,
    *,
    loader: Loader | None = None,
    parse: Parser = parse_lenient,
    prepare: Prepare = as_images,
    identify: Identify = peer_address,
    limiter: Limiter | None = None,
    max_body_bytes: int = 8 * 2**20,
    debug_delay: bool | None = None,
    metrics: bool = False,
    log_predictions: bool = False,
    request_schema: dict[str, Any] | None = None,
    title: str = "MNIST digit classifier",
) -> FastAPI:
    """A FastAPI app serving an MNIST classifier; see the module docstring for the parts.

    The model is `model` (served as `version`), else whatever `loader` returns, else
    the one COURSE_MODEL names; a loader runs in a thread at startup so `/healthz`
    answers at once and `/readyz` says 503 until the model is in. `debug_delay`
    (default: the COURSE_DEBUG_DELAY env flag) lets a client make `/v1/predict` sleep
    up to 5 s through an `X-Debug-Delay: <seconds>` header, after it has taken its
    model snapshot: that is how the labs put a request in flight on purpose. Never
    turn it on in production. `metrics` serves `/metrics` (see `ServiceMetrics`);
    `log_predictions` writes each answer's predictions into its log line.
    `request_schema` is the JSON schema of the body `parse` accepts, published in
    /openapi.json (default: the lenient parser's, `contract.IMAGES`).
    """
    slot = ModelSlot(model, version)
    loader = loader if (loader is not None or model is not None) else loader_from_env()
    delay_allowed = _env_flag("COURSE_DEBUG_DELAY") if debug_delay is None else debug_delay

    def load_in_background() -> None:
        assert loader is not None
        try:
            loaded_model, loaded_version = loader()
            slot.swap(loaded_model, loaded_version)
        except Exception as exc:  # reported by /readyz and in the error log; the process stays up
            slot.error = f"{type(exc).__name__}: {exc}"
            error_log.exception("model failed to load")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if loader is not None and not slot.ready:
            threading.Thread(target=load_in_background, name="model-loader", daemon=True).start()
        yield

    app = FastAPI(title=title, lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def invalid_parameters(request: Request, exc: RequestValidationError) -> JSONResponse:
        """A bad query parameter gets the body every other error has (detail and request id)."""
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()[:5]]
        return error_response(422, "invalid request: " + "; ".join(parts), request_id_of(request))

    @app.exception_handler(HTTPException)
    async def refused(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, exc.detail, request_id_of(request), dict(exc.headers or {}))

    app.state.slot = slot
    meter = ServiceMetrics() if metrics else None
    app.state.metrics = meter
    in_flight = [0]  # versioned requests being served now; only the event loop thread touches it

    @app.middleware("http")
    async def plumbing(request: Request, call_next: Callable) -> Response:
        start = time.perf_counter()
        offered = request.headers.get("x-request-id", "")
        rid = offered if _SANE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        request.state.request_id = rid
        client = "?"
        versioned = request.url.path.startswith(VERSIONED)
        in_flight[0] += versioned
        try:
            client = identify(request)
            request.state.client = client
            refusal = limiter(client) if limiter is not None and versioned else None
            response = refusal if refusal is not None else await call_next(request)
        except Exception:  # a bug (ours, or in a plugged-in part): 500, traceback in the error log
            error_log.exception("request %s failed", rid)
            response = error_response(500, "internal server error", rid)
        finally:
            in_flight[0] -= versioned
        response.headers["X-Request-ID"] = rid
        served = getattr(request.state, "model_version", None) or slot.version
        if served:
            response.headers["X-Model-Version"] = served
        elapsed = time.perf_counter() - start
        line = {
            "ts": round(time.time(), 3),
            "request_id": rid,
            "client": client,
            "method": request.method,
            "route": request.url.path,
            "status": response.status_code,
            "latency_ms": round(elapsed * 1000, 3),
            "model_version": served,
        }
        predictions = getattr(request.state, "predictions", None)  # set by /v1/predict when it answered
        if log_predictions and predictions is not None:
            line["predictions"] = predictions
        request_log.info(json.dumps(line))
        if meter is not None:
            meter.observe(route_template(app, request), response.status_code, served, elapsed, predictions)
        return response

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers. Also says how many /v1 requests are in flight right now."""
        return {"status": "ok", "in_flight": in_flight[0]}

    @app.get("/readyz", responses={503: {"description": "not ready: no model loaded yet, or it failed to load"}})
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: a model is loaded. A load balancer sends no traffic to a server that is not ready."""
        current = slot.get()
        if current is None:
            detail = f"model failed to load: {slot.error}" if slot.error else "model not loaded yet"
            return JSONResponse({"ready": False, "failed": bool(slot.error), "detail": detail}, status_code=503)
        return JSONResponse({"ready": True, "model_version": current.version})

    @app.get("/v1/model", responses={200: {"description": "the model being served"}, **contract.errors(429, 503)})
    async def model_info(request: Request) -> JSONResponse:
        return JSONResponse(
            {"model_version": slot.version, "ready": slot.ready, "request_id": request_id_of(request)},
            status_code=200 if slot.ready else 503,
        )

    if meter is not None:

        @app.get("/metrics")
        async def prometheus_metrics() -> Response:
            """What a Prometheus server scrapes: counters and histograms since the process started."""
            return meter.exposition()

    @app.post("/v1/noop", **contract.versioned_route())
    async def noop(request: Request) -> JSONResponse:
        """No parsing, no model: what the HTTP round trip and the plumbing cost on their own."""
        return JSONResponse({"ok": True, "request_id": request_id_of(request)})

    def run_model(current: Loaded, body: bytes, with_probabilities: bool, delay: float) -> dict[str, Any]:
        if delay > 0:
            time.sleep(delay)
        x = prepare(parse(body))
        with torch.inference_mode():
            logits = current.model(x)
        answer: dict[str, Any] = {"predictions": logits.argmax(dim=1).tolist()}
        if with_probabilities:
            answer["probabilities"] = torch.softmax(logits, dim=1).tolist()
        return answer

    @app.post("/v1/predict", **contract.predict_route(request_schema or contract.IMAGES))
    async def predict(request: Request, probabilities: bool = False) -> JSONResponse:
        """`{"instances": [...]}`: a batch of 28x28 images or 784-vectors, pixels in [0, 1]."""
        rid = request_id_of(request)
        current = slot.get()  # the snapshot this request uses to the end, whatever swap() does meanwhile
        if current is None:
            return error_response(503, "no model loaded yet; retry shortly", rid, {"Retry-After": "1"})
        request.state.model_version = current.version
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            return error_response(413, f"request body of {declared} bytes is over the limit of {max_body_bytes}", rid)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                return error_response(413, f"request body is over the limit of {max_body_bytes} bytes", rid)
            chunks.append(chunk)
        delay = 0.0
        if delay_allowed:
            try:
                delay = min(max(float(request.headers.get("x-debug-delay", "0")), 0.0), MAX_DEBUG_DELAY_S)
            except ValueError:
                delay = 0.0
            delay = 0.0 if math.isnan(delay) else delay
        try:
            answer = await run_in_threadpool(run_model, current, b"".join(chunks), probabilities, delay)
        except HTTPException as exc:
            return error_response(exc.status_code, exc.detail, rid, dict(exc.headers or {}))
        except ValidationError as exc:
            return error_response(422, describe(exc), rid)
        request.state.predictions = answer["predictions"]
        return JSONResponse({**answer, "model_version": current.version, "request_id": rid})

    return app


def app_from_env() -> FastAPI:
    """The default app of `course.serving.server.Server`: COURSE_MODEL served with the lenient parser, no limiter."""
    return create_app()
