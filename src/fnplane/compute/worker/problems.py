"""Problem documents the worker itself produces, in NVCF utils' form: `urn:<source>:problem-details:...`
(built by shared/problems.py), with the seed's utils error code as `errorCode` when the platform, not
the function, failed (900 unknown, 910 asset download, 911 large response upload)."""

from __future__ import annotations

import contextlib
import json

from fnplane.compute.worker.http_pool import os_reason
from fnplane.shared.problems import PROBLEM_CONTENT_TYPE
from fnplane.shared.problems import problem as problem_document

WORKER_SOURCE = "nvcf-worker-service"  # the worker failed
INFERENCE_SOURCE = "inference-service"  # the function answered an error
CONNECTION_SOURCE = "inference-connection"  # the function could not be reached

UNKNOWN_ERROR = 900
ASSET_DOWNLOAD_ERROR = 910
LARGE_RESPONSE_UPLOAD_ERROR = 911


def problem(
    status: int, detail: str, source: str, error_code: int | None = None
) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and body of a problem+json answer."""
    document = problem_document(status, detail, None, namespace=source)
    if error_code is not None:
        document["errorCode"] = error_code
    return [("Content-Type", PROBLEM_CONTENT_TYPE)], json.dumps(document).encode()


def failure_detail(exc: BaseException) -> str:
    """What the caller is told when the function could not be reached or the body fetched: the
    worker's own sentence, never a Python repr or the sandbox's address (the worker logs those)."""
    if isinstance(exc, OSError):
        return f"the function could not be reached: {os_reason(exc)}"
    return str(exc) or type(exc).__name__


def container_error_detail(body: bytes) -> str:
    """The function's own error message (`{"error": "..."}`), else NVCF's generic one."""
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            return parsed["error"]
    return "Inference error"
