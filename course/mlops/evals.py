"""The parts of an eval harness that every deploy gate reuses (lab 17; later labs' pipelines gate with them too).

A deploy gate answers one question before an alias moves: is this candidate fit to replace the champion? It can
only answer from evidence gathered the same way for both models, so this module fixes *how the evidence is
gathered* and leaves *the judging* to the gate, which each team writes for its own product:

* `golden_set()`: a fixed, fingerprinted sample of the MNIST test split with the attributes slices are cut by
  (the true digit, and the stroke width from `stroke_width()`). Every candidate is judged on the same images,
  which is what makes a *paired* comparison with the champion possible, and the fingerprint says which golden set
  a report was computed on.
* `shift`, `dim`, `erase` and `clean_digits()`: the inputs of behavioural tests (invariance, directional,
  minimum functionality).
* `expected_calibration_error()`: how far confidence is from accuracy.
* `serve_side_by_side()`: the champion and the candidate in **one real server process**, each under its own
  prefix, so that the latency SLO is measured for both in the same run, under the same background load.
  `SerialDependency` puts a model behind a resource that serves one call at a time (a stand-in for a single
  feature-store connection or a shared accelerator): the slow candidate of lab 17, slow in the same way on every
  machine.
* the containers a gate reads and writes (`SliceMetric`, `PairedDiff`, `Latency`, `SLO`, `Policy`,
  `BehaviourResult`, `EvalResult`, `GateReport`), JSON-ready so that a report can be logged as a run artifact.

What a gate demands, and the statistics it decides with, are the lab's exercises and are not here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from course.serving import loadgen, service

# ---------------------------------------------------------------------------------------------------------------
# The golden set and its slices
# ---------------------------------------------------------------------------------------------------------------

STROKE_EDGES = (2.6, 3.2)  # pixels: about a third of MNIST's test digits on each side of each edge
STROKES = ("thin", "medium", "thick")


def stroke_width(pixels: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Mean stroke width of each image, in pixels: 2 x ink area / number of ink pixels on the boundary.

    A stroke of width w and length L covers about w*L pixels, about 2*L of them on its boundary (an ink pixel with a
    blank 4-neighbour), so the ratio estimates w without skeletonizing anything: within a pixel for the strokes of
    handwritten digits (ends and corners pull it down a little). A stroke one or two pixels wide is all boundary and
    reads 2. `pixels` is (N, 28, 28) in [0, 1], ink above `threshold`; a blank image gets 0.
    """
    ink = torch.as_tensor(pixels) > threshold
    padded = nn.functional.pad(ink, (1, 1, 1, 1))
    inner = padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:] & padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1]
    boundary = (ink & ~inner).sum(dim=(1, 2))
    return 2.0 * ink.sum(dim=(1, 2)).float() / boundary.clamp(min=1).float()


def stroke_class(pixels: torch.Tensor) -> np.ndarray:
    """'thin', 'medium' or 'thick' per image, cut at `STROKE_EDGES` (fixed edges: a slice means the same thing in
    every golden set and every report)."""
    width = stroke_width(pixels).numpy()
    return np.asarray(STROKES, dtype=object)[np.searchsorted(STROKE_EDGES, width, side="right")].astype(str)


@dataclass(frozen=True, eq=False)
class GoldenSet:
    """A fixed evaluation set: the images, their true digits and their stroke class, in a fixed order."""

    pixels: torch.Tensor  # (N, 28, 28) float32 in [0, 1]: what a client sends
    labels: torch.Tensor  # (N,) int64: the true digits
    stroke: np.ndarray  # (N,) str: "thin", "medium" or "thick"
    index: np.ndarray  # (N,) positions in the MNIST test split

    def __len__(self) -> int:
        return int(self.labels.numel())

    @property
    def fingerprint(self) -> str:
        """sha256 of the pixels and labels (16 hex digits): the golden set's version, to put in every report."""
        digest = hashlib.sha256(self.pixels.numpy().tobytes())
        digest.update(self.labels.numpy().astype(np.int64).tobytes())
        return digest.hexdigest()[:16]

    def subset(self, rows: Any) -> GoldenSet:
        """The same golden set restricted to `rows` (a slice, index array or boolean mask)."""
        rows = np.arange(len(self))[rows]
        picked = torch.from_numpy(rows)
        return GoldenSet(self.pixels[picked], self.labels[picked], self.stroke[rows], self.index[rows])


