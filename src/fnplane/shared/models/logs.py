"""Instance logs over NATS: the control plane asks the agent that runs the instance.

The control plane subscribes to an inbox, then publishes an `InstanceLogsRequest` on
`subjects.instance_logs(clusterName)` with that inbox as reply subject. The agent answers with
`InstanceLogsChunk` messages on the inbox, the last one with `end=true`. With `follow`, its first chunk
comes at once and may hold no line (the instance may not have written any yet); it keeps sending new
lines until a message arrives on `cancelSubject` (the HTTP client went away) or the agent's follow limit
ends the stream.
"""

from __future__ import annotations

from pydantic import Field

from fnplane.shared.models.compute import WireModel


class InstanceLogsRequest(WireModel):
    instance_id: str = Field(alias="instanceId")
    tail: int = Field(100, ge=0)
    follow: bool = False
    cancel_subject: str | None = Field(None, alias="cancelSubject")


class InstanceLogsChunk(WireModel):
    lines: list[str] = Field(default_factory=list)
    end: bool = False
    # "not-found" when the agent has no such instance
    error: str | None = None
