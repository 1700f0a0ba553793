"""The field a request-validation error names: `field_and_rule(errors, body)`.

Every 400 of a validation error names its field the same way, as the services name theirs: the dotted
path from the body root in wire names, list positions as numbers (`deploymentSpecifications.0.gpu`,
`secrets.0.value`); a query, path or header parameter by its name; `body` for the body as a whole.

Pydantic's `loc` needs three corrections for that:

* it names the members of a union it tried (`secrets.0.value.str`, `...dict[str,any]`): those are
  not places in the body, so the path keeps only what the body really has there (a key of an object,
  an index of an array, or the missing field an error ends on);
* a model-level rule (a `model_validator`) is located at its model; the rule says which field it is
  about (`wire.invalid(rule, field=...)`, in the error's context), and that field is appended;
* a union tried several members: their rules at the same place are joined with "or".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# what FastAPI puts first in a `loc`: where the value came from
_SOURCES = frozenset({"body", "query", "path", "header", "cookie"})


def _body_path(loc: Sequence[Any], body: Any) -> list[str]:
    parts: list[str] = []
    node = body
    for position, element in enumerate(loc):
        last = position == len(loc) - 1
        if isinstance(node, dict) and isinstance(element, str) and (element in node or last):
            parts.append(element)
            node = node.get(element)
        elif isinstance(node, list) and isinstance(element, int) and 0 <= element < len(node):
            parts.append(str(element))
            node = node[element]
        # else: a union member's tag, not a place in the body
    return parts


def field_path(error: dict[str, Any], body: Any) -> str:
    """The dotted field path of one pydantic error (module docstring)."""
    loc = list(error.get("loc", ()))
    source = loc.pop(0) if loc and loc[0] in _SOURCES else "body"
    parts = _body_path(loc, body) if source == "body" else [str(p) for p in loc]
    rule_field = (error.get("ctx") or {}).get("field")
    if isinstance(rule_field, str) and rule_field:
        parts.extend(rule_field.split("."))
    return ".".join(parts) or "body"


def field_and_rule(errors: Sequence[dict[str, Any]], body: Any) -> tuple[str, str]:
    """The field of the first error and the rule it broke (every rule given for that same field)."""
    if not errors:
        return "body", "invalid value"
    first = errors[0]
    if first.get("type") == "json_invalid":
        # the loc of a JSON syntax error is the character offset, not a field
        return "body", f"must be valid JSON ({(first.get('ctx') or {}).get('error', 'parse error')})"
    field = field_path(first, body)
    rules = [str(e.get("msg", "invalid value")) for e in errors if field_path(e, body) == field]
    return field, " or ".join(dict.fromkeys(rules))
