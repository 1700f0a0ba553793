"""`fnplane up` as a user runs it: a real subprocess with its embedded nats-server, SQLite and HTTP port.

Each test waits for `GET /health` and checks what a user would notice: the admin key, HTTP/1.1, h2c
and TLS on one port, a deployed function answering, and that SIGTERM/SIGINT leave no process behind.
"""

from __future__ import annotations

import signal
import stat
import sys
import time
from pathlib import Path

import httpx
import psutil
from up_process import START_TIMEOUT_S, STOP_TIMEOUT_S, UpProcess, assert_all_gone, self_signed_certificate


def test_first_start_serves_health_and_prints_the_admin_key_once(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    home = tmp_path / "home"
    up = start_up(home)
    body = up.wait_healthy()
    assert body["status"] == "ok"

    key_file = home / "admin-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert key.startswith("nvapi-")
    assert up.stdout.count(key) == 1
    assert key not in up.stderr

    # the printed key is the admin credential; no credential is a 401 problem
    assert httpx.get(f"{up.url}/v1/keys", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    anonymous = httpx.get(f"{up.url}/v1/keys")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"].startswith("application/problem+json")

    children = up.descendants()
    assert any("nats-server" in " ".join(p.cmdline()) for p in children), "no embedded nats-server"
    assert up.stop() == 0
    assert_all_gone(children)

    # a second start on the same home reuses the key and does not print it again
    again = start_up(home)
    again.wait_healthy()
    assert key_file.read_text().strip() == key
    assert key not in again.stdout
    assert httpx.get(f"{again.url}/v1/keys", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    children = again.descendants()
    assert again.stop(signal.SIGINT) == 0
    assert_all_gone(children)


def test_h2c_and_http1_on_the_same_port(tmp_path: Path, start_up: type[UpProcess]) -> None:
    up = start_up(tmp_path / "home")
    up.wait_healthy()
    with httpx.Client(http1=False, http2=True) as client:  # h2c with prior knowledge
        response = client.get(f"{up.url}/health")
    assert response.status_code == 200
    assert response.http_version == "HTTP/2"
    response = httpx.get(f"{up.url}/health")
    assert response.http_version == "HTTP/1.1"
    assert response.status_code == 200
    # every dependency is named in the health document
    assert {"api", "gateway", "database", "nats", "agent"} <= set(response.json()["checks"])


def test_admin_key_from_the_environment_is_registered(tmp_path: Path, start_up: type[UpProcess]) -> None:
    key = "nvapi-" + "k" * 43
    up = start_up(tmp_path / "home", env={"FNPLANE_ADMIN_KEY": key})
    up.wait_healthy()
    assert key not in up.stdout
    assert httpx.get(f"{up.url}/v1/keys", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    wrong = "nvapi-" + "x" * 43
    assert httpx.get(f"{up.url}/v1/keys", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401


def test_port_in_use_is_a_clear_error(tmp_path: Path, start_up: type[UpProcess]) -> None:
    first = start_up(tmp_path / "one")
    first.wait_healthy()
    second = start_up(tmp_path / "two", args=["--http-port", str(first.port)])
    assert second.process.wait(STOP_TIMEOUT_S) == 1
    assert "port" in second.stderr.lower()
    # it stopped the nats-server it had started
    assert not [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(tmp_path / "two") in " ".join(p.info["cmdline"] or [])
    ]


def test_tls_serves_h2_by_alpn_and_the_agent_still_reaches_the_api(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    cert_path, key_path = self_signed_certificate(tmp_path)
    up = start_up(tmp_path / "home", args=["--tls-cert", str(cert_path), "--tls-key", str(key_path)])
    https = f"https://127.0.0.1:{up.port}/health"
    deadline = time.monotonic() + START_TIMEOUT_S
    response = None
    # a certificate for another name: the agent inside cannot verify it, /health 200 proves it got in
    with httpx.Client(http2=True, verify=False) as client:
        while time.monotonic() < deadline:
            assert up.process.poll() is None, up.stderr
            try:
                response = client.get(https, timeout=2.0)
                if response.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    assert response is not None and response.status_code == 200, up.stderr
    assert response.http_version == "HTTP/2"
    with httpx.Client(http1=True, http2=False, verify=False) as client:
        assert client.get(https).http_version == "HTTP/1.1"
    children = up.descendants()
    assert up.stop() == 0
    assert_all_gone(children)


def test_a_deployed_function_is_invoked_and_stopped_with_the_platform(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    repo = Path(__file__).resolve().parents[2]
    up = start_up(tmp_path / "home", args=["--workdir", str(repo)])
    up.wait_healthy()
    key = (tmp_path / "home" / "admin-key").read_text().strip()
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=up.url, headers=auth, timeout=10.0) as client:
        created = client.post(
            "/v2/nvcf/functions",
            json={
                "name": "echo",
                "inferenceUrl": "/echo",
                "inferencePort": 8000,
                "containerImage": "local/echo",
                "containerArgs": f"{sys.executable} examples/echo_server.py",
            },
        )
        assert created.status_code == 200, created.text
        fid, vid = created.json()["function"]["id"], created.json()["function"]["versionId"]
        deployed = client.post(
            f"/v2/nvcf/deployments/functions/{fid}/versions/{vid}",
            json={
                "deploymentSpecifications": [
                    {"gpu": "L40S", "instanceType": "LOCAL.GPU.L40S_1x", "minInstances": 1, "maxInstances": 1}
                ]
            },
        )
        assert deployed.status_code == 200, deployed.text
        deadline = time.monotonic() + START_TIMEOUT_S
        status = ""
        while time.monotonic() < deadline and status != "ACTIVE":
            status = client.get(f"/v2/nvcf/functions/{fid}/versions/{vid}").json()["function"]["status"]
            time.sleep(0.2)
        assert status == "ACTIVE", up.stderr

        pexec = client.post(f"/v2/nvcf/pexec/functions/{fid}", json={"hello": "pexec"})
        assert pexec.status_code == 200, pexec.text
        assert pexec.json() == {"echo": {"hello": "pexec"}, "path": "/echo"}
        assert pexec.headers["nvcf-status"] == "fulfilled"

        direct = client.post(
            "/any/path?x=1", json={"hello": "direct"}, headers={"Host": f"{fid}.invocation.localhost"}
        )
        assert direct.status_code == 200, direct.text
        assert direct.json() == {"echo": {"hello": "direct"}, "path": "/any/path?x=1"}

    children = up.descendants()
    # the function itself (in its sandbox, bwrap and the namespace's init run it; they name it too)
    functions = [
        p for p in children if p.cmdline()[-1:] == ["examples/echo_server.py"] and p.name() != "bwrap"
    ]
    assert len(functions) == 1, [p.cmdline() for p in children]
    assert processes_of_function(fid), "the function process carries NVCF_FUNCTION_ID"
    assert up.stop() == 0
    assert_all_gone(children)
    # also anything that escaped the process tree: the function id is in its environment
    assert not processes_of_function(fid)


def processes_of_function(function_id: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("NVCF_FUNCTION_ID") == function_id:
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def test_sigterm_drains_running_invocations_and_refuses_new_ones(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    import threading

    repo = Path(__file__).resolve().parents[2]
    up = start_up(tmp_path / "home", args=["--workdir", str(repo)])
    up.wait_healthy()
    key = (tmp_path / "home" / "admin-key").read_text().strip()
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=up.url, headers=auth, timeout=30.0) as client:
        created = client.post(
            "/v2/nvcf/functions",
            json={
                "name": "slow",
                "inferenceUrl": "/slow",
                "inferencePort": 8000,
                "containerImage": "local/inv",
                "containerArgs": f"{sys.executable} examples/inv_function.py",
            },
        ).json()["function"]
        fid, vid = created["id"], created["versionId"]
        spec = {"gpu": "L40S", "instanceType": "LOCAL.GPU.L40S_1x", "minInstances": 1, "maxInstances": 1}
        deployed = client.post(
            f"/v2/nvcf/deployments/functions/{fid}/versions/{vid}",
            json={"deploymentSpecifications": [{**spec, "maxRequestConcurrency": 4}]},
        )
        assert deployed.status_code == 200, deployed.text
        deadline = time.monotonic() + START_TIMEOUT_S
        while client.get(f"/v2/nvcf/functions/{fid}/versions/{vid}").json()["function"]["status"] != "ACTIVE":
            assert time.monotonic() < deadline, up.stderr
            time.sleep(0.2)

        marker = tmp_path / "started"
        results: list[httpx.Response] = []

        def slow_call() -> None:
            results.append(
                client.get(
                    f"/slow?seconds=2&marker={marker}", headers={"Host": f"{fid}.invocation.localhost"}
                )
            )

        caller = threading.Thread(target=slow_call)
        caller.start()
        while not marker.exists():  # the function is running the request
            assert caller.is_alive() or results, "the slow call ended early"
            time.sleep(0.05)
        up.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = httpx.get(
            f"{up.url}/inspect", headers={**auth, "Host": f"{fid}.invocation.localhost"}, timeout=5.0
        )
        assert refused.status_code == 503
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert httpx.get(f"{up.url}/health", timeout=5.0).status_code == 503
        caller.join(30)
    assert results and results[0].status_code == 200, results
    assert up.process.wait(STOP_TIMEOUT_S) == 0


def test_an_invalid_flag_is_exit_code_2_naming_it(tmp_path: Path) -> None:
    import subprocess

    from up_process import FNPLANE

    result = subprocess.run(
        [str(FNPLANE), "up", "--home", str(tmp_path / "home"), "--http-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "http_port" in result.stderr
    assert not (tmp_path / "home").exists(), "nothing is started or created for an invalid flag"


def test_a_second_up_on_a_running_home_is_refused_before_it_starts_anything(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    first = start_up(tmp_path / "home")
    first.wait_healthy()
    servers = _nats_servers_of(tmp_path / "home")
    second = start_up(tmp_path / "home")
    assert second.process.wait(STOP_TIMEOUT_S) == 1
    assert "another fnplane up is running with the home" in second.stderr
    assert "Traceback" not in second.stderr
    # no second nats-server was started on the live JetStream store, and the first is still serving
    assert _nats_servers_of(tmp_path / "home") == servers
    assert httpx.get(f"{first.url}/health", timeout=10).status_code == 200


def test_an_unreachable_external_nats_is_a_failed_start_and_a_signal_stops_the_wait(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    from up_process import free_port

    nowhere = ["--nats-url", f"nats://127.0.0.1:{free_port()}"]  # nothing listens there
    bounded = start_up(tmp_path / "a", args=nowhere, env={"FNPLANE_UP_NATS_START_TIMEOUT_S": "2"})
    assert bounded.process.wait(STOP_TIMEOUT_S) == 1
    assert "cannot reach NATS at nats://127.0.0.1:" in bounded.stderr
    assert "Traceback" not in bounded.stderr
    waiting = start_up(tmp_path / "b", args=nowhere, env={"FNPLANE_UP_NATS_START_TIMEOUT_S": "600"})
    # the signal once it waits (a fixed sleep could end before a loaded machine had even imported it)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while "cannot reach NATS" not in waiting.stderr and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "cannot reach NATS" in waiting.stderr, waiting.stderr
    assert waiting.process.poll() is None, "it waits for the server"
    waiting.process.send_signal(signal.SIGTERM)
    assert waiting.process.wait(STOP_TIMEOUT_S) == 0


def test_a_database_that_cannot_be_opened_is_one_line_not_a_traceback(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    for url in ("bogus://x", f"sqlite:///{tmp_path}/missing/dir/x.db"):
        up = start_up(tmp_path / "home", args=["--database-url", url])
        assert up.process.wait(STOP_TIMEOUT_S) == 1
        assert "cannot use the database URL" in up.stderr or "cannot open the database" in up.stderr, (
            up.stderr
        )
        assert "Traceback" not in up.stderr, up.stderr


def _nats_servers_of(home: Path) -> list[int]:
    return sorted(
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if "nats-server" in " ".join(p.info["cmdline"] or [])
        and str(home) in " ".join(p.info["cmdline"] or [])
    )


def test_bad_tls_files_and_workdir_are_exit_code_2_naming_them(tmp_path: Path) -> None:
    import subprocess

    from up_process import FNPLANE

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        (["--workdir", str(tmp_path / "nowhere")], "is not a directory"),
        (
            ["--tls-cert", str(tmp_path / "no.pem"), "--tls-key", str(tmp_path / "no.key")],
            "--tls-cert: no such file",
        ),
        (
            ["--tls-cert", str(garbage), "--tls-key", str(garbage)],
            "are not a PEM certificate and its private key",
        ),
    ]
    for args, said in cases:
        result = subprocess.run(
            [str(FNPLANE), "up", "--home", str(tmp_path / "home"), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, (args, result.stderr)
        assert said in result.stderr, result.stderr
        assert not (tmp_path / "home").exists(), "nothing is started or created for an invalid flag"


def test_a_metrics_port_in_use_names_its_flag(tmp_path: Path, start_up: type[UpProcess]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        up = start_up(tmp_path / "home", args=["--metrics-port", str(taken.getsockname()[1])])
        assert up.process.wait(STOP_TIMEOUT_S) == 1
    assert "pass --metrics-port" in up.stderr, up.stderr
