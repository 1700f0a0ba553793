"""docs/sdk.md's snippets, run against a real `fnplane up` as a reader would paste them (with the
platform's URL and key, and this Python for `python3`)."""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

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
