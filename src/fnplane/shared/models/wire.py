"""Building blocks of the NVCF-compatible wire models (nvcf-api.md 0.2).

* camelCase on the wire, snake_case in Python; unknown request fields are ignored;
* enum inputs are case-insensitive and accept the name or the `toString()` value;
* ISO-8601 durations (`PT10S`) are kept as strings and checked here;
* rule violations raise `PydanticCustomError`, whose message is the rule itself, so the problem
  document reads "field 'tags': each tag must match [a-zA-Z0-9\\-_:=]+".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any, TypeVar

from annotated_types import Ge, Le
from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError


class ApiModel(BaseModel):
    """A request or response body: camelCase aliases, unknown fields ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def invalid(rule: str, *, field: str | None = None) -> PydanticCustomError:
    """The error to raise from a validator: `rule` becomes the problem's `rule` verbatim.

    `field`: in a model-level rule (a `model_validator`), the field of that model it is about, dotted
    (`models.0.version`), so the problem names it rather than the model as a whole.
    """
    return PydanticCustomError("rule", rule, None if field is None else {"field": field})


def documented_string(**rules: Any) -> Callable[[dict[str, Any]], None]:
    """`json_schema_extra` of an optional field a service checks itself (so its 400 names NVCF's
    rule): the OpenAPI document shows the string the service accepts (`pattern`, `minLength`, ...),
    not "string or null"."""

    def extra(schema: dict[str, Any]) -> None:
        schema.pop("anyOf", None)
        schema.pop("default", None)
        schema.update(type="string", **rules)

    return extra


E = TypeVar("E", bound=Enum)


def parse_enum(enum: type[E], value: Any) -> E:
    """Case-insensitive lookup by value or by name (Jackson's lenient enum parsing)."""
    if isinstance(value, enum):
        return value
    if isinstance(value, str):
        folded = value.strip().lower()
        for member in enum:
            if str(member.value).lower() == folded or member.name.lower() == folded:
                return member
    allowed = ", ".join(str(m.value) for m in enum)
    raise invalid(f"must be one of {allowed} (case-insensitive)")


def lenient(enum: type[E]) -> Any:
    """`Annotated[MyEnum, lenient(MyEnum)]`: parse case-insensitively, serialize the wire value."""
    return BeforeValidator(lambda value: parse_enum(enum, value))


_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


def duration_seconds(value: str) -> float:
    """Seconds of an ISO-8601 duration such as `PT10S`, `PT1M30S`, `P1D`; ValueError otherwise."""
    match = _DURATION.match(value.strip())
    if not match or value.strip().upper() in ("P", "PT") or value.strip().upper().endswith("T"):
        raise ValueError(f"not an ISO-8601 duration: {value!r}")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


def _check_duration(value: Any) -> str:
    if not isinstance(value, str):
        raise invalid("must be an ISO-8601 duration string such as PT10S")
    try:
        duration_seconds(value)
    except ValueError:
        raise invalid("must be an ISO-8601 duration string such as PT10S") from None
    return value.strip().upper()


Duration = Annotated[str, BeforeValidator(_check_duration)]


def _utc(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Timestamps on the wire: ISO-8601 in UTC with a trailing Z, e.g. 2026-01-01T00:00:00.123456Z.
Timestamp = Annotated[datetime, PlainSerializer(_utc, return_type=str)]


JAVA_INT_MAX = 2**31 - 1


def _not_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise invalid("must be an integer, not true or false")
    return value


# An integer field of a request. NVCF's DTOs hold Java ints: a larger number is a 400 naming the field
# (it must never reach a database column that cannot hold it), and true/false are not numbers.
Int32 = Annotated[int, BeforeValidator(_not_boolean), Ge(-JAVA_INT_MAX - 1), Le(JAVA_INT_MAX)]


def dedupe(values: list[str]) -> list[str]:
    """A JSON array that NVCF models as a set: duplicates dropped, order kept."""
    return list(dict.fromkeys(values))
