"""Credentials: `fnplane key ...` (API keys), `fnplane service-account ...` and `fnplane token`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

import typer

from fnplane.cli.config import ApiKeyOption, UrlOption
from fnplane.cli.output import JsonOption, Output, key
from fnplane.cli.session import open_session

key_app = typer.Typer(help="API keys of your account.", no_args_is_help=True)
service_account_app = typer.Typer(
    help="Service accounts: client ids and secrets that get tokens (`fnplane token`).", no_args_is_help=True
)

_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: str) -> timedelta:
    """`30d`, `12h`, `90m`, `45s`, `2w`, or several at once (`1d12h`); a bare number is seconds."""
    text = value.strip().lower()
    if text.isdigit():
        seconds = int(text)
    else:
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise typer.BadParameter(f"{value!r} is not a duration like 30d, 12h, 90m or 1d12h")
        seconds = sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if seconds <= 0:
        raise typer.BadParameter(f"{value!r} is not a positive duration")
    return timedelta(seconds=seconds)


def scope_list(values: list[str]) -> list[str]:
    """--scope a --scope b, or --scope a,b."""
    return [scope for value in values for scope in re.split(r"[,\s]+", value) if scope]


ScopeOption = Annotated[
    list[str], typer.Option("--scope", help="Scope, e.g. invoke_function (repeatable, or comma-separated).")
]
ClientIdArgument = Annotated[
    str, typer.Argument(metavar="CLIENT_ID", help="The service account's client id.")
]

KEY_COLUMNS = [
    ("ID", key("id")),
    ("STATUS", key("status")),
    ("DESCRIPTION", key("description")),
    ("CREATED", key("created_at")),
    ("EXPIRES", key("expires_at")),
]
SERVICE_ACCOUNT_COLUMNS = [
    ("CLIENT ID", key("clientId")),
    ("NAME", key("name")),
    ("SCOPES", key("scopes")),
    ("CREATED", key("createdAt")),
    ("SECRET ROTATED", key("secretRotatedAt")),
]


@key_app.command("create")
def create_key(
    scopes: ScopeOption,
    expires_in: Annotated[
        str, typer.Option("--expires-in", help="Lifetime: 30d, 12h, 90m, 1d12h ...")
    ] = "30d",
    description: Annotated[str, typer.Option(help="What the key is for.")] = "fnplane cli",
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key with these scopes on all the account's functions; its value is shown only now."""
    lifetime = parse_duration(expires_in)
    with open_session(url, api_key, as_json) as session:
        created = session.client.create_key(
            scopes=scope_list(scopes), expires_in=lifetime, description=description
        )
        session.out.result(created, lambda: show_new_key(session.out, created))


def show_new_key(out: Output, created: dict[str, Any]) -> None:
    out.fields(
        [
            (name, created.get(field))
            for name, field in (("id", "id"), ("value", "value"), ("expires", "expires_at"))
        ]
    )
    out.note("the value is shown only this once")


@key_app.command("list")
def list_keys(url: UrlOption = None, api_key: ApiKeyOption = None, as_json: JsonOption = False) -> None:
    """List the account's API keys (values masked)."""
    with open_session(url, api_key, as_json) as session:
        keys = session.client.list_keys()
        session.out.listing({"keys": keys}, KEY_COLUMNS, empty="no keys")


@key_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (not its value).")],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke an API key: every gateway refuses it within a second. --json prints {}."""
    with open_session(url, api_key, as_json) as session:
        session.client.revoke_key(key_id)
        session.out.result({}, f"revoked key {key_id}")


def show_service_account(out: Output, account: dict[str, Any]) -> None:
    secret = account.get("clientSecret")
    out.fields(
        [
            ("client id", account.get("clientId")),
            ("name", account.get("name")),
            ("scopes", account.get("scopes")),
            *([("client secret", secret)] if secret else []),
        ]
    )
    if secret:
        out.note("the secret is shown only this once")


@service_account_app.command("create")
def create_service_account(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A name for the service account.")],
    scopes: ScopeOption,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a service account allowed these scopes; its client secret is shown only now."""
    with open_session(url, api_key, as_json) as session:
        account = session.client.create_service_account(name, scope_list(scopes))
        session.out.result({"serviceAccount": account}, lambda: show_service_account(session.out, account))


@service_account_app.command("list")
def list_service_accounts(
    url: UrlOption = None, api_key: ApiKeyOption = None, as_json: JsonOption = False
) -> None:
    """List the account's service accounts."""
    with open_session(url, api_key, as_json) as session:
        accounts = session.client.list_service_accounts()
        session.out.listing(
            {"serviceAccounts": accounts}, SERVICE_ACCOUNT_COLUMNS, empty="no service accounts"
        )


@service_account_app.command("rotate")
def rotate_service_account(
    client_id: ClientIdArgument,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give the service account a new secret; tokens issued before are refused from now on."""
    with open_session(url, api_key, as_json) as session:
        account = session.client.rotate_service_account_secret(client_id)
        session.out.result({"serviceAccount": account}, lambda: show_service_account(session.out, account))


@service_account_app.command("delete")
def delete_service_account(
    client_id: ClientIdArgument,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete the service account; its tokens are refused at once. --json prints {}."""
    with open_session(url, api_key, as_json) as session:
        session.client.delete_service_account(client_id)
        session.out.result({}, f"deleted service account {client_id}")


def token(
    client_id: Annotated[
        str, typer.Option("--client-id", envvar="FNPLANE_CLIENT_ID", help="Service account client id.")
    ],
    client_secret: Annotated[
        str,
        typer.Option(
            "--client-secret",
            envvar="FNPLANE_CLIENT_SECRET",
            help="Its secret (better: $FNPLANE_CLIENT_SECRET, which `ps` does not show).",
            show_envvar=True,
        ),
    ],
    scopes: Annotated[
        list[str] | None, typer.Option("--scope", help="Scopes wanted (default: all it is allowed).")
    ] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Get an access token by client credentials; prints just the token (usable as FNPLANE_API_KEY)."""
    hint = "the client id or secret was refused (--client-id / --client-secret, or FNPLANE_CLIENT_ID / ...)"
    with open_session(url, None, as_json, refused_hint=hint) as session:
        answer = session.client.token(client_id, client_secret, scope_list(scopes or []) or None)
        session.out.result(answer, str(answer["access_token"]))
        if not session.out.as_json:
            session.out.note(f"expires in {answer.get('expires_in')} s; scope: {answer.get('scope')}")
