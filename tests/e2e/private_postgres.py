"""A PostgreSQL server of the test's own (the machine's `postgres` binaries, a data directory in /tmp),
for the faults that restart the database: the machine's own server is shared with the other tests.

    with PrivatePostgres("10.213.7.1", 5432) as pg:
        pg.url                      # postgresql://root@10.213.7.1:5432/postgres (trust auth)
        pg.restart()                # a fast shutdown (clients are disconnected), then up again

Runs as the `postgres` user (the server refuses root), in a session of its own.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

READY_TIMEOUT_S = 30.0


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
    return Path(found[-1]).parent


class PrivatePostgres:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.url = f"postgresql://root@{host}:{port}/postgres"
        self._bin = postgres_bin()
        self._user = pwd.getpwnam("postgres")
        # outside the test's tmp_path: the postgres user must reach it
        self.directory = Path(tempfile.mkdtemp(prefix="fnplane-pg-"))
        os.chown(self.directory, self._user.pw_uid, self._user.pw_gid)
        self.data = self.directory / "data"
        self.process: subprocess.Popen[bytes] | None = None
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self._bin / "initdb"), "-D", str(self.data),
             "-A", "trust", "-U", "root", "--no-sync"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        # the test hosts connect over the bridge (initdb trusts only the loopback)
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {host.rsplit('.', 1)[0]}.0/24 trust\n")
        self.start()

    def start(self) -> None:
        log = (self.directory / "server.log").open("ab")
        self.process = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", str(self._bin / "postgres"), "-D", str(self.data),
             "-h", self.host, "-p", str(self.port), "-k", str(self.directory), "-c", "fsync=off"],
            stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(self._bin / "pg_isready"), "-h", self.host, "-p", str(self.port)],
                capture_output=True,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"private PostgreSQL not ready: {(self.directory / 'server.log').read_text()[-2000:]}"
        )

    def stop(self) -> None:
        """A fast shutdown (SIGINT to the postmaster): every client connection is closed."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGINT)
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        except ProcessLookupError:
            pass
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
