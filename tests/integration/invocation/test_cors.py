"""CORS as NVCF's path router does it: fully permissive on every path-routed answer (success and error,
Allow-Origin `*`, nvcf-reqid exposed, preflights with Max-Age 86400); host-routed requests, OPTIONS
included, reach the function unchanged and get no CORS headers from the gateway."""

from __future__ import annotations

import uuid

from invocation_stack import host_for

ORIGIN = {"Origin": "https://app.example"}


def assert_permissive(r) -> None:
    assert r.headers["access-control-allow-origin"] == "*", dict(r.headers)
    assert "nvcf-reqid" in r.headers["access-control-expose-headers"].lower()


async def test_preflight_of_every_area_is_answered_by_the_gateway(stack):
    fid = str(uuid.uuid4())
    for path in (
        f"/v2/nvcf/pexec/functions/{fid}",
        f"/v2/nvcf/exec/functions/{fid}",
        f"/v2/nvcf/pexec/status/{fid}",
        "/v2/nvcf/assets",
        f"/v2/nvcf/queues/functions/{fid}",
    ):
        r = await stack.client.options(
            path, headers={**ORIGIN, "Access-Control-Request-Method": "POST", "Authorization": ""}
        )
        assert r.status_code == 204, (path, r.text)
        assert_permissive(r)
        assert r.headers["access-control-max-age"] == "86400"
        assert "POST" in r.headers["access-control-allow-methods"]


async def test_success_and_error_answers_of_the_path_router_allow_any_origin(stack):
    fn = await stack.deploy()
    port = await stack.function_process()
    await stack.worker(fn, port)
    r = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", headers=ORIGIN, json={"a": 1})
    assert r.status_code == 200, r.text
    assert_permissive(r)
    r = await stack.client.post(f"/v2/nvcf/exec/functions/{fn['id']}", json={"requestBody": {"a": 1}})
    assert r.status_code == 200, r.text
    assert_permissive(r)
    # errors: unknown function (404), no credential (401), unknown route, bad asset body
    r = await stack.client.post(f"/v2/nvcf/pexec/functions/{uuid.uuid4()}", json={})
    assert r.status_code == 404
    assert_permissive(r)
    assert r.headers["nvcf-status"] == "errored"
    r = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", headers={"Authorization": ""})
    assert r.status_code == 401
    assert_permissive(r)
    r = await stack.client.get("/v2/nvcf/nothing/here")
    assert r.status_code == 404
    assert_permissive(r)
    r = await stack.client.get("/v2/nvcf/assets")
    assert r.status_code == 200, r.text
    assert_permissive(r)
    r = await stack.client.get(f"/v2/nvcf/queues/functions/{fn['id']}")
    assert r.status_code == 200, r.text
    assert_permissive(r)


async def test_host_routed_requests_options_included_go_to_the_function_unchanged(stack):
    fn = await stack.deploy()
    port = await stack.function_process()
    await stack.worker(fn, port)
    host = {"Host": host_for(fn, stack.url), **ORIGIN}
    r = await stack.client.options("/anything", headers={**host, "Access-Control-Request-Method": "POST"})
    assert r.status_code == 200, r.text
    assert r.json()["method"] == "OPTIONS"  # the function's own /inspect answer
    assert "access-control-allow-origin" not in r.headers
    r = await stack.client.post("/echo", headers=host, content=b"x")
    assert r.status_code == 200 and r.content == b"x"
    assert "access-control-allow-origin" not in r.headers
    assert r.headers["access-control-expose-headers"].lower() == "nvcf-reqid"
