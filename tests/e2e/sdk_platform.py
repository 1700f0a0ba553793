"""One `fnplane up` per SDK test module, with examples/inv_function.py deployed once per route."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from up_process import UpProcess, deploy_inv_function

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Platform:
    up: UpProcess
    key: str
    functions: dict[str, dict] = field(default_factory=dict)

    @property
    def shared_dir(self) -> Path:
        """A directory the functions' sandbox may write into (marker files)."""
        return self.up.home.parent

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def function(self, route: str, max_concurrency: int = 1) -> dict:
        """inv_function.py deployed with inferenceUrl `route` (deployed at the first ask)."""
        key = route if max_concurrency == 1 else f"{route}*{max_concurrency}"
        if key not in self.functions:
            name = "inv-" + route.strip("/").replace("/", "-")
            name += "" if key == route else f"-{max_concurrency}"
            self.functions[key] = deploy_inv_function(
                self.up, self.headers, name=name, inference_url=route, max_concurrency=max_concurrency
            )
        return self.functions[key]


def start_platform(
    home: Path, env: dict[str, str] | None = None, args: list[str] | None = None
) -> Iterator[Platform]:
    up = UpProcess(home, env=env, args=["--workdir", str(REPO), *(args or [])])
    try:
        up.wait_healthy()
        yield Platform(up, (home / "admin-key").read_text().strip())
    finally:
        up.kill_leftovers()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    yield from start_platform(tmp_path_factory.mktemp("sdk") / "home")
