"""The `fnplane` CLI against a real `fnplane up`: functions, deployments, invocation, queues, logs, GPUs.

Every command runs as a child process (`.venv/bin/fnplane ...`), configured by FNPLANE_URL and
FNPLANE_API_KEY; `--json` output is parsed for each. One platform and one deployed function
(tests/e2e/cli_function.py) serve the whole module.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cli_process import FNPLANE, Cli, on_terminal
from up_process import INV_FUNCTION, UpProcess

REPO = Path(__file__).resolve().parents[2]
CLI_FUNCTION = Path(__file__).resolve().parent / "cli_function.py"
GPU = ["--gpu", "L40S", "--instance-type", "LOCAL.GPU.L40S_1x"]
WAIT_S = 60.0


# one platform serves the module (module-scoped fixtures): its tests stay on one xdist worker, and
# the first also waits for the platform (and a deployment) to start
pytestmark = [pytest.mark.xdist_group("cli-platform"), pytest.mark.timeout(240)]


@dataclass
class Platform:
    up: UpProcess
    key: str
    cli: Cli
    base: Path


@dataclass
class Deployed:
    function_id: str
    version_id: str
    created: dict
    deployed: dict


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    base = tmp_path_factory.mktemp("cli-platform")
    up = UpProcess(base / "home", args=["--workdir", str(REPO)])
    try:
        up.wait_healthy()
        key = (base / "home" / "admin-key").read_text().strip()
        yield Platform(up, key, Cli(up.url, key, base / "config.json"), base)
        up.stop()
    finally:
        up.kill_leftovers()


def function_flags(name: str) -> list[str]:
    return [
        "--name", name, "--inference-url", "/run", "--inference-port", "8000",
        "--container-image", "local/cli-function", "--container-args", f"{sys.executable} {CLI_FUNCTION}",
        "--env", "GREETING=hi", "--health-uri", "/v2/health/ready",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def deployed(platform: Platform) -> Deployed:
    """cli_function registered and deployed with `deploy ... --wait`, which returns once ACTIVE."""
    created = platform.cli.json("function", "create", *function_flags("cli-fn"))
    fid, vid = created["function"]["id"], created["function"]["versionId"]
    answer = platform.cli.json(
        "deploy",
        fid,
        vid,
        *GPU,
        "--min",
        "1",
        "--max",
        "1",
        "--concurrency",
        "4",
        "--wait",
        "--timeout",
        "90",
    )
    return Deployed(fid, vid, created, answer)


def wait_for_file(path: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def markers(platform: Platform) -> Path:
    """A directory the function's sandbox shares with the test (it holds the gates of `cli_function`)."""
    folder = platform.base / f"markers-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    return folder


def test_create_then_deploy_wait_returns_active(platform: Platform, deployed: Deployed) -> None:
    function = deployed.created["function"]
    assert function["name"] == "cli-fn"
    assert function["status"] == "INACTIVE"
    assert function["inferenceUrl"] == "/run"
    assert {"key": "GREETING", "value": "hi"} in function["containerEnvironment"]
    deployment = deployed.deployed["deployment"]
    assert deployment["functionStatus"] == "ACTIVE"
    assert deployment["deploymentSpecifications"][0]["maxRequestConcurrency"] == 4
    # human output, piped: plain `key: value` lines without colour
    shown = platform.cli.ok("deploy", "status", deployed.function_id, deployed.version_id).stdout.decode()
    assert "status: ACTIVE" in shown.splitlines()
    assert "\x1b" not in shown
    status = platform.cli.json("deploy", "status", deployed.function_id, deployed.version_id)
    assert status["deployment"]["deploymentId"] == deployment["deploymentId"]


def test_function_list_and_get(platform: Platform, deployed: Deployed) -> None:
    fid, vid = deployed.function_id, deployed.version_id
    listed = platform.cli.json("function", "list")
    assert (fid, vid) in [(f["id"], f["versionId"]) for f in listed["functions"]]
    versions = platform.cli.json("function", "get", fid)
    assert [v["versionId"] for v in versions["functions"]] == [vid]
    version = platform.cli.json("function", "get", fid, vid)
    assert version["function"]["status"] == "ACTIVE"
    # piped, a table is a tab-separated header and rows
    table = platform.cli.ok("function", "list").stdout.decode().splitlines()
    assert table[0].split("\t")[:4] == ["ID", "VERSION", "NAME", "STATUS"]
    assert any(line.split("\t")[:2] == [fid, vid] for line in table[1:])


