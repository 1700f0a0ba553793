"""Where the CLI finds the platform and its credential, and `fnplane login`, which remembers them.

Each setting is taken from the first place that has it:

    1. the command's flag             --url, --api-key
    2. the environment                FNPLANE_URL; FNPLANE_API_KEY, then NVCF_API_KEY
    3. the config file `login` wrote  $FNPLANE_CONFIG, else $XDG_CONFIG_HOME/fnplane/config.json
                                      (~/.config/fnplane/config.json), mode 0600
    4. the default                    http://127.0.0.1:8080, no credential

`resolve` is the pure rule; `load_file` / `save_file` the file's I/O.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_URL = "http://127.0.0.1:8080"
URL_VARIABLE = "FNPLANE_URL"
API_KEY_VARIABLES = ("FNPLANE_API_KEY", "NVCF_API_KEY")
CONFIG_VARIABLE = "FNPLANE_CONFIG"

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help=f"Base URL of the platform (else ${URL_VARIABLE}, the login file, {DEFAULT_URL}).",
        rich_help_panel="Connection",
        show_default=False,
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="API key or token (else $FNPLANE_API_KEY, $NVCF_API_KEY, the login file). "
        "Prefer the variable or `fnplane login`: `ps` shows command lines.",
        rich_help_panel="Connection",
        show_default=False,
    ),
]


class ConfigFileError(Exception):
    """The config file exists but is not a JSON object of strings."""


@dataclass(frozen=True)
class Connection:
    """The platform a command talks to, and where each part came from (flag, env, file, default)."""

    url: str
    api_key: str | None
    url_source: str
    api_key_source: str


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """$FNPLANE_CONFIG, else $XDG_CONFIG_HOME/fnplane/config.json, else ~/.config/fnplane/config.json."""
    env = os.environ if environ is None else environ
    if env.get(CONFIG_VARIABLE):
        return Path(env[CONFIG_VARIABLE]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "fnplane" / "config.json"


def resolve(
    *,
    url: str | None,
    api_key: str | None,
    environ: Mapping[str, str],
    file: Mapping[str, Any],
) -> Connection:
    """Flags, then the environment, then the config file, then the default; empty values do not count."""
    url_value, url_source = DEFAULT_URL, "default"
    for value, source in ((url, "flag"), (environ.get(URL_VARIABLE), "env"), (file.get("url"), "file")):
        if value:
            url_value, url_source = str(value), source
            break
    key_value: str | None = None
    key_source = "none"
    candidates = [
        (api_key, "flag"),
        *((environ.get(name), "env") for name in API_KEY_VARIABLES),
        (file.get("apiKey"), "file"),
    ]
    for value, source in candidates:
        if value:
            key_value, key_source = str(value), source
            break
    return Connection(url_value.rstrip("/"), key_value, url_source, key_source)


def load_file(path: Path) -> dict[str, Any]:
    """The config file's settings; {} when there is none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ConfigFileError(f"cannot read {path}: {error.strerror}") from None
    try:
        document = json.loads(text)
    except ValueError as error:
        raise ConfigFileError(f"{path} is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ConfigFileError(f"{path} is not a JSON object")
    return document


def save_file(path: Path, settings: Mapping[str, Any]) -> None:
    """Write the settings with mode 0600 (it holds a credential), replacing the file atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # created 0600 from the start: the key is never readable by others, not even for a moment
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(dict(settings), out, indent=2)
            out.write("\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def connection(url: str | None, api_key: str | None) -> Connection:
    """The connection of a command from its flags, this process's environment and the config file."""
    return resolve(url=url, api_key=api_key, environ=os.environ, file=load_file(config_path()))


def login(
    url: Annotated[str, typer.Option("--url", help="Base URL of the platform, e.g. http://host:8080.")],
    api_key: Annotated[
        str,
        typer.Option(
            "--api-key",
            help="The API key (nvapi-...) or token to use; asked for (hidden) when not given.",
            prompt=True,
            hide_input=True,
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check/--no-check",
            help="Ask the platform whether it takes the key before saving anything (--no-check: offline).",
        ),
    ] = True,
) -> None:
    """Remember the platform's URL and an API key in the config file (mode 0600).

    Flags and the variables FNPLANE_URL / FNPLANE_API_KEY still win over the file.
    """
    from fnplane.cli.output import Output

    out = Output(as_json)
    if check:
        _check_login(out, Connection(url.rstrip("/"), api_key, "flag", "flag"))
    path = config_path()
    try:
        settings = load_file(path)
    except ConfigFileError:
        settings = {}  # replaced by what login writes
    settings.update({"url": url.rstrip("/"), "apiKey": api_key})
    try:
        save_file(path, settings)
    except OSError as error:
        out.error(f"cannot write {path}: {error.strerror}")
        raise typer.Exit(1) from None
    out.result(
        {"url": settings["url"], "configFile": str(path)},
        lambda: out.fields([("url", settings["url"]), ("config file", str(path))]),
    )


def _check_login(out: Any, conn: Connection) -> None:
    """Exit 1, saving nothing, when the platform cannot be reached or refuses the key (401). A key
    it takes but that may not list functions (403: an invoke-only key) is a good key."""
    from fnplane.cli.session import failures
    from fnplane.sdk import Client
    from fnplane.sdk.errors import ForbiddenError

    with failures(out, conn, refused_hint="the platform refused this API key; nothing was saved"):
        with Client(base_url=conn.url, api_key=conn.api_key, retries=0, timeout_s=10.0) as client:
            try:
                client.list_functions()
            except ForbiddenError:
                pass
