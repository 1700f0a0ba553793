"""Functions and versions: register, list, get, update, delete (nvcf-api.md 1.1, 2.1-2.3, 2.6).

`FunctionService` holds the use cases; `to_dto` and `parse_visibility` are the pure parts the
deployment service and the routes share.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from fnplane.control.auth.principal import Principal
from fnplane.control.db.repositories import authorizations as parties_repo
from fnplane.control.db.repositories import deployments as deployments_repo
from fnplane.control.db.repositories import functions as functions_repo
from fnplane.control.db.repositories import instances as instances_repo
from fnplane.control.db.repositories._time import now_utc
from fnplane.control.db.repositories.accounts import AccountRepository
from fnplane.control.db.repositories.functions import VersionRecord
from fnplane.control.db.repositories.transactions import Connection, Database
from fnplane.control.services import instances as instances_service
from fnplane.control.services.notify import ClusterNotifier, UndeployNotifier
from fnplane.control.services.secret_box import SecretBox
from fnplane.control.services.telemetries import require_telemetries
from fnplane.control.services.visibility import (
    SeenVersion,
    function_not_found,
    owned_version,
    visible_version,
    visible_versions,
)
from fnplane.shared.errors import BadRequestError, ForbiddenError, NotFoundError
from fnplane.shared.models.functions import (
    CreateFunctionRequest,
    EnvironmentVariable,
    FunctionDto,
    FunctionStatus,
    FunctionType,
    HealthDto,
    LlmInvocationConfigDto,
    ModelDto,
    RateLimitDto,
    ResourceDto,
    TelemetriesDto,
    UpdateFunctionRequest,
    Visibility,
)
from fnplane.shared.models.registry_credentials import image_registry, recognized
from fnplane.shared.models.wire import parse_enum


def _dump(model: Any) -> Any:
    return None if model is None else model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _dump_list(models: Iterable[Any] | None) -> list[Any] | None:
    return None if models is None else [_dump(m) for m in models]


def to_dto(
    seen: SeenVersion, *, instances: list[Any] | None = None, include_secrets: bool = False
) -> FunctionDto:
    """The FunctionDto of a version as the caller may see it (shared versions are blanked, 1.1)."""
    v = seen.record
    health = HealthDto.model_validate(v.health)
    dto = FunctionDto(
        id=v.function_id,
        nca_id=v.nca_id,
        version_id=v.version_id,
        name=v.name,
        status=FunctionStatus(v.status),
        inference_url=v.inference_url,
        inference_port=v.inference_port,
        container_args=v.container_args,
        container_environment=(
            None
            if v.container_environment is None
            else [EnvironmentVariable.model_validate(e) for e in v.container_environment]
        ),
        models=None if v.models is None else [ModelDto.model_validate(m) for m in v.models],
        container_image=v.container_image,
        api_body_format=v.api_body_format,  # type: ignore[arg-type]
        helm_chart=v.helm_chart,
        helm_chart_service_name=v.helm_chart_service_name,
        health_uri=health.uri,
        created_at=v.created_at,
        active_instances=instances,
        resources=None if v.resources is None else [ResourceDto.model_validate(r) for r in v.resources],
        tags=v.tags,
        description=v.description,
        health=health,
        function_type=v.function_type,  # type: ignore[arg-type]
        secrets=[s["name"] for s in v.secrets] if include_secrets and v.secrets else None,
        rate_limit=None if v.rate_limit is None else RateLimitDto.model_validate(v.rate_limit),
        llm_invocation_config=(
            None
            if v.llm_invocation_config is None
            else LlmInvocationConfigDto.model_validate(v.llm_invocation_config)
        ),
        telemetries=None if v.telemetries is None else TelemetriesDto.model_validate(v.telemetries),
    )
    if not seen.owned:
        blanked = (
            "inference_url inference_port container_args container_environment container_image models "
            "resources "
            "helm_chart helm_chart_service_name active_instances secrets rate_limit"
        ).split()
        dto = dto.model_copy(update={**dict.fromkeys(blanked), "owned_by_different_account": True})
    return dto


def _version_values(
    request: CreateFunctionRequest, function_id: str, version_id: str, nca_id: str, box: SecretBox
) -> dict[str, Any]:
    now = now_utc()
    return {
        "version_id": version_id,
        "function_id": function_id,
        "nca_id": nca_id,
        "name": request.name,
        "status": FunctionStatus.INACTIVE.value,
        "description": request.description if request.description is not None else request.name,
        "inference_url": request.inference_url,
        "inference_port": request.inference_port,
        "container_image": request.container_image,
        "container_args": request.container_args,
        "container_environment": _dump_list(request.container_environment),
        "health": _dump(request.effective_health()),
        "models": _dump_list(request.models),
        "resources": _dump_list(request.resources),
        "helm_chart": request.helm_chart,
        "helm_chart_service_name": request.helm_chart_service_name,
        "api_body_format": request.api_body_format.value,
        "function_type": request.function_type.value,
        "tags": request.tags,
        "rate_limit": _dump(request.rate_limit),
        # values are sealed before they are stored (services.secret_box)
        "secrets": None if request.secrets is None else box.seal_secrets(version_id, request.secrets),
        "llm_invocation_config": _dump(request.llm_invocation_config),
        "telemetries": _dump(request.telemetries),
        "created_at": now,
        "updated_at": now,
    }


def _require_runnable(request: CreateFunctionRequest) -> None:
    """Something to start: an image (the container backend runs it, its own CMD unless containerArgs),
    a command line (`containerArgs`: the process backend runs it), or a Helm chart."""
    image = (request.container_image or "").strip()
    args = (request.container_args or "").strip()
    if not request.helm_chart and not image and not args:
        raise BadRequestError(
            "Validation failed: field 'containerArgs': a function needs containerImage (run by the "
            "container backend) or containerArgs (the command line the process backend runs)",
            field="containerArgs",
            rule="containerImage or containerArgs is required unless helmChart is set",
        )


def _require_allowed_image(request: CreateFunctionRequest, allowed: list[str]) -> None:
    """NVCF's registry allowlist: `containerImage` from a registry the operator allows."""
    image = (request.container_image or "").strip()
    if not allowed or not image:
        return
    host = image_registry(image)
    if not recognized(host, allowed):
        raise BadRequestError(
            f"Validation failed: field 'containerImage': registry {host} is not allowed "
            f"(allowed: {', '.join(allowed)})",
            field="containerImage",
            rule=f"the image's registry must be one of {', '.join(allowed)}",
        )


