"""The one table between FnplaneError and HTTP, in both directions (serving edges and the SDK)."""

from __future__ import annotations

import ast
from pathlib import Path

import httpx
import pytest

import fnplane
from fnplane.sdk import ApiError, error_for
from fnplane.shared import errors
from fnplane.shared.problems import (
    PROBLEM_CONTENT_TYPE,
    error_from_problem,
    problem,
    problem_for,
    problem_headers,
)

EVERY_ERROR = [
    errors.BadRequestError("bad", field="name", rule="length 4-36"),
    errors.UnauthorizedError("who are you"),
    errors.ForbiddenError("not yours"),
    errors.NotFoundError("nothing here"),
    errors.ConflictError("taken"),
    errors.PayloadTooLargeError("too big"),
    errors.TooManyRequestsError("queue full", retry_after_s=3),
    errors.UnavailableError("no NATS"),
    errors.GatewayTimeoutError("nobody picked it up"),
]


@pytest.mark.parametrize("error", EVERY_ERROR, ids=lambda e: type(e).__name__)
def test_an_error_served_as_a_problem_comes_back_as_the_same_error(error: errors.FnplaneError) -> None:
    status, document = problem_for(error, "/v2/nvcf/functions")
    headers = dict(problem_headers(error))
    back = error_from_problem(status, document, retry_after=headers.get("Retry-After"))
    assert type(back) is type(error)
    assert back.detail == error.detail
    assert vars(back) == vars(error)


@pytest.mark.parametrize("error", EVERY_ERROR, ids=lambda e: type(e).__name__)
def test_the_sdk_raises_the_served_error(error: errors.FnplaneError) -> None:
    status, document = problem_for(error, "/v2/nvcf/functions")
    response = httpx.Response(
        status,
        json=document,
        headers=[("content-type", PROBLEM_CONTENT_TYPE), *problem_headers(error)],
    )
    raised = error_for(response)
    assert type(raised) is type(error)
    retry_after = getattr(error, "retry_after_s", None)
    assert vars(raised) == {
        **vars(error),
        "status": status,
        "title": document["title"],
        "problem": document,
        "request_id": None,
        "retry_after": None if retry_after is None else float(retry_after),
    }


def test_headers_of_a_401_and_a_429() -> None:
    assert problem_headers(errors.UnauthorizedError("x")) == [("WWW-Authenticate", "Bearer")]
    assert problem_headers(errors.TooManyRequestsError("x", retry_after_s=2)) == [("Retry-After", "2")]
    assert problem_headers(errors.TooManyRequestsError("x")) == []
    assert problem_headers(errors.NotFoundError("x")) == []


def test_a_status_outside_the_table() -> None:
    assert problem_for(errors.FnplaneError("a defect"), "/x")[0] == 500
    back = error_from_problem(500, {"title": "Internal Server Error"}, default=ApiError)
    assert type(back) is ApiError and back.detail == "Internal Server Error"
    raised = error_for(httpx.Response(502, text="not json"))
    # a body that is not a problem document (a function's own error text) becomes the detail
    assert type(raised) is ApiError and raised.detail == "not json"
    assert error_for(httpx.Response(502)).detail == "Bad Gateway"


def test_problem_documents_in_another_namespace_and_without_instance() -> None:
    assert problem(404, "no such path", "/nope") == {
        "type": "urn:nv-boot:problem-details:not-found",
        "title": "Not Found",
        "status": 404,
        "detail": "no such path",
        "instance": "/nope",
    }
    # what the worker answers for a function's own error (no instance; a status without a phrase)
    assert problem(599, "upstream", None, namespace="inference-service") == {
        "type": "urn:inference-service:problem-details:error",
        "title": "Error",
        "status": 599,
        "detail": "upstream",
    }


def test_every_bad_request_that_names_a_field_names_its_rule() -> None:
    """docs/errors.md: a 400 names the field and the rule; one naming only the field is half an answer
    (the fuzzer found fifteen, tests/e2e/test_api_fuzz.py)."""
    classes = {"BadRequestError", "FailedPreconditionError"}
    half = []
    for source in Path(fnplane.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            keywords = {k.arg for k in node.keywords}
            if name in classes and "field" in keywords and "rule" not in keywords:
                half.append(f"{source.name}:{node.lineno}")
    assert half == []
