"""examples/README.md works when pasted: its shell blocks run, in order, against `fnplane up` started
in the repository (as `make run` does). Only the address changes (free ports instead of 8080/8081) and
FNPLANE_HOME points at the test's home. The Python (OpenAI SDK) snippet runs too when `openai` is
installed, which fnplane does not require.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

from up_process import REPO, UpProcess

README = REPO / "examples" / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)


def readme_script(up: UpProcess) -> str:
    shell = blocks("sh")
    assert len(shell) >= 7, "examples/README.md lost its snippets"
    script = "set -eu\n" + "\n".join(f"echo '>>> block {i}'\n{block}" for i, block in enumerate(shell))
    if importlib.util.find_spec("openai") is not None:
        (python,) = blocks("python")
        script += f"echo '>>> openai'\nexport CHAT\n.venv/bin/python - <<'PYTHON'\n{python}PYTHON\n"
    assert "FNPLANE=http://127.0.0.1:8080 FNPLANE_GRPC=127.0.0.1:8081" in script
    return script.replace("http://127.0.0.1:8080", up.url).replace(
        "FNPLANE_GRPC=127.0.0.1:8081", f"FNPLANE_GRPC={up.grpc_target}"
    )


def outputs(stdout: str) -> dict[str, str]:
    """Each block's output, by the marker the script prints before it."""
    parts = re.split(r"^>>> (block \d+|openai)$", stdout, flags=re.M)
    return {name: text.strip() for name, text in zip(parts[1::2], parts[2::2], strict=True)}


def test_the_examples_readme_works_when_pasted(tmp_path: Path, start_up: type[UpProcess]) -> None:
    home = tmp_path / "home"
    up = start_up(home, args=["--workdir", str(REPO)])
    up.wait_healthy()
    result = subprocess.run(
        ["bash", "-c", readme_script(up)],
        cwd=REPO,
        env={
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "FNPLANE_HOME": str(home),
            "TMPDIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{up.stderr}"
    out = outputs(result.stdout)

    assert json.loads(out["block 1"]) == {"echo": {"hello": "echo"}, "path": "/echo"}

    tokens = [json.loads(line[6:]) for line in out["block 2"].splitlines() if line.startswith("data: {")]
    assert [t["token"] for t in tokens] == ["one", "token", "at", "a", "time"]
    assert out["block 2"].rstrip().endswith("data: [DONE]")

    redirects, listing = out["block 3"].split("\n", 1)
    assert redirects == "1 redirect, then 200"
    assert re.search(r"^[0-9a-f-]{36}\.response ", listing, re.M) and "result.bin" in listing
    assert re.search(r"^result\.bin\s.*\s6291456$", listing, re.M), listing

    job = out["block 4"]
    assert job.startswith('{"step": 1, "of": 4}'), job
    percents = [int(p) for p in re.findall(r"^nvcf-percent-complete: (\d+)$", job, re.M | re.I)]
    assert percents == sorted(percents) and percents, job
    assert re.search(r"^HTTP/[0-9.]+ 202", job, re.M) and re.search(r"^HTTP/[0-9.]+ 200", job, re.M)
    assert job.endswith('{"done": true, "steps": 4}'), job

    models, reply, stream = out["block 5"].split("\n", 2)
    assert [m["id"] for m in json.loads(models)["data"]] == ["echo", "reverse"]
    assert json.loads(reply)["choices"][0]["message"]["content"] == "enalpnf olleh"
    chunks = [json.loads(line[6:]) for line in stream.splitlines() if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "hi there"
    assert stream.rstrip().endswith("data: [DONE]")

    assert re.fullmatch(r"hello over gRPC [0-9a-f-]{36}", out["block 6"]), out["block 6"]

    # the helper stops at ERROR (it waited for ACTIVE for ever) and says why
    assert out["block 7"] == "deploy failed (exit code 1)"
    assert re.search(r"^version [0-9a-f-]{36} of function [0-9a-f-]{36} is ERROR ", result.stderr, re.M)
    assert "CUDA_ERROR_NO_DEVICE" in result.stderr  # what the function wrote before it exited
    if "openai" in out:
        assert out["openai"] == "olleh\none word at a time"
