"""NVCF's legacy exec wrapper: `{reqId, status, responseReference?, percentComplete?, errorCode?, response?}`
(reference/invocation.md 3.2), built from a response head and body. Pure."""

from __future__ import annotations

from typing import Any

from fnplane.invocation import strict_json
from fnplane.shared.wire import nvcf_status


def exec_document(
    request_id: str, head_status: int, headers: list[tuple[str, str]], body: bytes, location: str | None
) -> tuple[int, dict[str, Any]]:
    """NVCF's legacy wrapper: {reqId, status, responseReference?, percentComplete?, errorCode?, response?}."""
    doc: dict[str, Any] = {"reqId": request_id, "status": nvcf_status(head_status).value}
    percent = next((v for k, v in headers if k.lower() == "nvcf-percent-complete"), None)
    if head_status == 302 and location:
        doc["status"] = "fulfilled"
        doc["responseReference"] = location
        doc["percentComplete"] = 100
        return 200, doc
    if body:
        try:
            doc["response"] = strict_json.loads(body)
        except ValueError:  # not JSON (NaN included: the envelope must stay JSON): as text
            doc["response"] = body.decode("utf-8", errors="replace")
    if head_status == 202:
        if percent is not None and percent.isdigit():
            doc["percentComplete"] = int(percent)
        return 202, doc
    if head_status < 400:
        doc["percentComplete"] = 100
        return 200, doc
    # the worker's own failures carry the utils error code (900, 910, 911); the function's, its status
    response = doc.get("response")
    worker_code = response.get("errorCode") if isinstance(response, dict) else None
    doc["errorCode"] = worker_code if isinstance(worker_code, int) else head_status
    return head_status, doc
