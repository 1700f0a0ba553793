"""The README's five-minute tour works when pasted: its shell blocks run, in order, against `fnplane up`.

Only the address changes (a free port instead of 8080) and FNPLANE_HOME points at the test's home.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from up_process import UpProcess

README = Path(__file__).resolve().parents[2] / "README.md"


def tour_script(port: int, grpc_target: str) -> str:
    text = README.read_text()
    tour = text.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", tour, re.S)
    assert blocks, "the README has no tour"
    script = "set -eu\n" + "\n".join(blocks)
    assert "FNPLANE_URL=http://127.0.0.1:8080" in script
    assert "FNPLANE_GRPC=127.0.0.1:8081" in script
    script = script.replace("FNPLANE_GRPC=127.0.0.1:8081", f"FNPLANE_GRPC={grpc_target}")
    return script.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{port}")


def test_the_readme_tour_works_when_pasted(tmp_path: Path, start_up: type[UpProcess]) -> None:
    repo = README.parent
    home = tmp_path / "home"
    up = start_up(home, args=["--workdir", str(repo)])
    up.wait_healthy()
    result = subprocess.run(
        ["bash", "-c", tour_script(up.port, up.grpc_target)],
        cwd=repo,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "FNPLANE_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{up.stderr}"
    out = result.stdout
    assert '"status": "ok"' in out or '"status":"ok"' in out
    assert '{"echo": {"hello": "pexec"}, "path": "/echo"}' in out
    assert '{"echo": {"hello": "direct"}, "path": "/any/path?x=1"}' in out
    assert '{"echo": {"hello": "later"}, "path": "/echo"}' in out
    assert '{"echo": {"hello": "curl"}, "path": "/echo"}' in out
    assert '{"echo": {"hello": "host header"}, "path": "/any/path?x=2"}' in out
    assert "{'echo': {'hello': 'sdk'}, 'path': '/echo'}" in out
    assert "hello over gRPC" in out
    assert '{"echo": {"hello": "from a JWT"}, "path": "/echo"}' in out
    assert "refused: the token holds only invoke_function" in out
    assert "INACTIVE" in out
