"""Where the CLI's URL and credential come from: flag > environment > config file > default."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fnplane.cli.config import DEFAULT_URL, ConfigFileError, config_path, load_file, resolve, save_file
from fnplane.cli.main import app

FILE = {"url": "http://file:1", "apiKey": "file-key"}


def test_a_flag_wins_over_the_environment_and_the_file() -> None:
    conn = resolve(
        url="http://flag:1/",
        api_key="flag-key",
        environ={"FNPLANE_URL": "http://env:1", "FNPLANE_API_KEY": "env-key"},
        file=FILE,
    )
    assert (conn.url, conn.api_key) == ("http://flag:1", "flag-key")
    assert (conn.url_source, conn.api_key_source) == ("flag", "flag")


def test_the_environment_wins_over_the_file() -> None:
    conn = resolve(
        url=None,
        api_key=None,
        environ={"FNPLANE_URL": "http://env:1", "FNPLANE_API_KEY": "env-key"},
        file=FILE,
    )
    assert (conn.url, conn.api_key, conn.url_source, conn.api_key_source) == (
        "http://env:1",
        "env-key",
        "env",
        "env",
    )


def test_each_setting_falls_back_on_its_own() -> None:
    # the URL from the environment, the key from the file
    conn = resolve(url=None, api_key=None, environ={"FNPLANE_URL": "http://env:1"}, file=FILE)
    assert (conn.url, conn.api_key) == ("http://env:1", "file-key")
    # NVCF's variable counts, after ours
    conn = resolve(url=None, api_key=None, environ={"NVCF_API_KEY": "nvcf-key"}, file=FILE)
    assert (conn.url, conn.api_key) == ("http://file:1", "nvcf-key")


def test_empty_values_do_not_count_and_the_default_is_local() -> None:
    conn = resolve(url="", api_key="", environ={"FNPLANE_URL": "", "FNPLANE_API_KEY": ""}, file={})
    assert (conn.url, conn.api_key, conn.url_source, conn.api_key_source) == (
        DEFAULT_URL,
        None,
        "default",
        "none",
    )


def test_the_config_file_lives_under_fnplane_config_or_the_xdg_directory(tmp_path: Path) -> None:
    assert config_path({"FNPLANE_CONFIG": str(tmp_path / "c.json")}) == tmp_path / "c.json"
    assert config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "fnplane" / "config.json"
    assert config_path({}) == Path.home() / ".config" / "fnplane" / "config.json"


def test_the_saved_file_is_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "new-dir" / "config.json"
    save_file(path, FILE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_file(path) == FILE
    save_file(path, {"url": "http://other:2", "apiKey": "k"})  # replaced, still private
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_file(path)["url"] == "http://other:2"
    assert load_file(tmp_path / "missing.json") == {}


@pytest.mark.parametrize("content", ["not json", "[1, 2]"])
def test_a_broken_file_is_named_in_the_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ConfigFileError, match=str(path)):
        load_file(path)


def test_a_broken_config_file_is_a_usage_error_of_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.json"
    path.write_text("{")
    monkeypatch.setenv("FNPLANE_CONFIG", str(path))
    result = CliRunner().invoke(app, ["function", "list", "--json"])
    assert result.exit_code == 2
    assert str(path) in result.stderr
    assert result.stdout == ""


def test_login_writes_the_file_0600_and_keeps_other_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"other": 1}))
    monkeypatch.setenv("FNPLANE_CONFIG", str(path))
    result = CliRunner().invoke(
        app, ["login", "--url", "http://h:8080/", "--api-key", "nvapi-x", "--json", "--no-check"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"url": "http://h:8080", "configFile": str(path)}
    assert json.loads(path.read_text()) == {"other": 1, "url": "http://h:8080", "apiKey": "nvapi-x"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_login_to_a_platform_it_cannot_reach_saves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.json"
    monkeypatch.setenv("FNPLANE_CONFIG", str(path))
    with socket.socket() as bound:  # bound, never listening: connections to it are refused
        bound.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{bound.getsockname()[1]}"
        result = CliRunner().invoke(app, ["login", "--url", nowhere, "--api-key", "nvapi-x"])
    assert result.exit_code == 1
    assert f"cannot reach {nowhere}" in result.stderr
    assert not path.exists()
