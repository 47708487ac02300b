"""course.mlops.incidents: image properties and transforms, the 8-bit input step, histogram quantiles, replay."""

from __future__ import annotations

import io
import json
import math
import time

import pytest
import torch

from course.mlops import incidents
from course.serving import models
from course.serving.server import Server

pytestmark = pytest.mark.unit


def canvas(n: int = 1) -> torch.Tensor:
    return torch.zeros(n, 28, 28)


# --- properties and transforms ---------------------------------------------------------------------


def test_saturation_is_the_share_of_inked_pixels_at_full_white():
    images = canvas(3)
    images[1, 5, 5:9] = torch.tensor([1.0, 1.0, 0.5, 0.2])
    images[2, 10, 10] = 1.0
    assert incidents.saturation(images).tolist() == [0.0, 0.5, 1.0], "a blank image has no saturated ink"
    assert incidents.saturation(incidents.brighten(images, gain=2.0))[1] == 0.75, "x2 clips 0.5 to full white"
    with pytest.raises(ValueError, match="N, 28, 28"):
        incidents.saturation(torch.zeros(28, 28))


def test_stroke_interior_grows_with_the_pen_not_with_the_brightness():
    images = canvas(3)
    images[0, 10, 5:20] = 0.6  # a one-pixel line: no pixel has all four neighbours inked
    images[1, 10:13, 10:13] = 0.6  # a 3x3 blot: only its centre does
    assert incidents.stroke_interior(images).tolist()[:3] == [0.0, pytest.approx(1 / 9), 0.0]
    thick = incidents.thicken(images)
    assert incidents.stroke_interior(thick)[0] > 0.25, "a thickened line has an interior"
    assert torch.equal(incidents.stroke_interior(incidents.brighten(images)), incidents.stroke_interior(images))


def test_thicken_dilates_in_place_and_brighten_clips():
    images = canvas()
    images[0, 14, 14] = 0.7
    thick = incidents.thicken(images)
    assert thick.shape == images.shape and thick[0, 13:16, 13:16].eq(0.7).all() and thick.sum() == pytest.approx(6.3)
    with pytest.raises(ValueError, match="odd"):
        incidents.thicken(images, size=2)
    bright = incidents.brighten(torch.tensor([[[0.0, 0.25, 0.5, 0.9]]]).expand(1, 28, 4).contiguous(), gain=2.0)
    assert bright[0, 0].tolist() == [0.0, 0.5, 1.0, 1.0]


# --- the 8-bit input step ----------------------------------------------------------------------------


def test_eight_bit_input_is_invisible_at_scale_255_and_wraps_full_white_above():
    pixels = torch.tensor([0.0, 0.5, 254 / 255, 1.0]).repeat(196).reshape(1, 28, 28)
    x = models.normalize(pixels)
    identity = torch.nn.Identity()
    right = incidents.EightBitInput(identity, scale=255)(x) * models.STD + models.MEAN
    assert torch.allclose(right, pixels, atol=0.5 / 255), "255: every pixel on its nearest 8-bit level"
    wrong = incidents.EightBitInput(identity, scale=256)(x) * models.STD + models.MEAN
    flat = wrong.reshape(-1)[:4].tolist()
    assert flat[0] == pytest.approx(0.0, abs=1e-6) and flat[1] == pytest.approx(128 / 255, abs=1e-6)
    assert flat[2] == pytest.approx(1.0, abs=1e-6), "254/255 becomes 255: a level off, unnoticeable"
    assert flat[3] == pytest.approx(0.0, abs=1e-6), "full white, 256, wraps around to 0: black"


def test_eight_bit_input_wraps_a_network_and_survives_pickling():
    """A registered model is pickled whole; a server process must be able to unpickle the step around it."""
    step = incidents.EightBitInput(models.mlp(hidden=8).eval(), scale=256)
    buffer = io.BytesIO()
    torch.save(step, buffer)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=False)
    x = models.normalize(torch.rand(4, 28, 28))
    with torch.inference_mode():
        assert restored.scale == 256.0 and torch.equal(restored(x), step(x)) and step(x).shape == (4, 10)


