"""`fnplane up`: the composition root that runs every part of fnplane in one process.

It is the only package that imports all three planes (control, invocation, compute); the CLI reaches
them only through it.
"""

from __future__ import annotations

from fnplane.up.runner import run_up, serve
from fnplane.up.settings import UpSettings
from fnplane.up.supervisor import Platform

__all__ = ["Platform", "UpSettings", "run_up", "serve"]