def test_invoke_prints_the_answer_as_is(platform: Platform, deployed: Deployed, tmp_path: Path) -> None:
    fid = deployed.function_id
    done = platform.cli.ok("invoke", fid, "--data", '{"hello": "cli"}')
    assert json.loads(done.stdout) == {"echo": {"hello": "cli"}}
    assert b"request id: " in done.stderr
    # the same from a file, from stdin, and pinned to the version; --json wraps it in the exec envelope
    body = tmp_path / "body.json"
    body.write_text('{"from": "file"}')
    assert json.loads(platform.cli.ok("invoke", fid, "--data-file", str(body)).stdout) == {
        "echo": {"from": "file"}
    }
    from_stdin = platform.cli.ok(
        "invoke", fid, "-", "--version", deployed.version_id, input=b'{"from": "stdin"}'
    )
    assert json.loads(from_stdin.stdout) == {"echo": {"from": "stdin"}}
    document = platform.cli.json("invoke", fid, "--data", '{"n": 1}', "--poll-seconds", "5")
    assert document["status"] == "fulfilled"
    assert document["response"] == {"echo": {"n": 1}}
    uuid.UUID(document["reqId"])


def test_invoke_async_then_status_then_result(platform: Platform, deployed: Deployed) -> None:
    gates = markers(platform)
    body = json.dumps({"mode": "wait", "dir": str(gates)})
    submitted = platform.cli.json("invoke", deployed.function_id, "--async", "--data", body)
    assert submitted["status"] == "pending-evaluation"
    request_id = submitted["reqId"]
    wait_for_file(gates / "started")  # the function holds the request until released
    running = platform.cli.json("status", request_id, "--poll-seconds", "1")
    assert running == {"reqId": request_id, "status": "in-progress"}
    (gates / "release").touch()
    finished = platform.cli.json("status", request_id, "--wait", "--poll-seconds", "5")
    assert finished["status"] == "fulfilled"
    assert finished["response"] == {"done": True}
    # a result is delivered once (as NVCF does): then the request is unknown
    delivered = platform.cli.run("status", request_id)
    assert delivered.returncode == 1
    assert delivered.stdout == b""
    assert b"Not Found (404)" in delivered.stderr
    # the human `--async` prints just the request id, for `REQ=$(fnplane invoke --async ...)`;
    # `status --wait` then prints the answer itself
    other = platform.cli.ok("invoke", deployed.function_id, "--async", "--data", '{"n": 2}').stdout.decode()
    answer = platform.cli.ok("status", other.strip(), "--wait")
    assert json.loads(answer.stdout) == {"echo": {"n": 2}}


def test_cancel_then_status_is_gone(platform: Platform, deployed: Deployed) -> None:
    gates = markers(platform)
    body = json.dumps({"mode": "wait", "dir": str(gates)})
    request_id = (
        platform.cli.ok("invoke", deployed.function_id, "--async", "--data", body).stdout.decode().strip()
    )
    wait_for_file(gates / "started")
    assert platform.cli.json("cancel", request_id) == {"reqId": request_id, "status": "rejected"}
    # the outcome of a cancelled request is a failure, whether waited for or polled once
    for args in (["--wait"], [], ["--json"], ["--wait", "--json"]):
        gone = platform.cli.run("status", request_id, *args)
        assert gone.returncode == 1, args
        assert gone.stdout == b"", args
        assert f"Error: request {request_id} was cancelled" in gone.stderr.decode(), args


