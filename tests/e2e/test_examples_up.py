"""The examples under examples/ work on a real `fnplane up`: each is registered by its containerArgs,
deployed on the local L40S pool and invoked the way its docstring says (one platform for the module).
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from up_process import UpProcess, deploy_function, running_up

pytestmark = pytest.mark.xdist_group("examples_up")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MiB = 1024 * 1024


def example_body(name: str, script: str, inference_url: str) -> dict:
    return {
        "name": name,
        "inferenceUrl": inference_url,
        "inferencePort": 8000,
        "containerArgs": f"{sys.executable} {EXAMPLES / script}",
    }


class Platform:
    def __init__(self, up: UpProcess) -> None:
        self.up = up
        self.url = up.url
        key = (up.home / "admin-key").read_text().strip()
        self.headers = {"Authorization": f"Bearer {key}"}
        self.functions: dict[str, str] = {}

    def function(self, name: str, script: str, inference_url: str) -> str:
        """The id of the example's function, deployed (once per module) and ACTIVE."""
        if name not in self.functions:
            body = example_body(name, script, inference_url)
            # two concurrent calls: a test may invoke while a stream is open
            fn = deploy_function(self.up, self.headers, body, max_concurrency=2)
            self.functions[name] = fn["id"]
        return self.functions[name]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_up(tmp_path_factory.mktemp("examples") / "home") as up:
        yield Platform(up)


def sse_events(chunks: Iterator[bytes]) -> Iterator[tuple[int, str]]:
    """(index of the network read that completed it, data) for each event of an SSE byte stream."""
    buffer = b""
    for read, chunk in enumerate(chunks):
        buffer += chunk
        while b"\n\n" in buffer:
            raw, buffer = buffer.split(b"\n\n", 1)
            data = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
            if data:
                yield read, "\n".join(data)


