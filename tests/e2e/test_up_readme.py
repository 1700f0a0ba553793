"""The README's five-minute tour works when pasted: its shell blocks run, in order, against `fnplane up`.

Only the address changes (a free port instead of 8080) and FNPLANE_HOME points at the test's home.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from up_process import UpProcess

README = Path(__file__).resolve().parents[2] / "README.md"


def tour_script(port: int) -> str:
    text = README.read_text()
    tour = text.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", tour, re.S)
    assert blocks, "the README has no tour"
    script = "set -eu\n" + "\n".join(blocks)
    assert "http://127.0.0.1:8080" in script
    return script.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{port}")


@pytest.mark.skipif(shutil.which("curl") is None, reason="the tour uses curl")
def test_the_readme_tour_works_when_pasted(tmp_path: Path, start_up: type[UpProcess]) -> None:
    repo = README.parent
    home = tmp_path / "home"
    up = start_up(home, args=["--workdir", str(repo)])
    up.wait_healthy()
    result = subprocess.run(
        ["bash", "-c", tour_script(up.port)],
        cwd=repo,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "FNPLANE_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{up.stderr}"
    out = result.stdout
    assert '"status": "ok"' in out
    assert '{"echo": {"hello": "pexec"}, "path": "/echo"}' in out
    assert '{"echo": {"hello": "direct"}, "path": "/any/path?x=1"}' in out
    assert '{"echo": {"hello": "from a JWT"}, "path": "/echo"}' in out
    assert out.rstrip().splitlines()[-2:][0].endswith("403")
    assert '"status":"INACTIVE"' in out.rstrip().splitlines()[-1]
