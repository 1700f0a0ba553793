"""OpenAPI descriptions of the gateway's path-routed endpoints (nvcf-api.md 1.4, 1.5, 4.3).

The gateway is a plain ASGI app, so it has no generated document; a composing server (`fnplane up`)
merges these paths into the control plane's `GET /v3/openapi`, as NVCF's API documents pexec, exec,
queues and assets in its own OpenAPI. Host-routed (direct) invocation has no fixed path and is not listed.
"""

from __future__ import annotations

from typing import Any

from fnplane.shared.problems import PROBLEM_SCHEMA, openapi_problem_response

_UUID = {"type": "string", "format": "uuid"}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _UUID}


_POLL_HEADER = {
    "name": "NVCF-POLL-SECONDS",
    "in": "header",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 3600},
}
_ASSETS_HEADER = {
    "name": "NVCF-INPUT-ASSET-REFERENCES",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "comma-separated asset ids",
}
_PREFER_HEADER = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "example": "respond-async"},
    "description": "respond-async (RFC 7240): 202 at once with NVCF-REQID, NVCF-STATUS pending-evaluation",
}
_IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "maxLength": 257},
    "description": "a retry with the same key within 24 h joins or replays the first request; the same "
    "key with another request is 422",
}
# every answer of the gateway's paths can be one of these problem documents (docs/errors.md)
_ERRORS = {
    "400": openapi_problem_response("bad input: `field` and `rule` name what was wrong"),
    "401": openapi_problem_response("missing or invalid credential"),
    "403": openapi_problem_response("the credential lacks the scope or the resource"),
    "404": openapi_problem_response("unknown, or not visible to the caller's account"),
    "429": openapi_problem_response("too many requests in flight with this credential (Retry-After)"),
    "503": openapi_problem_response("the gateway is at its concurrency limit (Retry-After)"),
}
_INVOKE_RESPONSES = {
    "200": {"description": "the function's response; NVCF-REQID and NVCF-STATUS headers"},
    "202": {"description": "pending: poll the status endpoint with NVCF-REQID"},
    "302": {"description": "a result over 5 MiB: fetch it from Location"},
    **_ERRORS,
    "400": openapi_problem_response("bad input or only DEGRADED versions"),
    "404": openapi_problem_response("unknown function or no ACTIVE version"),
    "410": openapi_problem_response("the request was cancelled (NVCF-STATUS: rejected)"),
    "413": openapi_problem_response("the body is over the invocation limit"),
    "422": openapi_problem_response("an Idempotency-Key already used with another request"),
    "429": openapi_problem_response("queue full or rate limited (Retry-After)"),
    # NVCF's answer, kept: no body at all
    "504": {"description": "no worker picked the request up in time (empty body)"},
}
_CANCEL_RESPONSES = {
    "204": {"description": "cancelled: queued, it never runs; running, its call is aborted"},
    **_ERRORS,
    "404": openapi_problem_response("unknown, or another account's request"),
    "409": openapi_problem_response("already finished: fetch its result"),
}
_EXEC_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["requestBody"],
                "properties": {
                    "requestHeader": {
                        "type": "object",
                        "properties": {
                            "inputAssetReferences": {"type": "array", "items": _UUID},
                            "pollDurationSeconds": {"type": "integer"},
                        },
                    },
                    "requestBody": {},
                },
            }
        }
    },
}


def _op(
    summary: str, scope: str, params: list[dict[str, Any]], responses: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "tags": ["invocation"],
        "summary": summary,
        "security": [{"fnplane": [scope]}],
        "parameters": params,
        "responses": responses,
        **extra,
    }


def _pexec(params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "post": _op(
            "Invoke a function (pass-through body to its inferenceUrl)",
            "invoke_function",
            [*params, _POLL_HEADER, _ASSETS_HEADER, _PREFER_HEADER, _IDEMPOTENCY_HEADER],
            _INVOKE_RESPONSES,
            requestBody={"content": {"*/*": {"schema": {}}}},
        )
    }


