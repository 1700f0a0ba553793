"""Hostile input against a real `fnplane up` (issue 8 items 4 and 6): bodies are refused before they are
read, stalled bodies are cut, one credential cannot hold every request slot, malformed input gets a
4xx problem, and assets are bounded per asset, per account and per bucket.

One platform for the module, with small limits set through its documented settings.
"""

from __future__ import annotations

import json
import secrets
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from up_process import UpProcess, new_api_key

pytestmark = pytest.mark.xdist_group("bounded_input_up")

FUNCTION = Path(__file__).resolve().parents[2] / "examples" / "inv_function.py"
KEY = "nvapi-" + secrets.token_urlsafe(32)
AUTH = {"Authorization": f"Bearer {KEY}"}
MIB = 1024 * 1024
IDLE_S = 2
CONCURRENCY = 3
MAX_ASSET = 256 * 1024
MAX_ACCOUNT_BYTES = 384 * 1024
MAX_ASSETS = 3
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    home = tmp_path_factory.mktemp("bounded") / "home"
    platform = UpProcess(
        home,
        env={
            "FNPLANE_ADMIN_KEY": KEY,
            "FNPLANE_UP_BODY_IDLE_TIMEOUT_S": str(IDLE_S),
            "FNPLANE_UP_API_MAX_CONCURRENT_PER_CREDENTIAL": str(CONCURRENCY),
            "FNPLANE_UP_GATEWAY_MAX_CONCURRENT_PER_CREDENTIAL": str(CONCURRENCY),
            "FNPLANE_GATEWAY_MAX_ASSET_BYTES": str(MAX_ASSET),
            "FNPLANE_GATEWAY_MAX_ASSET_BYTES_PER_ACCOUNT": str(MAX_ACCOUNT_BYTES),
            "FNPLANE_GATEWAY_MAX_ASSETS_PER_ACCOUNT": str(MAX_ASSETS),
        },
    )
    try:
        platform.wait_healthy()
        yield platform
    finally:
        platform.kill_leftovers()


# --- raw HTTP/1.1, so the test controls every byte and its timing -----------------------------------


