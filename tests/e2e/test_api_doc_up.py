"""docs/api.md agrees with the platform: every operation of `GET /v3/openapi` is documented there, and
every endpoint it documents exists, in the OpenAPI document or, for what that document leaves out
(`/health`, `/v3/docs`, the gateway's signed-URL routes), answered by a real `fnplane up` with
something other than "no such route" (404 Not Found / "no route for ...", or 405).

An endpoint is documented in the first cell of a table row of docs/api.md: `METHOD /path`, several
methods as `GET`/`PUT /path`, several endpoints separated by commas. Placeholder names do not matter
(`{fid}` is `{functionId}`), `[/versions/{vid}]` is an optional segment (both forms are meant), and a
query (`?tail=&follow=`, `[?visibility=...]`) is not part of the path.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
from up_process import REPO, UpProcess

API_DOC = REPO / "docs" / "api.md"
_METHOD = r"GET|POST|PUT|PATCH|DELETE"
# optional `METHOD`/ prefixes, then `METHOD /path` in one pair of backticks
_ENDPOINT = re.compile(rf"((?:`(?:{_METHOD})`/)*)`({_METHOD}) (/[^`\s]*)`")

Endpoint = tuple[str, str]


def expand_optional(path: str) -> list[str]:
    """`/a[/b]/c` -> `/a/b/c` and `/a/c`: every optional segment with and without."""
    match = re.search(r"\[([^\[\]]*)\]", path)
    if match is None:
        return [path]
    before, inner, after = path[: match.start()], match[1], path[match.end() :]
    return expand_optional(before + inner + after) + expand_optional(before + after)


def normalise(path: str) -> str:
    """Without a query, a trailing slash and placeholder names: `/f/{fid}?x=` -> `/f/{}`."""
    path = re.sub(r"\[\?[^\]]*\]", "", path).split("?", 1)[0]
    return re.sub(r"\{[^}]*\}", "{}", path.rstrip("/") or "/")


def documented(markdown: str) -> set[Endpoint]:
    found: set[Endpoint] = set()
    for line in markdown.splitlines():
        if not line.startswith("|"):
            continue
        first_cell = line.split(" | ", 1)[0]
        for more, method, path in _ENDPOINT.findall(first_cell):
            methods = [*re.findall(r"`(\w+)`/", more), method]
            for variant in expand_optional(path):
                found.update((m, normalise(variant)) for m in methods)
    return found


def in_openapi(document: dict) -> set[Endpoint]:
    return {(m.upper(), normalise(path)) for path, items in document["paths"].items() for m in items}


def test_the_doc_parser_reads_the_forms_docs_api_md_uses() -> None:
    rows = "\n".join(
        [
            "| method and path | scope | success |",
            "| `GET`/`PUT /v2/nvcf/deployments/functions/{fid}/versions/{vid}` | x | 200 |",
            "| `POST /v2/nvcf/pexec/functions/{fid}[/versions/{vid}]` | `invoke_function` | 200 |",
            "| `GET /v2/nvcf/functions[?visibility=a,b]`, `DELETE /v1/keys/{keyId}` | y | 204 |",
            '| `PUT /v2/nvcf/secrets/x/{fid}` `{"secrets": []}` | z | **204** `GET /not/this/cell` |',
            "| any method and path with `Host: {fid}.invocation.{domain}` | w | the function's |",
            "`GET /not/in/a/table`",
        ]
    )
    assert documented(rows) == {
        ("GET", "/v2/nvcf/deployments/functions/{}/versions/{}"),
        ("PUT", "/v2/nvcf/deployments/functions/{}/versions/{}"),
        ("POST", "/v2/nvcf/pexec/functions/{}"),
        ("POST", "/v2/nvcf/pexec/functions/{}/versions/{}"),
        ("GET", "/v2/nvcf/functions"),
        ("DELETE", "/v1/keys/{}"),
        ("PUT", "/v2/nvcf/secrets/x/{}"),
    }


def no_such_route(response: httpx.Response) -> bool:
    """The platform's answer to a method and path it does not route (not: a resource it lacks)."""
    if response.status_code == 405:
        return True
    if response.status_code != 404:
        return False
    detail = str(response.json().get("detail", ""))
    return detail == "Not Found" or detail.startswith("no route for")


def test_docs_api_md_and_the_openapi_document_agree(tmp_path: Path, start_up: type[UpProcess]) -> None:
    up = start_up(tmp_path / "home")
    up.wait_healthy()
    headers = {"Authorization": f"Bearer {(up.home / 'admin-key').read_text().strip()}"}
    r = httpx.get(f"{up.url}/v3/openapi", headers=headers)
    assert r.status_code == 200, r.text
    openapi = in_openapi(r.json())
    docs = documented(API_DOC.read_text())
    assert len(openapi) > 50 and len(docs) > 50

    undocumented = sorted(openapi - docs)
    assert not undocumented, f"in GET /v3/openapi, not in docs/api.md: {undocumented}"

    # what the page documents beyond the OpenAPI document must still be served
    some_id = str(uuid.uuid4())
    missing = []
    for method, path in sorted(docs - openapi):
        url = up.url + path.replace("{}", some_id)
        body = {} if method in ("POST", "PUT", "PATCH") else None
        response = httpx.request(method, url, headers=headers, json=body, timeout=30)
        if no_such_route(response):
            missing.append((method, path, response.status_code, response.text[:200]))
    assert not missing, f"in docs/api.md, but the platform has no such route: {missing}"


def test_a_route_the_platform_lacks_is_told_apart(tmp_path: Path, start_up: type[UpProcess]) -> None:
    # the check above can fail: made-up routes, of the control API and of the gateway, are "no such route"
    up = start_up(tmp_path / "home")
    up.wait_healthy()
    headers = {"Authorization": f"Bearer {(up.home / 'admin-key').read_text().strip()}"}
    for method, path in [
        ("GET", "/v2/nvcf/no-such-thing"),
        ("DELETE", "/v2/nvcf/supportedGpus"),
        ("GET", f"/v2/nvcf/assets/{uuid.uuid4()}/no-such-thing"),
        ("POST", f"/v2/nvcf/pexec/status/{uuid.uuid4()}"),
    ]:
        assert no_such_route(httpx.request(method, up.url + path, headers=headers)), (method, path)
    # while a resource it lacks is not
    assert not no_such_route(httpx.get(f"{up.url}/v2/nvcf/assets/{uuid.uuid4()}", headers=headers))