def _exec(params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "post": _op(
            "Invoke a function with the legacy JSON envelope",
            "invoke_function",
            [*params, _POLL_HEADER, _PREFER_HEADER, _IDEMPOTENCY_HEADER],
            _INVOKE_RESPONSES,
            requestBody=_EXEC_BODY,
        )
    }


_FID = _path_param("functionId")
_VID = _path_param("functionVersionId")
_RID = _path_param("requestId")
_AID = _path_param("assetId")
_OK = {"200": {"description": "OK"}, **_ERRORS}

GATEWAY_OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    "/v2/nvcf/pexec/functions/{functionId}": _pexec([_FID]),
    "/v2/nvcf/pexec/functions/{functionId}/versions/{functionVersionId}": _pexec([_FID, _VID]),
    "/v2/nvcf/pexec/status/{requestId}": {
        "get": _op("Poll a pending invocation", "invoke_function", [_RID, _POLL_HEADER], _INVOKE_RESPONSES),
        "delete": _op("Cancel a pending invocation", "invoke_function", [_RID], _CANCEL_RESPONSES),
    },
    "/v2/nvcf/exec/functions/{functionId}": _exec([_FID]),
    "/v2/nvcf/exec/functions/{functionId}/versions/{functionVersionId}": _exec([_FID, _VID]),
    "/v2/nvcf/exec/status/{requestId}": {
        "get": _op(
            "Poll a pending exec invocation", "invoke_function", [_RID, _POLL_HEADER], _INVOKE_RESPONSES
        ),
        "delete": _op("Cancel a pending exec invocation", "invoke_function", [_RID], _CANCEL_RESPONSES),
    },
    "/v2/nvcf/queues/functions/{functionId}": {
        "get": _op("Queue depth of a function's versions", "queue_details", [_FID], _OK)
    },
    "/v2/nvcf/queues/functions/{functionId}/versions/{functionVersionId}": {
        "get": _op("Queue depth of one version", "queue_details", [_FID, _VID], _OK)
    },
    "/v2/nvcf/queues/{requestId}/position": {
        "get": _op("Estimated position of a request in its queue", "queue_details", [_RID], _OK)
    },
    "/v2/nvcf/assets": {
        "post": _op(
            "Create an asset and get its upload URL",
            "invoke_function",
            [],
            {
                "200": {"description": "{assetId, uploadUrl, contentType, description}"},
                **_ERRORS,
                "413": openapi_problem_response("the body is over the limit"),
                "415": openapi_problem_response("a Content-Type other than application/json"),
            },
            requestBody={
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["contentType", "description"],
                            "properties": {
                                "contentType": {
                                    "type": "string",
                                    "maxLength": 255,
                                    "pattern": "^[\\x20-\\x7e]+$",
                                },
                                "description": {
                                    "type": "string",
                                    "pattern": "^[^\\x00-\\x08\\x0a-\\x1f\\x7f]+$",
                                },
                            },
                        }
                    }
                },
            },
        ),
        "get": _op(
            "List the account's assets",
            "invoke_function",
            [],
            {"200": {"description": "{assets}"}, **_ERRORS},
        ),
    },
    "/v2/nvcf/assets/{assetId}": {
        "get": _op("Get an asset", "invoke_function", [_AID], _OK),
        "delete": _op(
            "Delete an asset", "invoke_function", [_AID], {"204": {"description": "deleted"}, **_ERRORS}
        ),
    },
}


def merge_into(document: dict[str, Any]) -> dict[str, Any]:
    """`document` (an OpenAPI dict) with the gateway's paths added; existing paths win."""
    document.setdefault("components", {}).setdefault("schemas", {}).setdefault("Problem", PROBLEM_SCHEMA)
    paths = document.setdefault("paths", {})
    for path, item in GATEWAY_OPENAPI_PATHS.items():
        paths.setdefault(path, item)
    return document
