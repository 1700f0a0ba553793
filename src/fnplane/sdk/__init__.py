"""The fnplane SDK: `Client` / `AsyncClient` for the control API and pexec invocation.

Errors are the classes of `fnplane.shared.errors` (e.g. `NotFoundError`), with the HTTP `status` and
`problem` document attached.
"""

from __future__ import annotations

from fnplane.sdk.client import ApiError, AsyncClient, Client, error_for

__all__ = ["ApiError", "AsyncClient", "Client", "error_for"]
