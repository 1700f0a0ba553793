"""`fnplane invoke`, `fnplane status` and `fnplane cancel`: calling functions.

Without `--json`, `invoke` writes the function's answer to stdout byte for byte (so `| jq` works) and
the request id to stderr. With `--json` the answer comes in NVCF's exec envelope, the API's own shape
for a result: `{"reqId", "status", "percentComplete"?, "response"?}` (`response` decoded when JSON);
`status` adds `positionInQueue` while the request waits, `--stream --json` prints `{"events": [...]}`.
An answer JSON cannot hold as it is (a large result's zip, any bytes that are not text) is written to
a file, `--output FILE` or the name the download gives in the current directory, and the envelope
names it: `"responseFile"` instead of `"response"`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from fnplane.cli.config import ApiKeyOption, UrlOption
from fnplane.cli.output import JsonOption, Output
from fnplane.cli.session import EXIT_FAILED, Session, open_session, usage_error

FunctionIdArgument = Annotated[str, typer.Argument(metavar="FID", help="Function id.")]
RequestIdArgument = Annotated[str, typer.Argument(metavar="REQID", help="Request id (NVCF-REQID).")]
PollSecondsOption = Annotated[
    int | None,
    typer.Option(
        "--poll-seconds", help="How long one poll waits (NVCF-POLL-SECONDS).", min=1, max=3600,
        show_default=False,
    ),
]  # fmt: skip
JSON_TYPE = "application/json"
REJECTED = "rejected"
# the poll window of `status --wait` without --poll-seconds
WAIT_POLL_SECONDS = 30
OutputOption = Annotated[
    Path | None,
    typer.Option(
        "--output", "-o", help="Write the answer's body to this file (--json: the document names it).",
        show_default=False,
    ),
]  # fmt: skip


def decoded(content: bytes) -> Any:
    """A body as JSON when it is JSON, else as text."""
    try:
        return json.loads(content)
    except ValueError:
        return content.decode("utf-8", errors="replace")


def envelope(
    request_id: str | None, status_code: int, content: bytes | None, response_file: Path | None = None
) -> dict[str, Any]:
    """NVCF's exec envelope of one answer (its body in `response_file` when that is given)."""
    from fnplane.shared.wire import nvcf_status

    document: dict[str, Any] = {"reqId": request_id, "status": nvcf_status(status_code).value}
    if response_file is not None:
        document["responseFile"] = str(response_file)
    elif content:
        document["response"] = decoded(content)
    if status_code < 400 and status_code != 202:
        document["percentComplete"] = 100
    elif status_code >= 400:
        document["errorCode"] = status_code
    return document


def read_body(out: Output, source: str | None, data: str | None, data_file: str | None) -> bytes | None:
    """The request body from --data, --data-file (`-`: stdin) or `-` (stdin); None without one."""
    if source is not None and source != "-":
        raise usage_error(out, f"unexpected argument {source!r}: give the body with --data or --data-file")
    given = [name for name, value in (("--data", data), ("--data-file", data_file), ("-", source)) if value]
    if len(given) > 1:
        raise usage_error(out, f"give one body, not {' and '.join(given)}")
    if data is not None:
        return data.encode()
    if data_file == "-" or source == "-":
        return sys.stdin.buffer.read()
    if data_file is not None:
        try:
            return Path(data_file).read_bytes()
        except OSError as error:
            raise usage_error(out, f"cannot read {data_file}: {error.strerror}") from None
    return None


def parse_headers(out: Output, values: list[str]) -> dict[str, str]:
    headers = {}
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep or not name.strip():
            raise usage_error(out, f"header {value!r} is not 'Name: value'")
        headers[name.strip()] = rest.strip()
    return headers


def in_json(headers: Mapping[str, str], content: bytes) -> bool:
    """Whether the envelope can carry the body as it is: not a download, and text."""
    if headers.get("content-disposition", "").lower().startswith("attachment"):
        return False
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def download_name(request_id: str | None, headers: Mapping[str, str]) -> Path:
    """Where an answer the envelope cannot carry goes by default: the download's own file name (only
    its last part), else `<reqId>.bin`, in the current directory."""
    for part in headers.get("content-disposition", "").split(";")[1:]:
        name, _, value = part.strip().partition("=")
        base = Path(value.strip().strip('"')).name
        if name.lower() == "filename" and base and not base.startswith("."):
            return Path(base)
    return Path(f"{request_id or 'answer'}.bin")


