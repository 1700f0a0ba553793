"""The `fnplane` CLI against a real `fnplane up`: login and where settings come from (flag > env >
file), API keys, service accounts and tokens, assets. Each command runs as a child process."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_process import Cli, on_terminal
from up_process import UpProcess, free_port

# one platform serves the module (module-scoped fixtures): its tests stay on one xdist worker, and
# the first also waits for the platform (and a deployment) to start
pytestmark = [pytest.mark.xdist_group("cli-credentials"), pytest.mark.timeout(240)]

REVOCATION_WAIT_S = 10.0


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UpProcess, str]]:
    base = tmp_path_factory.mktemp("cli-credentials")
    up = UpProcess(base / "home")
    try:
        up.wait_healthy()
        yield up, (base / "home" / "admin-key").read_text().strip()
        up.stop()
    finally:
        up.kill_leftovers()


@pytest.fixture
def cli(platform: tuple[UpProcess, str], tmp_path: Path) -> Cli:
    up, key = platform
    return Cli(up.url, key, tmp_path / "config.json")


def refused_soon(cli: Cli, *args: str) -> bytes:
    """stderr of `fnplane ARGS` once it is refused (revocations reach every plane within a second)."""
    deadline = time.monotonic() + REVOCATION_WAIT_S
    while True:
        done = cli.run(*args)
        if done.returncode != 0:
            return done.stderr
        assert time.monotonic() < deadline, f"still accepted: fnplane {' '.join(args)}"
        time.sleep(0.2)


def test_login_writes_a_private_file_and_flags_beat_env_beat_file(
    platform: tuple[UpProcess, str], tmp_path: Path
) -> None:
    up, key = platform
    config = tmp_path / "fnplane" / "config.json"
    bare = Cli(None, None, config)  # no FNPLANE_URL / FNPLANE_API_KEY
    # a key the platform refuses is not saved
    refused = bare.run("login", "--url", up.url, "--api-key", "nvapi-" + "2" * 43)
    assert refused.returncode == 1
    assert b"Unauthorized (401)" in refused.stderr and b"nothing was saved" in refused.stderr
    assert not config.exists()
    saved = bare.json("login", "--url", up.url, "--api-key", key)
    assert saved == {"url": up.url, "configFile": str(config)}
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text()) == {"url": up.url, "apiKey": key}
    # the file alone is enough
    assert "functions" in bare.json("function", "list")
    # the environment wins over the file ...
    wrong_key = {"FNPLANE_API_KEY": "nvapi-" + "0" * 43}
    refused = bare.run("function", "list", env=wrong_key)
    assert refused.returncode == 1
    assert b"Unauthorized (401)" in refused.stderr
    nowhere = {"FNPLANE_URL": f"http://127.0.0.1:{free_port()}"}
    unreachable = bare.run("function", "list", env=nowhere)
    assert unreachable.returncode == 1
    assert b"cannot reach" in unreachable.stderr
    # ... and a flag over the environment
    assert "functions" in bare.json("function", "list", "--api-key", key, env=wrong_key)
    assert "functions" in bare.json("function", "list", "--url", up.url, env=nowhere)
    refused = bare.run("function", "list", "--api-key", "nvapi-" + "1" * 43)
    assert refused.returncode == 1
    assert b"Unauthorized (401)" in refused.stderr
    # a key that may only invoke is a good key for login, though it may not list functions
    invoker = bare.json("key", "create", "--scope", "invoke_function")["value"]
    assert bare.json("login", "--url", up.url, "--api-key", invoker)["url"] == up.url
    assert json.loads(config.read_text())["apiKey"] == invoker


def test_login_asks_for_the_key_when_not_given(platform: tuple[UpProcess, str], tmp_path: Path) -> None:
    up, key = platform
    config = tmp_path / "config.json"
    bare = Cli(None, None, config)
    done = bare.ok("login", "--url", up.url, input=f"{key}\n".encode())
    assert key.encode() not in done.stdout + done.stderr  # hidden input
    assert json.loads(config.read_text())["apiKey"] == key
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_key_create_list_revoke(cli: Cli) -> None:
    created = cli.json(
        "key", "create", "--scope", "list_functions,invoke_function", "--expires-in", "30d",
        "--description", "cli test",
    )  # fmt: skip
    key_id, value = created["id"], created["value"]
    assert value.startswith("nvapi-")
    expires = datetime.fromisoformat(created["expires_at"].replace("Z", "+00:00"))
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    listed = cli.json("key", "list")["keys"]
    assert key_id in [k["id"] for k in listed]
    assert value not in json.dumps(listed)  # values are masked
    # the new key works, with its scopes
    assert "functions" in cli.json("function", "list", "--api-key", value)
    forbidden = cli.run("key", "list", "--api-key", value)
    assert forbidden.returncode == 1
    assert b"Forbidden (403)" in forbidden.stderr
    assert cli.json("key", "revoke", key_id) == {}
    assert b"Unauthorized (401)" in refused_soon(cli, "function", "list", "--api-key", value)
    # human output, piped: a header and a row per key
    table = cli.ok("key", "list").stdout.decode().splitlines()
    assert table[0].split("\t")[:2] == ["ID", "STATUS"]


def test_service_account_create_list_rotate_delete_and_token(cli: Cli) -> None:
    account = cli.json(
        "service-account", "create", "ci", "--scope", "list_functions", "--scope", "invoke_function"
    )
    account = account["serviceAccount"]
    client_id, secret = account["clientId"], account["clientSecret"]
    assert sorted(account["scopes"]) == ["invoke_function", "list_functions"]
    listed = cli.json("service-account", "list")["serviceAccounts"]
    assert client_id in [a["clientId"] for a in listed]
    token = cli.json(
        "token", "--client-id", client_id, "--client-secret", secret, "--scope", "list_functions"
    )
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "list_functions"
    assert "functions" in cli.json("function", "list", "--api-key", token["access_token"])
    # without --json, just the token; the secret may come from the environment
    plain = cli.ok("token", "--client-id", client_id, env={"FNPLANE_CLIENT_SECRET": secret})
    bearer = plain.stdout.decode().strip()
    assert bearer.count(".") == 2  # a JWT
    assert "functions" in cli.json("function", "list", "--api-key", bearer)
    # rotation: a new secret, the old one and its tokens refused
    rotated = cli.json("service-account", "rotate", client_id)["serviceAccount"]
    assert rotated["clientSecret"] not in (None, secret)
    old = cli.run("token", "--client-id", client_id, "--client-secret", secret)
    assert old.returncode == 1
    assert old.stdout == b""
    assert b"(401)" in old.stderr
    assert b"Unauthorized (401)" in refused_soon(cli, "function", "list", "--api-key", bearer)
    assert cli.json("service-account", "delete", client_id) == {}
    assert client_id not in [a["clientId"] for a in cli.json("service-account", "list")["serviceAccounts"]]


def test_asset_upload_list_download_delete(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    asset_id = cli.json("asset", "upload", str(source), "--description", "cli test")["assetId"]
    assert asset_id in [a["assetId"] for a in cli.json("asset", "list")["assets"]]
    target = tmp_path / "copy.bin"
    downloaded = cli.json("asset", "download", asset_id, str(target))
    assert downloaded == {"assetId": asset_id, "path": str(target), "bytes": source.stat().st_size}
    assert target.read_bytes() == source.read_bytes()
    # '-' streams it to stdout
    assert cli.ok("asset", "download", asset_id, "-").stdout == source.read_bytes()
    # the human upload prints just the id
    other = cli.ok("asset", "upload", str(source)).stdout.decode().strip()
    assert other != asset_id
    assert cli.json("asset", "delete", asset_id) == {}
    assert cli.json("asset", "delete", other) == {}
    missing = cli.run("asset", "download", asset_id, str(tmp_path / "gone.bin"))
    assert missing.returncode == 1
    assert missing.stdout == b""
    assert b"Not Found (404)" in missing.stderr
    assert not (tmp_path / "gone.bin").exists()
    assert not (tmp_path / "gone.bin.part").exists()


def test_asset_transfers_show_progress_bars_on_a_terminal(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(5 * 1024 * 1024))
    code, stdout, terminal = on_terminal(cli, "asset", "upload", str(source), "--json")
    assert code == 0, terminal
    asset_id = json.loads(stdout)["assetId"]  # stdout stays one document
    assert "upload big.bin" in terminal
    assert "5.2 MB" in terminal  # the bar's bytes column (Rich counts decimal megabytes)
    code, stdout, terminal = on_terminal(cli, "asset", "download", asset_id, str(tmp_path / "back.bin"))
    assert code == 0, terminal
    assert f"download {asset_id}" in terminal
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()
    # piped, no bar at all
    assert cli.ok("asset", "upload", str(source)).stderr == b""
    # a reader that stops early (`| head -c 10`) ends the download without a word on stderr
    process = cli.popen("asset", "download", asset_id, "-")
    assert process.stdout is not None and process.stderr is not None
    assert len(process.stdout.read(10)) == 10
    process.stdout.close()  # more than a pipe's buffer is still to come: the next write fails
    assert process.wait(60) == 1
    assert process.stderr.read() == b""
