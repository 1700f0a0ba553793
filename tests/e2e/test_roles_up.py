"""Every role its own process (docs/deploy.md): two `fnplane control` replicas on one PostgreSQL and one
NATS, two `fnplane gateway`s, one `fnplane agent`, each with its own NATS credentials from
`fnplane nats-creds`; the lease holder is killed with SIGKILL and the other replica takes over."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from roles import (
    BIN,
    FNPLANE,
    RoleProcess,
    deploy,
    echo_function,
    health,
    nats_material,
    shared_secret,
    status_of,
    wait_for,
)
from up_process import REPO, assert_all_gone, free_port, function_processes, new_api_key, wait_for_port

pytestmark = pytest.mark.postgres

START_TIMEOUT_S = 60.0
# a replica replaces a dead holder within its lease poll interval (1 s here) and its next reconcile
# pass; the bound is generous for two shared cores, not a measurement
TAKEOVER_BOUND_S = 30.0
# an undeployed instance is gone after the agent's next poll (5 s), the worker's drain and the stop grace
# (SIGTERM, SIGKILL 30 s later): a bound below that grace failed once in CI on a loaded machine
STOPPED_WITHIN_S = 60.0


# a revoked credential is refused by every replica well before the 60 s its cache would keep it
REVOKED_WITHIN_S = 10.0


@dataclass(frozen=True)
class _At:
    """What `new_api_key` needs of a platform: its URL (and whether to verify TLS)."""

    url: str
    verify: bool = True


@pytest.fixture
def start_role(tmp_path: Path) -> Iterator[Callable[..., RoleProcess]]:
    started: list[RoleProcess] = []
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FNPLANE_")}

    def start(name: str, *args: str, env: dict[str, str] | None = None) -> RoleProcess:
        role = RoleProcess(name, list(args), tmp_path, {**environment, **(env or {})})
        started.append(role)
        return role

    yield start
    for role in reversed(started):
        if role.alive():
            role.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(role.process.pid, signal.SIGKILL)


@pytest.fixture
def closed_nats(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A nats-server (the wheel's) closed by the operator keys under tmp_path/keys, as an operator would
    run it from `fnplane nats-creds server-config`: (its URL, the keys' home)."""
    keys = tmp_path / "keys"
    config = tmp_path / "nats.conf"
    nats_material(keys, "server-config", config)
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "nats-server"), "-c", str(config), "-a", "127.0.0.1", "-p", str(port), "-js",
         "-sd", str(tmp_path / "js")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port)
        yield f"nats://127.0.0.1:{port}", keys
    finally:
        process.terminate()
        process.wait(10)