def save_answer(out: Output, path: Path, content: bytes, *, replace: bool) -> None:
    try:
        with path.open("wb" if replace else "xb") as file:
            file.write(content)
    except OSError as error:
        out.error(f"cannot write the answer to {path}: {error.strerror}")
        raise typer.Exit(EXIT_FAILED) from None


def write_answer(
    session: Session,
    request_id: str | None,
    status_code: int,
    headers: Mapping[str, str],
    content: bytes,
    output: Path | None = None,
) -> None:
    """The answer as is on stdout, or in `output` (or its envelope with --json); an error status
    exits 1. With --json, a body the envelope cannot carry goes to a file all the same.

    A problem+json error is the platform's (or reads like one): only its title and detail, on stderr.
    """
    out = session.out
    content_type = headers.get("content-type", "")
    problem = status_code >= 400 and content_type.startswith("application/problem+json")
    if not problem:
        path = output
        if path is None and out.as_json and not in_json(headers, content):
            path = download_name(request_id, headers)
        if path is not None:
            save_answer(out, path, content, replace=output is not None)
        if out.as_json:
            out.json(envelope(request_id, status_code, content, path.absolute() if path else None))
        elif path is not None:
            out.note(f"answer ({len(content)} bytes) written to {path}")
        else:
            out.raw(content)
            if content and not content.endswith(b"\n") and sys.stdout.isatty():
                out.raw(b"\n")
    if request_id and not out.as_json:
        out.note(f"request id: {request_id}")
    if status_code >= 400:
        out.error(failure(status_code, content_type, content))
        raise typer.Exit(EXIT_FAILED)


def failure(status_code: int, content_type: str, content: bytes) -> str:
    """What an error answer says: the platform's problem (title and detail), or the function's status."""
    if content_type.startswith("application/problem+json"):
        problem = decoded(content)
        if isinstance(problem, dict):
            title = problem.get("title") or f"HTTP {status_code}"
            detail = problem.get("detail")
            return f"{title} ({status_code}): {detail}" if detail else f"{title} ({status_code})"
    return f"the function answered {status_code}"


def stream_events(session: Session, function_id: str, body: bytes | None, **options: Any) -> None:
    """Each server-sent event's data on its own line as it arrives; --json: {"events": [...]} at the end."""
    out = session.out
    try:
        document = json.loads(body) if body else None
    except ValueError as error:
        raise usage_error(out, f"--stream sends a JSON body: {error}") from None
    events = []
    for event in session.client.stream(function_id, document, **options):
        events.append({name: getattr(event, name, None) for name in ("event", "data", "id", "retry")})
        if not out.as_json:
            out.raw(f"{event.data}\n".encode())
    if out.as_json:
        out.json({"events": events})
    if not events:
        out.note("the answer held no server-sent events (is it text/event-stream? try without --stream)")


