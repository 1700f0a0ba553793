"""REST routes of the control plane, one module per resource."""

from __future__ import annotations

from importlib import import_module

from fastapi import FastAPI


def include_all(app: FastAPI) -> None:
    # Each resource module exposes `router`; order does not matter.
    for name in ROUTE_MODULES:
        app.include_router(import_module(f"fnplane.control.routes.{name}").router)


ROUTE_MODULES: list[str] = [
    "accounts",
    "clients",
    "api_keys",
    "service_accounts",
    "tokens",
    "functions",
    "rate_limits",
    "deployments",
    "authorizations",
    "clusters",
    "agents",
    "access",
    "instance_logs",
    "scaling",
    "secrets",
    "registry_credentials",
    "telemetries",
]
