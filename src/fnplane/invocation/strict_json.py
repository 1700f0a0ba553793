"""JSON as RFC 8259 defines it, for the gateway's exec envelope and asset bodies.

Python's `json.loads` also takes `NaN`, `Infinity` and `-Infinity`, and turns a number past a double's
range (`1e400`) into infinity. None of them is JSON: passed on, they reached the function as `NaN` and
came back to the client inside the exec envelope (`"response": NaN`), which no strict parser reads.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fnplane.shared import errors
from fnplane.shared.json_numbers import FINITE_RULE, NOT_FINITE, loads_marked


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is beyond a double's range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(raw: bytes | str) -> Any:
    """`json.loads` that raises ValueError for NaN, Infinity and out-of-range numbers."""
    return json.loads(raw, parse_float=_finite_float, parse_constant=_no_constant)


def loads_request(raw: bytes) -> Any:
    """A request body's document; 400 naming the field (`requestBody.scores.1`, `body` for the whole
    body) that holds a number that is not JSON, or when the body is no JSON at all."""
    try:
        document = loads_marked(raw or b"null")
    except ValueError as exc:
        raise errors.BadRequestError(
            f"request body is not valid JSON: {exc}", field="body", rule="valid JSON"
        ) from None
    except RecursionError:
        raise errors.BadRequestError(
            "request body is nested too deeply", field="body", rule="JSON nested at most 900 levels"
        ) from None
    # iterative: a document nested as deep as the parser allows must not overflow the walk
    pending: list[tuple[str, Any]] = [("", document)]
    while pending:
        path, value = pending.pop()
        if value is NOT_FINITE:
            field = path or "body"
            raise errors.BadRequestError(f"{field} {FINITE_RULE}", field=field, rule=FINITE_RULE)
        if isinstance(value, dict):
            items = list(value.items())
        elif isinstance(value, list):
            items = [(str(i), v) for i, v in enumerate(value)]
        else:
            continue
        # reversed: the first offending value in document order is the one named
        pending.extend((f"{path}.{k}" if path else str(k), v) for k, v in reversed(items))
    return document