def test_two_control_replicas_a_gateway_and_an_agent_survive_the_lease_holder_killed(
    tmp_path: Path,
    postgres_url: str,
    closed_nats: tuple[str, Path],
    start_role: Callable[..., RoleProcess],
) -> None:
    nats_url, keys = closed_nats
    creds = {role: tmp_path / f"{role}.creds" for role in ("control", "gateway", "agent")}
    for role, path in creds.items():
        nats_material(keys, role, path, *(["--cluster-name", "roles"] if role == "agent" else []))
    told = nats_material(keys, "signing-key", tmp_path / "signing.seed")
    account = re.search(r"--nats-account (A[A-Z0-9]+)", told)
    assert account, told

    admin_key = f"nvapi-{secrets.token_urlsafe(32)}"
    key_file = shared_secret(tmp_path / "admin-key", admin_key)
    shared_secret(tmp_path / "key-hash-secret", secrets.token_urlsafe(48))
    control_env = {
        "FNPLANE_ADMIN_KEY": admin_key,
        "FNPLANE_CONTROL_LEASE_POLL_INTERVAL_S": "1.0",
        # longer than the test waits for a revocation: only the broadcast can make B forget a key
        "FNPLANE_CONTROL_AUTH_CACHE_TTL_S": "60",
    }
    ports = {"a": free_port(), "b": free_port()}
    metrics_ports = {"a": free_port(), "b": free_port()}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}

    def start_control(name: str) -> RoleProcess:
        return start_role(
            f"control-{name}", "control", "--http-port", str(ports[name]), "--database-url", postgres_url,
            "--nats-url", nats_url, "--nats-creds", str(creds["control"]),
            "--nats-signing-key-file", str(tmp_path / "signing.seed"), "--nats-account", account.group(1),
            "--key-hash-secret-file", str(tmp_path / "key-hash-secret"),
            "--metrics-port", str(metrics_ports[name]),
            env=control_env,
        )  # fmt: skip

    # A first, so that A holds the lease; B then starts beside it on the same database
    control_a = start_control("a")
    first = wait_for(lambda: health(urls["a"]), START_TIMEOUT_S, "control A healthy", control_a)
    assert first["lease"] == "held" and first["role"] == "control"
    control_b = start_control("b")
    second = wait_for(lambda: health(urls["b"]), START_TIMEOUT_S, "control B healthy", control_b)
    assert second["lease"] == "standby"

    # the gateways and the agent talk to B only: whatever B is told reaches A's reconciler
    gateway_urls = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]

    gateway_metrics_port = free_port()

    def start_gateway(i: int, url: str) -> RoleProcess:
        # the first gateway is given both control replicas (it fails over), the second B only
        control_url = f"{urls['b']},{urls['a']}" if i == 0 else urls["b"]
        metrics = ["--metrics-port", str(gateway_metrics_port)] if i == 0 else []
        return start_role(
            f"gateway-{i}", "gateway", "--http-port", url.rsplit(":", 1)[1], "--nats-url", nats_url,
            "--nats-creds", str(creds["gateway"]), "--control-url", control_url, *metrics,
        )  # fmt: skip

    gateway, gateway_2 = (start_gateway(i, url) for i, url in enumerate(gateway_urls))
    for url, role in zip(gateway_urls, (gateway, gateway_2), strict=True):
        assert (
            wait_for(lambda url=url: health(url), START_TIMEOUT_S, "gateway healthy", role)["role"]
            == "gateway"
        )
    gateway_url = gateway_urls[0]
    agent = start_role(
        "agent", "agent", "--nats-url", nats_url, "--nats-creds", str(creds["agent"]),
        "--control-url", urls["b"], "--token-file", str(key_file), "--cluster-name", "roles",
        "--home", str(tmp_path / "agent-home"), "--workdir", str(REPO),
        env={
            "FNPLANE_AGENT_SANDBOX_READ_ONLY_PATHS": json.dumps([str(REPO)]),
            "FNPLANE_AGENT_SANDBOX_SHARED_PATHS": json.dumps([str(tmp_path)]),
        },
    )  # fmt: skip
    roles = (control_a, control_b, gateway, gateway_2, agent)
    auth = {"Authorization": f"Bearer {admin_key}"}
    a = httpx.Client(base_url=urls["a"], headers=auth, timeout=10.0)
    b = httpx.Client(base_url=urls["b"], headers=auth, timeout=10.0)
    with a, b, httpx.Client(base_url=gateway_url, headers=auth, timeout=30.0) as through_gateway:

        def agent_registered() -> bool:
            groups = a.get("/v2/nvcf/clusterGroups").json()["clusterGroups"]
            return "roles" in {cluster["name"] for group in groups for cluster in group.get("clusters", [])}

        wait_for(agent_registered, START_TIMEOUT_S, "the agent registered (seen through A)", *roles)

        # registered through A, deployed through B, reconciled by A (the holder), invoked at the gateway
        fid, vid = echo_function(a, "echo-roles")
        deploy(b, fid, vid)
        wait_for(lambda: status_of(b, fid, vid) == "ACTIVE", START_TIMEOUT_S, "ACTIVE", *roles)
        assert status_of(a, fid, vid) == "ACTIVE"
        pexec = through_gateway.post(f"/v2/nvcf/pexec/functions/{fid}", json={"hello": "roles"})
        assert pexec.status_code == 200, pexec.text
        assert pexec.json() == {"echo": {"hello": "roles"}, "path": "/echo"}
        # a gateway on its own reports the queue depth of the versions it queued to (nothing waits now)
        scraped = httpx.get(f"http://127.0.0.1:{gateway_metrics_port}/metrics", timeout=10).text
        assert f'nvcf_function_queue_depth{{function_id="{fid}",function_version_id="{vid}"}} 0.0' in scraped
        direct = through_gateway.post(
            "/any?x=1", json={"hello": "direct"}, headers={"Host": f"{fid}.invocation.localhost"}
        )
        assert direct.status_code == 200, direct.text
        # a JWT minted by A verifies on B: the signing keys are in the database, sealed with the
        # key-hash secret every replica shares
        created = a.post(
            "/v2/nvcf/accounts/partner", json={"name": "partner", "adminClientId": "partner-admin"}
        )
        assert created.status_code == 200, created.text
        rotated = a.post("/v2/nvcf/service-accounts/partner-admin/rotate-secret")
        assert rotated.status_code == 200, rotated.text
        secret = rotated.json()["serviceAccount"]["clientSecret"]
        token = httpx.post(
            f"{urls['a']}/token",
            data={"grant_type": "client_credentials", "scope": "list_functions"},
            headers={
                "Authorization": "Basic " + base64.b64encode(f"partner-admin:{secret}".encode()).decode()
            },
        )
        assert token.status_code == 200, token.text
        listed = httpx.get(
            f"{urls['b']}/v2/nvcf/functions",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        )
        assert listed.status_code == 200, listed.text

        # a key deleted through A is refused by B at once, though B cached it (for a minute here):
        # B heard A's revocation
        key_id, key = new_api_key(_At(urls["a"]), auth, ["list_functions"])
        with_key = {"Authorization": f"Bearer {key}"}
        assert b.get("/v2/nvcf/functions", headers=with_key).status_code == 200
        assert a.delete(f"/v1/keys/{key_id}").status_code == 204
        wait_for(
            lambda: b.get("/v2/nvcf/functions", headers=with_key).status_code == 401,
            REVOKED_WITHIN_S, "the deleted key refused by B", control_b,
        )  # fmt: skip

        # the gateway serves no control API; B, the standby, still does not hold the lease
        assert through_gateway.get("/v2/nvcf/functions").status_code == 404
        assert health(urls["b"])["lease"] == "standby"  # type: ignore[index]
        assert len(function_processes(fid)) == 1
        holder = httpx.get(f"http://127.0.0.1:{metrics_ports['a']}/metrics").text
        standby = httpx.get(f"http://127.0.0.1:{metrics_ports['b']}/metrics").text
        gauge = f'nvcf_function_instances_current{{function_id="{fid}",function_version_id="{vid}"}} 1.0'
        assert gauge in holder and gauge not in standby

        # the holder dies without a word; B takes the lease over
        control_a.kill()
        killed_at = time.monotonic()
        wait_for(
            lambda: health(urls["b"])["lease"] == "held",  # type: ignore[index]
            TAKEOVER_BOUND_S, "B holding the lease", control_b,
        )  # fmt: skip
        takeover_s = time.monotonic() - killed_at

        # an undeploy through B completes: the instance stops
        undeployed = b.delete(f"/v2/nvcf/deployments/functions/{fid}/versions/{vid}")
        assert undeployed.status_code == 200, undeployed.text
        wait_for(
            lambda: not function_processes(fid), STOPPED_WITHIN_S, "the instance stopped", control_b, agent
        )
        # and what needs the reconciler works again: a new deployment becomes ACTIVE through B alone
        fid2, vid2 = echo_function(b, "slow-after-takeover", slow_s=2)
        deploy(b, fid2, vid2)
        wait_for(
            lambda: status_of(b, fid2, vid2) == "ACTIVE",
            START_TIMEOUT_S,
            "ACTIVE after takeover",
            control_b,
            agent,
        )
        reconciled_s = time.monotonic() - killed_at
        # a 202 from one gateway is fetched through the other (its record is in NATS, not in a gateway)
        pexec = through_gateway.post(
            f"/v2/nvcf/pexec/functions/{fid2}", json={"after": "takeover"}, headers={"NVCF-POLL-SECONDS": "1"}
        )
        assert pexec.status_code == 202, pexec.text
        request_id = pexec.headers["nvcf-reqid"]
        with httpx.Client(base_url=gateway_urls[1], headers=auth, timeout=30.0) as other_gateway:

            def result() -> httpx.Response | None:
                polled = other_gateway.get(f"/v2/nvcf/pexec/status/{request_id}")
                return polled if polled.status_code == 200 else None

            polled = wait_for(result, TAKEOVER_BOUND_S, "the result through the other gateway", gateway_2)
        assert polled.headers["nvcf-status"] == "fulfilled"
        # the instance gauges come from the holder alone (B now), so a sum over replicas counts once
        scraped = httpx.get(f"http://127.0.0.1:{metrics_ports['b']}/metrics").text
        assert (
            f'nvcf_function_instances_current{{function_id="{fid2}",function_version_id="{vid2}"}} 1.0'
            in scraped
        )
        print(f"takeover: lease held by B {takeover_s:.1f} s after SIGKILL of A; "
              f"undeployed, redeployed and ACTIVE {reconciled_s:.1f} s after it")  # fmt: skip

    # every role stayed within its NATS permissions (a refused publish or subscription is logged)
    for role in roles:
        assert "NATS refused" not in role.stderr, role.stderr
    functions = function_processes(fid2)
    assert agent.stop() == 0
    assert_all_gone(functions)
    assert gateway.stop() == 0 and gateway_2.stop() == 0
    assert control_b.stop() == 0


