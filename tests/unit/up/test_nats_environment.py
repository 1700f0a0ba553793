"""The embedded nats-server's environment: a quarter of the CPUs for Go unless the user chose."""

from __future__ import annotations

import os

import pytest

from fnplane.up.nats import server_environment


def test_gomaxprocs_defaults_to_a_quarter_of_the_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOMAXPROCS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert server_environment()["GOMAXPROCS"] == "4"
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert server_environment()["GOMAXPROCS"] == "1"
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert server_environment()["GOMAXPROCS"] == "1"


def test_a_gomaxprocs_of_the_user_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOMAXPROCS", "7")
    env = server_environment()
    assert env["GOMAXPROCS"] == "7"
    assert env["PATH"] == os.environ["PATH"]
