"""One command's run against the platform: its SDK client, its output, and the one place where
errors become a message on stderr and an exit code.

    with open_session(url, api_key, as_json) as session:
        function = session.client.get_version(fid, vid)
        ...

Exit codes: 0 success; 1 the platform refused or failed (the problem's title and detail on stderr,
and the request id when there is one) or could not be reached; 2 bad usage (Click's own, and a
malformed config file or argument found by the CLI); 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import typer

from fnplane.cli.config import ConfigFileError, Connection, config_path, connection
from fnplane.cli.output import Output
from fnplane.shared.errors import FnplaneError

if TYPE_CHECKING:
    from fnplane.sdk import Client

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


@dataclass
class Session:
    client: Client
    out: Output
    connection: Connection


def describe(error: FnplaneError) -> str:
    """`Title (status): detail` of an SDK error, from its problem document where it has one."""
    problem: dict[str, Any] = getattr(error, "problem", None) or {}
    status = getattr(error, "status", None)
    title = getattr(error, "title", None) or problem.get("title")
    if not title and isinstance(status, int):
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = None
    title = title or type(error).__name__.removesuffix("Error") or "Error"
    detail = getattr(error, "detail", None) or problem.get("detail") or str(error)
    head = f"{title} ({status})" if isinstance(status, int) else str(title)
    return f"{head}: {detail}" if detail and detail != title else head


def usage_error(out: Output, message: str) -> typer.Exit:
    out.error(message)
    return typer.Exit(EXIT_USAGE)


@contextmanager
def failures(
    out: Output, conn: Connection | None = None, *, refused_hint: str | None = None
) -> Iterator[None]:
    """Turn what the SDK raises into a message on stderr and an exit code; `refused_hint` is said
    on a 401 instead of where the API key came from."""
    import httpx

    try:
        yield
    except FnplaneError as error:
        out.error(describe(error))
        request_id = getattr(error, "request_id", None)
        if request_id:
            out.note(f"request id: {request_id}")
        if getattr(error, "status", None) == 401 and conn is not None:
            out.note(refused_hint or _credential_hint(conn))
        raise typer.Exit(EXIT_FAILED) from None
    except httpx.TransportError as error:
        where = conn.url if conn else "the platform"
        out.error(f"cannot reach {where}: {error or type(error).__name__}")
        raise typer.Exit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BrokenPipeError:
        # the reader of stdout went away (`| head`): say nothing, and let the interpreter's last
        # flush of stdout go nowhere instead of failing again (Python's signal docs, "SIGPIPE")
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(EXIT_FAILED) from None


def _credential_hint(conn: Connection) -> str:
    """Where the refused credential came from, so the person knows which one to fix."""
    if conn.api_key is None:
        return "no API key: set FNPLANE_API_KEY, pass --api-key or run `fnplane login`"
    where = {"flag": "--api-key", "env": "the environment (FNPLANE_API_KEY / NVCF_API_KEY)"}
    return f"the API key came from {where.get(conn.api_key_source, 'the config file ' + str(config_path()))}"


@contextmanager
def open_session(
    url: str | None, api_key: str | None, as_json: bool, *, refused_hint: str | None = None
) -> Iterator[Session]:
    """The client of the platform the flags, the environment and the config file name."""
    out = Output(as_json)
    try:
        conn = connection(url, api_key)
    except ConfigFileError as error:
        raise usage_error(out, str(error)) from None
    with failures(out, conn, refused_hint=refused_hint):
        from fnplane.sdk import Client

        client = Client(base_url=conn.url, api_key=conn.api_key)
        try:
            yield Session(client, out, conn)
        finally:
            client.close()