def test_replicas_started_together_on_an_empty_database_share_one_schema_one_admin_key_one_lease(
    tmp_path: Path,
    postgres_url: str,
    closed_nats: tuple[str, Path],
    start_role: Callable[..., RoleProcess],
) -> None:
    nats_url, keys = closed_nats
    creds = tmp_path / "control.creds"
    nats_material(keys, "control", creds)
    shared_secret(tmp_path / "key-hash-secret", secrets.token_urlsafe(48))
    ports = [free_port() for _ in range(3)]

    def replica(i: int, port: int) -> RoleProcess:
        return start_role(
            f"control-{i}", "control", "--http-port", str(port), "--database-url", postgres_url,
            "--nats-url", nats_url, "--nats-creds", str(creds),
            "--key-hash-secret-file", str(tmp_path / "key-hash-secret"),
            "--admin-key-file", str(tmp_path / f"admin-key-{i}"),
        )  # fmt: skip

    replicas = [replica(i, port) for i, port in enumerate(ports)]
    states = [
        wait_for(lambda port=port: health(f"http://127.0.0.1:{port}"), START_TIMEOUT_S, "healthy", *replicas)
        for port in ports
    ]
    # the migrations and the first bootstrap ran once: one replica made the admin key, and it works on all
    written = [path for path in (tmp_path / f"admin-key-{i}" for i in range(3)) if path.exists()]
    assert len(written) == 1, [state for state in states]
    key = written[0].read_text().strip()
    for port in ports:
        listed = httpx.get(
            f"http://127.0.0.1:{port}/v2/nvcf/functions", headers={"Authorization": f"Bearer {key}"}
        )
        assert listed.status_code == 200, listed.text
    leases = [health(f"http://127.0.0.1:{port}")["lease"] for port in ports]  # type: ignore[index]
    assert sorted(leases) == ["held", "standby", "standby"]

    # a holder stopped with SIGTERM releases the lease on its way out: one of the others takes it
    holder = leases.index("held")
    assert replicas[holder].stop() == 0, replicas[holder].stderr
    others = [port for i, port in enumerate(ports) if i != holder]

    def one_holds() -> bool:
        return sorted(health(f"http://127.0.0.1:{port}")["lease"] for port in others) == ["held", "standby"]  # type: ignore[index]

    wait_for(
        one_holds,
        TAKEOVER_BOUND_S,
        "a standby holding the lease",
        *replicas[:holder],
        *replicas[holder + 1 :],
    )
    for i, replica in enumerate(replicas):
        if i != holder:
            assert replica.stop() == 0, replica.stderr


def test_a_role_without_its_required_flags_is_exit_code_2_naming_them(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FNPLANE_")}
    control = subprocess.run(
        [str(FNPLANE), "control", "--database-url", "postgresql://nowhere/x"],
        capture_output=True, text=True, env=environment, timeout=60,
    )  # fmt: skip
    assert control.returncode == 2 and "nats_url" in control.stderr, control.stderr
    gateway = subprocess.run(
        [str(FNPLANE), "gateway", "--nats-url", "nats://127.0.0.1:1"],
        capture_output=True, text=True, env=environment, timeout=60,
    )  # fmt: skip
    assert gateway.returncode == 2 and "control_url" in gateway.stderr, gateway.stderr
    unknown = subprocess.run(
        [str(FNPLANE), "nats-creds", "worker", "--home", str(tmp_path), "--out", str(tmp_path / "x.creds")],
        capture_output=True, text=True, env=environment, timeout=60,
    )  # fmt: skip
    assert unknown.returncode == 2 and "control, gateway, agent" in unknown.stderr, unknown.stderr
    assert not (tmp_path / "x.creds").exists()
