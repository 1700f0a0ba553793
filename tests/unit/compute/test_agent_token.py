"""`fnplane agent` takes its credential from a file or the environment, never from a flag."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from fnplane.cli.main import app
from fnplane.compute.settings import AgentSettings


def test_the_token_comes_from_token_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FNPLANE_AGENT_TOKEN", "nvapi-from-env")
    assert AgentSettings().token == "nvapi-from-env"
    path = tmp_path / "token"
    path.write_text("nvapi-from-file\n")
    settings = AgentSettings(token_file=path)
    assert settings.token == "nvapi-from-file"  # the file wins
    assert "nvapi-from" not in repr(settings)


def test_an_unreadable_or_empty_token_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot read token_file"):
        AgentSettings(token_file=tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValidationError, match="is empty"):
        AgentSettings(token_file=tmp_path / "empty")


def test_the_cli_has_no_token_flag() -> None:
    result = CliRunner().invoke(app, ["agent", "--token", "nvapi-x"])
    assert result.exit_code == 2 and "No such option" in result.output
    assert "--token-file" in CliRunner().invoke(app, ["agent", "--help"]).output