def _connect(up: UpProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", up.port), timeout=30)


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


class Sender(threading.Thread):
    """Sends `total` bytes of body in 64 KiB writes until told to stop or the server closes."""

    def __init__(self, sock: socket.socket, total: int) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.total = total
        self.sent = 0
        self.stop = threading.Event()

    def run(self) -> None:
        block = b"x" * 65536
        try:
            while self.sent < self.total and not self.stop.is_set():
                self.sock.sendall(block[: self.total - self.sent])
                self.sent += min(len(block), self.total - self.sent)
        except OSError:
            pass  # the server closed the connection: what a refused body should get


def _refused_while_sending(up: UpProcess, path: str, headers: dict[str, str], total: int) -> tuple[int, dict]:
    """Send the head, then the body as fast as the server takes it; the answer must come while the
    body is still being sent (the server neither waited for nor read the rest)."""
    sock = _connect(up)
    try:
        sock.sendall(_head("POST", path, headers))
        sender = Sender(sock, total)
        sender.start()
        status, answer_headers, body = _read_answer(sock)
        sent_at_answer = sender.sent
        sender.stop.set()
        sender.join(30)
        assert sent_at_answer < total, "the answer came only after the whole body was sent"
        assert answer_headers["content-type"] == PROBLEM
        # the rest of the body is never read, so the connection cannot carry another request: say so
        assert answer_headers.get("connection") == "close"
        return status, json.loads(body)
    finally:
        sock.close()


def test_anonymous_256_mib_body_is_refused_before_it_is_read(up: UpProcess) -> None:
    total = 256 * MIB
    fid = str(uuid.uuid4())
    for path, extra in (
        ("/v2/nvcf/functions", {}),
        ("/v2/nvcf/functions/x/versions", {}),
        ("/v1/keys", {}),
        (f"/v2/nvcf/pexec/functions/{fid}", {}),  # the gateway admits before it reads
        (f"/v2/nvcf/exec/functions/{fid}", {}),
        ("/v2/nvcf/assets", {}),
        ("/anything", {"function-id": fid}),  # direct invocation
    ):
        headers = {"Content-Type": "application/json", "Content-Length": str(total), **extra}
        status, problem = _refused_while_sending(up, path, headers, total)
        assert status in (401, 413), (path, problem)
    # without a length (chunked), an anonymous body is refused on its head too
    status, problem = _refused_while_sending(
        up, "/v2/nvcf/functions", {"Transfer-Encoding": "chunked"}, total
    )
    assert status == 401 and problem["status"] == 401


def test_oversized_authenticated_body_is_413(up: UpProcess) -> None:
    total = 8 * MIB
    status, problem = _refused_while_sending(
        up,
        "/v2/nvcf/functions",
        {**AUTH, "Content-Type": "application/json", "Content-Length": str(total)},
        total,
    )
    assert status == 413 and problem["type"] == "urn:nv-boot:problem-details:payload-too-large"
    assert problem["title"] == "Payload Too Large"  # as the status line says
    # chunked: no length to judge up front; the running count stops it past the limit
    sock = _connect(up)
    try:
        sock.sendall(_head("POST", "/v2/nvcf/functions", {**AUTH, "Transfer-Encoding": "chunked"}))
        chunk = b"x" * 65536
        framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        sender_sent = 0

        def send_chunks() -> None:
            nonlocal sender_sent
            try:
                while sender_sent < total:
                    sock.sendall(framed)
                    sender_sent += len(chunk)
            except OSError:
                pass

        thread = threading.Thread(target=send_chunks, daemon=True)
        thread.start()
        status, headers, _ = _read_answer(sock)
        assert status == 413 and headers["content-type"] == PROBLEM
        assert sender_sent < total
    finally:
        sock.close()
    # a body within the limit still works
    r = httpx.post(f"{up.url}/v2/nvcf/functions", json={"name": "x" * 1000}, headers=AUTH)
    assert r.status_code == 400 and r.json()["field"] == "name"


def test_a_stalled_body_gets_408_and_the_connection_is_freed(up: UpProcess) -> None:
    for path in ("/v2/nvcf/functions", "/v2/nvcf/assets"):  # the control API and the gateway
        sock = _connect(up)
        try:
            sock.sendall(
                _head("POST", path, {**AUTH, "Content-Type": "application/json", "Content-Length": "100"})
            )
            sock.sendall(b'{"name": ')  # and then nothing
            status, headers, body = _read_answer(sock)
            assert status == 408, body
            assert headers["content-type"] == PROBLEM and json.loads(body)["status"] == 408
            sock.settimeout(10)
            # the server closes the connection (or at least takes no more requests on it)
            try:
                rest = sock.recv(65536)
            except OSError:
                rest = b""
            assert rest == b""
        finally:
            sock.close()


def _new_key(up: UpProcess, scopes: list[str]) -> str:
    return new_api_key(up, AUTH, scopes)[1]


@contextmanager
def _held(up: UpProcess, path: str, key: str) -> Iterator[None]:
    """A request kept in flight: its body arrives one byte at a time, well within the idle timeout."""
    sock = _connect(up)
    stop = threading.Event()
    head = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", "Content-Length": "100000"}
    sock.sendall(_head("POST", path, head))

    def trickle() -> None:
        try:
            while not stop.wait(IDLE_S / 4):
                sock.sendall(b" ")
        except OSError:
            pass

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
        sock.close()


def _until_refused(request: Any) -> httpx.Response:
    deadline = time.monotonic() + 20
    while True:
        response = request()
        if response.status_code == 429 or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_concurrent_requests_are_limited_per_credential_and_per_plane(up: UpProcess) -> None:
    key = _new_key(up, ["list_functions", "register_function", "invoke_function"])
    other = _new_key(up, ["list_functions"])
    bearer = {"Authorization": f"Bearer {key}"}
    with _held(up, "/v2/nvcf/functions", key), _held(up, "/v2/nvcf/functions", key):
        with _held(up, "/v2/nvcf/functions", key):
            refused = _until_refused(lambda: httpx.get(f"{up.url}/v2/nvcf/functions", headers=bearer))
            assert refused.status_code == 429, refused.text
            assert refused.headers["content-type"] == PROBLEM and refused.headers["retry-after"] == "1"
            assert refused.json()["type"] == "urn:nv-boot:problem-details:too-many-requests"
            # another credential, and the same credential on the gateway, have slots of their own
            other_auth = {"Authorization": f"Bearer {other}"}
            assert httpx.get(f"{up.url}/v2/nvcf/functions", headers=other_auth).status_code == 200
            assert httpx.get(f"{up.url}/v2/nvcf/assets", headers=bearer).status_code == 200
        # a slot freed is a slot to use
        assert httpx.get(f"{up.url}/v2/nvcf/functions", headers=bearer).status_code == 200
    with (
        _held(up, "/v2/nvcf/assets", key),
        _held(up, "/v2/nvcf/assets", key),
        _held(up, "/v2/nvcf/assets", key),
    ):
        refused = _until_refused(lambda: httpx.get(f"{up.url}/v2/nvcf/assets", headers=bearer))
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert httpx.get(f"{up.url}/v2/nvcf/functions", headers=bearer).status_code == 200


# --- malformed input: every answer a 4xx problem ----------------------------------------------------


@pytest.fixture(scope="module")
def active_function(up: UpProcess) -> dict[str, Any]:
    """An ACTIVE version without instances (minInstances 0): invocations reach body parsing."""
    body = {
        "name": "bounded",
        "inferenceUrl": "/echo",
        "inferencePort": 8000,
        "containerImage": "example/inv:1",
        "containerArgs": f"{sys.executable} {FUNCTION} $(PORT)",
    }
    fn = httpx.post(f"{up.url}/v2/nvcf/functions", json=body, headers=AUTH).json()["function"]
    spec = {"gpu": "L40S", "instanceType": "LOCAL.GPU.L40S_1x", "minInstances": 0, "maxInstances": 1}
    r = httpx.post(
        f"{up.url}/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}",
        json={"deploymentSpecifications": [spec]},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    return dict(fn)


DEEP = b"[" * 100_000 + b"]" * 100_000
RID = str(uuid.uuid4())


def _malformed(fid: str) -> list[tuple[str, str, str, dict[str, str], bytes | None]]:
    """(case, method, path, headers, body): what httpx can send."""
    signed = f"/v2/nvcf/pexec/results/{RID}?expires=9999999999&signature="
    return [
        ("non-ASCII signature", "GET", signed + "%C3%A9", {}, None),
        (
            "non-ASCII signature on upload",
            "PUT",
            f"/v2/nvcf/assets/{RID}/upload?expires=9999999999&signature=%FF",
            {},
            b"x",
        ),
        (
            "non-ASCII signature on content",
            "GET",
            f"/v2/nvcf/assets/{RID}/content?expires=1&signature=%E2%82%AC",
            {},
            None,
        ),
        ("non-ASCII expiry", "GET", f"/v2/nvcf/pexec/results/{RID}?expires=%C3%A9&signature=ab", {}, None),
        ("huge expiry", "GET", f"/v2/nvcf/pexec/results/{RID}?expires={'9' * 400}&signature=ab", {}, None),
        ("deep JSON on exec", "POST", f"/v2/nvcf/exec/functions/{fid}", AUTH, DEEP),
        (
            "deep requestBody on exec",
            "POST",
            f"/v2/nvcf/exec/functions/{fid}",
            AUTH,
            b'{"requestBody":' + DEEP + b"}",
        ),
        ("bad UTF-8 on exec", "POST", f"/v2/nvcf/exec/functions/{fid}", AUTH, b'{"requestBody": "\xff\xfe"}'),
        ("deep JSON on the API", "POST", "/v2/nvcf/functions", AUTH, DEEP),
        ("deep field on the API", "POST", "/v2/nvcf/functions", AUTH, b'{"name":' + DEEP + b"}"),
        ("bad UTF-8 on the API", "POST", "/v2/nvcf/functions", AUTH, b'{"name": "\xff\xfe"}'),
        ("deep JSON on assets", "POST", "/v2/nvcf/assets", AUTH, DEEP),
        ("bad function id", "GET", "/v2/nvcf/functions/not-a-uuid/versions", AUTH, None),
        ("bad version id", "GET", f"/v2/nvcf/functions/{fid}/versions/zzz", AUTH, None),
        ("percent-encoded bad UTF-8 id", "GET", "/v2/nvcf/functions/%FF%FE/versions", AUTH, None),
        ("NUL in an id", "GET", f"/v2/nvcf/functions/{fid}/versions/%00", AUTH, None),
        ("bad deployment ids", "GET", "/v2/nvcf/deployments/functions/x/versions/y", AUTH, None),
        ("bad request id", "GET", "/v2/nvcf/pexec/status/not-a-uuid", AUTH, None),
        ("bad queue request id", "GET", "/v2/nvcf/queues/x/position", AUTH, None),
        ("bad asset id", "GET", "/v2/nvcf/assets/x", AUTH, None),
        ("bad pexec function id", "POST", "/v2/nvcf/pexec/functions/x", AUTH, b"{}"),
        ("bad direct function id", "POST", "/x", {**AUTH, "function-id": "not-a-uuid"}, b"{}"),
        (
            "poll seconds not a number",
            "POST",
            f"/v2/nvcf/pexec/functions/{fid}",
            {**AUTH, "NVCF-POLL-SECONDS": "abc"},
            b"{}",
        ),
        (
            "poll seconds huge",
            "POST",
            f"/v2/nvcf/pexec/functions/{fid}",
            {**AUTH, "NVCF-POLL-SECONDS": "9" * 30},
            b"{}",
        ),
        (
            "poll seconds fractional",
            "POST",
            f"/v2/nvcf/pexec/functions/{fid}",
            {**AUTH, "NVCF-POLL-SECONDS": "1.5"},
            b"{}",
        ),
        (
            "bad asset references",
            "POST",
            f"/v2/nvcf/pexec/functions/{fid}",
            {**AUTH, "NVCF-INPUT-ASSET-REFERENCES": "x"},
            b"{}",
        ),
        (
            "Host with a space",
            "POST",
            "/v2/nvcf/assets",
            {**AUTH, "Host": "ex ample:1"},
            b'{"contentType":"a","description":"b"}',
        ),
        (
            "Host with a path",
            "POST",
            "/v2/nvcf/assets",
            {**AUTH, "Host": "evil.example/x?"},
            b'{"contentType":"a","description":"b"}',
        ),
        ("Host with userinfo", "GET", "/v2/nvcf/assets/x/content-redirect", {**AUTH, "Host": "a@evil"}, None),
        ("malformed JWT", "GET", "/v2/nvcf/functions", {"Authorization": "Bearer a.b.c"}, None),
    ]


def test_malformed_input_gets_a_4xx_problem(up: UpProcess, active_function: dict[str, Any]) -> None:
    failures = []
    with httpx.Client(base_url=up.url, timeout=30) as client:
        for case, method, path, headers, body in _malformed(active_function["id"]):
            r = client.request(method, path, headers=headers, content=body)
            if not (400 <= r.status_code < 500 and r.headers.get("content-type") == PROBLEM):
                failures.append(f"{case}: {r.status_code} {r.headers.get('content-type')} {r.text[:200]}")
    assert not failures, "\n".join(failures)


def _raw(line: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    """One request as bytes; %s is the function id, %k the admin key."""
    length = [b"Content-Length: %d" % len(body)] if body else []
    return b"\r\n".join([line, b"Host: x", *headers, *length, b"", body])


BEARER = b"Authorization: Bearer %k"
ASSET_BODY = b'{"contentType":"a","description":"b"}'
RAW_MALFORMED = [
    ("non-ASCII bearer", _raw(b"GET /v2/nvcf/functions HTTP/1.1", b"Authorization: Bearer \xff\xfe")),
    (
        "non-ASCII bearer on pexec",
        _raw(b"POST /v2/nvcf/pexec/functions/%s HTTP/1.1", b"Authorization: Bearer \xff", body=b"{}"),
    ),
    (
        "non-ASCII poll seconds",
        _raw(
            b"POST /v2/nvcf/pexec/functions/%s HTTP/1.1", BEARER, b"NVCF-POLL-SECONDS: \xff\xfe", body=b"{}"
        ),
    ),
    (
        "non-ASCII Host",
        _raw(b"POST /v2/nvcf/assets HTTP/1.1", BEARER, b"Host: \xc3\xa9:1", body=ASSET_BODY),
    ),
    ("non-ASCII function-id", _raw(b"POST /x HTTP/1.1", BEARER, b"function-id: \xff\xfe", body=b"{}")),
    (
        "non-ASCII Basic credentials",
        _raw(
            b"POST /token HTTP/1.1",
            b"Authorization: Basic \xff",
            b"Content-Type: application/x-www-form-urlencoded",
            body=b"grant_type=client_credentials",
        ),
    ),
    (
        "non-ASCII charset",
        _raw(
            b"POST /v2/nvcf/functions HTTP/1.1",
            BEARER,
            b"Content-Type: application/json; charset=\xff",
            body=b"{}",
        ),
    ),
]
# refused by Granian itself before any app sees them: a 4xx, though not a problem document
RAW_REFUSED_BY_THE_SERVER = [
    ("raw bad UTF-8 in the path", _raw(b"GET /v2/nvcf/functions/\xff\xfe HTTP/1.1", BEARER)),
    ("raw bad UTF-8 in the query", _raw(b"GET /v2/nvcf/functions?x=\xff HTTP/1.1", BEARER)),
    ("Content-Length not a number", _raw(b"GET /v2/nvcf/functions HTTP/1.1", b"Content-Length: abc")),
    ("headers over the limit", _raw(b"GET /v2/nvcf/functions HTTP/1.1", b"X-Big: " + b"a" * (256 * 1024))),
]


def test_malformed_bytes_get_a_4xx(up: UpProcess, active_function: dict[str, Any]) -> None:
    failures = []
    for cases, problem_expected in ((RAW_MALFORMED, True), (RAW_REFUSED_BY_THE_SERVER, False)):
        for case, template in cases:
            request = template.replace(b"%s", active_function["id"].encode()).replace(b"%k", KEY.encode())
            sock = _connect(up)
            try:
                sock.sendall(request)
                status, headers, body = _read_answer(sock)
            except OSError as error:
                failures.append(f"{case}: {error!r}")
                continue
            finally:
                sock.close()
            if not 400 <= status < 500 or (
                problem_expected and headers.get("content-type") not in (PROBLEM, "application/json")
            ):
                failures.append(f"{case}: {status} {headers.get('content-type')} {body[:200]!r}")
    assert not failures, "\n".join(failures)


# --- quotas -----------------------------------------------------------------------------------------


def _asset(client: httpx.Client) -> httpx.Response:
    return client.post(
        "/v2/nvcf/assets", json={"contentType": "application/octet-stream", "description": "q"}
    )


def test_asset_quotas(up: UpProcess) -> None:
    with httpx.Client(base_url=up.url, headers=AUTH, timeout=30) as client:
        for asset_id in [a["assetId"] for a in client.get("/v2/nvcf/assets").json()["assets"]]:
            client.delete(f"/v2/nvcf/assets/{asset_id}")
        first = _asset(client).json()
        # one asset over its own limit: 413, announced by Content-Length or found while reading
        too_big = httpx.put(first["uploadUrl"], content=b"x" * (MAX_ASSET + 1), timeout=30)
        assert too_big.status_code == 413 and too_big.headers["content-type"] == PROBLEM

        def chunks(size: int) -> Iterator[bytes]:
            for _ in range(size // 65536):
                yield b"x" * 65536

        streamed = httpx.put(first["uploadUrl"], content=chunks(MAX_ASSET + 65536), timeout=30)
        assert streamed.status_code == 413
        assert httpx.put(first["uploadUrl"], content=b"x" * (200 * 1024), timeout=30).status_code == 200

        # the account's bytes: 200 KiB stored, another 200 KiB would pass 384 KiB
        second = _asset(client).json()
        over = httpx.put(second["uploadUrl"], content=b"x" * (200 * 1024), timeout=30)
        assert over.status_code == 429 and over.headers["content-type"] == PROBLEM
        assert "limit of" in over.json()["detail"]
        assert httpx.put(second["uploadUrl"], content=b"x" * (100 * 1024), timeout=30).status_code == 200

        # the account's asset count
        assert _asset(client).status_code == 200
        refused = _asset(client)
        assert refused.status_code == 429 and refused.json()["status"] == 429
        assert f"limit is {MAX_ASSETS}" in refused.json()["detail"]
        client.delete(f"/v2/nvcf/assets/{first['assetId']}")
        assert _asset(client).status_code == 200  # deleting frees a place


# a sweep over every operation of the OpenAPI document: hostile ids in every path parameter and
# hostile bodies; whatever the operation, the answer is never a 5xx
HOSTILE_IDS = ["not-a-uuid", "%FF%FE", "%00", "a" * 300, "..", "00000000-0000-0000-0000-00000000000Z"]
HOSTILE_BODIES = [
    DEEP,
    b'{"a": "\xff\xfe"}',
    b"[]",
    b'{"a":',
    b'"x"',
    b"null",
    b"{" + b'"k": 1,' * 20000 + b'"k": 1}',
]


def _fill(template: str, value: dict[str, str] | str) -> str:
    path = template
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        name = path[start + 1 : end]
        filler = value if isinstance(value, str) else value.get(name, value["*"])
        path = path[:start] + filler + path[end + 1 :]
    return path


def test_no_operation_answers_5xx_to_hostile_ids_or_bodies(
    up: UpProcess, active_function: dict[str, Any]
) -> None:
    document = httpx.get(f"{up.url}/v3/openapi").json()
    real = {
        "functionId": active_function["id"],
        "versionId": active_function["versionId"],
        "functionVersionId": active_function["versionId"],
        "*": active_function["id"],
    }
    failures = []
    with httpx.Client(base_url=up.url, headers=AUTH, timeout=30) as client:
        for template, operations in document["paths"].items():
            for method in operations:
                if method not in ("get", "post", "put", "patch", "delete"):
                    continue
                # real ids reach the body's validation; they are not deleted (other tests use them)
                fillers: list[dict[str, str] | str] = [*HOSTILE_IDS, *([real] if method != "delete" else [])]
                for hostile in fillers:
                    path = _fill(template, hostile)
                    bodies = HOSTILE_BODIES if method in ("post", "put", "patch") else [None]
                    for body in bodies:
                        r = client.request(
                            method.upper(), path, content=body, headers={"Content-Type": "application/json"}
                        )
                        if r.status_code >= 500:
                            failures.append(f"{method.upper()} {path[:80]}: {r.status_code} {r.text[:120]}")
    assert not failures, "\n".join(failures[:40])
