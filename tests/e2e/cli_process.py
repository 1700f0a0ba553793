"""The `fnplane` CLI run as a child process against a real `fnplane up`, as a user runs it.

`Cli(url, api_key, config)` runs `.venv/bin/fnplane ...` with FNPLANE_URL / FNPLANE_API_KEY set and
FNPLANE_CONFIG pointing at a file of the test's own (so the developer's login never leaks in).
`cli.json(...)` adds `--json`, checks exit 0 and parses the one document on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

FNPLANE = Path(sys.executable).parent / "fnplane"
COMMAND_TIMEOUT_S = 120.0


class Cli:
    def __init__(self, url: str | None, api_key: str | None, config: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("FNPLANE_", "NVCF_"))}
        self.env["FNPLANE_CONFIG"] = str(config)
        # what a user's terminal-less pipe gets: no colour, no width games
        self.env.pop("FORCE_COLOR", None)
        if url:
            self.env["FNPLANE_URL"] = url
        if api_key:
            self.env["FNPLANE_API_KEY"] = api_key

    def environment(self, extra: dict[str, str | None] | None = None) -> dict[str, str]:
        env = dict(self.env)
        for name, value in (extra or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def run(
        self, *args: str, input: bytes | None = None, env: dict[str, str | None] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(FNPLANE), *args],
            input=input,
            capture_output=True,
            env=self.environment(env),
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )

    def ok(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        done = self.run(*args, **kwargs)
        assert done.returncode == 0, f"fnplane {' '.join(args)}: {done.returncode}\n{done.stderr.decode()}"
        return done

    def json(self, *args: str, **kwargs: Any) -> Any:
        """`fnplane ARGS --json`: exit 0 and exactly one JSON document on stdout."""
        done = self.ok(*args, "--json", **kwargs)
        return json.loads(done.stdout)

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(FNPLANE), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.environment(),
        )


def on_terminal(cli: Cli, *args: str, columns: int = 120) -> tuple[int, bytes, str]:
    """`fnplane ARGS` with stderr on a pseudo-terminal (what a person at a terminal sees) and stdout
    piped: (exit code, stdout, the terminal's output)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = cli.environment(
        {"TERM": "xterm-256color", "NO_COLOR": None, "COLUMNS": str(columns), "LINES": "40"}
    )
    process = subprocess.Popen(
        [str(FNPLANE), *args], stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=env
    )
    os.close(slave)
    seen = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert process.stdout is not None
    stdout = process.stdout.read()
    return process.wait(COMMAND_TIMEOUT_S), stdout, seen.decode(errors="replace")