def test_invoke_stream_prints_each_event_as_it_arrives(platform: Platform, deployed: Deployed) -> None:
    gates = markers(platform)
    body = json.dumps({"mode": "sse", "dir": str(gates)})
    process = platform.cli.popen("invoke", deployed.function_id, "--stream", "--data", body)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"first\n"
        # the function sends the second event only once released: the first was printed mid-stream
        assert process.poll() is None
        (gates / "release-sse").touch()
        assert process.stdout.read() == b"second\n"
        assert process.wait(WAIT_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # --json: the events in one document once the stream ends
    (gates / "release-sse").touch()
    events = platform.cli.json("invoke", deployed.function_id, "--stream", "--data", body)["events"]
    assert [event["data"] for event in events] == ["first", "second"]


def test_invoke_direct_any_path_and_method(platform: Platform, deployed: Deployed) -> None:
    done = platform.cli.ok(
        "invoke", deployed.function_id, "--direct", "/any/path?x=1", "--method", "PUT", "--data", '{"k": 1}'
    )
    assert json.loads(done.stdout) == {
        "method": "PUT",
        "path": "/any/path",
        "query": "x=1",
        "body": '{"k": 1}',
        "contentType": "application/json",
        "header": None,
    }
    # any body and media type, extra headers
    seen = platform.cli.json(
        "invoke", deployed.function_id, "--direct", "/text", "--data-file", "-",
        "--content-type", "text/plain", "-H", "X-Cli-Test: yes", input=b"plain words",
    )["response"]  # fmt: skip
    assert (seen["body"], seen["contentType"], seen["header"]) == ("plain words", "text/plain", "yes")
    document = platform.cli.json(
        "invoke",
        deployed.function_id,
        "--direct",
        "/other",
        "--method",
        "DELETE",
        "--version",
        deployed.version_id,
    )
    assert document["status"] == "fulfilled"
    assert document["response"]["method"] == "DELETE"
    assert document["response"]["path"] == "/other"


def test_queue_gpus_and_logs(platform: Platform, deployed: Deployed) -> None:
    fid, vid = deployed.function_id, deployed.version_id
    queue = platform.cli.json("queue", fid)
    assert queue["functionId"] == fid
    assert [(q["functionVersionId"], q["queueDepth"]) for q in queue["queues"]] == [(vid, 0)]
    assert platform.cli.json("queue", fid, vid)["queues"][0]["functionVersionId"] == vid
    groups = platform.cli.json("gpus")["clusterGroups"]
    assert "L40S" in [gpu["name"] for group in groups for gpu in group["gpus"]]
    assert "LOCAL.GPU.L40S_1x" in platform.cli.ok("gpus").stdout.decode()
    logs = platform.cli.json("logs", fid, vid)
    assert any(line.startswith("cli-function: listening") for line in logs["lines"]), logs
    # --follow prints the log and keeps going; this test ends it
    process = platform.cli.popen("logs", fid, vid, "--follow")
    try:
        assert process.stdout is not None
        seen = [process.stdout.readline() for _ in range(len(logs["lines"]))]
        assert any(line.startswith(b"cli-function: listening") for line in seen)
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(WAIT_S)


def test_logs_follow_an_instance_that_has_written_nothing(platform: Platform) -> None:
    # inv_function writes nothing to its log until /print (its inference URL here) is invoked
    created = platform.cli.json(
        "function", "create", "--name", "cli-quiet", "--inference-url", "/print",
        "--container-args", f"{sys.executable} {INV_FUNCTION} $(PORT)",
    )["function"]  # fmt: skip
    fid, vid = created["id"], created["versionId"]
    platform.cli.json("deploy", fid, vid, *GPU, "--wait", "--timeout", "90")
    assert platform.cli.json("logs", fid, vid)["lines"] == []
    process = platform.cli.popen("logs", fid, vid, "--follow")
    try:
        assert process.stdout is not None
        # it waits (it failed with a 503 once the agent had sent no line for 5 s)
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(8)
        assert platform.cli.json("invoke", fid, "--data", '{"line": "a later line"}')["response"] == {
            "printed": "a later line"
        }
        assert process.stdout.readline() == b"a later line\n"
    finally:
        process.terminate()
        process.wait(WAIT_S)
    assert platform.cli.json("undeploy", fid, vid)["function"]["status"] == "INACTIVE"


def test_invoke_a_large_result(platform: Platform, tmp_path: Path) -> None:
    # over 5 MiB the gateway answers 302 to a zip of the result: `{reqId}.response` holds the body
    created = platform.cli.json(
        "function", "create", "--name", "cli-large", "--inference-url", "/large",
        "--container-args", f"{sys.executable} {INV_FUNCTION} $(PORT)",
    )["function"]  # fmt: skip
    fid, vid = created["id"], created["versionId"]
    platform.cli.json("deploy", fid, vid, *GPU, "--wait", "--timeout", "90")
    size = 6 * 1024 * 1024
    body = json.dumps({"bytes": size})
    expected = (bytes(range(256)) * 256 * 96)[:size]  # inv_function's pattern

    def response_in(archive: Path) -> bytes:
        with zipfile.ZipFile(archive) as zipped:
            [name] = [n for n in zipped.namelist() if n.endswith(".response")]
            return zipped.read(name)

    # as it is: the zip on stdout
    raw = platform.cli.ok("invoke", fid, "--data", body)
    (tmp_path / "stdout.zip").write_bytes(raw.stdout)
    assert response_in(tmp_path / "stdout.zip") == expected
    # --json: the envelope names the file the zip went to (it was the zip decoded as text, mangled)
    target = tmp_path / "result.zip"
    document = platform.cli.json("invoke", fid, "--data", body, "--output", str(target))
    assert document["status"] == "fulfilled" and "response" not in document
    assert document["responseFile"] == str(target)
    assert response_in(target) == expected
    # without --output, the download's own name, in the current directory
    done = subprocess.run(
        [str(FNPLANE), "invoke", fid, "--data", body, "--json"], cwd=tmp_path, env=platform.cli.environment(),
        capture_output=True, timeout=WAIT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["responseFile"] == str(tmp_path / f"{document['reqId']}.zip")
    assert response_in(Path(document["responseFile"])) == expected
    # without --json, --output takes the answer instead of stdout
    quiet = platform.cli.ok("invoke", fid, "--data", body, "--output", str(tmp_path / "again.zip"))
    assert quiet.stdout == b""
    assert response_in(tmp_path / "again.zip") == expected
    assert platform.cli.json("undeploy", fid, vid)["function"]["status"] == "INACTIVE"


def test_top_without_metrics_counts_instances_from_the_api(platform: Platform, deployed: Deployed) -> None:
    snapshot = platform.cli.json("top", "--interval", "0.2")
    [row] = [r for r in snapshot["versions"] if r["versionId"] == deployed.version_id]
    assert (row["status"], row["instances"], row["queued"]) == ("ACTIVE", 1, 0)
    assert row["requestsPerSecond"] is None  # rates need --metrics-url
    table = platform.cli.ok("top", "--once", "--interval", "0.2").stdout.decode().splitlines()
    header = table[0].split("\t")
    [line] = [line.split("\t") for line in table[1:] if deployed.version_id[:8] in line]
    assert line[header.index("INST")] == "1"
    # a public function has no queue to show (the API answers 400): its row has no depth, top goes on
    shares = f"{platform.up.url}/v2/nvcf/authorizations/functions/{deployed.function_id}"
    auth = {"Authorization": f"Bearer {platform.key}"}
    public = httpx.post(shares, headers=auth, json={"authorizedParties": [{"ncaId": "*"}]})
    assert public.status_code == 200, public.text
    try:
        for _ in range(40):  # once the gateway's cached grant (5 s) knows the function is public
            snapshot = platform.cli.json("top", "--interval", "0.2")
            [row] = [r for r in snapshot["versions"] if r["versionId"] == deployed.version_id]
            if row["queued"] is None:
                break
        assert (row["status"], row["queued"]) == ("ACTIVE", None)
    finally:
        assert httpx.delete(shares, headers=auth).status_code == 200


def test_version_create_update_undeploy_delete(platform: Platform, deployed: Deployed) -> None:
    fid = deployed.function_id
    created = platform.cli.json("function", "version", "create", fid, *function_flags("cli-fn"))["function"]
    assert created["id"] == fid
    vid = created["versionId"]
    assert vid != deployed.version_id
    # on a terminal, --wait shows the status as it changes (on stderr; stdout stays one document)
    code, stdout, terminal = on_terminal(platform.cli, "deploy", fid, vid, *GPU, "--wait", "--json")
    assert code == 0, terminal
    assert json.loads(stdout)["deployment"]["functionStatus"] == "ACTIVE"
    assert "\x1b[?25l" in terminal  # a live display (Rich hides the cursor while it runs)
    assert re.search(rf"{fid} {vid}: \w+.* · \d+ s", terminal), terminal  # the status, the seconds waited
    assert f"{fid} {vid}: ACTIVE" in terminal  # the last status seen
    updated = platform.cli.json("deploy", "update", fid, vid, *GPU, "--max", "2", "--concurrency", "3")
    spec = updated["deployment"]["deploymentSpecifications"][0]
    assert (spec["minInstances"], spec["maxInstances"], spec["maxRequestConcurrency"]) == (1, 2, 3)
    # the selector takes any case, as the API does; one the deployment lacks names what it has
    lower = ["--gpu", "l40s", "--instance-type", "local.gpu.l40s_1x"]
    updated = platform.cli.json("deploy", "update", fid, vid, *lower, "--max", "3")
    assert updated["deployment"]["deploymentSpecifications"][0]["maxInstances"] == 3
    unknown = ["--gpu", "H100", "--instance-type", "X"]
    done = platform.cli.run("deploy", "update", fid, vid, *unknown, "--max", "2")
    assert done.returncode == 1 and done.stdout == b""
    assert "no GPU specification H100 / X (it has: L40S / LOCAL.GPU.L40S_1x)" in done.stderr.decode()
    assert platform.cli.json("undeploy", fid, vid)["function"]["status"] == "INACTIVE"
    # function update: tags replaced whole (or cleared) and the rate limit; nothing to change is usage
    tagged = platform.cli.json("function", "update", fid, vid, "--tag", "a", "--tag", "b:c")["function"]
    assert tagged["tags"] == ["a", "b:c"]
    limited = platform.cli.json("function", "update", fid, vid, "--rate-limit", "10-S", "--clear-tags")
    assert (limited["function"]["tags"], limited["function"]["rateLimit"]["rateLimit"]) == ([], "10-S")
    assert platform.cli.run("function", "update", fid, vid).returncode == 2
    refused = platform.cli.run("function", "update", fid, vid, "--tag", "not a tag")
    assert refused.returncode == 1 and "field 'tags'" in refused.stderr.decode()
    assert platform.cli.json("function", "delete", fid, vid) == {}
    assert [v["versionId"] for v in platform.cli.json("function", "get", fid)["functions"]] == [
        deployed.version_id
    ]


def test_an_unknown_function_is_an_error_on_stderr(platform: Platform) -> None:
    fid, vid = str(uuid.uuid4()), str(uuid.uuid4())
    problem = httpx.get(
        f"{platform.up.url}/v2/nvcf/functions/{fid}/versions/{vid}",
        headers={"Authorization": f"Bearer {platform.key}"},
    ).json()
    for args in (["function", "get", fid, vid], ["function", "get", fid, vid, "--json"]):
        done = platform.cli.run(*args, env={"FORCE_COLOR": "1"})
        assert done.returncode == 1
        assert done.stdout == b""
        assert b"\x1b" not in done.stderr  # piped: never colour codes
        stderr = done.stderr.decode()
        assert problem["title"] in stderr
        assert problem["detail"] in stderr


def test_a_platform_that_is_not_there(platform: Platform) -> None:
    from up_process import free_port

    done = platform.cli.run("function", "list", env={"FNPLANE_URL": f"http://127.0.0.1:{free_port()}"})
    assert done.returncode == 1
    assert done.stdout == b""
    assert b"cannot reach http://127.0.0.1:" in done.stderr


def test_usage_errors_exit_2(platform: Platform, deployed: Deployed) -> None:
    for args in (
        ["invoke", deployed.function_id, "--data", "{not json"],
        ["invoke", deployed.function_id, "--data", "{}", "--data-file", "x"],
        ["invoke", deployed.function_id, "--async", "--stream"],
    ):
        done = platform.cli.run(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stdout == b""


def test_deploy_wait_that_times_out_says_what_the_health_check_answers(platform: Platform) -> None:
    never = f"{sys.executable} {REPO / 'examples' / 'never_healthy_server.py'}"
    created = platform.cli.json(
        "function", "create", "--name", "cli-never", "--inference-url", "/x", "--container-args", never
    )
    fid, vid = created["function"]["id"], created["function"]["versionId"]
    waited = platform.cli.run("deploy", fid, vid, *GPU, "--wait", "--timeout", "12", "--json")
    assert waited.returncode == 1 and waited.stdout == b""
    stderr = waited.stderr.decode()
    assert f"version {vid} is DEPLOYING, not ACTIVE, after 12 s" in stderr
    # still starting after the 5 s the agent lets a start be unhealthy unsaid: its health check's answer
    assert re.search(r"health: L40S LOCAL.GPU.L40S_1x: health check: GET \S+: 503, expected 200", stderr)
    assert platform.cli.json("function", "delete", fid, vid) == {}


def test_deploy_wait_fails_when_the_version_goes_to_error(platform: Platform) -> None:
    crash = f"{sys.executable} {REPO / 'examples' / 'crash_server.py'}"
    created = platform.cli.json(
        "function", "create", "--name", "cli-crash", "--inference-url", "/x", "--container-args", crash
    )
    fid, vid = created["function"]["id"], created["function"]["versionId"]
    failed = platform.cli.run("deploy", fid, vid, *GPU, "--wait", "--timeout", "90", "--json")
    assert failed.returncode == 1
    assert failed.stdout == b""
    stderr = failed.stderr.decode()
    assert f"Deployment failed: version {vid} of function {fid} is ERROR" in stderr
    assert "health: L40S LOCAL.GPU.L40S_1x: " in stderr  # why: the deployment's health errors
    assert f"{fid} {vid}: ERROR" in stderr  # the last status the display showed
    assert platform.cli.json("deploy", "status", fid, vid)["deployment"]["functionStatus"] == "ERROR"
    # top shows it (the API has no queue for a function whose only version is in ERROR: a 404)
    [row] = [r for r in platform.cli.json("top", "--interval", "0.2")["versions"] if r["versionId"] == vid]
    assert (row["status"], row["queued"]) == ("ERROR", None)
    # no instance runs, but the failed one's log is kept: `logs` shows it, and how the instance ended
    # (it was "version ... has no instances")
    logs = platform.cli.run("logs", fid, vid)
    assert logs.returncode == 0, logs.stderr
    assert b"crash: FATAL: CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected\n" in logs.stdout
    note = logs.stderr.decode()
    assert "no running instance; the log of instance " in note and f"of version {vid} (status ERROR)" in note
    assert "failed: container-restart-loop: " in note and "(last exit code 3)" in note
    document = platform.cli.json("logs", fid, vid)
    assert "crash: loading model ..." in document["lines"]
    # once the log is gone too, the failure is what there is to say
    for kept in platform.up.home.rglob(f"{document['instanceId']}.log*"):
        kept.unlink()
    gone = platform.cli.run("logs", fid, vid)
    assert gone.returncode == 1 and gone.stdout == b""
    stderr = gone.stderr.decode()
    assert f"Error: instance {document['instanceId']} of version {vid} (status ERROR) failed: " in stderr
    assert "(last exit code 3)" in stderr and "its log is not kept any more" in stderr
    assert platform.cli.json("undeploy", fid, vid)["function"]["status"] == "INACTIVE"


def test_invoke_with_an_input_asset(platform: Platform, deployed: Deployed) -> None:
    source = platform.base / "input.bin"
    source.write_bytes(b"x" * 12345)
    asset_id = platform.cli.json("asset", "upload", str(source))["assetId"]
    answer = platform.cli.ok(
        "invoke", deployed.function_id, "--input-asset", asset_id, "--data", '{"mode": "assets"}'
    )
    assert json.loads(answer.stdout) == {"assets": {asset_id: 12345}}
    assert platform.cli.json("asset", "delete", asset_id) == {}