# --- histogram quantiles ------------------------------------------------------------------------------


def test_histogram_quantile_interpolates_like_promql():
    buckets = {0.1: 50.0, 0.2: 100.0, float("inf"): 100.0}
    assert incidents.histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert incidents.histogram_quantile(0.75, buckets) == pytest.approx(0.15)
    assert incidents.histogram_quantile(0.25, buckets) == pytest.approx(0.05), "from 0 inside the first bucket"
    tail = {0.1: 90.0, float("inf"): 100.0}
    assert incidents.histogram_quantile(0.99, tail) == 0.1, "in the +Inf bucket: the largest finite bound"
    assert math.isnan(incidents.histogram_quantile(0.5, {0.1: 0.0, float("inf"): 0.0}))
    with pytest.raises(ValueError, match="Inf"):
        incidents.histogram_quantile(0.5, {0.1: 3.0})
    with pytest.raises(ValueError, match="q"):
        incidents.histogram_quantile(1.5, buckets)


# --- replay against a real server -----------------------------------------------------------------------


ECHO_APP = """
import json
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

COUNT = [0]


async def ready(request):
    return JSONResponse({"ready": True})


async def predict(request):
    body = json.loads(await request.body())
    COUNT[0] += 1
    if len(body["instances"][0]) != 784:
        return JSONResponse({"detail": "784 pixels"}, status_code=422)
    client = request.headers.get("x-client-id", "")
    return JSONResponse({"predictions": [len(client)]}, headers={"X-Model-Version": "7"})


async def metrics(request):
    return PlainTextResponse(f"requests_total {COUNT[0]}.0\\n")


def app():
    return Starlette(routes=[Route("/readyz", ready), Route("/v1/predict", predict, methods=["POST"]),
                             Route("/metrics", metrics)])
"""


def test_replay_sends_each_window_in_its_time_with_actions_and_scrapes(tmp_path):
    (tmp_path / "echo_app.py").write_text(ECHO_APP)
    image = torch.zeros(28, 28)
    body = incidents.request_body(image)
    assert len(json.loads(body)["instances"][0]) == 784
    short = json.dumps({"instances": [[0.0] * 783]}).encode()
    windows = [
        [incidents.Request(f"a{k}", "abc", body) for k in range(4)],
        [incidents.Request("b0", "abcde", body), incidents.Request("b1", "x", short)],
        [incidents.Request("c0", "ab", body)],
    ]
    called: list[tuple[str, float]] = []
    with Server("echo_app:app", pythonpath=[tmp_path], scratch=tmp_path / "server") as server:
        run = incidents.replay(
            server.url,
            windows,
            width=0.3,
            actions={(1, 1): lambda: called.append(("mid", time.time())) or "mid", (2, 1): lambda: "end"},
        )
    assert [a.request_id for a in run.answers] == ["a0", "a1", "a2", "a3", "b0", "b1", "c0"]
    assert [a.window for a in run.answers] == [0, 0, 0, 0, 1, 1, 2]
    assert all(run.window_of(a.sent) == a.window for a in run.answers), "each request leaves inside its window"
    assert [a.status for a in run.answers] == [200] * 5 + [422, 200]
    assert run.answers[4].predictions == [5] and run.answers[4].version == "7" and run.answers[5].predictions is None
    assert [s.window for s in run.scrapes] == [-1, 0, 1, 2]
    assert [s.text for s in run.scrapes] == [f"requests_total {n}.0\n" for n in (0, 4, 6, 7)]
    assert run.actions[(1, 1)][1] == "mid" and run.actions[(2, 1)][1] == "end"
    assert run.window_of(called[0][1]) == 1 and called[0][1] <= run.answers[5].sent, "(1, 1): before request 1"
    assert run.window_of(run.actions[(2, 1)][0]) == 2, "(2, len): once window 2's answers and scrape are in"
    with pytest.raises(ValueError, match="spread"):
        incidents.replay("http://127.0.0.1:9", windows, width=0.3, spread=0)