@lru_cache(maxsize=2)
def mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's "train" or "test" split as `course.data.load_mnist` returns it (uint8 images (N, 28, 28), labels),
    read and checksummed once per process. Shared: copy before changing anything (indexing copies)."""
    from course.data import load_mnist

    return load_mnist(split)


def _as_pixels(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).float() / 255.0


def golden_set(size: int = 3000, seed: int = 17) -> GoldenSet:
    """`size` images of the MNIST test split drawn without replacement by `seed`, in test-split order.

    Never train or tune on it: a golden set that a model (or a threshold) was fitted to no longer measures
    anything. The same (size, seed) gives the same images on every machine; check `fingerprint`.
    """
    images, labels = mnist("test")
    if not 0 < size <= len(labels):
        raise ValueError(f"size must be between 1 and {len(labels)}, not {size}")
    rows = np.sort(np.random.default_rng(seed).permutation(len(labels))[:size])
    chosen = _as_pixels(images[rows])
    return GoldenSet(chosen, torch.from_numpy(labels[rows].astype(np.int64)), stroke_class(chosen), rows)


@lru_cache(maxsize=1)
def _class_means() -> torch.Tensor:
    """The mean training image of each digit, (10, 28, 28) in [0, 1]."""
    images, labels = mnist("train")
    return torch.from_numpy(np.stack([images[labels == d].mean(axis=0) for d in range(10)]) / 255.0).float()


def clean_digits(per_digit: int = 5, exclude: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The `per_digit` most typical test images of each digit (closest to that digit's mean training image).

    The items of a minimum-functionality test: digits nobody would misread, chosen by a rule that looks at no
    model, so that no model can be flattered by the choice. `exclude` (positions in the test split, e.g. the
    golden set's `index`) keeps them apart from the golden set. Returns pixels (10 * per_digit, 28, 28) and labels.
    """
    images, labels = mnist("test")
    allowed = np.ones(len(labels), dtype=bool)
    if exclude is not None:
        allowed[np.asarray(exclude, dtype=np.int64)] = False
    means = _class_means()
    chosen = []
    for digit in range(10):
        rows = np.flatnonzero((labels == digit) & allowed)
        distance = ((_as_pixels(images[rows]) - means[digit]) ** 2).sum(dim=(1, 2))
        chosen.append(rows[torch.argsort(distance, stable=True)[:per_digit].numpy()])
    rows = np.concatenate(chosen)
    return _as_pixels(images[rows]), torch.from_numpy(labels[rows].astype(np.int64))


# ---------------------------------------------------------------------------------------------------------------
# Behavioural transforms and calibration
# ---------------------------------------------------------------------------------------------------------------


