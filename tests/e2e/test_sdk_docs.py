"""docs/sdk.md's snippets, run against a real `fnplane up` as a reader would paste them (with the
platform's URL and key, and this Python for `python3`)."""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

import pytest
from sdk_platform import Platform, platform  # noqa: F401

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_the_first_snippet_deploys_and_invokes(platform: Platform) -> None:  # noqa: F811
    code = (
        blocks()[0]
        .replace("http://127.0.0.1:8080", platform.up.url)
        .replace("nvapi-...", platform.key)
        .replace('"python3 ', f'"{sys.executable} ')
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {})
    assert "ACTIVE" in out.getvalue().splitlines()
    assert "{'echo': {'hello': 'world'}, 'path': '/echo'}" in out.getvalue()


def test_the_keepalive_snippet_builds_its_clients(platform: Platform) -> None:  # noqa: F811
    [code] = [b for b in blocks() if "keepalive_http_client(" in b]
    namespace: dict = {"url": platform.up.url, "key": platform.key}
    exec(compile(code, str(DOC), "exec"), namespace)
    with namespace["client"] as client, namespace["http"] as http:
        assert client.health()["status"] == "ok"
        assert http.get(f"{platform.up.url}/health").status_code == 200


def test_the_invocation_asset_and_error_snippets_run_as_written(
    platform: Platform,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every snippet from "Invoking" to "Errors" but gRPC's, in order, in one namespace: `fid` and `vid`
    of a function (inv_function.py's /slow, 1 s a call, so the submitted job is still there to cancel)
    and the reader's own `body`, `data` and `asset_id`."""
    from fnplane.sdk import Client

    function = platform.function("/slow")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "input.bin").write_bytes(b"\x01" * 3000)
    snippets = [b for b in blocks()[1:] if "keepalive_http_client(" not in b and "grpc_channel(" not in b]
    assert len(snippets) == 6, snippets
    out = io.StringIO()
    with Client(platform.up.url, platform.key) as client, contextlib.redirect_stdout(out):
        namespace: dict = {"client": client, "fid": function["id"], "vid": function["versionId"]}
        namespace.update(body={"seconds": 0.1}, data=b"doc", asset_id=client.upload_asset(b"asset"))
        # the streaming snippet is for a function that streams: inv_function.py's OpenAI-style chat
        chat = platform.function("/v1/chat/completions")
        for code in snippets:
            if "client.stream(" in code:
                exec(compile(code, str(DOC), "exec"), {**namespace, "fid": chat["id"]})
            else:
                exec(compile(code, str(DOC), "exec"), namespace)
    # each stream's last word and end, as the snippet prints them
    assert out.getvalue().count('"content": "fnplane"') == 2 and out.getvalue().count("[DONE]") == 2
    assert namespace["value"] == {"slept": 1, "pid": namespace["value"]["pid"]}
    assert namespace["result"].value["slept"] == 0.1
    assert "cancelled" in out.getvalue().splitlines()
    assert (tmp_path / "copy.bin").read_bytes() == b"\x01" * 3000
