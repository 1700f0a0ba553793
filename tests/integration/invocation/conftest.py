"""Fixtures of the invocation tests: see invocation_stack.py."""

from __future__ import annotations

from invocation_stack import gateway_settings, stack

__all__ = ["gateway_settings", "stack"]
