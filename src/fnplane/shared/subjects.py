"""Every NATS subject, stream, bucket and header name, built here and nowhere else."""

from __future__ import annotations

PREFIX = "fnplane"


def cluster_changed(cluster_name: str) -> str:
    """Core-NATS kick to the agent of a cluster: its instance assignments changed."""
    return f"{PREFIX}.clusters.{_token(cluster_name)}.changed"


def _token(value: str) -> str:
    """A subject token: NATS forbids '.', '*', '>' and whitespace inside one."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in value)
