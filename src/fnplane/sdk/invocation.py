"""Invocation methods of `AsyncClient`: pexec with NVCF's polling etiquette, asynchronous submission,
status and cancel, direct (Host-header) invocation and server-sent event streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from fnplane.sdk import polling
from fnplane.sdk.connection import Connection
from fnplane.sdk.errors import FnplaneError, NotAnEventStreamError, error_for, timeout_error
from fnplane.sdk.results import (
    ERRORED,
    FULFILLED,
    IN_PROGRESS,
    PENDING,
    REJECTED,
    InvocationResult,
    InvocationStatus,
)
from fnplane.sdk.sse import ServerSentEvent, aiter_events, is_event_stream

# the label of direct invocation hosts: {fid}.invocation.{domain} (the gateway's FNPLANE_GATEWAY_HOST_LABEL)
HOST_LABEL = "invocation"
# beyond NVCF-POLL-SECONDS, how long a response may take before the read times out (the gateway
# answers within the poll window plus its grace of 2 s)
POLL_READ_SLACK_S = 15.0


def structured_string(value: str) -> str:
    """An RFC 8941 sf-string (the Idempotency-Key's form)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def pexec_path(function_id: str, version_id: str | None) -> str:
    path = f"/v2/nvcf/pexec/functions/{function_id}"
    return path + f"/versions/{version_id}" if version_id else path


def status_path(request_id: str) -> str:
    return f"/v2/nvcf/pexec/status/{request_id}"


def _percent(headers: httpx.Headers) -> int | None:
    value = headers.get("nvcf-percent-complete", "")
    return int(value) if value.strip().isdigit() else None


class InvocationMethods:
    _conn: Connection
    base_url: str

    def _invocation_headers(
        self,
        headers: Any,
        *,
        input_assets: list[str] | None,
        idempotency_key: str | None,
        poll_seconds: int | None = None,
    ) -> httpx.Headers:
        merged = httpx.Headers(headers)
        if poll_seconds is not None:
            merged["NVCF-POLL-SECONDS"] = str(poll_seconds)
        if input_assets:
            merged["NVCF-INPUT-ASSET-REFERENCES"] = ",".join(input_assets)
        if idempotency_key is not None:
            merged["Idempotency-Key"] = structured_string(idempotency_key)
        return merged

    @staticmethod
    def _body(body: Any, content: bytes | None) -> dict[str, Any]:
        if content is not None:
            return {"content": content}
        return {"json": body if body is not None else {}}

    async def invoke(
        self,
        function_id: str,
        body: Any = None,
        *,
        version_id: str | None = None,
        content: bytes | None = None,
        headers: Any = None,
        poll_seconds: int | None = None,
        timeout_s: float | None = None,
        input_assets: list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """pexec the function with the JSON `body` (or raw `content`) and wait for its result: the
        decoded JSON when the answer is JSON, else bytes. A 202 is followed by long polls of the status
        endpoint (NVCF-POLL-SECONDS, at most one a second), a 302 (a result over 5 MiB) by its
        download. An error answer raises; GatewayTimeoutError once `timeout_s` has passed."""
        result = await self.invoke_response(
            function_id,
            body,
            version_id=version_id,
            content=content,
            headers=headers,
            poll_seconds=poll_seconds,
            timeout_s=timeout_s,
            input_assets=input_assets,
            idempotency_key=idempotency_key,
        )
        return result.value

    async def invoke_response(
        self,
        function_id: str,
        body: Any = None,
        *,
        version_id: str | None = None,
        content: bytes | None = None,
        headers: Any = None,
        poll_seconds: int | None = None,
        timeout_s: float | None = None,
        input_assets: list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> InvocationResult:
        """`invoke`, returning the whole answer (status code, headers, content)."""
        deadline = time.monotonic() + timeout_s if timeout_s is not None else None
        window = polling.poll_window_s(poll_seconds, timeout_s) if poll_seconds or timeout_s else None
        merged = self._invocation_headers(
            headers, input_assets=input_assets, idempotency_key=idempotency_key, poll_seconds=window
        )
        read_s = (window or polling.DEFAULT_POLL_SECONDS) + POLL_READ_SLACK_S
        started = time.monotonic()
        response = await self._conn.send(
            "POST",
            pexec_path(function_id, version_id),
            headers=merged,
            timeout=self._conn.timeout(read_s),
            **self._body(body, content),
        )
        if response.status_code != 202:
            return await self._finish(response)
        return await self._wait(response.headers["nvcf-reqid"], poll_seconds, deadline, started)

    async def _wait(
        self, request_id: str, poll_seconds: int | None, deadline: float | None, last_poll: float
    ) -> InvocationResult:
        """Poll until the request is done: each poll long-polls; they start at least a second apart."""
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise timeout_error(f"request {request_id} is still running", request_id=request_id)
            pause = polling.pause_before_next_poll(last_poll, now)
            if pause:
                await asyncio.sleep(pause)
            remaining = None if deadline is None else deadline - time.monotonic()
            window = polling.poll_window_s(poll_seconds, remaining)
            last_poll = time.monotonic()
            response = await self._poll(request_id, window)
            if response.status_code != 202:
                return await self._finish(response)

    async def _poll(self, request_id: str, window: int) -> httpx.Response:
        return await self._conn.send(
            "GET",
            status_path(request_id),
            headers={"NVCF-POLL-SECONDS": str(window)},
            timeout=self._conn.timeout(window + POLL_READ_SLACK_S),
        )

    async def _finish(self, response: httpx.Response) -> InvocationResult:
        """The result of a final (non-202) answer: a 302 is downloaded (with the bearer when it points
        at this platform, never elsewhere: a presigned URL carries its own authorization)."""
        request_id = response.headers.get("nvcf-reqid")
        if response.status_code in (301, 302, 303, 307, 308) and "location" in response.headers:
            location = str(response.url.join(response.headers["location"]))
            download = await self._conn.send("GET", location, timeout=self._conn.timeout(None))
            return InvocationResult(request_id, download.status_code, download.headers, download.content)
        return InvocationResult(request_id, response.status_code, response.headers, response.content)

    async def submit(
        self,
        function_id: str,
        body: Any = None,
        *,
        version_id: str | None = None,
        content: bytes | None = None,
        headers: Any = None,
        input_assets: list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Queue an invocation without waiting (`Prefer: respond-async`); returns its request id."""
        merged = self._invocation_headers(headers, input_assets=input_assets, idempotency_key=idempotency_key)
        merged["Prefer"] = "respond-async"
        response = await self._conn.send(
            "POST", pexec_path(function_id, version_id), headers=merged, **self._body(body, content)
        )
        return str(response.headers["nvcf-reqid"])

    async def status(self, request_id: str, *, poll_seconds: int | None = None) -> InvocationStatus:
        """One poll of a request (`poll_seconds` None: 1, the shortest look). A finished request's
        `result` is set (a function's error answer too: status `errored`); a cancelled one is
        `rejected`. Unknown ids raise NotFoundError, and so do finished requests whose result was
        already delivered (NVCF forgets a request once its outcome was answered)."""
        response = await self._conn.send(
            "GET",
            status_path(request_id),
            headers={"NVCF-POLL-SECONDS": str(poll_seconds or 1)},
            timeout=self._conn.timeout((poll_seconds or 1) + POLL_READ_SLACK_S),
            check=False,
        )
        state = response.headers.get("nvcf-status", "")
        if response.status_code == 202:
            state = state or IN_PROGRESS
            position = await self._position(request_id) if state == PENDING else None
            return InvocationStatus(request_id, state, _percent(response.headers), position)
        if response.status_code == 410:
            return InvocationStatus(request_id, REJECTED)
        if response.status_code >= 400 and (state != ERRORED or "nvcf-reqid" not in response.headers):
            # the platform's own refusal (an unknown id; a result already delivered is forgotten
            # too), not the function's error answer (which carries the request id)
            raise error_for(response)
        result = await self._finish(response)
        done = ERRORED if response.status_code >= 400 else FULFILLED
        return InvocationStatus(request_id, state or done, 100 if done == FULFILLED else None, result=result)

    async def _position(self, request_id: str) -> int | None:
        try:
            position = await self._conn.json("GET", f"/v2/nvcf/queues/{request_id}/position")
        except FnplaneError:  # e.g. a key without queue_details
            return None
        value = position.get("positionInQueue") if isinstance(position, dict) else None
        return value if isinstance(value, int) else None

    async def result(self, request_id: str, *, timeout_s: float | None = None) -> Any:
        """Wait for a submitted request's outcome (same polling etiquette as `invoke`): the value
        `invoke` would return; its error raises (GoneError when it was cancelled)."""
        deadline = time.monotonic() + timeout_s if timeout_s is not None else None
        result = await self._wait(request_id, None, deadline, 0.0)
        if result.status_code >= 400:
            raise _result_error(result)
        return result.value

    async def cancel(self, request_id: str) -> None:
        """Cancel a queued or running request (a finished one: ConflictError)."""
        await self._conn.send("DELETE", status_path(request_id))

    def _direct_headers(self, function_id: str, version_id: str | None, headers: Any) -> httpx.Headers:
        merged = httpx.Headers(headers)
        domain = urlsplit(self.base_url).netloc
        merged["Host"] = f"{function_id}.{HOST_LABEL}.{domain}"
        if version_id:
            # the gateway reads function-version-id together with function-id (they win over Host)
            merged["function-id"] = function_id
            merged["function-version-id"] = version_id
        return merged

    async def invoke_direct(
        self,
        function_id: str,
        path: str = "/",
        *,
        method: str = "POST",
        version_id: str | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Any = None,
        params: Any = None,
        timeout_s: float | None = None,
    ) -> httpx.Response:
        """Call the function's own `path` with any method (Host: `<fid>.invocation.<domain>`): its
        status, headers and body as they are (an error status is returned, not raised, unless the
        platform itself refused the call with problem+json)."""
        merged = self._direct_headers(function_id, version_id, headers)
        kwargs: dict[str, Any] = {"params": params, "headers": merged}
        if content is not None:
            kwargs["content"] = content
        elif json is not None:
            kwargs["json"] = json
        read_s = timeout_s if timeout_s is not None else polling.DEFAULT_POLL_SECONDS + POLL_READ_SLACK_S
        response = await self._conn.send(
            method.upper(), path, timeout=self._conn.timeout(read_s), check=False, **kwargs
        )
        if response.status_code >= 400 and response.headers.get("content-type", "").startswith(
            "application/problem+json"
        ):
            raise error_for(response)
        return response

    async def stream(
        self,
        function_id: str,
        body: Any = None,
        *,
        version_id: str | None = None,
        path: str | None = None,
        method: str = "POST",
        headers: Any = None,
    ) -> AsyncIterator[ServerSentEvent]:
        """The server-sent events of an invocation, each as it arrives: pexec by default, or a direct
        invocation of `path`."""
        merged = httpx.Headers(headers)
        merged["Accept"] = "text/event-stream"
        kwargs: dict[str, Any] = {"timeout": self._conn.timeout(None)}
        if body is not None or method.upper() in ("POST", "PUT", "PATCH"):
            kwargs["json"] = body if body is not None else {}
        if path is None:
            url = pexec_path(function_id, version_id)
        else:
            url = path
            merged = self._direct_headers(function_id, version_id, merged)
        async with self._conn.stream(method.upper(), url, headers=merged, **kwargs) as response:
            if is_event_stream(response):
                async for event in aiter_events(response):
                    yield event
                return
            # not announced as events: a stream sent with the wrong type still counts, read whole;
            # an answer without any event is the caller's to see, not an empty iteration
            await response.aread()
            events = [e async for e in aiter_events(response)]
            if not events:
                raise NotAnEventStreamError(response)
            for event in events:
                yield event


def _result_error(result: InvocationResult) -> FnplaneError:
    response = httpx.Response(result.status_code, headers=result.headers, content=result.content)
    return error_for(response)
