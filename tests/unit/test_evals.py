"""course.mlops.evals: the golden set, behavioural transforms, calibration, side-by-side serving, the containers."""

from __future__ import annotations

import json
import math
import pickle
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from course.mlops import evals
from course.serving import models

pytestmark = pytest.mark.unit


def bar(width: int, length: int = 16) -> torch.Tensor:
    """One image with a horizontal stroke `width` pixels thick and `length` long."""
    image = torch.zeros(28, 28)
    image[10 : 10 + width, 6 : 6 + length] = 1.0
    return image


# --- the golden set ------------------------------------------------------------------------------------------------


def test_stroke_width_estimates_the_pen_width():
    widths = evals.stroke_width(torch.stack([bar(2), bar(3), bar(5)])).tolist()
    for got, true in zip(widths, (2, 3, 5), strict=True):
        assert true - 1 < got <= true, f"a {true}-pixel stroke measured {got:.2f}"
    assert widths[0] < widths[1] < widths[2]
    assert evals.stroke_width(bar(1)[None]).item() == 2.0, "a line one pixel wide is all boundary: it reads 2"
    assert evals.stroke_width(torch.zeros(1, 28, 28)).item() == 0.0, "a blank image has no stroke"


def test_stroke_classes_use_fixed_edges():
    classes = evals.stroke_class(torch.stack([bar(2), bar(3), bar(6)]))
    assert classes.tolist() == ["thin", "medium", "thick"]


@pytest.fixture(scope="module")
def golden() -> evals.GoldenSet:
    return evals.golden_set(600, seed=3)


def test_golden_set_is_fixed_and_aligned(golden):
    again = evals.golden_set(600, seed=3)
    assert len(golden) == 600 and golden.fingerprint == again.fingerprint and len(golden.fingerprint) == 16
    assert evals.golden_set(600, seed=4).fingerprint != golden.fingerprint
    assert np.all(np.diff(golden.index) > 0), "test-split order, no repeats"
    images, labels = evals.mnist("test")
    np.testing.assert_array_equal(golden.labels.numpy(), labels[golden.index])
    np.testing.assert_allclose(golden.pixels.numpy(), images[golden.index] / 255.0, atol=1e-7)
    assert golden.pixels.dtype == torch.float32 and golden.labels.dtype == torch.int64
    assert golden.stroke.shape == (600,) and set(golden.stroke) <= set(evals.STROKES)
    for size in (0, 10_001):
        with pytest.raises(ValueError):
            evals.golden_set(size)


def test_subset_keeps_every_field_aligned(golden):
    part = golden.subset(slice(100, 110))
    assert len(part) == 10
    np.testing.assert_array_equal(part.index, golden.index[100:110])
    assert torch.equal(part.labels, golden.labels[100:110]) and torch.equal(part.pixels, golden.pixels[100:110])
    mask = golden.stroke == "thick"
    assert set(golden.subset(mask).stroke) == {"thick"}


def test_clean_digits_are_typical_and_outside_the_golden_set(golden):
    pixels, labels = evals.clean_digits(per_digit=3, exclude=golden.index)
    assert pixels.shape == (30, 28, 28) and labels.tolist() == [d for d in range(10) for _ in range(3)]
    images, _ = evals.mnist("test")
    golden_bytes = {images[i].tobytes() for i in golden.index}
    assert not any((np.round(p.numpy() * 255).astype(np.uint8)).tobytes() in golden_bytes for p in pixels)
    model = models.pretrained()
    with torch.inference_mode():
        read = model(models.normalize(pixels)).argmax(1)
    assert torch.equal(read, labels), "typical digits are read right by the serving labs' MLP"
    assert torch.equal(evals.clean_digits(per_digit=3, exclude=golden.index)[0], pixels), "deterministic"


# --- behavioural transforms and calibration -----------------------------------------------------------------------


def test_shift_moves_without_wrapping():
    image = torch.zeros(1, 28, 28)
    image[0, 5, 27] = 1.0  # on the right edge
    image[0, 0, 3] = 0.5  # on the top edge
    right = evals.shift(image, 1, 0)
    assert right.sum() == 0.5 and right[0, 0, 4] == 0.5, "the edge pixel leaves the image instead of wrapping"
    down = evals.shift(image, 0, 1)
    assert down[0, 1, 3] == 0.5 and down[0, 6, 27] == 1.0
    assert torch.equal(evals.shift(evals.shift(bar(3), -2, 1), 2, -1), bar(3)), "interior strokes come back"
    assert evals.shift(image, 28, 0).sum() == 0


def test_dim_and_erase():
    image = bar(4)
    assert torch.allclose(evals.dim(image, 0.7), image * 0.7) and evals.dim(image, 3.0).max() == 1.0
    erased = evals.erase(image, 0.5, seed=1)
    kept = erased.sum() / image.sum()
    assert 0.35 < kept < 0.65 and torch.equal(erased, evals.erase(image, 0.5, seed=1))
    assert not torch.equal(erased, evals.erase(image, 0.5, seed=2))
    assert torch.equal(evals.erase(image, 0.0), image) and evals.erase(image, 1.0).sum() == 0
    with pytest.raises(ValueError):
        evals.erase(image, 1.5)


