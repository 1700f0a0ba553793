"""An accepted request is never silently lost or left hanging (issue 7, durability):

* a worker that fails to deliver a result (here: the object store is gone) answers `errored` at once,
  to a waiting caller and to a polling one, instead of acking and leaving them to their window's end;
* a detached request ends at its deadline (FNPLANE_GATEWAY_REQUEST_TTL_S): the call is stopped, the
  caller gets `errored`, the slot serves the next request;
* a detached request's status record outlives a job longer than the record's TTL;
* a result the client downloaded only halfway can be downloaded again.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

from invocation_stack import InvocationStack

from fnplane.invocation.settings import GatewaySettings
from fnplane.shared import subjects
from polling import wait_for

SLOT = {"max_concurrency": 1}


def pattern(size: int) -> bytes:
    block = bytes(range(256)) * 256
    reps, rest = divmod(size, len(block))
    return block * reps + block[:rest]


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **settings: float) -> AsyncIterator[InvocationStack]:
    stack = InvocationStack(tmp_path)
    try:
        await stack.start(GatewaySettings(auth_cache_ttl_s=0.5, worker_silence_s=5.0, **settings))
        yield stack
    finally:
        await stack.aclose()


async def deployed(stack: InvocationStack, inference_url: str, **worker_settings: float) -> dict:
    fn = await stack.deploy(name="durable", inference_url=inference_url)
    port = await stack.function_process()
    await stack.worker(fn, port, **worker_settings)
    return fn


async def drop_object_store(stack: InvocationStack, version_id: str) -> None:
    """The version's result store is gone (a worker may not create it again)."""
    nc = await stack.bus.gateway_client()
    try:
        await nc.jetstream().delete_object_store(subjects.result_bucket(version_id))
    finally:
        await nc.close()


async def test_a_failed_result_upload_answers_a_waiting_caller_at_once(tmp_path):
    async with running(tmp_path) as stack:
        fn = await deployed(stack, "/large")
        await stack.gateway.bus.ensure_stream(fn["versionId"])  # the gateway will not create it again
        await drop_object_store(stack, fn["versionId"])
        # 6 MiB: over the direct-response limit, so the worker must upload a zip for the 302
        r = await stack.client.post(
            f"/v2/nvcf/pexec/functions/{fn['id']}", json={}, headers={"NVCF-POLL-SECONDS": "30"}
        )
        assert r.status_code == 500, r.text  # not a 504 after 30 s
        assert r.headers["nvcf-status"] == "errored"
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["errorCode"] == 911  # utils: large response upload failure


async def test_a_failed_result_write_answers_a_polling_caller_at_once(tmp_path):
    async with running(tmp_path) as stack:
        fn = await deployed(stack, "/large")
        r = await stack.client.post(
            f"/v2/nvcf/pexec/functions/{fn['id']}",
            json={"bytes": 400_000, "delay": 2},  # over the inline limit: the result is an object
            headers={"NVCF-POLL-SECONDS": "1"},
        )
        assert r.status_code == 202, r.text
        rid = r.headers["nvcf-reqid"]
        await drop_object_store(stack, fn["versionId"])
        status = await stack.client.get(f"/v2/nvcf/pexec/status/{rid}", headers={"NVCF-POLL-SECONDS": "20"})
        assert status.status_code == 500, status.text
        assert status.headers["nvcf-status"] == "errored"
        assert status.json()["errorCode"] == 911


async def test_a_detached_request_is_stopped_at_its_deadline_and_frees_its_slot(tmp_path):
    async with running(tmp_path, request_ttl_s=3.0) as stack:
        fn = await deployed(stack, "/slow", **SLOT)
        marker = tmp_path / "slow-call"
        r = await stack.client.post(
            f"/v2/nvcf/pexec/functions/{fn['id']}",
            json={"seconds": 60, "marker": str(marker)},
            headers={"NVCF-POLL-SECONDS": "1"},
        )
        assert r.status_code == 202, r.text
        rid = r.headers["nvcf-reqid"]
        status = await stack.client.get(f"/v2/nvcf/pexec/status/{rid}", headers={"NVCF-POLL-SECONDS": "20"})
        assert status.status_code == 504, status.text
        assert status.headers["nvcf-status"] == "errored"

        async def call_cut() -> bool:
            return await asyncio.to_thread(os.path.exists, f"{marker}.cancelled")

        await wait_for(call_cut, 10.0)  # the function's call was stopped
        # the only slot is free again
        again = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", json={"seconds": 0})
        assert again.status_code == 200, again.text


async def test_the_status_record_outlives_a_job_longer_than_its_ttl(tmp_path):
    async with running(tmp_path, status_ttl_s=2.0) as stack:
        fn = await deployed(stack, "/slow", **SLOT)
        r = await stack.client.post(
            f"/v2/nvcf/pexec/functions/{fn['id']}", json={"seconds": 6}, headers={"NVCF-POLL-SECONDS": "1"}
        )
        assert r.status_code == 202, r.text
        rid = r.headers["nvcf-reqid"]
        started = time.monotonic()
        answers = []
        while True:
            status = await stack.client.get(
                f"/v2/nvcf/pexec/status/{rid}", headers={"NVCF-POLL-SECONDS": "1"}
            )
            answers.append(status.status_code)
            if status.status_code != 202:
                break
        assert answers[-1] == 200, answers  # never 404: the worker kept the record alive
        assert status.json()["slept"] == 6
        assert time.monotonic() - started > 2.0  # the job did run past the record's TTL


async def test_an_interrupted_download_of_an_object_result_can_be_repeated(tmp_path):
    async with running(tmp_path) as stack:
        fn = await deployed(stack, "/large")
        size = 600_000
        r = await stack.client.post(
            f"/v2/nvcf/pexec/functions/{fn['id']}",
            json={"bytes": size, "delay": 1.5},
            headers={"NVCF-POLL-SECONDS": "1"},
        )
        assert r.status_code == 202, r.text
        rid = r.headers["nvcf-reqid"]
        url = f"/v2/nvcf/pexec/status/{rid}"
        async with stack.client.stream("GET", url, headers={"NVCF-POLL-SECONDS": "20"}) as cut:
            assert cut.status_code == 200
            async for _ in cut.aiter_raw(65536):
                break  # the client goes away after the first bytes
        again = await stack.client.get(url)
        assert again.status_code == 200, again.text
        assert again.content == pattern(size)


async def test_an_interrupted_download_of_a_large_result_can_be_repeated(tmp_path):
    async with running(tmp_path) as stack:
        fn = await deployed(stack, "/large")
        r = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", json={})
        assert r.status_code == 302, r.text
        location = r.headers["location"]
        async with stack.client.stream("GET", location) as cut:
            assert cut.status_code == 200
            async for _ in cut.aiter_raw(65536):
                break
        full = await stack.client.get(location)
        assert full.status_code == 200
        rid = r.headers["nvcf-reqid"]
        with zipfile.ZipFile(io.BytesIO(full.content)) as zf:
            assert zf.read(f"{rid}.response") == pattern(6 * 1024 * 1024)
