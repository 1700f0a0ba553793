"""docs/settings.md lists every field of every `...Settings` class (STYLE.md: "a test checks the list").

The page is generated from the classes and the comments above their fields:
`make settings-doc` (or `python tests/unit/test_settings_doc.py > docs/settings.md`) rewrites it.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

import fnplane

DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
# modules that must not be imported just to look at them (they run something on import)
_SKIP = re.compile(r"(\.__main__$|\.migrations(\.|$))")
_FIELD_LINE = re.compile(r"^    (\w+)\s*:")


def settings_classes() -> list[type[BaseSettings]]:
    found: dict[str, type[BaseSettings]] = {}
    for module_info in pkgutil.walk_packages(fnplane.__path__, "fnplane."):
        if _SKIP.search(module_info.name):
            continue
        module = importlib.import_module(module_info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseSettings) and cls.__module__ == module.__name__:
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[name] for name in sorted(found)]


def env_names(cls: type[BaseSettings], name: str, field: FieldInfo) -> list[str]:
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices if isinstance(choice, str)]
    if isinstance(alias, str):
        return [alias]
    return [f"{cls.model_config.get('env_prefix', '')}{name}".upper()]


def field_comments(cls: type[BaseSettings]) -> dict[str, str]:
    """The comment lines directly above each field in the class body (or a base class's of ours)."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.startswith("fnplane."):
            comments.update(_own_field_comments(klass, cls.model_fields))
    return comments


def _own_field_comments(klass: type, fields: dict[str, FieldInfo]) -> dict[str, str]:
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(klass).splitlines():
        stripped = line.strip()
        if line.startswith("    #") and not line.startswith("     "):
            pending.append(stripped.lstrip("# ").rstrip())
            continue
        match = _FIELD_LINE.match(line)
        if match and match.group(1) in fields:
            comments[match.group(1)] = " ".join(pending)
        if not line.startswith("        "):  # a continuation line keeps nothing pending
            pending = []
    return comments


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "(computed)"
    if field.default is PydanticUndefined:
        return "(required)"
    if field.default is None:
        return "(unset)"
    if field.default == "":
        return '`""`'
    return f"`{field.default!r}`" if not isinstance(field.default, str) else f"`{field.default}`"


def render() -> str:
    out = [
        "# Settings",
        "",
        "Every component reads its settings from the environment once, at start, through one",
        "`...Settings` class (prefix `FNPLANE_<COMPONENT>_`). The flags of `fnplane up` mirror",
        "`UpSettings`; a flag wins over the environment. `fnplane up` passes the agent, gateway and",
        "control plane the values it owns (database URL, NATS URL, control URL, admin key as the",
        "agent's token, key-hash secret from `DIR/key-hash-secret`); the rest come from the environment.",
        "",
        "This page is generated from the classes and their comments: `make settings-doc`.",
        "",
    ]
    for cls in settings_classes():
        doc = (inspect.getdoc(inspect.getmodule(cls)) or "").split("\n\n", 1)[0].replace("\n", " ")
        out += [f"## `{cls.__name__}` (`{cls.__module__}`)", "", doc, ""]
        out += ["| variable | default | meaning |", "| --- | --- | --- |"]
        comments = field_comments(cls)
        for name, field in cls.model_fields.items():
            variables = " or ".join(f"`{v}`" for v in env_names(cls, name, field))
            meaning = (comments.get(name) or field.description or "").replace("|", "\\|")
            out.append(f"| {variables} | {_default(field)} | {meaning} |")
        out.append("")
    return "\n".join(out)


def test_every_settings_field_is_documented() -> None:
    text = DOC.read_text()
    missing = [
        f"{cls.__name__}.{name} ({env_names(cls, name, field)[0]})"
        for cls in settings_classes()
        for name, field in cls.model_fields.items()
        if f"`{env_names(cls, name, field)[0]}`" not in text
    ]
    assert not missing, f"docs/settings.md misses {missing}; run `make settings-doc`"


def test_documented_variables_exist() -> None:
    known = {
        env
        for cls in settings_classes()
        for name, field in cls.model_fields.items()
        for env in env_names(cls, name, field)
    }
    documented = set(re.findall(r"\| `(FNPLANE_[A-Z0-9_]+)`", DOC.read_text()))
    assert documented - known == set(), "docs/settings.md lists variables no Settings class reads"


def test_the_known_components_are_found() -> None:
    names = {cls.__name__ for cls in settings_classes()}
    assert {"UpSettings", "ControlSettings"} <= names


if __name__ == "__main__":
    print(render())
