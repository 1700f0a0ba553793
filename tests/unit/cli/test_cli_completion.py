"""Shell completion (Typer's): `--show-completion` prints a script, and the script's callback completes
commands, subcommands and options of the real `fnplane` executable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FNPLANE = Path(sys.executable).parent / "fnplane"


def complete(words: str) -> list[str]:
    """What bash completion offers after `words` (the last one being completed)."""
    env = {
        **os.environ,
        "_FNPLANE_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - 1 + words.endswith(" ")),
    }
    done = subprocess.run([str(FNPLANE)], env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.split()


def test_show_completion_prints_a_script() -> None:
    done = subprocess.run(
        [str(FNPLANE), "--show-completion", "bash"], capture_output=True, text=True, timeout=60, check=True
    )
    assert "_fnplane_completion" in done.stdout
    assert "complete " in done.stdout


def test_commands_subcommands_and_options_complete() -> None:
    assert complete("fnplane fun") == ["function"]
    assert set(complete("fnplane function ")) >= {"create", "list", "get", "delete", "version"}
    assert complete("fnplane deploy st") == ["status"]
    assert complete("fnplane service-account ro") == ["rotate"]
    assert "--poll-seconds" in complete("fnplane invoke fid --po")
