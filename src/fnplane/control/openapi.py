"""The control API's OpenAPI document as the API answers: every error a problem document.

FastAPI documents a `422 HTTPValidationError` for each operation with inputs and no other error.
fnplane never answers that 422: bad input is a 400 problem document naming the field and the rule
(docs/errors.md), and the layers in front of the routes answer 401/403 (the credential), 404 (what
the caller's account cannot see, an unknown JWT client), 413/415 (the body), 429 (too many requests
in flight with one credential) and 503 (the database). `document_problems(document)` rewrites the
generated document once, in place, to say so:

* the 422 goes, with its two component schemas once nothing refers to them;
* each operation gets the problem responses its inputs and its security can produce, all with the
  `Problem` schema under `application/problem+json` (`fnplane.shared.problems.PROBLEM_SCHEMA`);
* what a route declares itself (`responses=problems(409)`, `/token`'s OAuth2 errors) is kept.
"""

from __future__ import annotations

from typing import Any

from fnplane.shared.problems import PROBLEM_SCHEMA, openapi_problem_response

_DESCRIPTIONS = {
    400: "invalid input: `field` and `rule` name what was wrong",
    401: "missing, malformed, unknown, revoked or expired credential",
    403: "the credential lacks the scope or the resource",
    404: "unknown, or not visible to the caller's account",
    409: "already exists, or conflicts with the current state",
    413: "request body over the limit",
    415: "a body that is not application/json",
    429: "too many requests in flight with this credential (Retry-After)",
    503: "a dependency (database, NATS, agent) is not reachable",
}
_BODY_METHODS = frozenset({"post", "put", "patch"})
# FastAPI's own validation answer and its schemas, which fnplane replaces by 400 problem documents
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=` for the problem answers it adds to the generic ones (e.g. 409)."""
    return {status: openapi_problem_response(_DESCRIPTIONS[status]) for status in statuses}


def _generic_statuses(operation: dict[str, Any], method: str) -> list[int]:
    statuses = [503]
    has_body = "requestBody" in operation or method in _BODY_METHODS
    if operation.get("parameters") or has_body:
        statuses.append(400)
    if operation.get("security"):
        statuses += [401, 403, 404, 429]
    elif any(p.get("in") == "path" for p in operation.get("parameters", [])):
        statuses.append(404)
    if has_body:
        statuses.append(413)
        if "application/json" in operation.get("requestBody", {}).get("content", {"application/json": {}}):
            statuses.append(415)
    return statuses


def _refers_to(value: Any, names: tuple[str, ...]) -> bool:
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in names:
            return True
        return any(_refers_to(item, names) for item in value.values())
    if isinstance(value, list):
        return any(_refers_to(item, names) for item in value)
    return False


def document_problems(document: dict[str, Any]) -> dict[str, Any]:
    """`document` (FastAPI's generated OpenAPI dict) with fnplane's error answers; changed in place."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            validation = responses.get("422")
            if validation is not None and _refers_to(validation, _FASTAPI_VALIDATION):
                del responses["422"]
            for status in _generic_statuses(operation, method):
                responses.setdefault(str(status), openapi_problem_response(_DESCRIPTIONS[status]))
    if not _refers_to(document.get("paths", {}), _FASTAPI_VALIDATION):
        for name in _FASTAPI_VALIDATION:
            schemas.pop(name, None)
    return document