def parse_visibility(values: list[str] | None) -> set[Visibility]:
    """The `visibility` query: repeated (`?visibility=a&visibility=b`), comma lists, or both, as
    Spring binds a `List` parameter; absent or empty: all three."""
    parts = [part for value in values or () for part in value.split(",") if part.strip()]
    try:
        return {parse_enum(Visibility, part) for part in parts} or set(Visibility)
    except ValueError:
        raise BadRequestError(
            "Validation failed: field 'visibility': must be a comma list of authorized, private, public",
            field="visibility",
            rule="authorized, private, public",
        ) from None


async def _listed(conn: Connection, principal: Principal, visibility: set[Visibility]) -> list[SeenVersion]:
    out: list[SeenVersion] = []
    for record in await functions_repo.versions_visible_to(conn, principal.nca_id):
        owned = record.nca_id == principal.nca_id
        matches = await parties_repo.shared_with(
            conn, record.function_id, record.version_id, principal.nca_id
        )
        kinds = set()
        if owned:
            kinds.add(Visibility.PRIVATE)
        else:
            if principal.nca_id in matches:
                kinds.add(Visibility.AUTHORIZED)
            if "*" in matches:
                kinds.add(Visibility.PUBLIC)
        if not kinds & visibility:
            continue
        if principal.may_access_function(record.function_id, record.version_id, owned=owned):
            out.append(SeenVersion(record, owned, "*" in matches))
    return out


