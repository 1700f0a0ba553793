"""Who connects to the bus with which credential, for one `fnplane up` (permissions: shared/permissions.py).

* Embedded nats-server: `fnplane up` is its operator. The operator and account keys are made on the
  first start and kept in `DIR/nats-keys.json` (0600, reused on every restart: the server's config and
  every credential stay valid); each component gets a fresh user credential at each start, and the
  control plane mints one per instance for its worker.
* External NATS (`--nats-url`): the platform's own parts connect with `--nats-creds FILE`. Workers get
  credentials of their own only when the account's signing key is given (`nats_signing_key_file`, with
  `nats_account` when that key is a signing key rather than the account's identity key); otherwise
  they use the agent's credential, and the platform says at start that workers are not isolated from
  each other.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fnplane.bus.connection import BusCredential
from fnplane.bus.credentials import CredentialsError, OperatorKeys, UserCredential, UserIssuer
from fnplane.shared import permissions
from fnplane.shared.errors import FnplaneError
from fnplane.shared.permissions import Permissions
from fnplane.up.home import write_secret

logger = logging.getLogger(__name__)

NATS_KEYS_FILE = "nats-keys.json"


class BusCredentialError(FnplaneError):
    """A NATS key or credentials file given to `fnplane up` cannot be used."""


def operator_keys(home: Path) -> OperatorKeys:
    """The embedded server's operator and account keys: made once, then reused."""
    path = home / NATS_KEYS_FILE
    if path.exists():
        try:
            return OperatorKeys.from_json(path.read_text())
        except CredentialsError as exc:
            raise BusCredentialError(f"{path}: {exc}") from None
    keys = OperatorKeys.generate()
    write_secret(path, keys.to_json())
    return keys


class BusCredentials:
    """The credentials of the platform's parts: minted (an issuer) or one shared file (external NATS)."""

    def __init__(self, issuer: UserIssuer | None, shared: Path | None = None) -> None:
        self._issuer = issuer
        self._shared = shared

    @classmethod
    def for_embedded(cls, keys: OperatorKeys) -> BusCredentials:
        return cls(keys.issuer())

    @classmethod
    def for_external(
        cls, creds: Path | None, signing_key_file: Path | None, account: str | None
    ) -> BusCredentials:
        issuer = None
        if signing_key_file is not None:
            try:
                issuer = UserIssuer(signing_key_file.read_text().strip(), account)
            except (OSError, CredentialsError) as exc:
                raise BusCredentialError(f"NATS account signing key {signing_key_file}: {exc}") from None
        if creds is not None:
            try:
                UserCredential.parse(creds.read_text())
            except (OSError, CredentialsError) as exc:
                raise BusCredentialError(f"NATS credentials {creds}: {exc}") from None
        if issuer is None:
            logger.warning(
                "external NATS without an account signing key: workers connect with the platform's "
                "credential and are not isolated from each other (see docs/security.md)"
            )
        return cls(issuer, creds)

    def _credential(self, name: str, grants: Permissions) -> BusCredential:
        if self._issuer is not None and self._shared is None:
            return self._issuer.issue(name, grants)
        return self._shared

    def gateway(self) -> BusCredential:
        return self._credential("gateway", permissions.gateway())

    def control(self) -> BusCredential:
        return self._credential("control", permissions.control())

    def agent(self, cluster_name: str) -> BusCredential:
        return self._credential(f"agent-{cluster_name}", permissions.agent(cluster_name))

    @property
    def mints_worker_credentials(self) -> bool:
        return self._issuer is not None

    def worker_credentials(self, version_id: str, instance_id: str) -> str:
        """The `.creds` text of one instance's worker credential."""
        assert self._issuer is not None
        grants = permissions.worker(version_id, instance_id)
        return self._issuer.issue(f"worker-{instance_id}", grants).creds_file()


# what `fnplane nats-creds` writes from the operator keys in DIR (docs/deploy.md)
NATS_MATERIALS = ("control", "gateway", "agent", "signing-key", "server-config")


def write_nats_material(home: Path, what: str, out: Path, *, cluster_name: str = "local") -> str:
    """Write one role's `.creds` file, the account signing key's seed, or the nats-server config
    fragment, from `DIR/nats-keys.json` (made on first use, as `fnplane up` makes it); returns what to
    tell the operator. Every file is written mode 0600."""
    if what not in NATS_MATERIALS:
        raise BusCredentialError(f"unknown NATS material {what!r}: one of {', '.join(NATS_MATERIALS)}")
    home.mkdir(parents=True, exist_ok=True)
    keys = operator_keys(home)
    if what == "server-config":
        write_secret(out, keys.server_config())
        return f"{out}: the nats-server auth config (include it in the server's config file)"
    if what == "signing-key":
        write_secret(out, keys.account_signing)
        return (
            f"{out}: the account signing key; give `fnplane control` --nats-signing-key-file {out} "
            f"--nats-account {keys.account_public_key}"
        )
    credentials = BusCredentials.for_embedded(keys)
    credential = {
        "control": credentials.control,
        "gateway": credentials.gateway,
        "agent": lambda: credentials.agent(cluster_name),
    }[what]()
    assert isinstance(credential, UserCredential)
    write_secret(out, credential.creds_file())
    suffix = f" of cluster {cluster_name}" if what == "agent" else ""
    return f"{out}: the NATS credentials of a {what}{suffix}"
