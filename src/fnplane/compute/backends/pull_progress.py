"""What an image pull has done so far, in one line, from the runtime's stream of progress lines.

`POST /images/create` streams JSON lines, one per event of one layer (`id` = the layer's short digest):
Docker sends `Pulling fs layer`, `Waiting`, `Downloading` (with `progressDetail` `current`/`total` bytes),
`Verifying Checksum`, `Download complete`, `Extracting`, `Pull complete`, or `Already exists` for a layer
it has; Podman's compatible API sends `Pulling fs layer`, `Already exists`, `Download complete` (and
`Downloading` with bytes only while a layer is slow). Other lines (`Pulling from ...`, `Digest: ...`,
`Status: ...`) name no layer and count for nothing here. The summary is what the instance's report says
while it is pulled: "pulling image nvcr.io/acme/model:1: 3 of 5 layers, 120.4 of 810.0 MB".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# a layer's statuses, lower case; those from which on the layer is here (downloaded, maybe extracting)
_LAYER_STATUSES = {
    "pulling fs layer",
    "waiting",
    "downloading",
    "verifying checksum",
    "download complete",
    "extracting",
    "pull complete",
    "already exists",
}
_HERE = {"download complete", "extracting", "pull complete", "already exists"}


@dataclass
class PullProgress:
    image: str
    # layer id -> its newest status; bytes downloaded and announced of the layers that report them
    statuses: dict[str, str] = field(default_factory=dict)
    current_bytes: dict[str, int] = field(default_factory=dict)
    total_bytes: dict[str, int] = field(default_factory=dict)

    def add(self, line: Mapping[str, Any]) -> None:
        """One line of the pull's stream."""
        status = str(line.get("status") or "").strip().lower()
        layer = line.get("id")
        if not layer or status not in _LAYER_STATUSES:
            return
        layer = str(layer)
        self.statuses[layer] = status
        detail = line.get("progressDetail")
        if status == "downloading" and isinstance(detail, Mapping):
            current, total = detail.get("current"), detail.get("total")
            if isinstance(current, int) and isinstance(total, int) and total > 0:
                self.current_bytes[layer] = min(max(current, 0), total)
                self.total_bytes[layer] = total
        elif status in _HERE and layer in self.total_bytes:
            self.current_bytes[layer] = self.total_bytes[layer]

    @property
    def layers_here(self) -> int:
        return sum(status in _HERE for status in self.statuses.values())

    def summary(self) -> str:
        """`pulling image X`, then `: N of M layers`, then `, a of b MB` once layers announce sizes."""
        text = f"pulling image {self.image}"
        if not self.statuses:
            return text
        text += f": {self.layers_here} of {len(self.statuses)} layers"
        total = sum(self.total_bytes.values())
        if total > 0:
            text += f", {_megabytes(sum(self.current_bytes.values()))} of {_megabytes(total)} MB"
        return text


def _megabytes(n_bytes: int) -> str:
    # the unit Docker's own progress bars use
    return f"{n_bytes / 1e6:.1f}"