def invoke(
    function_id: FunctionIdArgument,
    source: Annotated[
        str | None, typer.Argument(metavar="-", help="'-': read the body from stdin.", show_default=False)
    ] = None,
    version_id: Annotated[
        str | None, typer.Option("--version", help="Invoke this version.", show_default=False)
    ] = None,
    data: Annotated[str | None, typer.Option("--data", help="The body (JSON).", show_default=False)] = None,
    data_file: Annotated[
        str | None, typer.Option("--data-file", help="Read the body from this file ('-': stdin).")
    ] = None,
    content_type: Annotated[str, typer.Option("--content-type", help="The body's media type.")] = JSON_TYPE,
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="Extra header 'Name: value' (repeatable).")
    ] = None,
    input_asset: Annotated[
        list[str] | None, typer.Option("--input-asset", help="Asset id the function gets (repeatable).")
    ] = None,
    poll_seconds: PollSecondsOption = None,
    timeout_s: Annotated[
        float | None, typer.Option("--timeout", help="Give up after this many seconds.", show_default=False)
    ] = None,
    submit: Annotated[
        bool, typer.Option("--async", help="Submit and print the request id at once (`fnplane status`).")
    ] = False,
    direct: Annotated[
        str | None,
        typer.Option(
            "--direct", metavar="PATH", help="Call PATH of the function itself (Host-header invocation)."
        ),
    ] = None,
    method: Annotated[str, typer.Option("--method", help="HTTP method of --direct.")] = "POST",
    stream: Annotated[
        bool, typer.Option("--stream", help="Print each server-sent event's data as it arrives.")
    ] = False,
    output: OutputOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Invoke function FID (pexec; with --direct, any path and method) and print its answer."""
    with open_session(url, api_key, as_json) as session:
        out, client = session.out, session.client
        if submit and (stream or direct):
            raise usage_error(out, "--async submits to pexec: not with --stream or --direct")
        if output is not None and (submit or stream):
            raise usage_error(out, "--output writes an answer: not with --async or --stream")
        body = read_body(out, source, data, data_file)
        if body is not None and content_type == JSON_TYPE and data is not None:
            try:
                json.loads(body)
            except ValueError as error:
                raise usage_error(
                    out, f"--data is not JSON ({error}); set --content-type for others"
                ) from None
        headers = parse_headers(out, header or [])
        if body is not None:
            headers.setdefault("Content-Type", content_type)
        assets = input_asset or None
        if stream:
            stream_events(
                session, function_id, body, version_id=version_id, path=direct, method=method.upper(),
                headers=headers or None,
            )  # fmt: skip
        elif direct is not None:
            response = client.invoke_direct(
                function_id, direct, method=method.upper(), version_id=version_id, content=body,
                headers=headers or None, timeout_s=timeout_s,
            )  # fmt: skip
            request_id = response.headers.get("nvcf-reqid")
            write_answer(
                session, request_id, response.status_code, response.headers, response.content, output
            )
        elif submit:
            request_id = client.submit(
                function_id, version_id=version_id, content=body, headers=headers or None, input_assets=assets
            )
            out.result({"reqId": request_id, "status": "pending-evaluation"}, request_id)
        else:
            result = client.invoke_response(
                function_id, version_id=version_id, content=body, headers=headers or None,
                poll_seconds=poll_seconds, timeout_s=timeout_s, input_assets=assets,
            )  # fmt: skip
            write_answer(
                session, result.request_id, result.status_code, result.headers, result.content, output
            )


def status(
    request_id: RequestIdArgument,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the outcome and print it.")] = False,
    poll_seconds: PollSecondsOption = None,
    output: OutputOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Poll request REQID once (with --wait, until it ends); a finished one prints its answer, a
    cancelled one is an error (exit 1)."""
    with open_session(url, api_key, as_json) as session:
        out, client = session.out, session.client
        # --wait: long polls (the server holds each up to the window), so this loop rarely sleeps;
        # it keeps to one poll a second only when the server answers at once
        window = poll_seconds or (WAIT_POLL_SECONDS if wait else None)
        state = client.status(request_id, poll_seconds=window)
        while wait and state.result is None and state.status != REJECTED:
            started = time.monotonic()
            state = client.status(request_id, poll_seconds=window)
            if state.result is None:
                time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
        if state.result is not None:
            result = state.result
            write_answer(session, request_id, result.status_code, result.headers, result.content, output)
            return
        if state.status == REJECTED:  # it ended without a result: with --wait or not, a failure
            out.error(f"request {request_id} was cancelled")
            raise typer.Exit(EXIT_FAILED)
        if out.as_json:
            document: dict[str, Any] = {"reqId": request_id, "status": state.status}
            if state.percent_complete is not None:
                document["percentComplete"] = state.percent_complete
            if state.position is not None:
                document["positionInQueue"] = state.position
            out.json(document)
        else:
            out.fields(
                [
                    ("request id", request_id),
                    ("status", state.status),
                    ("percent complete", state.percent_complete),
                    ("position in queue", state.position),
                ]
            )


def cancel(
    request_id: RequestIdArgument,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel request REQID: a queued one never runs, a running one is aborted."""
    with open_session(url, api_key, as_json) as session:
        session.client.cancel(request_id)
        session.out.result({"reqId": request_id, "status": "rejected"}, f"cancelled {request_id}")
