"""`fnplane asset ...`: input assets (files a function gets with `invoke --input-asset ID`).

Uploads and downloads stream (a file is never read whole) and show a progress bar on stderr when it
is a terminal.
"""

from __future__ import annotations

import mimetypes
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fnplane.cli.config import ApiKeyOption, UrlOption
from fnplane.cli.output import JsonOption, Output, key
from fnplane.cli.session import open_session, usage_error

if TYPE_CHECKING:
    from fnplane.sdk import Client

app = typer.Typer(help="Input assets: upload, download, list, delete.", no_args_is_help=True)

AssetIdArgument = Annotated[str, typer.Argument(metavar="ID", help="Asset id.")]


@contextmanager
def progress_bar(out: Output, label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A callback taking the bytes moved so far, drawing a bar on a terminal's stderr (else nothing)."""
    if not sys.stderr.isatty():
        yield lambda _done: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn()]
    with Progress(*columns, TimeRemainingColumn(), console=out.stderr, transient=False) as progress:
        task = progress.add_task(label, total=total)
        yield lambda done: progress.update(task, completed=done)


@app.command("upload")
def upload(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The file to upload.", dir_okay=False)],
    content_type: Annotated[
        str | None,
        typer.Option(
            help="Media type (default: guessed from the name, else octet-stream).", show_default=False
        ),
    ] = None,
    description: Annotated[str, typer.Option(help="Description.")] = "",
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upload FILE as a new asset; prints its id."""
    out = Output(as_json)
    try:
        size = file.stat().st_size
    except OSError as error:
        raise usage_error(out, f"cannot read {file}: {error.strerror}") from None
    media_type = content_type or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    with open_session(url, api_key, as_json) as session:
        with progress_bar(session.out, f"upload {file.name}", size) as advance:
            asset_id = session.client.upload_asset(
                file, content_type=media_type, description=description, progress=advance
            )
        session.out.result({"assetId": asset_id}, asset_id)


def download_to(client: Client, asset_id: str, file: Path, progress: Callable[[int], None]) -> int:
    """Into FILE.part first, renamed once complete: a failed download leaves FILE as it was."""
    partial = file.with_name(f"{file.name}.part")
    try:
        written = int(client.download_asset(asset_id, partial, progress=progress))
        partial.replace(file)
    finally:
        partial.unlink(missing_ok=True)
    return written


@app.command("download")
def download(
    asset_id: AssetIdArgument,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Where to write it ('-': stdout).")],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Download asset ID into FILE."""
    to_stdout = str(file) == "-"
    if to_stdout and as_json:
        raise usage_error(Output(as_json), "--json prints a document on stdout: give a FILE, not '-'")
    with open_session(url, api_key, as_json) as session:
        with progress_bar(session.out, f"download {asset_id}", None) as advance:
            if to_stdout:
                written = session.client.download_asset(asset_id, sys.stdout.buffer, progress=advance)
                sys.stdout.buffer.flush()
            else:
                written = download_to(session.client, asset_id, file, advance)
        if session.out.as_json:
            session.out.json({"assetId": asset_id, "path": str(file), "bytes": written})
        elif not to_stdout:
            session.out.line(f"{written} bytes -> {file}")


@app.command("list")
def list_(url: UrlOption = None, api_key: ApiKeyOption = None, as_json: JsonOption = False) -> None:
    """List the account's assets."""
    with open_session(url, api_key, as_json) as session:
        assets = session.client.list_assets()
        session.out.listing({"assets": assets}, [("ASSET ID", key("assetId"))], empty="no assets")


@app.command("delete")
def delete(
    asset_id: AssetIdArgument,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete asset ID. --json prints {}."""
    with open_session(url, api_key, as_json) as session:
        session.client.delete_asset(asset_id)
        session.out.result({}, f"deleted asset {asset_id}")
