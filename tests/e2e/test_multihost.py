"""fnplane on four hosts (tests/e2e/multihost.py: network namespaces, a 3-node NATS cluster with
JetStream replicas 3, two control + gateway + gRPC-proxy hosts, two agent hosts, one PostgreSQL):
a version's instances spread over both agents by capacity; invocations through either gateway and
either gRPC proxy reach them; a 202 started through one gateway is fetched through the other."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import grpc
import psutil
import pytest
from multihost import AGENTS, MultiHost, postgres_database
from roles import wait_for
from up_process import REPO, grpc_function_body

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.xdist_group("multihost"),
    pytest.mark.timeout(300),
]

GRPC_FUNCTION = REPO / "tests" / "e2e" / "grpc_function.py"


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiHost]:
    with postgres_database() as url, MultiHost(tmp_path_factory.mktemp("multihost"), url) as platform:
        yield platform


def functions_on(hosts: MultiHost, host: str, script: str) -> int:
    """Function processes running `script` in `host`'s network namespace (the sandbox's bwrap aside)."""
    pids = hosts.net.pids(host)
    count = 0
    for pid in pids:
        try:
            cmdline = psutil.Process(pid).cmdline()
        except psutil.NoSuchProcess:
            continue
        if cmdline and "bwrap" not in cmdline[0] and any(script in part for part in cmdline):
            count += 1
    return count


def test_instances_spread_over_both_agents_and_either_gateway_serves_them(hosts: MultiHost) -> None:
    body = {
        "name": "echo-multihost",
        "inferenceUrl": "/echo",
        "inferencePort": 8000,
        "containerImage": "local/echo",
        "containerArgs": f"{sys.executable} examples/echo_server.py",
    }
    fid, _ = hosts.deploy(body, 4)
    # the most free GPUs win (control/services/placement.py): two instances on each agent
    assert {host: functions_on(hosts, host, "echo_server.py") for host in AGENTS} == {"a1": 2, "a2": 2}
    for host in ("c1", "c2"):
        with hosts.gateway(host) as gateway:
            for i in range(10):
                pexec = gateway.post(f"/v2/nvcf/pexec/functions/{fid}", json={"n": i, "via": host})
                assert pexec.status_code == 200, pexec.text
                assert pexec.json() == {"echo": {"n": i, "via": host}, "path": "/echo"}
            direct = gateway.post(
                "/any/path?x=1", json={"direct": host}, headers={"Host": f"{fid}.invocation.localhost"}
            )
            assert direct.status_code == 200, direct.text
            assert direct.json()["echo"] == {"direct": host}


def test_a_202_through_one_gateway_is_fetched_through_the_other(hosts: MultiHost) -> None:
    body = {
        "name": "slow-multihost",
        "inferenceUrl": "/slow?seconds=3",
        "inferencePort": 8000,
        "containerImage": "example/inv:1",
        "containerArgs": f"{sys.executable} examples/inv_function.py $(PORT)",
    }
    fid, _ = hosts.deploy(body, 1, deploy_at="c1")
    with hosts.gateway("c1") as c1, hosts.gateway("c2") as c2:
        started = c1.post(
            f"/v2/nvcf/pexec/functions/{fid}", json={"x": 1}, headers={"NVCF-POLL-SECONDS": "1"}
        )
        assert started.status_code == 202, started.text
        request_id = started.headers["NVCF-REQID"]
        deadline = time.monotonic() + 30
        while True:
            polled = c2.get(f"/v2/nvcf/pexec/status/{request_id}", headers={"NVCF-POLL-SECONDS": "5"})
            if polled.status_code != 202:
                break
            assert time.monotonic() < deadline, "still 202 after 30 s"
        assert polled.status_code == 200, polled.text
        assert polled.headers["NVCF-REQID"] == request_id


def test_either_grpc_proxy_reaches_the_version_on_the_agent_hosts(hosts: MultiHost) -> None:
    # one session slot per instance: two sessions held at once must be on the two agent hosts
    fid, _ = hosts.deploy(grpc_function_body("grpc-multihost", GRPC_FUNCTION), 2, concurrency=1)
    metadata = (("authorization", f"Bearer {hosts.admin_key}"), ("function-id", fid))
    with (
        grpc.insecure_channel(hosts.grpc_target("c1")) as first,
        grpc.insecure_channel(hosts.grpc_target("c2")) as second,
    ):
        held = [
            channel.unary_unary("/fnplane.test.Fn/Whoami")(b"", metadata=metadata, timeout=30).decode()
            for channel in (first, second)
        ]
    assert len(set(held)) == 2, held
    served_by: set[str] = set()
    for host in ("c1", "c2"):
        # a channel per call: each call is a new session, which any instance may take
        for i in range(12):
            with grpc.insecure_channel(hosts.grpc_target(host)) as channel:
                echo = channel.unary_unary("/fnplane.test.Fn/Echo")(
                    f"{host}-{i}".encode(), metadata=metadata, timeout=30
                )
                assert echo == f"{host}-{i}".encode()
                served_by.add(
                    channel.unary_unary("/fnplane.test.Fn/Whoami")(
                        b"", metadata=metadata, timeout=30
                    ).decode()
                )
    # every call answered by one of the version's two instances (on the agent hosts, over the bus);
    # which instance takes a session one at a time is JetStream's choice: CI saw one take all 24
    assert served_by <= set(held), served_by


def test_an_agent_fails_over_to_the_other_control_replica(hosts: MultiHost) -> None:
    """a1's agent talks to c1 first (its --control-url lists c1, then c2); with c1's replica killed
    it takes its assignments from c2, which holds the lease now: a version placed on a1 through c2
    becomes ACTIVE, and what ran before keeps answering."""
    hosts.kill_role("control-c1")
    try:
        with hosts.control("c2") as c2:
            wait_for(lambda: c2.get("/health").json().get("lease") == "held", 30, "c2 holds the lease")
        body = {
            "name": "echo-on-a1",
            "inferenceUrl": "/echo",
            "inferencePort": 8000,
            "containerImage": "local/echo",
            "containerArgs": f"{sys.executable} examples/echo_server.py",
        }
        # registered and deployed through c2 only, placed on a1 only
        fid, _ = hosts.deploy(body, 1, register_at="c2", deploy_at="c2", clusters=[AGENTS["a1"]])
        with hosts.gateway("c1") as gateway:
            answer = gateway.post(f"/v2/nvcf/pexec/functions/{fid}", json={"on": "a1"})
            assert answer.status_code == 200, answer.text
    finally:
        hosts.start_role("control-c1")
        hosts.wait_healthy("control-c1")
