"""Fuzzing a service from its own OpenAPI schema with schemathesis, bounded in examples and reproducible.

Hand-written tests send the requests their author thought of; a property-based fuzzer
sends what the schema allows and much that it does not, and checks every answer against
the schema: no 5xx, only documented statuses, bodies of the documented shape, valid
requests accepted, invalid ones refused. Used by the test suite on the shared service and
by lab 08 on the service a learner writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable


@dataclass
class FuzzReport:
    cases: int = 0
    failures: list[str] = field(default_factory=list)


def fuzz(base_url: str, examples: int = 25, strict: bool = False) -> FuzzReport:
    """Every operation of `base_url`'s /openapi.json: `examples` valid and `examples` invalid requests each.

    Always: no 5xx, only documented statuses and bodies, valid requests accepted, every 4xx
    says why. `strict` also demands that every request the schema forbids is refused (a
    public API's validation; the lenient parser of load tests lets harmless extras through).
    """
    import schemathesis
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(base_url.rstrip("/") + "/openapi.json")
    report = FuzzReport()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _check(operation, mode, examples, report, strict)
            except Unsatisfiable:
                pass  # no invalid request exists for an operation that takes nothing
            except (Exception, BaseExceptionGroup) as exc:  # one report per operation and mode, already shrunk
                where = f"{operation.method.upper()} {operation.path} ({mode.value} data)"
                report.failures.append(f"{where}: {str(exc)[:1500]}")
    return report


def _check(operation, mode, examples: int, report: FuzzReport, strict: bool) -> None:
    from schemathesis.checks import negative_data_rejection

    excluded = [] if strict else [negative_data_rejection]

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case) -> None:
        report.cases += 1
        response = case.call_and_validate(excluded_checks=excluded)
        if 400 <= response.status_code < 500 and not _detail(response):
            raise AssertionError(f"{response.status_code} without saying what was wrong")

    check()


def _detail(response) -> str:
    try:
        return str(response.json().get("detail") or "")
    except ValueError:
        return ""
