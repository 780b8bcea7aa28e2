"""agents/chat_transport.py: the request under ChatOpenAI, and failures as the OpenAI SDK raises them."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
from langchain_openai import ChatOpenAI
from stub_server import FaultPlan, StubServer

from teacherforge.agents.chat_transport import ChatCompletionsTransport

MESSAGES = [{"role": "system", "content": "Be brief. «ü»"}, {"role": "user", "content": "What is the fee?"}]
SCHEMA = {"name": "R", "schema": {}, "strict": True}
FORMAT = {"response_format": {"type": "json_schema", "json_schema": SCHEMA}}


def _chat(url: str, transport: ChatCompletionsTransport | None, **kw) -> ChatOpenAI:
    extra = {"async_client": transport} if transport else {}
    return ChatOpenAI(base_url=url, api_key="k", model="stub-model", temperature=0.3, max_tokens=50,
                      max_retries=0, **kw, **extra)  # fmt: skip


async def _ask(url: str, transport: ChatCompletionsTransport | None, **kw):
    try:
        return await _chat(url, transport, **kw).ainvoke(MESSAGES, extra_body=FORMAT, seed=7)
    finally:
        if transport is not None:
            await transport.aclose()


def test_the_body_on_the_wire_is_the_one_the_sdk_sends():
    with StubServer(lambda body: {"answer": "42"}) as stub:
        via_sdk = asyncio.run(_ask(stub.url, None))
        via_transport = asyncio.run(_ask(stub.url, ChatCompletionsTransport(stub.url, "k", 10.0)))
        sdk_body, our_body = stub.requests
    assert our_body == sdk_body
    assert our_body["response_format"] == FORMAT["response_format"] and our_body["seed"] == 7
    assert via_transport.content == via_sdk.content == '{"answer": "42"}'
    assert via_transport.usage_metadata == via_sdk.usage_metadata
    assert via_transport.response_metadata["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("fault", "error", "text"),
    [
        ("429", openai.RateLimitError, "Error code: 429"),
        ("500", openai.InternalServerError, "injected 500"),
        ("503", openai.InternalServerError, "Error code: 503"),
        ("drop", openai.APIConnectionError, "ServerDisconnectedError"),
    ],
)
def test_failures_are_the_sdks_exceptions(fault, error, text):
    with StubServer(faults=FaultPlan(script={1: fault})) as stub, pytest.raises(error) as raised:
        asyncio.run(_ask(stub.url, ChatCompletionsTransport(stub.url, "k", 10.0)))
    assert text in str(raised.value)
    if fault == "429":  # what the retry policy reads to honour Retry-After
        assert raised.value.status_code == 429 and raised.value.response.headers["retry-after"] == "0"


def test_a_slow_server_is_a_timeout():
    slow = FaultPlan(script={1: "timeout"}, delay_s=3.0)
    with StubServer(faults=slow) as stub, pytest.raises(openai.APITimeoutError):
        asyncio.run(_ask(stub.url, ChatCompletionsTransport(stub.url, "k", 0.3)))


class _HtmlPage(BaseHTTPRequestHandler):
    """A proxy's login page where the model server should be."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        page = b"<html>proxy login</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args):
        pass


def test_a_body_that_is_not_json_is_reported_not_swallowed():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        with pytest.raises(ValueError, match="Unexpected response type.*proxy login"):
            asyncio.run(_ask(url, ChatCompletionsTransport(url, "k", 10.0)))
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreachable_server_names_the_url():
    transport = ChatCompletionsTransport("http://127.0.0.1:9/v1", "k", 5.0)
    with pytest.raises(openai.APIConnectionError, match="ClientConnectorError"):
        asyncio.run(_ask("http://127.0.0.1:9/v1", transport))
    assert transport.url == "http://127.0.0.1:9/v1/chat/completions"


def test_sdk_options_it_does_not_implement_are_refused_not_dropped():
    transport = ChatCompletionsTransport("http://127.0.0.1:9/v1", "k", 5.0)
    with pytest.raises(TypeError, match="extra_query"):
        asyncio.run(transport.create(model="m", messages=MESSAGES, extra_query={"api-version": "1"}))
