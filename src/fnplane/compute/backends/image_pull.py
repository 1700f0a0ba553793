"""What a pull of a function's image sends, and how its stream says it failed.

The credential is the account's for the image's registry host, opened by the control plane into this
assignment only (NVCF registry credentials), else the agent user's own `docker login`; aiodocker sends
it as `X-Registry-Auth`. A pull answers HTTP 200 and streams JSON lines; a failure can be one of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fnplane.shared.models.compute import InstanceAssignment
from fnplane.shared.models.registry_credentials import image_registry


def pull_auth(assignment: InstanceAssignment) -> dict[str, str] | None:
    """What a pull of the assignment's image sends as `X-Registry-Auth` (aiodocker encodes it): the
    account's credential for the image's registry host, which the control plane opened into this
    assignment only (NVCF registry credentials); None = none of ours (then the agent user's `docker login`,
    `docker_login`, else none: the runtime's own logins, if it has any)."""
    if assignment.registry_auth is None:
        return None
    return dict(assignment.registry_auth.model_dump(by_alias=True))


def docker_login(config: Mapping[str, Any], registry: str) -> dict[str, str] | None:
    """The agent user's `docker login` for `registry` from a parsed ~/.docker/config.json, used when the
    assignment brings none (as the Docker SDK did): a plain `auths` entry (`auth`, or `identitytoken`);
    credential helpers (`credsStore`, `credHelpers`) are not asked."""
    auths = config.get("auths")
    if not isinstance(auths, Mapping):
        return None
    for key, entry in auths.items():
        host = str(key).removeprefix("https://").removeprefix("http://").split("/")[0].lower()
        if host in ("index.docker.io", "registry-1.docker.io"):
            host = "docker.io"
        if host != registry or not isinstance(entry, Mapping):
            continue
        if entry.get("identitytoken"):
            return {"identitytoken": str(entry["identitytoken"])}
        if entry.get("auth"):
            # aiodocker opens the base64 `user:password` and names the registry itself
            return {"auth": str(entry["auth"])}
    return None


def read_docker_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """The agent user's Docker client configuration ($DOCKER_CONFIG, else ~/.docker), {} when none."""
    directory = Path(environ["DOCKER_CONFIG"]) if environ.get("DOCKER_CONFIG") else Path.home() / ".docker"
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def pull_reference(image: str, auth: Mapping[str, str] | None) -> str:
    """The reference a pull asks for: the image as given, with its registry host spelled out when a
    credential goes with it (aiodocker takes the credential's `serveraddress` from the reference's
    first component, so `team/model` would send `team`)."""
    if auth is None or image.partition("/")[0].lower() == image_registry(image):
        return image
    return f"{image_registry(image)}/{image}"


def pull_error(line: Mapping[str, Any]) -> str | None:
    """The error of one line of a pull's progress stream (a failed pull can still be an HTTP 200)."""
    if "error" in line or "errorDetail" in line:
        detail = line.get("errorDetail") or {}
        message = detail.get("message") if isinstance(detail, Mapping) else None
        return str(message or line.get("error") or "the pull failed")
    return None


class PrivateImages:
    """Which accounts may run an image that was pulled with an account's registry credential: those
    whose own pull of it succeeded. The runtime's store is shared (NVCF's pods pull `IfNotPresent`
    too), so without this an account with no credential would run another account's private image
    from the cache (Kubernetes needs its AlwaysPullImages admission plugin for that). Images pulled
    without an account's credential, or built on the host, stay everyone's. Kept in a file of the
    agent's state directory: the store outlives the agent."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._owners: dict[str, set[str]] = {}
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = {}
        if isinstance(stored, dict):
            self._owners = {str(k): {str(a) for a in v} for k, v in stored.items() if isinstance(v, list)}

    def may_run(self, image: str, account: str) -> bool:
        """The image, if present in the store, may run for `account` without a pull of its own."""
        owners = self._owners.get(image)
        return owners is None or account in owners

    def pulled(self, image: str, account: str, *, with_account_credential: bool) -> None:
        """`account` pulled `image` itself (with its own registry credential or without one)."""
        if not with_account_credential and image not in self._owners:
            return  # a public image (or one pulled with the operator's login): everyone's
        self._owners.setdefault(image, set()).add(account)
        self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text(json.dumps({k: sorted(v) for k, v in self._owners.items()}))
        temporary.replace(self._path)
