"""Function secrets: `PUT /v2/nvcf/secrets/functions/{functionId}/versions/{versionId}` (nvcf-api.md 1.7).

The given secrets are merged into the version's by name (a new value replaces the old one, other
secrets stay). A version without secrets may get some only while it is INACTIVE: a deployed one was
started without them. Values are sealed (services.secret_box) before they are stored; instances
already running keep the environment they were started with.
"""

from __future__ import annotations

from fnplane.control.auth.principal import Principal
from fnplane.control.db.repositories import functions as functions_repo
from fnplane.control.db.repositories._time import now_utc
from fnplane.control.db.repositories.transactions import Database
from fnplane.control.services.secret_box import SecretBox
from fnplane.control.services.visibility import owned_version
from fnplane.shared.errors import BadRequestError
from fnplane.shared.models.functions import FunctionStatus, UpdateSecretsRequest


class SecretService:
    def __init__(self, database: Database, box: SecretBox) -> None:
        self._database = database
        self._box = box

    async def update_secrets(
        self,
        principal: Principal,
        function_id: str,
        version_id: str,
        request: UpdateSecretsRequest,
    ) -> None:
        async with self._database.transaction() as conn:
            seen = await owned_version(conn, principal, function_id, version_id)
            existing = seen.record.secrets or []
            if not existing and seen.record.status != FunctionStatus.INACTIVE.value:
                raise BadRequestError(
                    f"Function '{function_id}' version '{version_id}' has no secrets and is "
                    f"{seen.record.status}: secrets can only be added to a version without secrets "
                    "while it is INACTIVE",
                    field="secrets",
                    rule="a version without secrets must be INACTIVE",
                )
            merged = {entry["name"]: entry for entry in existing}
            for secret in request.secrets:
                merged[secret.name] = self._box.seal_secret(version_id, secret)
            await functions_repo.update_version(
                conn, version_id, secrets=list(merged.values()), updated_at=now_utc()
            )