def shift(pixels: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Move every image `dx` pixels right and `dy` down (negative: left, up), filling with blank pixels.

    Not `torch.roll`: rolling wraps the strokes that leave one edge around to the opposite one.
    """
    out = torch.zeros_like(pixels)
    h, w = pixels.shape[-2:]
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = pixels[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def dim(pixels: torch.Tensor, factor: float) -> torch.Tensor:
    """Scale the ink by `factor` (0.7: a fainter pen, a darker scan), kept in [0, 1]."""
    return (pixels * factor).clamp(0.0, 1.0)


def erase(pixels: torch.Tensor, fraction: float = 0.5, seed: int = 0) -> torch.Tensor:
    """Blank a random `fraction` of the pixels (and so about that fraction of each stroke), reproducibly by `seed`.

    Less of the digit is left: a sane model should be *less* sure of what it reads (a directional test).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], not {fraction}")
    keep = torch.rand(pixels.shape, generator=torch.Generator().manual_seed(seed)) >= fraction
    return pixels * keep


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE: sum over equal-width confidence bins of (share of examples) x |accuracy - mean confidence|.

    0 for a model whose "90% sure" is right 90% of the time; a model that says 99% and is right 90% of the time
    has an ECE near 0.09. Confidence is the top probability; a bin holds confidences in (lo, hi].
    """
    probabilities, labels = torch.as_tensor(probabilities), torch.as_tensor(labels)
    if probabilities.ndim != 2 or len(probabilities) != len(labels) or len(labels) == 0:
        raise ValueError(f"need (N, classes) probabilities and N labels, got {tuple(probabilities.shape)} and "
                         f"{tuple(labels.shape)}")  # fmt: skip
    confidence, predicted = probabilities.max(dim=1)
    right = (predicted == labels).double()
    which = torch.clamp(torch.ceil(confidence.double() * bins).long() - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap = (right[members].mean() - confidence[members].double().mean()).abs()
            total += float(members.double().mean() * gap)
    return total


# ---------------------------------------------------------------------------------------------------------------
# Serving two models side by side, and a dependency that serves one call at a time
# ---------------------------------------------------------------------------------------------------------------

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock(resource: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(resource, threading.Lock())


class SerialDependency(nn.Module):
    """`model` behind a resource that serves one call at a time and holds each call for `hold_s` seconds.

    A single connection to a feature store, a licence server, one accelerator shared by every request: while one
    call holds it the others queue. One request alone waits `hold_s`; under load, requests wait for each other,
    which only an open-loop load test shows. Waiting is simulated with a sleep, so it costs the same on every
    machine. `failure_rate` makes that share of calls fail (a RuntimeError: the service answers 500). The lock is
    looked up by name, so the module pickles (into a registry, into a server's model file) like any other.
    """

    def __init__(self, model: nn.Module, hold_s: float, resource: str = "dependency", failure_rate: float = 0.0):
        super().__init__()
        if hold_s < 0 or not 0.0 <= failure_rate <= 1.0:
            raise ValueError(f"need hold_s >= 0 and 0 <= failure_rate <= 1, got {hold_s} and {failure_rate}")
        self.model = model
        self.hold_s = float(hold_s)
        self.resource = resource
        self.failure_rate = float(failure_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with _lock(self.resource):
            time.sleep(self.hold_s)
        if self.failure_rate and random.random() < self.failure_rate:
            raise RuntimeError(f"{self.resource}: call failed")
        return self.model(x)


MODELS_ENV = "COURSE_EVAL_MODELS"  # JSON {role: model file} for side_by_side_app
SIDE_BY_SIDE_APP = "course.mlops.evals:side_by_side_app"


def side_by_side_app() -> Any:
    """The app of `serve_side_by_side`'s server: one `course.serving.service` app per role, under `/<role>`.

    In one process the models share the event loop, the threads and the cores: what differs between their
    latencies is the models. `/readyz` and other root paths go to the first role's app. (Starlette does not run a
    mounted app's startup; none is needed, each app gets its model before it serves.)
    """
    from starlette.applications import Starlette
    from starlette.routing import Mount

    specs = json.loads(os.environ[MODELS_ENV])
    if not specs:
        raise ValueError(f"{MODELS_ENV} names no model")
    apps = {}
    for role, spec in specs.items():
        model, version = service.load_model(spec["path"])
        apps[role] = service.create_app(model, spec.get("version") or version, title=f"{role} (side by side)")
    mounts = [Mount(f"/{role}", app=app) for role, app in apps.items()]
    return Starlette(routes=[*mounts, Mount("", app=next(iter(apps.values())))])


@contextlib.contextmanager
def serve_side_by_side(
    models: Mapping[str, nn.Module], *, versions: Mapping[str, str] | None = None, threads: int = 1
) -> Iterator[dict[str, str]]:
    """Serve each model under `/<role>` of one real uvicorn process on 127.0.0.1; yields {role: predict URL}.

        with serve_side_by_side({"champion": a, "candidate": b}) as urls:
            loadgen.open_loop(urls["candidate"], body, rate=50, duration=2)

    The models are written to a temporary folder for the server process to load, and the folder and the server
    are gone when the block ends, whatever happened in it. `versions` sets each role's X-Model-Version.
    """
    from course.serving.server import Server

    if not models:
        raise ValueError("serve at least one model")
    for role in models:
        if not role.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"a role becomes a URL prefix: letters, digits, - and _ only, not {role!r}")
    folder = Path(tempfile.mkdtemp(prefix="course-side-by-side-"))
    try:
        specs = {}
        for role, model in models.items():
            path = service.save_model(model, folder / f"{role}.pt")
            specs[role] = {"path": str(path), "version": (versions or {}).get(role, role)}
        with Server(SIDE_BY_SIDE_APP, env={MODELS_ENV: json.dumps(specs)}, scratch=folder / "server",
                    threads=threads) as server:  # fmt: skip
            yield {role: f"{server.url}/{role}/v1/predict" for role in models}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def image_body(pixels: torch.Tensor) -> bytes:
    """The JSON body of one request carrying these images ((N, 28, 28) or (28, 28) in [0, 1])."""
    pixels = torch.as_tensor(pixels)
    return loadgen.json_body(pixels.reshape(-1, 784))


# ---------------------------------------------------------------------------------------------------------------
# What a gate reads and writes
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceMetric:
    """Accuracy on one slice of the golden set: `correct` right out of `n`."""

    n: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else math.nan


@dataclass(frozen=True)
class PairedDiff:
    """Candidate accuracy minus champion accuracy on the same examples, with a confidence interval.

    `champion_only` and `candidate_only` count the examples only one of the two gets right: all the evidence a
    paired comparison has (the examples both get right, or both wrong, say nothing about which is better).
    """

    diff: float
    low: float
    high: float
    n: int
    champion_only: int
    candidate_only: int
    confidence: float = 0.95

    @property
    def verdict(self) -> str:
        """'better' or 'worse' when the interval excludes 0, else 'no significant difference'."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "no significant difference"

    def __str__(self) -> str:
        return (f"{self.diff * 100:+.2f} points [{self.low * 100:+.2f}, {self.high * 100:+.2f}] "
                f"({self.confidence:.0%} interval, n={self.n}): {self.verdict}")  # fmt: skip


@dataclass(frozen=True)
class Latency:
    """A model's latency under load: p95 with failed requests counted as infinitely slow (math.inf)."""

    p95_ms: float
    n: int
    failed: int
    rate: float  # offered load, requests per second
    duration_s: float

    def __str__(self) -> str:
        return f"p95 {self.p95_ms:.1f} ms over {self.n} requests ({self.failed} failed) at {self.rate:g}/s"


@dataclass(frozen=True)
class SLO:
    """A latency objective: p95 at most `p95_ms` under open-loop Poisson load at `rate`, one image per request."""

    p95_ms: float = 40.0
    rate: float = 50.0
    duration_s: float = 2.0

    def __str__(self) -> str:
        return f"p95 <= {self.p95_ms:g} ms at {self.rate:g} requests/s (open loop, one image per request)"


@dataclass(frozen=True)
class Policy:
    """What a promotion demands. Accuracies are fractions: 0.01 is one point."""

    margin: float = 0.01  # overall: the interval's low end must be above -margin (non-inferiority)
    max_slice_drop: float = 0.05  # no judged slice may lose more than this against the champion
    min_slice_n: int = 100  # slices smaller than this (in either model's result) are not judged
    max_ece_increase: float = 0.02  # calibration may get at most this much worse
    slo: SLO = field(default_factory=SLO)
    confidence: float = 0.95  # of the paired interval
    n_boot: int = 2000  # bootstrap resamples
    seed: int = 0


@dataclass(frozen=True)
class BehaviourResult:
    """One behavioural test: the share of its cases a model failed, and the most it may fail."""

    name: str
    kind: str  # "invariance", "directional" or "minimum functionality"
    failure_rate: float
    max_failure_rate: float
    cases: int

    @property
    def passed(self) -> bool:
        return self.failure_rate <= self.max_failure_rate


@dataclass
class EvalResult:
    """Everything the harness measured for one model version, on the golden set and under load."""

    version: str
    correct: np.ndarray  # (N,) bool: which golden images it reads right, in the golden set's order
    slices: dict[str, SliceMetric]
    ece: float
    behaviour: list[BehaviourResult] = field(default_factory=list)
    latency: Latency | None = None
    golden: str = ""  # the golden set's fingerprint

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.correct)) if len(self.correct) else math.nan

    def summary(self) -> dict[str, Any]:
        """The JSON-ready part (no per-image array): what a report keeps as evidence."""
        return {
            "version": self.version,
            "golden": self.golden,
            "n": int(len(self.correct)),
            "accuracy": self.accuracy,
            "slices": {name: {**asdict(s), "accuracy": s.accuracy} for name, s in self.slices.items()},
            "ece": self.ece,
            "behaviour": [{**asdict(b), "passed": b.passed} for b in self.behaviour],
            "latency": asdict(self.latency) if self.latency else None,
        }


