"""Asynchronous submission, cancellation, idempotency keys and back-pressure through the real platform
(`fnplane up`, its agent and examples/inv_function.py with `maxRequestConcurrency: 1`).

What the function served is read from its own log (`/slow` appends the NVCF-REQID of every call it
takes to the file named by `log`), and a call it was made to abort leaves `<marker>.cancelled`.
"""

from __future__ import annotations

import concurrent.futures
import secrets
import time
import uuid
from pathlib import Path

import httpx
from up_process import UpProcess, deploy_inv_function

ASYNC = {"Prefer": "respond-async"}
SPEC = {"gpu": "L40S", "instanceType": "LOCAL.GPU.L40S_1x", "minInstances": 1, "maxInstances": 1}


def deploy(up: UpProcess, headers: dict[str, str]) -> dict:
    return deploy_inv_function(up, headers, name="async-e2e", inference_url="/slow", max_concurrency=1)


def start(tmp_path: Path, start_up: type[UpProcess], **env: str) -> tuple[UpProcess, dict[str, str]]:
    key = "nvapi-" + secrets.token_urlsafe(32)
    up = start_up(tmp_path / "home", env={"FNPLANE_ADMIN_KEY": key, **env})
    up.wait_healthy()
    return up, {"Authorization": f"Bearer {key}"}