def test_expected_calibration_error():
    n = 10_000
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, n)
    right = rng.random(n) < confidence  # calibrated: right with the probability it says
    labels = np.where(right, 0, 1)
    probs = np.stack([confidence, 1 - confidence], axis=1)
    assert evals.expected_calibration_error(torch.tensor(probs), torch.tensor(labels)) < 0.02
    overconfident = torch.tensor([[0.99, 0.01]] * 100)
    labels = torch.tensor([0] * 90 + [1] * 10)
    assert evals.expected_calibration_error(overconfident, labels) == pytest.approx(0.09, abs=1e-6)
    with pytest.raises(ValueError):
        evals.expected_calibration_error(overconfident, labels[:5])


# --- serving --------------------------------------------------------------------------------------------------------


def test_serial_dependency_serves_one_call_at_a_time_and_pickles(tmp_path: Path):
    model = models.mlp(hidden=8).eval()
    slow = evals.SerialDependency(model, hold_s=0.05, resource="unit-test")
    x = torch.zeros(2, 1, 28, 28)
    started = time.perf_counter()
    threads = [threading.Thread(target=lambda: slow(x)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.perf_counter() - started >= 0.15, "three calls on a one-at-a-time resource take 3 x hold_s"
    copy = pickle.loads(pickle.dumps(slow))
    torch.save(slow, tmp_path / "slow.pt")
    loaded = torch.load(tmp_path / "slow.pt", weights_only=False)
    with torch.inference_mode():
        assert torch.equal(copy(x), model(x)) and torch.equal(loaded(x), model(x))
    with pytest.raises(RuntimeError):
        evals.SerialDependency(model, 0.0, failure_rate=1.0)(x)
    with pytest.raises(ValueError):
        evals.SerialDependency(model, -1.0)


def test_serve_side_by_side_serves_each_model_under_its_role():
    torch.manual_seed(0)
    a, b = models.mlp(hidden=8).eval(), models.mlp(hidden=8).eval()
    pixels = torch.rand(3, 28, 28)
    body = evals.image_body(pixels)
    assert len(json.loads(body)["instances"][0]) == 784
    with evals.serve_side_by_side({"champion": a, "cand-1": b}, versions={"champion": "7"}) as urls:
        assert set(urls) == {"champion", "cand-1"} and urls["cand-1"].endswith("/cand-1/v1/predict")
        answers = {role: httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=10)
                   for role, url in urls.items()}  # fmt: skip
    for role, model in (("champion", a), ("cand-1", b)):
        assert answers[role].status_code == 200
        with torch.inference_mode():
            expected = model(models.normalize(pixels)).argmax(1).tolist()
        assert answers[role].json()["predictions"] == expected
    assert answers["champion"].headers["x-model-version"] == "7"
    assert answers["cand-1"].headers["x-model-version"] == "cand-1", "a role without a version is served as the role"
    with pytest.raises(httpx.TransportError):
        httpx.post(urls["champion"], content=body, timeout=2)
    with pytest.raises(ValueError):
        with evals.serve_side_by_side({"no/slash": a}):
            pass


# --- containers ---------------------------------------------------------------------------------------------------


def test_containers_and_their_json():
    assert evals.SliceMetric(4, 3).accuracy == 0.75 and math.isnan(evals.SliceMetric(0, 0).accuracy)
    better = evals.PairedDiff(0.01, 0.002, 0.02, 3000, 10, 40)
    assert better.verdict == "better" and "better" in str(better)
    assert evals.PairedDiff(-0.01, -0.02, -0.001, 3000, 40, 10).verdict == "worse"
    assert evals.PairedDiff(0.001, -0.004, 0.006, 3000, 20, 23).verdict == "no significant difference"
    slow = evals.Latency(math.inf, 100, 7, 50.0, 2.0)
    result = evals.EvalResult(
        "3", np.array([True, False, True]), {"digit=1": evals.SliceMetric(np.int64(2), np.int64(1))}, 0.01,
        [evals.BehaviourResult("shifts", "invariance", 0.2, 0.1, 40)], slow, "abc",
    )  # fmt: skip
    assert result.accuracy == pytest.approx(2 / 3) and result.behaviour[0].passed is False
    report = evals.GateReport("3", "1", False, ["latency: too slow"], better, {"candidate": result.summary()})
    data = json.loads(json.dumps(report.to_dict()))
    assert data["passed"] is False and data["reasons"] == ["latency: too slow"]
    assert data["overall"]["verdict"] == "better"
    assert data["evidence"]["candidate"]["latency"]["p95_ms"] == math.inf
    assert data["evidence"]["candidate"]["slices"]["digit=1"] == {"n": 2, "correct": 1, "accuracy": 0.5}
    assert "BLOCKED (1 reason)" in str(report) and "latency: too slow" in str(report)
    assert "50 requests/s" in str(evals.SLO()) and "7 failed" in str(slow)
    assert evals.Policy().slo == evals.SLO() and evals.Policy().margin == 0.01
