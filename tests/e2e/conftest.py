"""Fixtures of the end-to-end tests: `start_up` starts `fnplane up` processes and cleans them up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from up_process import UpProcess


@pytest.fixture
def start_up(tmp_path: Path) -> Iterator[type[UpProcess]]:
    started: list[UpProcess] = []

    class Tracked(UpProcess):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield Tracked
    for up in started:
        up.kill_leftovers()