async def _apply_model_updates(
    conn: Connection, record: VersionRecord, request: UpdateFunctionRequest
) -> None:
    """Per-model LLM settings; NVCF propagates them to every sibling version of an LLM function."""
    if record.function_type != FunctionType.LLM.value:
        raise BadRequestError(
            "modelUpdates are only allowed for LLM functions",
            field="modelUpdates",
            rule="only allowed for LLM functions",
        )
    names = {m["name"] for m in record.models or ()}
    for update in request.model_updates or ():
        if update.model_name not in names:
            raise BadRequestError(
                f"Validation failed: field 'modelUpdates': unknown model '{update.model_name}'",
                field="modelUpdates",
                rule="must name a model of the function",
            )
    for sibling in await functions_repo.versions_of(conn, record.function_id):
        models = [dict(m) for m in sibling.models or ()]
        for model in models:
            for update in request.model_updates or ():
                if model["name"] == update.model_name and update.llm_config is not None:
                    config = dict(model.get("llmConfig") or {})
                    config.update(update.llm_config.model_dump(by_alias=True, exclude_none=True))
                    model["llmConfig"] = config
        await functions_repo.update_version(conn, sibling.version_id, models=models or None)


class FunctionService:
    def __init__(
        self,
        database: Database,
        accounts: AccountRepository,
        box: SecretBox,
        notifier: ClusterNotifier,
        undeploys: UndeployNotifier,
        image_registries: list[str] | None = None,
    ) -> None:
        self._database = database
        self._accounts = accounts
        self._box = box
        self._notifier = notifier
        self._undeploys = undeploys
        self._image_registries = [r.lower() for r in image_registries or []]

    async def create_function(self, principal: Principal, request: CreateFunctionRequest) -> FunctionDto:
        if not principal.may_create_functions():
            raise ForbiddenError("The API key's resources do not include account-functions/*")
        _require_runnable(request)
        _require_allowed_image(request, self._image_registries)
        account = await self._accounts.get(principal.nca_id)
        if account is None:
            raise NotFoundError(f"Account '{principal.nca_id}' not found")
        function_id, version_id = str(uuid.uuid4()), str(uuid.uuid4())
        async with self._database.transaction() as conn:
            if await functions_repo.count_functions(conn, principal.nca_id) >= account.max_functions_allowed:
                raise BadRequestError(
                    f"Account '{principal.nca_id}' already has the maximum number of functions "
                    f"({account.max_functions_allowed})"
                )
            await require_telemetries(conn, principal.nca_id, request.telemetries)
            values = _version_values(request, function_id, version_id, principal.nca_id, self._box)
            await functions_repo.insert_function(
                conn, function_id, principal.nca_id, request.name, values["created_at"]
            )
            await functions_repo.insert_version(conn, values)
            record = await functions_repo.get_version(conn, version_id)
        assert record is not None
        return to_dto(SeenVersion(record, owned=True, public=False))

    async def create_version(
        self, principal: Principal, function_id: str, request: CreateFunctionRequest
    ) -> FunctionDto:
        _require_runnable(request)
        _require_allowed_image(request, self._image_registries)
        version_id = str(uuid.uuid4())
        async with self._database.transaction() as conn:
            owner = await functions_repo.function_owner(conn, function_id)
            if owner is None or owner != principal.nca_id:
                raise function_not_found(function_id)
            if not (
                principal.may_create_functions()
                or principal.may_access_function(function_id, None, owned=True)
            ):
                raise ForbiddenError(f"The credential's resources do not cover function '{function_id}'")
            if await parties_repo.is_public(conn, function_id):
                raise BadRequestError(
                    f"Function '{function_id}' is public; public functions cannot get new versions"
                )
            existing = await functions_repo.versions_of(conn, function_id)
            is_llm = request.function_type == FunctionType.LLM
            if existing and any((v.function_type == FunctionType.LLM.value) != is_llm for v in existing):
                raise BadRequestError(
                    "Validation failed: field 'functionType': "
                    "LLM and non-LLM versions cannot share a function",
                    field="functionType",
                    rule="same LLM-ness as the existing versions",
                )
            await require_telemetries(conn, principal.nca_id, request.telemetries)
            await functions_repo.insert_version(
                conn, _version_values(request, function_id, version_id, principal.nca_id, self._box)
            )
            record = await functions_repo.get_version(conn, version_id)
        assert record is not None
        return to_dto(SeenVersion(record, owned=True, public=False))

    async def list_functions(self, principal: Principal, visibility: set[Visibility]) -> list[FunctionDto]:
        async with self._database.reading() as conn:
            return [to_dto(seen) for seen in await _listed(conn, principal, visibility)]

    async def list_function_ids(self, principal: Principal, visibility: set[Visibility]) -> list[str]:
        async with self._database.reading() as conn:
            seen = await _listed(conn, principal, visibility)
        return list(dict.fromkeys(s.record.function_id for s in seen))

    async def list_versions(self, principal: Principal, function_id: str) -> list[FunctionDto]:
        async with self._database.reading() as conn:
            return [to_dto(seen) for seen in await visible_versions(conn, principal, function_id)]

    async def get_version(
        self,
        principal: Principal,
        function_id: str,
        version_id: str,
        *,
        details: bool,
        include_secrets: bool,
    ) -> FunctionDto:
        async with self._database.reading() as conn:
            seen = await visible_version(conn, principal, function_id, version_id)
            instances = None
            if details and seen.owned:
                instances = await instances_service.active_instances(conn, version_id)
        return to_dto(seen, instances=instances, include_secrets=details and include_secrets)

    async def update_version(
        self, principal: Principal, function_id: str, version_id: str, request: UpdateFunctionRequest
    ) -> FunctionDto:
        if not request.has_update():
            raise BadRequestError(
                "Validation failed: one of tags, rateLimit, modelUpdates or llmInvocationConfig is required",
                field="body",
                rule="at least one updatable field",
            )
        async with self._database.transaction() as conn:
            seen = await owned_version(conn, principal, function_id, version_id)
            values: dict[str, Any] = {"updated_at": now_utc()}
            if request.tags is not None:
                values["tags"] = request.tags
            if request.rate_limit is not None:
                values["rate_limit"] = _dump(request.rate_limit)
            if request.llm_invocation_config is not None:
                if seen.record.function_type != FunctionType.LLM.value:
                    raise BadRequestError(
                        "llmInvocationConfig is only allowed for LLM functions",
                        field="llmInvocationConfig",
                        rule="only allowed for LLM functions",
                    )
                values["llm_invocation_config"] = _dump(request.llm_invocation_config)
            await functions_repo.update_version(conn, version_id, **values)
            if request.model_updates:
                await _apply_model_updates(conn, seen.record, request)
            record = await functions_repo.get_version(conn, version_id)
        assert record is not None
        return to_dto(SeenVersion(record, owned=True, public=seen.public))

    async def clear_rate_limit(self, principal: Principal, function_id: str, version_id: str) -> None:
        """Remove the version's `rateLimit` (NVCF's `DELETE /v2/nvcf/ratelimit/...`, nvcf-api.md 1.8)."""
        async with self._database.transaction() as conn:
            await owned_version(conn, principal, function_id, version_id)
            await functions_repo.update_version(conn, version_id, rate_limit=None, updated_at=now_utc())

    async def delete_version(self, principal: Principal, function_id: str, version_id: str) -> None:
        """Delete a version with its deployment; its instances are stopped (desired=false)."""
        async with self._database.transaction() as conn:
            await owned_version(conn, principal, function_id, version_id)
            if await parties_repo.is_public(conn, function_id):
                raise BadRequestError(f"Function '{function_id}' is public and cannot be deleted")
            now = now_utc()
            deployment = await deployments_repo.by_version(conn, version_id)
            if deployment is not None:
                await deployments_repo.delete_deployment(conn, deployment.deployment_id)
            cluster_ids = await instances_repo.release_version(conn, version_id, now)
            await functions_repo.delete_version(conn, function_id, version_id)
        await self._notifier.clusters(cluster_ids)
        # what is still queued for the version will never run
        await self._undeploys.undeployed(function_id, version_id)

    async def function_id_of(self, version_id: str) -> str | None:
        """The function a version belongs to; None for an unknown version (no visibility check)."""
        async with self._database.reading() as conn:
            version = await functions_repo.get_version(conn, version_id)
        return None if version is None else version.function_id
