"""An OpenAI-compatible chat function with a toy model (standard library only).

    containerArgs: "python3 examples/openai_chat.py"
    (inferenceUrl /v1/chat/completions; listens on $PORT, default 8000)

The routes and JSON shapes are OpenAI's, so OpenAI clients work through a Host-header (direct)
invocation: base URL `$FNPLANE/v1` with `Host: <function id>.invocation.localhost` (or the
`function-id` header) and the fnplane key as the API key.

* `GET /v1/models` -> {"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}]}
* `POST /v1/chat/completions` {"model", "messages": [{"role", "content"}], "stream"?} answers the
  last user message: model `echo` repeats it, `reverse` reverses it. Without `stream` one
  `chat.completion` object; with `"stream": true`, server-sent `chat.completion.chunk` events (the
  role first, then one word per chunk, then an empty delta with `finish_reason`) and `data: [DONE]`.
  `"stream_options": {"include_usage": true}` adds a last chunk with `usage` and no choices.
* Errors are OpenAI's {"error": {"message", "type", "param", "code"}} (400, 404).
* `GET /v2/health/ready` -> 200.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODELS = {"echo": lambda text: text, "reverse": lambda text: text[::-1]}
CREATED = int(time.time())
OWNER = "fnplane-examples"


class RequestError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def parse_request(raw: bytes) -> dict[str, Any]:
    """The validated chat request, or RequestError naming the field."""
    try:
        body = json.loads(raw or b"null")
    except json.JSONDecodeError as error:
        raise RequestError(400, f"the body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object")
    model = body.get("model")
    if model not in MODELS:
        raise RequestError(404, f"The model `{model}` does not exist.", "model", "model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise RequestError(400, "'messages' must be a non-empty array of objects", "messages")
    return body


def answer(body: dict[str, Any]) -> str:
    user = [m for m in body["messages"] if m.get("role") == "user"]
    content = user[-1].get("content", "") if user else ""
    if isinstance(content, list):  # content parts: keep the text ones
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(MODELS[body["model"]](str(content)))


def usage(body: dict[str, Any], reply: str) -> dict[str, int]:
    # a toy tokenizer: one token per word
    prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    completion = len(reply.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion(body: dict[str, Any], reply: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage(body, reply),
        "system_fingerprint": None,
    }


def chunks(body: dict[str, Any], reply: str) -> list[dict[str, Any]]:
    """The `chat.completion.chunk` objects of a streamed reply, in order."""
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body["model"],
        "system_fingerprint": None,
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**base, "choices": [choice]}

    words = reply.split(" ")
    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": word if i == 0 else " " + word}) for i, word in enumerate(words)]
    out.append(chunk({}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        out.append({**base, "choices": [], "usage": usage(body, reply)})
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, error: RequestError) -> None:
        kind = "invalid_request_error"
        detail = {"message": error.message, "type": kind, "param": error.param, "code": error.code}
        self._send(error.status, {"error": detail})

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/v2/health/ready":
            self._send(200, {"status": "ready"})
        elif path == "/v1/models":
            data = [{"id": m, "object": "model", "created": CREATED, "owned_by": OWNER} for m in MODELS]
            self._send(200, {"object": "list", "data": data})
        elif path.startswith("/v1/models/") and path.removeprefix("/v1/models/") in MODELS:
            model = path.removeprefix("/v1/models/")
            self._send(200, {"id": model, "object": "model", "created": CREATED, "owned_by": OWNER})
        else:
            self._error(RequestError(404, f"Unknown request URL: GET {path}.", code="unknown_url"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.split("?", 1)[0] != "/v1/chat/completions":
            self._error(RequestError(404, f"Unknown request URL: POST {self.path}.", code="unknown_url"))
            return
        try:
            body = parse_request(raw)
        except RequestError as error:
            self._error(error)
            return
        reply = answer(body)
        if not body.get("stream"):
            self._send(200, completion(body, reply))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for item in chunks(body, reply):
                self._chunk(f"data: {json.dumps(item)}\n\n".encode())
            self._chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def log_message(self, format: str, *args: object) -> None:
        print(f"openai_chat: {format % args}", flush=True)


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    host = os.environ.get("FUNCTION_HOST", "127.0.0.1")
    server = ThreadingHTTPServer((host, port), Handler)
    print(f"openai_chat: listening on {host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
