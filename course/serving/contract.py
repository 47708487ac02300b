"""What the shared service promises in its OpenAPI schema, so clients and fuzzers can hold it to it.

FastAPI documents a route from its Python signature. `/v1/predict` reads its body itself
(to cap its size before parsing, and to let each lab plug its own parser in), so its
request body and every status it can answer are written out here: a client learns from
`/openapi.json` what to send and what can come back, and a property-based fuzzer
(schemathesis, in the test suite) checks that the service answers nothing else.
"""

from __future__ import annotations

from typing import Any

ERROR = {
    "type": "object",
    "required": ["detail", "request_id"],
    "properties": {"detail": {}, "request_id": {"type": "string"}},
}
MEANINGS = {
    400: "the body is not JSON",
    413: "the body is over the size limit",
    422: "the JSON is not a valid request; `detail` says what is wrong",
    429: "this client is over its rate limit; Retry-After says when to come back",
    503: "no model is loaded yet; Retry-After says when to come back",
}
PIXEL = {"type": "number", "minimum": 0, "maximum": 1}
VECTOR = {"type": "array", "minItems": 784, "maxItems": 784, "items": PIXEL}
ROW = {"type": "array", "minItems": 28, "maxItems": 28, "items": PIXEL}
IMAGE = {"type": "array", "minItems": 28, "maxItems": 28, "items": ROW}


def images(max_batch: int = 16, strict: bool = False) -> dict[str, Any]:
    """A body of 1..`max_batch` images, each 784 pixels or 28 rows of 28, pixels in [0, 1].

    `strict` also refuses any other field (lab 08's validation does; the lenient parser ignores them).
    """
    body: dict[str, Any] = {
        "type": "object",
        "required": ["instances"],
        "properties": {
            "instances": {"type": "array", "minItems": 1, "maxItems": max_batch, "items": {"anyOf": [VECTOR, IMAGE]}}
        },  # fmt: skip
    }
    if strict:
        body["additionalProperties"] = False
    return body


IMAGES = images()  # the lenient parser's contract
ANSWER = {
    "type": "object",
    "required": ["predictions", "model_version", "request_id"],
    "properties": {
        "predictions": {"type": "array", "items": {"type": "integer"}},
        "probabilities": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        "model_version": {"type": "string"},
        "request_id": {"type": "string"},
    },
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"description": MEANINGS[code], "content": {"application/json": {"schema": ERROR}}} for code in codes}


def predict_route(request_schema: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of `@app.post("/v1/predict", ...)`: the body it reads, every answer it gives."""
    return {
        "openapi_extra": {
            "requestBody": {"required": True, "content": {"application/json": {"schema": request_schema}}}
        },
        "responses": {
            200: {
                "description": "one prediction per instance",
                "content": {"application/json": {"schema": ANSWER}},
            },
            **errors(400, 413, 422, 429, 503),
        },
    }


def versioned_route() -> dict[str, Any]:
    """Every /v1 route may be refused by the rate limiter."""
    return {"responses": errors(429)}