@dataclass
class GateReport:
    """The gate's decision on one candidate: passed only when `reasons` is empty."""

    candidate: str
    champion: str
    passed: bool
    reasons: list[str]
    overall: PairedDiff
    evidence: dict[str, Any] = field(default_factory=dict)  # e.g. {"candidate": EvalResult.summary(), ...}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (math.inf is written as Infinity): what `mlflow.log_dict` stores as the run's artifact."""
        return _plain(
            {
                "candidate": self.candidate,
                "champion": self.champion,
                "passed": bool(self.passed),
                "reasons": list(self.reasons),
                "overall": {**asdict(self.overall), "verdict": self.overall.verdict},
                "evidence": self.evidence,
            }
        )

    def __str__(self) -> str:
        head = f"gate on version {self.candidate} (champion: {self.champion}): "
        count = len(self.reasons)
        head += "PASSED" if self.passed else f"BLOCKED ({count} reason{'s' if count != 1 else ''})"
        lines = [head, f"  overall accuracy difference: {self.overall}"]
        lines += [f"  - {reason}" for reason in self.reasons]
        return "\n".join(lines)


def _plain(value: Any) -> Any:
    """Numpy and torch scalars and arrays as Python numbers and lists, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray | torch.Tensor):
        return value.tolist()
    return value
