"""Settings of the control plane (environment prefix FNPLANE_CONTROL_)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

# the former default of key_hash_secret, published in docs/settings.md: never accepted
_PUBLIC_SECRETS = frozenset({"change-me"})


class MissingKeyHashSecretError(RuntimeError):
    """The control plane was configured without a key-hash secret of its own."""


class ControlSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FNPLANE_CONTROL_")

    database_url: str = "sqlite:///fnplane.db"
    # secret for the keyed hash of API keys and service-account secrets, and from which the keys that
    # encrypt the stored JWT signing keys and function secrets are derived; required (the control
    # plane refuses to start without it); `fnplane up` keeps one in its home directory
    key_hash_secret: str | None = None
    jwt_issuer: str = "fnplane"
    # the `aud` of the JWTs the control plane mints; a token for another audience is refused
    jwt_audience: str = "fnplane-api"
    jwt_ttl_s: int = 3600
    # how long a resolved credential is cached by the control plane and the gateway
    auth_cache_ttl_s: float = 5.0
    default_max_functions: int = 2147483647
    # registries an account may add credentials for (nvcf-api.md 1.9, NVCF's default list); a name
    # matches itself and its subdomains (123.dkr.ecr.us-east-1.amazonaws.com for dkr.ecr.amazonaws.com)
    recognized_registries: list[str] = [
        "docker.io",
        "nvcr.io",
        "helm.ngc.nvidia.com",
        "api.ngc.nvidia.com",
        "dkr.ecr.amazonaws.com",
        "public.ecr.aws",
        "cr.volces.com",
        "azurecr.io",
    ]
    # NVCF's registry allowlist: a function's containerImage must come from one of these registries
    # (the host part of the image, `docker.io` when it names none); empty: any registry
    image_registries: list[str] = []
    # a request body over this is refused with 413 before it is read (the API's bodies are small JSON)
    max_body_bytes: int = 1024 * 1024
    # a cluster whose agent has not sent a heartbeat for this long has its instances marked failed
    agent_heartbeat_timeout_s: float = 15.0
    # API keys (nvcf-api.md 1.13): per-owner limit, longest lifetime, largest `authorizations` document
    max_api_keys_per_owner: int = 8
    max_api_key_ttl_days: int = 365
    max_authz_size_chars: int = 2048
    # reconciler (function status, instance counts): period of the full pass; reports wake it at once
    reconcile_interval_s: float = 2.0
    # a GPU spec with this many failed instances within the window is not topped up any more
    # (a crash-looping version is not replaced forever); it resumes when old failures age out
    instance_failure_limit: int = 5
    instance_failure_window_s: float = 600.0
    # with several control-plane replicas on one PostgreSQL, the one holding the control lease runs
    # the reconciler and the autoscaler; the others try to take it this often (and the holder checks
    # its lease connection this often): a dead holder is replaced within about this long
    lease_poll_interval_s: float = 2.0
    # the AccessAuthority caches a function's visible versions (with their status) this long
    access_versions_cache_ttl_s: float = 0.5

    def require_key_hash_secret(self) -> str:
        """The key-hash secret; MissingKeyHashSecretError if it is unset, blank or a known public value."""
        secret = self.key_hash_secret
        if secret is None or not secret.strip() or secret in _PUBLIC_SECRETS:
            raise MissingKeyHashSecretError(
                "the control plane needs a key-hash secret of its own: set FNPLANE_CONTROL_KEY_HASH_SECRET "
                "to a long random string (python -c 'import secrets; print(secrets.token_urlsafe(48))') and "
                "keep it: API keys, signing keys and function secrets depend on it"
            )
        return secret