def test_sse_tokens_reach_a_pexec_client_one_by_one(platform: Platform) -> None:
    fid = platform.function("sse-tokens", "sse_tokens.py", "/generate")
    words = "fnplane streams every token as the function writes it".split()
    with httpx.stream(
        "POST",
        f"{platform.url}/v2/nvcf/pexec/functions/{fid}",
        headers={**platform.headers, "Accept": "text/event-stream"},
        json={"prompt": " ".join(words), "interval_s": 0.25},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["nvcf-status"] == "fulfilled"
        events = list(sse_events(response.iter_raw()))
    assert events[-1][1] == "[DONE]"
    tokens = [json.loads(data) for _, data in events[:-1]]
    assert tokens == [{"index": i, "token": w} for i, w in enumerate(words)]
    # streamed, not buffered: the events came in separate reads, the first long before the last was
    # written (a buffering gateway hands the whole ~500-byte body over in one read, at the end; a
    # loaded machine may still merge a few neighbours)
    reads = [read for read, _ in events]
    assert reads[0] < reads[-1]
    assert len(set(reads)) >= 3, reads


def test_a_large_output_is_a_302_to_a_zip_holding_the_file(platform: Platform) -> None:
    fid = platform.function("large-output", "large_output.py", "/render")
    size = 6 * MiB
    r = httpx.post(
        f"{platform.url}/v2/nvcf/pexec/functions/{fid}",
        headers=platform.headers,
        json={"bytes": size, "name": "image.bin"},
        timeout=60,
    )
    assert r.status_code == 302, r.text
    assert r.headers["nvcf-status"] == "fulfilled"
    rid = r.headers["nvcf-reqid"]
    # the client follows the Location with its own bearer, as NVCF clients do
    download = httpx.get(r.headers["location"], headers=platform.headers, timeout=60)
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        reply = json.loads(archive.read(f"{rid}.response"))
        image = archive.read("image.bin")
    assert reply["file"] == "image.bin" and reply["bytes"] == size
    assert len(image) == size and hashlib.sha256(image).hexdigest() == reply["sha256"]


def test_a_small_large_output_request_still_goes_302_because_of_the_file(platform: Platform) -> None:
    # any file left in NVCF-LARGE-OUTPUT-DIR makes the result a zip, whatever its size
    fid = platform.function("large-output", "large_output.py", "/render")
    r = httpx.post(
        f"{platform.url}/v2/nvcf/pexec/functions/{fid}", headers=platform.headers, json={"bytes": 10}
    )
    assert r.status_code == 302, r.text
    download = httpx.get(r.headers["location"], headers=platform.headers)
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        assert archive.read("result.bin") == bytes(range(10))


def test_a_progress_job_gives_202s_with_a_rising_percent_then_its_result(platform: Platform) -> None:
    fid = platform.function("progress-job", "progress_job.py", "/job")
    steps = 4
    r = httpx.post(
        f"{platform.url}/v2/nvcf/pexec/functions/{fid}",
        headers={**platform.headers, "NVCF-POLL-SECONDS": "30"},
        json={"steps": steps, "interval_s": 0.5},
        timeout=60,
    )
    # the first progress file answers at once: 202 with the percent and the partial response
    assert r.status_code == 202, r.text
    assert r.headers["nvcf-status"] == "in-progress"
    rid = r.headers["nvcf-reqid"]
    seen = [int(r.headers["nvcf-percent-complete"])]
    assert r.json() == {"step": seen[0] * steps // 100, "of": steps}
    for _ in range(3 * steps):
        poll = httpx.get(
            f"{platform.url}/v2/nvcf/pexec/status/{rid}",
            headers={**platform.headers, "NVCF-POLL-SECONDS": "30"},
            timeout=60,
        )
        if poll.status_code != 202:
            break
        seen.append(int(poll.headers["nvcf-percent-complete"]))
        assert poll.json()["of"] == steps
    else:
        pytest.fail(f"never finished; percents seen: {seen}")
    assert poll.status_code == 200, poll.text
    assert poll.headers["nvcf-status"] == "fulfilled"
    assert poll.json() == {"done": True, "steps": steps}
    assert seen == sorted(seen) and len(set(seen)) >= 2, seen
    assert all(0 < p <= 100 for p in seen)


def test_the_openai_chat_function_speaks_openai_through_direct_invocation(platform: Platform) -> None:
    fid = platform.function("openai-chat", "openai_chat.py", "/v1/chat/completions")
    client = httpx.Client(base_url=f"{platform.url}/v1", headers=platform.headers, timeout=30)
    by_host = {"Host": f"{fid}.invocation.localhost"}
    with client:
        models = client.get("/models", headers=by_host)
        assert models.status_code == 200, models.text
        assert models.json()["object"] == "list"
        assert {m["id"] for m in models.json()["data"]} == {"echo", "reverse"}
        assert all(m["object"] == "model" for m in models.json()["data"])

        messages = [{"role": "system", "content": "be terse"}, {"role": "user", "content": "hello fnplane"}]
        r = client.post("/chat/completions", headers=by_host, json={"model": "reverse", "messages": messages})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["object"] == "chat.completion" and doc["model"] == "reverse"
        assert doc["id"].startswith("chatcmpl-") and isinstance(doc["created"], int)
        (choice,) = doc["choices"]
        assert choice["index"] == 0 and choice["finish_reason"] == "stop"
        assert choice["message"]["role"] == "assistant" and choice["message"]["content"] == "enalpnf olleh"
        assert doc["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}

        # streamed, addressed by the function-id header instead of the Host
        body = {
            "model": "echo",
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        by_header = {"function-id": fid}
        with client.stream("POST", "/chat/completions", headers=by_header, json=body) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            data = [d for _, d in sse_events(stream.iter_raw())]
        assert data[-1] == "[DONE]"
        chunks = [json.loads(d) for d in data[:-1]]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        assert len({c["id"] for c in chunks}) == 1
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        assert content == "hello fnplane"
        last = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
        assert chunks[-2]["choices"][0] == last
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2

        # the function's own error shape passes through direct invocation unchanged
        unknown = {"model": "gpt-9", "messages": messages}
        missing = client.post("/chat/completions", headers=by_host, json=unknown)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "model_not_found"

    # pexec reaches the same function at its inferenceUrl
    r = httpx.post(
        f"{platform.url}/v2/nvcf/pexec/functions/{fid}",
        headers=platform.headers,
        json={"model": "echo", "messages": [{"role": "user", "content": "via pexec"}]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "via pexec"


def test_the_openai_sdk_talks_to_the_chat_function(platform: Platform) -> None:
    # fnplane does not depend on `openai`; its tests do (a dev dependency), to use the SDK itself
    import openai

    from fnplane.sdk import keepalive_http_client

    fid = platform.function("openai-chat", "openai_chat.py", "/v1/chat/completions")
    key = platform.headers["Authorization"].removeprefix("Bearer ")
    for route in ({"Host": f"{fid}.invocation.localhost"}, {"function-id": fid}):
        # the second through fnplane's HTTP/2 transport with PING keepalive, as docs/sdk.md shows
        http_client = keepalive_http_client(interval_s=5.0) if "function-id" in route else None
        client = openai.OpenAI(
            base_url=f"{platform.url}/v1", api_key=key, default_headers=route, http_client=http_client
        )
        assert [m.id for m in client.models.list()] == ["echo", "reverse"]
        messages = [{"role": "user", "content": "hello sdk"}]
        reply = client.chat.completions.create(model="reverse", messages=messages)
        assert reply.choices[0].message.content == "kds olleh"
        assert reply.usage is not None and reply.usage.completion_tokens == 2
        stream = client.chat.completions.create(model="echo", messages=messages, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "hello sdk"
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-9", messages=messages)
