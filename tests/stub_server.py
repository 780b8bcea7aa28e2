"""A stub OpenAI-compatible chat server for tests and benchmarks.

Why: the agents talk to a real HTTP endpoint through ``langchain-openai``; exercising that exact
path (HTTP, JSON-schema structured output, retries, timeouts) without a model needs a server
that answers instantly, deterministically, and can misbehave on request.

Usage::

    with StubServer() as stub:                      # schema-valid JSON for every structured request
        llm = ChatOpenAI(base_url=stub.url, api_key="x", model="stub-model")

    with StubServer(faults=FaultPlan(script={1: "429", 2: "truncated"})) as stub:
        ...                                          # request 1 -> HTTP 429, request 2 -> cut JSON

Standalone (prints the URL, serves until killed)::

    python tests/stub_server.py --port 0
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FAULT_KINDS", "FaultPlan", "StubReply", "StubServer", "default_responder", "schema_instance"]

JSON = dict[str, Any]

# --------------------------------------------------------------------------------------------
# Schema -> instance generator
# --------------------------------------------------------------------------------------------

_SENTENCE = (
    "the stub model answers this grounded question with a short deterministic sentence "
    "drawn from the provided context and nothing else"
)
_WORDS = _SENTENCE.split()
_MAX_DEPTH = 12


def schema_instance(schema: JSON, overrides: JSON | None = None) -> Any:
    """Build a deterministic value that validates against a JSON schema.

    Why: tests need structured replies that pass pydantic validation without hand-writing one
    fixture per model. ``overrides`` are merged into the top-level object so a responder can pin
    the few fields a test cares about and let the generator fill the rest.
    """
    value = _generate(schema, schema, "value", 0)
    if overrides:
        if not isinstance(value, dict):
            raise TypeError("overrides need a schema whose top level is an object")
        value.update(overrides)
    return value


def _resolve_ref(ref: str, root: JSON) -> JSON:
    """Follow a local JSON pointer such as ``#/$defs/Turn`` (pydantic puts sub-models there)."""
    if not ref.startswith("#"):
        raise ValueError(f"only local $ref is supported, got {ref!r}")
    node: Any = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if part:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _pick_option(options: Sequence[JSON]) -> JSON:
    """Choose the first non-null branch of anyOf/oneOf so optional fields still get a value."""
    for option in options:
        if option.get("type") != "null":
            return option
    return options[0] if options else {}


def _schema_type(node: JSON) -> str:
    """Return the single concrete type to generate, inferring it when ``type`` is absent or a list."""
    kind = node.get("type")
    if isinstance(kind, list):
        non_null = [k for k in kind if k != "null"]
        return non_null[0] if non_null else "null"
    if isinstance(kind, str):
        return kind
    if "properties" in node or "additionalProperties" in node:
        return "object"
    if "items" in node or "prefixItems" in node:
        return "array"
    return "string"


def _generate(node: JSON, root: JSON, hint: str, depth: int) -> Any:
    """Dispatch on the schema keyword that decides the value (ref, const, enum, combinators, type)."""
    if depth > _MAX_DEPTH:
        return None
    if "$ref" in node:
        return _generate(_resolve_ref(node["$ref"], root), root, hint, depth + 1)
    if "const" in node:
        return node["const"]
    if node.get("enum"):
        return next((v for v in node["enum"] if v is not None), node["enum"][0])
    for combinator in ("anyOf", "oneOf"):
        if node.get(combinator):
            return _generate(_pick_option(node[combinator]), root, hint, depth + 1)
    if node.get("allOf"):
        merged: JSON = {}
        for part in node["allOf"]:
            merged.update(_resolve_ref(part["$ref"], root) if "$ref" in part else part)
        return _generate(merged, root, hint, depth + 1)
    generators: dict[str, Callable[[JSON, JSON, str, int], Any]] = {
        "object": _gen_object,
        "array": _gen_array,
        "string": _gen_string,
        "integer": _gen_integer,
        "number": _gen_number,
        "boolean": lambda *_: True,
        "null": lambda *_: None,
    }
    return generators.get(_schema_type(node), _gen_string)(node, root, hint, depth)


def _gen_object(node: JSON, root: JSON, hint: str, depth: int) -> JSON:
    """Fill every declared property (optional ones too, so tests see fully populated models)."""
    return {
        name: _generate(sub, root, name, depth + 1) for name, sub in (node.get("properties") or {}).items()
    }


