"""The per-instance NATS credentials file the agent writes for a worker.

The control plane mints one credential per instance (its version's subjects only) and hands it over
with the assignment; the agent writes it under its state dir (directory 0700, file 0600) and gives the
worker only the path (`FNPLANE_WORKER_NATS_CREDS`). The function process never sees either: its
environment is the assignment's `containerEnvironment`, and the sandbox hides the state dir.
"""

from __future__ import annotations

import os
from pathlib import Path

CREDENTIALS_DIR = "credentials"


def worker_credentials_path(state_dir: Path, instance_id: str) -> Path:
    return state_dir / CREDENTIALS_DIR / f"{instance_id}.creds"


def write_worker_credentials(state_dir: Path, instance_id: str, creds: str) -> Path:
    """Write `creds` (the text of a .creds file) atomically with mode 0600; returns its path."""
    path = worker_credentials_path(state_dir, instance_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(creds)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def remove_worker_credentials(state_dir: Path, instance_id: str) -> None:
    worker_credentials_path(state_dir, instance_id).unlink(missing_ok=True)
