"""The defensive worker: a raw envelope published on a version's queue (what anyone who can publish there
can do) is checked before the worker acts on it, and the files a function leaves are never followed.

Real nats-server, real worker (RequestPuller), real function process; the hostile messages are published
with a plain NATS client, not through the gateway.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from fnplane.shared import subjects, wire


def _envelope(fn: dict, request_id: str, reply_to: str, **changes: object) -> dict:
    now = time.time()
    doc: dict[str, object] = {
        "requestId": request_id,
        "functionId": fn["id"],
        "functionVersionId": fn["versionId"],
        "ncaId": "nvcf-default",
        "mode": "pexec",
        "method": "POST",
        "path": "/files",
        "headers": [["Content-Type", "application/json"]],
        "replyTo": reply_to,
        "bodyFrom": reply_to + ".body",
        "requestTime": now,
        "pollSeconds": 10.0,
        "expiresAt": now + 60,
        "functionName": fn["name"],
    }
    doc.update(changes)
    return doc


async def _publish_raw(stack, subject: str, envelope: dict, body: bytes) -> wire.HeadMessage | None:
    """Publish one request message as a raw client with the gateway's grants would (a forged envelope
    needs nothing less); the head the worker answers (None: none)."""
    nc = await stack.bus.gateway_client()
    try:
        replies = await nc.subscribe(str(envelope["replyTo"]))
        headers = {wire.HDR_MSG_ID: str(uuid.uuid4()), wire.HDR_ENVELOPE: json.dumps(envelope)}
        await nc.jetstream().publish(subject, body, headers=headers)
        try:
            msg = await replies.next_msg(timeout=10)
        except TimeoutError:
            return None
        answer = wire.decode_response(msg.headers, msg.data)
        assert isinstance(answer, wire.HeadMessage)
        return answer
    finally:
        await nc.close()


async def _queue_is_empty(stack, version_id: str) -> bool:
    nc = await stack.bus.gateway_client()
    try:
        info = await nc.jetstream().stream_info(subjects.request_stream(version_id))
        return info.state.messages == 0
    finally:
        await nc.close()


def _tree(root: Path) -> set[str]:
    """Every path under the test's directory but the nats-server's store (`bus/nats`: it changes by
    itself)."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if "nats" not in p.relative_to(root).parts[:2]}


@pytest.fixture
async def deployed(stack):
    fn = await stack.deploy(name="defensive", inference_url="/files")
    port = await stack.function_process()
    await stack.worker(fn, port)
    return fn


@pytest.mark.parametrize(
    ("request_id", "changes", "code"),
    [
        ("../../victim", {}, 901),  # path-like request id: would name a directory outside the root
        ("victim", {}, 901),
        (None, {"functionId": "../fn"}, 904),
        (None, {"assets": [{"assetId": "../../victim/planted", "objectName": "x"}]}, 900),
        (None, {"path": "/files HTTP/1.1\r\nHost: x\r\n\r\nGET /"}, 902),
        (None, {"headers": [["X-Evil", "a\r\nInjected: 1"]]}, 900),
        (None, {"ncaId": ""}, 906),
    ],
)
async def test_a_malformed_envelope_is_refused_with_its_error_code_and_touches_no_file(
    stack, deployed, tmp_path: Path, request_id: str | None, changes: dict, code: int
) -> None:
    fn = deployed
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    before = _tree(tmp_path)
    rid = request_id or str(uuid.uuid4())
    reply = subjects.gateway_response_inbox("test", uuid.uuid4().hex)
    envelope = _envelope(fn, rid, reply, **changes)
    head = await _publish_raw(
        stack, subjects.request_subject(fn["versionId"], rid), envelope, b'{"name": "x.bin"}'
    )
    assert head is not None, "the worker did not answer"
    assert head.head.status == 400
    problem = json.loads(head.body)
    assert problem["errorCode"] == code, problem
    assert problem["type"].startswith("urn:nvcf-worker-service:problem-details:")
    # acked: nothing is redelivered, and no file appeared or vanished anywhere under the test's directory
    await asyncio.sleep(0.5)
    assert await _queue_is_empty(stack, fn["versionId"])
    assert (victim / "keep.txt").read_text() == "precious"
    assert _tree(tmp_path) == before


async def test_a_message_on_another_requests_subject_is_refused(stack, deployed) -> None:
    fn = deployed
    rid = str(uuid.uuid4())
    reply = subjects.gateway_response_inbox("test", uuid.uuid4().hex)
    # the envelope names one request, the subject another (a replayed or forged message)
    subject = subjects.request_subject(fn["versionId"], str(uuid.uuid4()))
    head = await _publish_raw(stack, subject, _envelope(fn, rid, reply), b"{}")
    assert head is not None and head.head.status == 400
    assert json.loads(head.body)["errorCode"] == 901


async def test_a_well_formed_raw_envelope_still_runs(stack, deployed) -> None:
    """The checks refuse only what is malformed: the same raw message with sound ids is served."""
    fn = deployed
    rid = str(uuid.uuid4())
    reply = subjects.gateway_response_inbox("test", uuid.uuid4().hex)
    # `/echo` on this function: an ordinary answer, no large result
    envelope = _envelope(fn, rid, reply, path="/echo")
    head = await _publish_raw(stack, subjects.request_subject(fn["versionId"], rid), envelope, b'{"ok": 1}')
    assert head is not None and head.head.status == 200
    assert json.loads(head.body) == {"ok": 1}


async def test_a_symlink_planted_in_the_output_dir_is_not_followed(stack, deployed, tmp_path: Path) -> None:
    fn = deployed
    secret = tmp_path / "secret.txt"
    secret.write_text("the platform's secret")
    r = await stack.client.post(
        f"/v2/nvcf/pexec/functions/{fn['id']}", json={"name": "result.bin", "link": str(secret)}
    )
    assert r.status_code == 302, r.text
    got = await stack.client.get(r.headers["location"])
    assert got.status_code == 200
    with zipfile.ZipFile(io.BytesIO(got.content)) as zf:
        names = zf.namelist()
        contents = b"".join(zf.read(name) for name in names)
    assert "result.bin" in names and "result.bin.link" not in names
    assert b"the platform's secret" not in contents
    # the request's directory is gone, the link's target is untouched
    assert secret.read_text() == "the platform's secret"
    requests = stack.tmp / "requests"
    assert not any(requests.iterdir())
    assert oct(os.stat(requests).st_mode & 0o777) == "0o700"
