"""The home directory of `fnplane up`: database, NATS data, the key-hash secret and the admin key.

Secrets are written with mode 0600 inside a 0700 directory, created atomically (write to a temporary
file, then rename) so a crash never leaves a half-written key behind.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from pathlib import Path

from fnplane.shared.errors import ConflictError

ADMIN_KEY_FILE = "admin-key"
KEY_HASH_SECRET_FILE = "key-hash-secret"
DATABASE_FILE = "fnplane.db"
NATS_DIR = "nats"
LOGS_DIR = "logs"
# held (flock) by the `fnplane up` that uses the home, for as long as it runs
LOCK_FILE = "up.lock"


class PlatformHome:
    def __init__(self, path: Path) -> None:
        self.path = path.expanduser().resolve()
        self._lock_fd: int | None = None

    def prepare(self) -> None:
        """Create the home and take it: one `fnplane up` per home, before anything touches its store
        (a second nats-server on a live JetStream store corrupts it). The lock ends with the process."""
        self.path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConflictError(f"another fnplane up is running with the home {self.path}") from None
        self._lock_fd = fd

    def release(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.path / DATABASE_FILE}"

    @property
    def nats_dir(self) -> Path:
        return self.path / NATS_DIR

    @property
    def logs_dir(self) -> Path:
        return self.path / LOGS_DIR

    @property
    def admin_key_path(self) -> Path:
        return self.path / ADMIN_KEY_FILE

    def key_hash_secret(self) -> str:
        """The secret of the keyed hash of API keys: created once, then reused (keys survive restarts)."""
        path = self.path / KEY_HASH_SECRET_FILE
        if path.exists():
            value = path.read_text().strip()
            if value:
                return value
        value = secrets.token_urlsafe(48)
        write_secret(path, value)
        return value

    def stored_admin_key(self) -> str | None:
        path = self.admin_key_path
        if not path.exists():
            return None
        return path.read_text().strip() or None

    def store_admin_key(self, key: str) -> None:
        write_secret(self.admin_key_path, key)


def write_secret(path: Path, value: str) -> None:
    """Write `value` + newline to `path` with mode 0600, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(value + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
