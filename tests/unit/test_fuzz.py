"""The shared service, fuzzed from its own OpenAPI schema by schemathesis, on a real uvicorn process on 127.0.0.1.

Bounded (a fixed number of examples per route, derandomized so that a failure
reproduces), and checked for: no 5xx, every status and body as the schema says,
schema-valid requests accepted and invalid ones refused, and every 4xx saying what was
wrong. `fuzz` is reused by lab 08's own test of the service a learner writes.
"""

from __future__ import annotations

import pytest

from course.serving.fuzzing import fuzz
from course.serving.server import Server

pytestmark = pytest.mark.unit


def test_the_shared_service_holds_under_fuzzing():
    with Server(model="pretrained:mlp") as server:
        report = fuzz(server.url, examples=25)
    assert report.cases > 40, f"only {report.cases} cases ran: the schema documents too little"
    assert not report.failures, "\n".join(report.failures)


def test_the_fuzzer_finds_a_service_that_answers_500():
    """The check can fail: the parser the labs used before answered `{}` with a 500."""
    env = {"COURSE_TEST_BROKEN_PARSER": "1"}
    with Server("tests.unit.apps.broken_app:app", model="pretrained:mlp", env=env, pythonpath=["."]) as server:
        report = fuzz(server.url, examples=25)
    assert any("500" in failure or "Server error" in failure for failure in report.failures), report.failures
