"""Numbers that are not JSON, found where they are.

Python's `json.loads` also takes `NaN`, `Infinity` and `-Infinity`, and turns a number past a double's
range (`1e400`) into infinity. None of them is JSON (RFC 8259 section 6). `loads_marked` parses a
document with each such number replaced by `NOT_FINITE`, so that the control API and the gateway can
name the field that holds one (`a.0.b`) in their 400.
"""

from __future__ import annotations

import json
import math
from typing import Any

FINITE_RULE = "must be a finite JSON number (NaN, Infinity and numbers beyond a double's range are not JSON)"


class _NotFinite:
    """Where the parse met a number that is not JSON (a marker in the parsed document)."""


NOT_FINITE = _NotFinite()


def _marked_float(text: str) -> float | _NotFinite:
    value = float(text)
    return value if math.isfinite(value) else NOT_FINITE


def _marked_constant(_: str) -> _NotFinite:
    return NOT_FINITE


def loads_marked(raw: bytes | str) -> Any:
    """The document, with NOT_FINITE for every number that is not JSON; ValueError (RecursionError)
    as `json.loads` raises them when `raw` is not JSON at all."""
    return json.loads(raw, parse_float=_marked_float, parse_constant=_marked_constant)