def _gen_array(node: JSON, root: JSON, hint: str, depth: int) -> list[Any]:
    """Produce max(minItems, 1) items capped by maxItems; items differ so uniqueItems holds."""
    prefix = node.get("prefixItems") or []
    count = max(int(node.get("minItems", 0)), 1, len(prefix))
    if "maxItems" in node:
        count = min(count, int(node["maxItems"]))
    item_schema = node.get("items") if isinstance(node.get("items"), dict) else {}
    out = []
    for i in range(count):
        sub = prefix[i] if i < len(prefix) else item_schema
        out.append(_generate(sub, root, f"{hint} {i + 1}", depth + 1))
    return out


_FORMATS = {
    "date": "2025-01-15",
    "date-time": "2025-01-15T09:30:00Z",
    "time": "09:30:00",
    "email": "stub@example.org",
    "uri": "https://example.org/stub",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def _gen_string(node: JSON, root: JSON, hint: str, depth: int) -> str:
    """Plausible words mentioning the field name, padded/trimmed to minLength/maxLength."""
    if node.get("format") in _FORMATS:
        return _FORMATS[node["format"]]
    lo = int(node.get("minLength", 0))
    hi = node.get("maxLength")
    text = f"{hint.replace('_', ' ')}: " + " ".join(_WORDS[:8])
    i = 8
    while len(text) < lo:
        text += " " + _WORDS[i % len(_WORDS)]
        i += 1
    if hi is not None and len(text) > int(hi):
        text = text[: int(hi)].rstrip() or text[: int(hi)]
    if len(text) < lo:  # rstrip may have cut below minLength
        text = text.ljust(lo, "x")
    return text


def _bounds(node: JSON, step: float) -> tuple[float | None, float | None]:
    """Fold inclusive and exclusive bounds into one inclusive (lo, hi) pair."""
    lo = node.get("minimum")
    hi = node.get("maximum")
    if "exclusiveMinimum" in node:
        lo = node["exclusiveMinimum"] + step
    if "exclusiveMaximum" in node:
        hi = node["exclusiveMaximum"] - step
    return lo, hi


def _in_range(lo: float | None, hi: float | None, default: float) -> float:
    """Prefer the lower bound (a realistic small count), else the default clipped to the upper bound."""
    if lo is not None:
        return lo
    if hi is not None:
        return min(default, hi)
    return default


def _gen_integer(node: JSON, root: JSON, hint: str, depth: int) -> int:
    """Smallest allowed integer (or 1), rounded up to multipleOf when present."""
    lo, hi = _bounds(node, 1)
    value = int(_in_range(lo, hi, 1))
    multiple = node.get("multipleOf")
    if multiple:
        value = -(-value // int(multiple)) * int(multiple)
    return value


def _gen_number(node: JSON, root: JSON, hint: str, depth: int) -> float:
    """Smallest allowed number (or 0.5); exclusive bounds move halfway toward the other bound."""
    lo, hi = node.get("minimum"), node.get("maximum")
    ex_lo, ex_hi = node.get("exclusiveMinimum"), node.get("exclusiveMaximum")
    if ex_lo is not None:
        top = hi if hi is not None else ex_hi
        lo = (ex_lo + top) / 2 if top is not None else ex_lo + 1
    if ex_hi is not None and lo is None:
        hi = ex_hi - 1 if hi is None else min(hi, ex_hi - 1)
    return float(_in_range(lo, hi, 0.5))


# --------------------------------------------------------------------------------------------
# Replies and faults
# --------------------------------------------------------------------------------------------


@dataclass
class StubReply:
    """A fully specified reply.

    For ``status == 200`` ``content`` becomes ``choices[0].message.content``; for an error status it
    becomes the message of an OpenAI-style ``{"error": {...}}`` body. ``delay_s`` sleeps before
    answering; ``drop_connection`` closes the socket without sending anything.
    """

    content: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drop_connection: bool = False
    finish_reason: str = "stop"


FAULT_KINDS: tuple[str, ...] = ("429", "500", "503", "timeout", "drop", "truncated", "empty", "invalid")
"""Fault names understood by FaultPlan:

- ``"429"``: HTTP 429 with ``Retry-After: 0`` (-> ``openai.RateLimitError``)
- ``"500"`` / ``"503"``: server errors (-> ``openai.InternalServerError``)
- ``"timeout"``: sleep ``FaultPlan.delay_s`` before answering (-> ``openai.APITimeoutError`` with a
  smaller client timeout)
- ``"drop"``: close the socket without a response (-> ``openai.APIConnectionError``)
- ``"truncated"``: the normal JSON content cut in half, ``finish_reason: "length"``, as a server
  that ran into ``max_tokens`` answers
- ``"empty"``: empty content
- ``"invalid"``: well-formed JSON that violates the schema (``{"__stub_invalid__": true}``)
"""


@dataclass
class FaultPlan:
    """Which chat requests misbehave, by 1-based request number or by seeded probability.

    ``script`` wins for the numbers it names; otherwise each request fails with probability
    ``rate``, drawing its fault from ``kinds``. The draw for request ``n`` depends only on
    ``(seed, n)``, so a run is reproducible even when requests arrive concurrently.
    """

    script: dict[int, str] = field(default_factory=dict)
    rate: float = 0.0
    seed: int = 0
    kinds: Sequence[str] = FAULT_KINDS
    delay_s: float = 5.0

    def __post_init__(self) -> None:
        unknown = {k for k in (*self.script.values(), *self.kinds) if k not in FAULT_KINDS}
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; expected one of {FAULT_KINDS}")

    def fault_for(self, request_number: int) -> str | None:
        """Return the fault name for this request, or None for a normal reply."""
        if request_number in self.script:
            return self.script[request_number]
        if self.rate <= 0:
            return None
        rng = random.Random(f"{self.seed}:{request_number}")
        return rng.choice(list(self.kinds)) if rng.random() < self.rate else None


def default_responder(body: JSON) -> JSON | str:
    """Schema-valid JSON for json_schema requests, ``{}``-ish JSON for json_object, else an echo."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return schema_instance(fmt.get("json_schema", {}).get("schema", {}))
    if fmt.get("type") == "json_object":
        return {"answer": "stub answer"}
    return f"Stub reply to: {_last_user_text(body)[:200]}"


def _last_user_text(body: JSON) -> str:
    """Text of the last user message (content may be a string or a list of parts)."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            return _message_text(message)
    return ""


def _message_text(message: JSON) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _as_reply(result: StubReply | JSON | str) -> StubReply:
    """Normalise what a responder returned."""
    if isinstance(result, StubReply):
        return result
    if isinstance(result, str):
        return StubReply(content=result)
    return StubReply(content=json.dumps(result))


def _apply_fault(fault: str, reply: StubReply, delay_s: float) -> StubReply:
    """Turn a normal reply into the named fault."""
    if fault == "429":
        return StubReply("stub: rate limited", status=429, headers={"Retry-After": "0"})
    if fault in ("500", "503"):
        return StubReply(f"stub: injected {fault}", status=int(fault))
    if fault == "timeout":
        return StubReply(reply.content, reply.status, reply.headers, delay_s=delay_s)
    if fault == "drop":
        return StubReply(drop_connection=True)
    if fault == "truncated":
        return StubReply(reply.content[: max(1, len(reply.content) // 2)], finish_reason="length")
    if fault == "empty":
        return StubReply("")
    if fault == "invalid":
        return StubReply(json.dumps({"__stub_invalid__": True}))
    raise ValueError(f"unknown fault {fault!r}")


def _count_tokens(text: str) -> int:
    """Whitespace token count: crude, but enough for usage accounting in tests."""
    return len(text.split())


def completion_body(request: JSON, content: str, model: str, finish_reason: str = "stop") -> JSON:
    """A standard ``chat.completion`` object around ``content``."""
    prompt_tokens = sum(_count_tokens(_message_text(m)) for m in request.get("messages") or [])
    completion_tokens = _count_tokens(content)
    return {
        "id": f"chatcmpl-stub-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model") or model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _error_body(status: int, message: str) -> JSON:
    kinds = {429: "rate_limit_exceeded", 500: "server_error", 503: "service_unavailable"}
    return {"error": {"message": message, "type": kinds.get(status, "invalid_request_error"), "code": status}}


# --------------------------------------------------------------------------------------------
# HTTP server
# --------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Routes /v1/chat/completions and /v1/models; everything else is 404."""

    protocol_version = "HTTP/1.1"  # keep-alive, like a real endpoint behind httpx's pool
    server: _HTTPServer
    timeout = 60  # idle keep-alive sockets die eventually even if nobody closes them
    # Headers and body leave in two writes; with Nagle on, the body waits for the client's delayed
    # ACK of the headers (~40 ms on Linux), which the benchmarks measured as pipeline latency.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request stderr logging; tests read ``StubServer.requests`` instead."""

    def setup(self) -> None:
        super().setup()
        self.server.stub._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.stub._track(self.connection, add=False)

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            model = self.server.stub.model
            self._send_json(200, {"object": "list", "data": [{"id": model, "object": "model"}]})
        else:
            self._send_json(404, _error_body(404, f"no route {self.path}"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(404, _error_body(404, f"no route {self.path}"))
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            self._send_json(400, _error_body(400, f"bad JSON: {exc}"))
            return
        self._reply(body, self.server.stub._handle_chat(body))

    def _reply(self, body: JSON, reply: StubReply) -> None:
        """Sleep, drop, or send the reply as an error, a completion, or an SSE stream."""
        if reply.delay_s > 0 and self.server.stub._stopping.wait(reply.delay_s):
            self._drop()  # the server is shutting down: do not keep the client waiting
            return
        if reply.drop_connection:
            self._drop()
            return
        if reply.status != 200:
            self._send_json(reply.status, _error_body(reply.status, reply.content), reply.headers)
        elif body.get("stream"):
            self._send_stream(body, reply)
        else:
            content = completion_body(body, reply.content, self.server.stub.model, reply.finish_reason)
            self._send_json(200, content, reply.headers)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send_json(self, status: int, payload: JSON, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, body: JSON, reply: StubReply) -> None:
        """Minimal SSE: one content chunk, one finish chunk (with usage if asked), then [DONE]."""
        full = completion_body(body, reply.content, self.server.stub.model)
        base = {k: full[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
        chunks = [
            base | {"choices": [{"index": 0, "delta": {"role": "assistant", "content": reply.content}}]},
            base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        ]
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append(base | {"choices": [], "usage": full["usage"]})
        data = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(data)))
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler asleep in a "timeout" fault must not block shutdown
    # socketserver's listen backlog is 5: with more clients connecting at once the kernel resets the
    # extra connections, and a benchmark at C=64 measured retries instead of the pipeline.
    request_queue_size = 1024
    stub: StubServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out or hang up mid-reply are expected here; only report real bugs."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class StubServer:
    """OpenAI-compatible stub on 127.0.0.1 (ephemeral port), served from a background thread.

    ``responder(body)`` decides each chat reply (dict -> JSON content, str -> raw content,
    ``StubReply`` -> full control); ``faults`` then overrides it for the requests it names.
    ``requests`` holds every received chat body, in arrival order.
    """

    def __init__(
        self,
        responder: Callable[[JSON], StubReply | JSON | str] | None = None,
        model: str = "stub-model",
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.responder = responder or default_responder
        self.model = model
        self.faults = faults or FaultPlan()
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._requests: list[JSON] = []
        self._sockets: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle ----------------------------------------------------------------------------------

    def start(self) -> StubServer:
        """Bind and serve in a daemon thread; returns self for chaining."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer((self._host, self._port), _Handler)
        self._httpd.stub = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="stub-openai", daemon=True
        )  # a short poll interval keeps stop() fast (the default 0.5 s adds up over a test suite)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, wake sleeping handlers, and close open keep-alive sockets."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd, self._thread = None, None

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # properties ---------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("StubServer is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL to pass as ``base_url`` to OpenAI clients."""
        return f"http://{self._host}:{self.port}/v1"

    @property
    def requests(self) -> list[JSON]:
        """A snapshot copy of the chat request bodies received so far."""
        with self._lock:
            return list(self._requests)

    # internals ----------------------------------------------------------------------------------

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            (self._sockets.add if add else self._sockets.discard)(sock)

    def _handle_chat(self, body: JSON) -> StubReply:
        """Record the request, ask the responder, then apply the fault plan for its number."""
        with self._lock:
            self._requests.append(body)
            number = len(self._requests)
        fault = self.faults.fault_for(number)
        if fault in ("429", "500", "503", "drop"):
            return _apply_fault(fault, StubReply(), self.faults.delay_s)  # responder not needed
        try:
            reply = _as_reply(self.responder(body))
        except Exception as exc:  # a broken responder should surface as a 500, not a hung client
            reply = StubReply(f"stub responder raised {type(exc).__name__}: {exc}", status=500)
        return _apply_fault(fault, reply, self.faults.delay_s) if fault else reply


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until interrupted; prints the base URL on the first line of stdout."""
    parser = argparse.ArgumentParser(description="Stub OpenAI-compatible chat server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--model", default="stub-model")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    plan = FaultPlan(rate=args.fault_rate, seed=args.seed)
    with StubServer(model=args.model, faults=plan, host=args.host, port=args.port) as stub:
        print(stub.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
