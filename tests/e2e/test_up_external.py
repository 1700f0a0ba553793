"""`fnplane up` with external parts: `--nats-url`, `--database-url` (SQLite and the real PostgreSQL),
and a second host joining with `fnplane agent`."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from up_process import START_TIMEOUT_S, STOP_TIMEOUT_S, UpProcess, assert_all_gone, free_port, wait_for_port

from fnplane.bus.credentials import UserCredential
from fnplane.up.bus_auth import BusCredentials, operator_keys

NATS_SERVER = Path(sys.executable).parent / "nats-server"


@pytest.fixture
def external_nats(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    process = subprocess.Popen(
        [str(NATS_SERVER), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(tmp_path / "js")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"nats://127.0.0.1:{port}", process
    finally:
        process.terminate()
        process.wait(10)


def test_external_nats_and_database(
    tmp_path: Path,
    start_up: type[UpProcess],
    external_nats: tuple[str, subprocess.Popen[bytes]],
    database_url: str,
) -> None:
    nats_url, nats_process = external_nats
    home = tmp_path / "home"
    up = start_up(home, args=["--nats-url", nats_url, "--database-url", database_url])
    assert up.wait_healthy()["status"] == "ok"
    children = up.descendants()
    assert not [p for p in children if "nats-server" in " ".join(p.cmdline())], "started its own NATS"
    assert not (home / "fnplane.db").exists()
    key = (home / "admin-key").read_text().strip()
    listed = httpx.get(f"{up.url}/v2/nvcf/functions", headers={"Authorization": f"Bearer {key}"})
    assert listed.status_code == 200, listed.text
    assert up.stop() == 0
    assert_all_gone(children)
    assert nats_process.poll() is None, "fnplane up must not stop a NATS it did not start"

    # the same database and home on the next start: the key still works
    again = start_up(home, args=["--nats-url", nats_url, "--database-url", database_url])
    again.wait_healthy()
    listed = httpx.get(f"{again.url}/v2/nvcf/functions", headers={"Authorization": f"Bearer {key}"})
    assert listed.status_code == 200


def test_a_second_agent_joins_with_fnplane_agent(tmp_path: Path, start_up: type[UpProcess]) -> None:
    up = start_up(tmp_path / "home")
    up.wait_healthy()
    key = (tmp_path / "home" / "admin-key").read_text().strip()
    match = re.search(r"NATS at (nats://\S+),", up.stdout)
    assert match, up.stdout
    # the operator's part: the agent's own NATS credential, minted from the platform's account key
    credential = BusCredentials.for_embedded(operator_keys(tmp_path / "home")).agent("second")
    assert isinstance(credential, UserCredential)
    creds = tmp_path / "second.creds"
    creds.write_text(credential.creds_file())
    # the agent reads its credentials from files: `ps` shows no credential of any platform process
    agent = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "fnplane"), "agent",
            "--nats-url", match.group(1), "--nats-creds", str(creds), "--control-url", up.url,
            "--token-file", str(tmp_path / "home" / "admin-key"),
            "--cluster-name", "second", "--home", str(tmp_path / "agent-home"), "--workdir", str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        auth = {"Authorization": f"Bearer {key}"}
        deadline = time.monotonic() + START_TIMEOUT_S
        names: set[str] = set()
        while time.monotonic() < deadline and "second" not in names:
            groups = httpx.get(f"{up.url}/v2/nvcf/clusterGroups", headers=auth).json()["clusterGroups"]
            names = {cluster["name"] for group in groups for cluster in group.get("clusters", [])}
            time.sleep(0.2)
        assert {"local", "second"} <= names
        children = psutil.Process(agent.pid).children(recursive=True)
        for process in [psutil.Process(agent.pid), *children, *up.descendants()]:
            assert key not in " ".join(process.cmdline()), process.cmdline()
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(STOP_TIMEOUT_S) == 0
        assert_all_gone(children)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