def served(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def wait_for(condition, timeout_s: float = 30.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout_s} s")


def result(client: httpx.Client, kind: str, rid: str) -> httpx.Response:
    """Long-poll the status endpoint until it is no longer 202."""
    for _ in range(30):
        r = client.get(f"/v2/nvcf/{kind}/status/{rid}", headers={"NVCF-POLL-SECONDS": "5"})
        if r.status_code != 202:
            return r
    raise AssertionError(f"{rid} still 202")


def test_async_submission_cancel_and_idempotency(tmp_path: Path, start_up: type[UpProcess]) -> None:
    up, auth = start(tmp_path, start_up)
    fn = deploy(up, auth)
    fid = fn["id"]
    log = tmp_path / "served.log"
    pexec = f"/v2/nvcf/pexec/functions/{fid}"
    with httpx.Client(base_url=up.url, headers=auth, timeout=60) as client:
        # warm: the instance's worker pulls
        r = client.post(pexec, headers={"NVCF-POLL-SECONDS": "30"}, json={"seconds": 0})
        assert r.status_code == 200, r.text

        # --- respond-async: 202 at once, the result later -----------------------------------------
        began = time.monotonic()
        r = client.post(pexec, headers=ASYNC, json={"seconds": 2, "log": str(log)})
        took = time.monotonic() - began
        assert r.status_code == 202, r.text
        assert took < 1.0, took  # the function takes 2 s: the answer did not wait for it
        assert r.headers["nvcf-status"] == "pending-evaluation"
        assert r.headers["preference-applied"] == "respond-async"
        rid = r.headers["nvcf-reqid"]
        assert r.headers["location"].endswith(f"/v2/nvcf/pexec/status/{rid}")
        s = result(client, "pexec", rid)
        assert s.status_code == 200 and s.json()["slept"] == 2
        assert s.headers["nvcf-reqid"] == rid and s.headers["nvcf-status"] == "fulfilled"
        assert served(log) == [rid]

        # the exec envelope
        r = client.post(f"/v2/nvcf/exec/functions/{fid}", headers=ASYNC, json={"requestBody": {"seconds": 0}})
        assert r.status_code == 202, r.text
        doc = r.json()
        assert doc["status"] == "pending-evaluation" and doc["reqId"] == r.headers["nvcf-reqid"]
        s = result(client, "exec", doc["reqId"])
        assert s.status_code == 200, s.text
        assert s.json()["status"] == "fulfilled" and s.json()["response"]["slept"] == 0

        # --- a queued request: position, cancel, never runs -----------------------------------------
        running_marker = tmp_path / "running"
        r = client.post(
            pexec, headers=ASYNC, json={"seconds": 60, "marker": str(running_marker), "log": str(log)}
        )
        assert r.status_code == 202
        running = r.headers["nvcf-reqid"]
        wait_for(running_marker.exists, what="the long request running")
        r = client.post(pexec, headers=ASYNC, json={"seconds": 0, "log": str(log)})
        assert r.status_code == 202
        queued = r.headers["nvcf-reqid"]
        s = client.get(f"/v2/nvcf/pexec/status/{queued}", headers={"NVCF-POLL-SECONDS": "1"})
        assert s.status_code == 202 and s.headers["nvcf-status"] == "pending-evaluation"
        p = client.get(f"/v2/nvcf/queues/{queued}/position")
        assert p.status_code == 200, p.text
        assert p.json()["positionInQueue"] >= 1 and p.json()["functionVersionId"] == fn["versionId"]
        d = client.delete(f"/v2/nvcf/pexec/status/{queued}")
        assert d.status_code == 204, d.text
        s = client.get(f"/v2/nvcf/pexec/status/{queued}")
        assert s.status_code == 410, s.text
        assert s.headers["nvcf-status"] == "rejected"
        assert s.headers["content-type"] == "application/problem+json"
        assert s.json()["status"] == 410
        assert client.get(f"/v2/nvcf/queues/{queued}/position").status_code == 404
        # cancelling again is a no-op
        assert client.delete(f"/v2/nvcf/pexec/status/{queued}").status_code == 204

        # --- a running request: cancel aborts the call and frees the slot ---------------------------
        d = client.delete(f"/v2/nvcf/pexec/status/{running}")
        assert d.status_code == 204, d.text
        wait_for(Path(f"{running_marker}.cancelled").exists, what="the function's call aborted")
        began = time.monotonic()
        r = client.post(pexec, headers={"NVCF-POLL-SECONDS": "20"}, json={"seconds": 0, "log": str(log)})
        assert r.status_code == 200, r.text  # the 60 s call no longer holds the only slot
        assert time.monotonic() - began < 10
        follower = r.headers["nvcf-reqid"]
        s = client.get(f"/v2/nvcf/pexec/status/{running}")
        assert s.status_code == 410 and s.headers["nvcf-status"] == "rejected"

        # --- unknown ids ----------------------------------------------------------------------------
        unknown = str(uuid.uuid4())
        assert client.delete(f"/v2/nvcf/pexec/status/{unknown}").status_code == 404
        assert client.get(f"/v2/nvcf/pexec/status/{unknown}").status_code == 404
        assert client.delete("/v2/nvcf/pexec/status/not-a-uuid").status_code == 404
        # the cancelled queued request never ran; every other one ran once
        assert queued not in served(log)
        assert served(log) == [rid, running, follower]

        # --- idempotency keys -------------------------------------------------------------------------
        key = {"Idempotency-Key": f'"{uuid.uuid4()}"', "NVCF-POLL-SECONDS": "30"}
        body = {"seconds": 1, "log": str(log)}
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            both = list(pool.map(lambda _: client.post(pexec, headers=key, json=body), range(2)))
        assert [b.status_code for b in both] == [200, 200], [b.text for b in both]
        keyed = both[0].headers["nvcf-reqid"]
        assert both[1].headers["nvcf-reqid"] == keyed and both[0].json() == both[1].json()
        # later: replayed from the key's record
        again = client.post(pexec, headers=key, json=body)
        assert again.status_code == 200 and again.headers["nvcf-reqid"] == keyed
        assert again.json() == both[0].json()
        assert served(log).count(keyed) == 1 and len(served(log)) == 4
        # the same key with another body, or another path: 422 naming the header
        bad = client.post(pexec, headers=key, json={"seconds": 2, "log": str(log)})
        assert bad.status_code == 422, bad.text
        assert bad.json()["field"] == "Idempotency-Key" and "Idempotency-Key" in bad.json()["detail"]
        bad = client.post(f"/v2/nvcf/exec/functions/{fid}", headers=key, json={"requestBody": body})
        assert bad.status_code == 422

        # through the status path: async with a key, fetched, then retried
        key2 = {"Idempotency-Key": f'"{uuid.uuid4()}"'}
        r = client.post(pexec, headers={**key2, **ASYNC}, json=body)
        assert r.status_code == 202
        first = r.headers["nvcf-reqid"]
        r2 = client.post(pexec, headers={**key2, **ASYNC}, json=body)
        assert r2.headers["nvcf-reqid"] == first  # joins the queued one: its 202
        s = result(client, "pexec", first)
        assert s.status_code == 200
        retry = client.post(pexec, headers=key2, json=body)
        assert retry.status_code == 200 and retry.headers["nvcf-reqid"] == first
        assert retry.json() == s.json()
        assert served(log).count(first) == 1 and len(served(log)) == 5

        # direct invocation with a key: the function's answer, once
        domain = up.url.split("://", 1)[1]
        direct = {"Host": f"{fid}.invocation.{domain}", "Idempotency-Key": '"direct-1"'}
        d1 = client.post("/slow", headers=direct, json={"seconds": 0, "log": str(log)})
        d2 = client.post("/slow", headers=direct, json={"seconds": 0, "log": str(log)})
        assert d1.status_code == d2.status_code == 200, d1.text
        assert d1.headers["nvcf-reqid"] == d2.headers["nvcf-reqid"] and d1.json() == d2.json()
        assert served(log).count(d1.headers["nvcf-reqid"]) == 1 and len(served(log)) == 6
        assert client.post("/slow", headers=direct, json={"seconds": 1}).status_code == 422
        bad_key = client.post(pexec, headers={"Idempotency-Key": "\x7f" * 3}, json=body)
        assert bad_key.status_code == 400

        # without Prefer nothing changes: a request nobody picks up in its window is 504 and purged
        r = client.post(pexec, headers=ASYNC, json={"seconds": 5, "marker": str(running_marker) + "2"})
        slot_holder = r.headers["nvcf-reqid"]
        wait_for(Path(str(running_marker) + "2").exists, what="the slot taken")
        r = client.post(pexec, headers={"NVCF-POLL-SECONDS": "1"}, json={"seconds": 0, "log": str(log)})
        assert r.status_code == 504
        timed_out = r.headers["nvcf-reqid"]
        # a request queued after it is served (FIFO), and the purged one never ran
        r = client.post(pexec, headers={"NVCF-POLL-SECONDS": "30"}, json={"seconds": 0, "log": str(log)})
        assert r.status_code == 200
        assert result(client, "pexec", slot_holder).status_code == 200
        assert timed_out not in served(log) and len(served(log)) == 7
    assert up.stop() == 0


def test_back_pressure(tmp_path: Path, start_up: type[UpProcess]) -> None:
    up, auth = start(
        tmp_path,
        start_up,
        FNPLANE_GATEWAY_MAX_QUEUED_REQUESTS="2",
        FNPLANE_GATEWAY_MAX_CONCURRENT_INVOCATIONS="1",
        FNPLANE_GATEWAY_OVERLOAD_RETRY_AFTER_S="7",
    )
    fn = deploy(up, auth)
    pexec = f"/v2/nvcf/pexec/functions/{fn['id']}"
    marker = tmp_path / "running"
    with httpx.Client(base_url=up.url, headers=auth, timeout=60) as client:
        for _ in range(2):  # the queue drains at a measurable rate
            r = client.post(pexec, headers={"NVCF-POLL-SECONDS": "30"}, json={"seconds": 0})
            assert r.status_code == 200, r.text

        # the gateway at its global limit of one invocation: 503 with the configured Retry-After
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            held = pool.submit(
                client.post,
                pexec,
                json={"seconds": 2, "marker": str(marker)},
                headers={"NVCF-POLL-SECONDS": "30"},
            )
            wait_for(marker.exists, what="the first invocation running")
            r = client.post(pexec, json={"seconds": 0})
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "7"
            assert r.headers["content-type"] == "application/problem+json"
            assert held.result().status_code == 200

        # a full queue (one request running, one waiting): 429 with Retry-After from the drain rate
        running = client.post(pexec, headers=ASYNC, json={"seconds": 5})
        assert running.status_code == 202
        # the worker has it (position 0) before the next one queues: else that one would find it
        # still waiting, the queue full
        wait_for(
            lambda: (
                client.get(f"/v2/nvcf/queues/{running.headers['nvcf-reqid']}/position")
                .json()
                .get("positionInQueue")
                == 0
            ),
            what="the first request picked up",
        )
        assert client.post(pexec, headers=ASYNC, json={"seconds": 0}).status_code == 202
        r = client.post(pexec, headers=ASYNC, json={"seconds": 0})
        assert r.status_code == 429, r.text
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["content-type"] == "application/problem+json"
        r = client.post(pexec, headers={"NVCF-POLL-SECONDS": "5"}, json={"seconds": 0})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert up.stop() == 0


def test_undeploy_answers_the_requests_still_queued_at_once(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    """NVCF deletes a version's queue with its deployment: what waited in it is answered 404 now, not
    at the end of a poll window or an hour later, and never runs on a later deployment."""
    up, auth = start(tmp_path, start_up)
    fn = deploy(up, auth)
    fid, vid = fn["id"], fn["versionId"]
    log = tmp_path / "served.log"
    pexec = f"/v2/nvcf/pexec/functions/{fid}"
    with httpx.Client(base_url=up.url, headers=auth, timeout=60) as client:
        assert client.post(pexec, headers={"NVCF-POLL-SECONDS": "30"}, json={"seconds": 0}).status_code == 200
        marker = tmp_path / "running"
        r = client.post(pexec, headers=ASYNC, json={"seconds": 5, "marker": str(marker), "log": str(log)})
        assert r.status_code == 202
        running = r.headers["nvcf-reqid"]
        wait_for(marker.exists, what="the request that holds the only slot running")
        r = client.post(pexec, headers=ASYNC, json={"seconds": 0, "log": str(log)})
        assert r.status_code == 202
        detached = r.headers["nvcf-reqid"]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(
                client.post, pexec, headers={"NVCF-POLL-SECONDS": "30"}, json={"seconds": 0, "log": str(log)}
            )
            depth = f"/v2/nvcf/queues/functions/{fid}/versions/{vid}"
            wait_for(
                lambda: client.get(depth).json()["queues"][0]["queueDepth"] == 2, what="two requests queued"
            )
            began = time.monotonic()
            undeployed = client.delete(f"/v2/nvcf/deployments/functions/{fid}/versions/{vid}")
            assert undeployed.status_code == 200, undeployed.text
            answer = waiting.result(timeout=20)
            assert time.monotonic() - began < 10  # not the end of its 30 s window
        assert answer.status_code == 404, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert "was undeployed before the request ran" in answer.json()["detail"]
        s = client.get(f"/v2/nvcf/pexec/status/{detached}", headers={"NVCF-POLL-SECONDS": "5"})
        assert s.status_code == 404, s.text
        assert s.headers["nvcf-status"] == "errored" and s.headers["nvcf-reqid"] == detached
        assert "was undeployed before the request ran" in s.json()["detail"]
        # the request the worker held is finished: its worker drains before it stops
        s = result(client, "pexec", running)
        assert s.status_code == 200 and s.json()["slept"] == 5
        # deployed again, the version runs new requests, and none of the old ones
        r = client.post(
            f"/v2/nvcf/deployments/functions/{fid}/versions/{vid}",
            json={"deploymentSpecifications": [SPEC]},
        )
        assert r.status_code == 200, r.text
        version = f"/v2/nvcf/functions/{fid}/versions/{vid}"
        wait_for(lambda: client.get(version).json()["function"]["status"] == "ACTIVE", what="ACTIVE again")
        r = client.post(pexec, headers={"NVCF-POLL-SECONDS": "60"}, json={"seconds": 0, "log": str(log)})
        assert r.status_code == 200, r.text
        assert served(log) == [running, r.headers["nvcf-reqid"]]


def test_a_request_running_when_its_version_is_deleted_finishes(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    """Deleting a version tells the gateways (its cached grants go, its queue is answered), but the
    request its worker holds is not cut: the worker finishes it before the instance stops."""
    up, auth = start(tmp_path, start_up)
    fn = deploy(up, auth)
    fid, vid = fn["id"], fn["versionId"]
    with httpx.Client(base_url=up.url, headers=auth, timeout=60) as client:
        # a second version keeps the function (a function without versions is gone, and with it
        # every grant on it)
        body = {"name": "async-e2e", "inferenceUrl": "/slow", "inferencePort": 8000, "containerArgs": "true"}
        assert client.post(f"/v2/nvcf/functions/{fid}/versions", json=body).status_code == 200
        pexec = f"/v2/nvcf/pexec/functions/{fid}/versions/{vid}"
        marker = tmp_path / "running"
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(
                client.post,
                pexec,
                headers={"NVCF-POLL-SECONDS": "30"},
                json={"seconds": 3, "marker": str(marker)},
            )
            wait_for(marker.exists, what="the request running")
            assert client.delete(f"/v2/nvcf/functions/{fid}/versions/{vid}").status_code == 204
            answer = running.result(timeout=20)
        assert answer.status_code == 200, answer.text
        assert answer.json()["slept"] == 3
        assert client.post(pexec, json={"seconds": 0}).status_code == 404  # the version is gone
