"""Tests for the stub OpenAI server, driven through the real langchain-openai client.

Why: every agent test relies on this stub behaving like a real endpoint, so it is checked through
the same client path the agents use (``with_structured_output(..., method="json_schema")``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Literal

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field, ValidationError

try:  # tests/ is on sys.path under pytest's default rootdir import mode
    from stub_server import FaultPlan, StubReply, StubServer, schema_instance
except ImportError:  # pragma: no cover - if tests/ becomes a package
    from tests.stub_server import FaultPlan, StubReply, StubServer, schema_instance


class Citation(BaseModel):
    file: str = Field(min_length=3, max_length=60)
    line: int = Field(ge=1, le=500)


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    text: str = Field(min_length=10, max_length=80)
    confidence: float = Field(gt=0.0, le=1.0)
    citations: list[Citation] = Field(default_factory=list, max_length=2)


class Conversation(BaseModel):
    topic: str = Field(max_length=12)
    difficulty: int = Field(ge=2, le=5)
    turns: list[Turn] = Field(min_length=3)
    grounded: bool
    summary: str | None = None


class Verdict(BaseModel):
    verdict: Literal["accept", "revise", "reject"]
    reason: str = Field(max_length=200)


def _structured(stub: StubServer, model: type[BaseModel], **client_kwargs: Any) -> Any:
    """The exact client chain the agents use, pointed at the stub."""
    kwargs: dict[str, Any] = {"max_retries": 0} | client_kwargs
    llm = ChatOpenAI(base_url=stub.url, api_key="x", model="stub-model", **kwargs)
    return llm.with_structured_output(model, method="json_schema", include_raw=True)


# ---------------------------------------------------------------------------------------------
# happy path through the real client
# ---------------------------------------------------------------------------------------------


def test_default_responder_satisfies_nested_constrained_model() -> None:
    with StubServer() as stub:
        result = _structured(stub, Conversation).invoke("hi")
    parsed = result["parsed"]
    assert result["parsing_error"] is None
    assert isinstance(parsed, Conversation)
    assert len(parsed.turns) >= 3 and len(parsed.topic) <= 12 and 2 <= parsed.difficulty <= 5
    assert all(t.role in ("user", "assistant") and 10 <= len(t.text) <= 80 for t in parsed.turns)
    assert result["raw"].usage_metadata["output_tokens"] > 0


def test_request_body_is_recorded_with_schema_name() -> None:
    with StubServer() as stub:
        _structured(stub, Verdict).invoke("judge this")
        body = stub.requests[0]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["name"] == "Verdict"
    assert body["messages"][-1]["content"] == "judge this"


def test_scripted_responder_by_schema_name_and_message_text() -> None:
    def responder(body: dict[str, Any]) -> dict[str, Any] | str:
        fmt = body["response_format"]["json_schema"]
        if fmt["name"] == "Verdict":
            verdict = "reject" if "bad" in body["messages"][-1]["content"] else "accept"
            return schema_instance(fmt["schema"], {"verdict": verdict, "reason": "scripted"})
        return schema_instance(fmt["schema"])

    with StubServer(responder=responder) as stub:
        chain = _structured(stub, Verdict)
        good, bad = chain.invoke("a good answer"), chain.invoke("a bad answer")
        other = _structured(stub, Conversation).invoke("hi")
    assert (good["parsed"].verdict, good["parsed"].reason) == ("accept", "scripted")
    assert bad["parsed"].verdict == "reject"
    assert isinstance(other["parsed"], Conversation)


def test_responder_may_return_raw_string_and_stub_reply() -> None:
    raw = '{"verdict": "revise", "reason": "raw"}'
    replies = iter([raw, StubReply('{"verdict": "accept", "reason": "r"}')])
    with StubServer(responder=lambda body: next(replies)) as stub:
        chain = _structured(stub, Verdict)
        assert chain.invoke("x")["parsed"].verdict == "revise"
        assert chain.invoke("x")["parsed"].verdict == "accept"


def test_plain_chat_without_schema_echoes() -> None:
    with StubServer() as stub:
        llm = ChatOpenAI(base_url=stub.url, api_key="x", model="stub-model", max_retries=0)
        message = llm.invoke("tell me about fees")
    assert "tell me about fees" in message.content


def test_streaming_plain_chat() -> None:
    with StubServer() as stub:
        llm = ChatOpenAI(base_url=stub.url, api_key="x", model="stub-model", max_retries=0)
        text = "".join(str(chunk.content) for chunk in llm.stream("stream please"))
    assert "stream please" in text


def test_models_endpoint_and_usage_counts() -> None:
    with StubServer(model="my-model") as stub:
        listing = httpx.get(f"{stub.url}/models").json()
        completion = httpx.post(
            f"{stub.url}/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "one two three"}]},
        ).json()
    assert listing == {"object": "list", "data": [{"id": "my-model", "object": "model"}]}
    usage = completion["usage"]
    assert usage["prompt_tokens"] == 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert completion["choices"][0]["finish_reason"] == "stop"


def test_concurrent_requests() -> None:
    errors: list[BaseException] = []
    with StubServer() as stub:
        chain = _structured(stub, Conversation)

        def call() -> None:
            try:
                assert isinstance(chain.invoke("hi")["parsed"], Conversation)
            except BaseException as exc:  # collected so the main thread can fail loudly
                errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(stub.requests) == 16
    assert not errors


# ---------------------------------------------------------------------------------------------
# faults -> the matching openai exceptions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("429", openai.RateLimitError),
        ("500", openai.InternalServerError),
        ("503", openai.InternalServerError),
        ("drop", openai.APIConnectionError),
    ],
)
def test_fault_raises_openai_error(fault: str, error: type[Exception]) -> None:
    with StubServer(faults=FaultPlan(script={1: fault})) as stub:
        chain = _structured(stub, Verdict)
        with pytest.raises(error):
            chain.invoke("hi")
        assert isinstance(chain.invoke("hi")["parsed"], Verdict)  # request 2 is normal


def test_rate_limit_carries_retry_after_zero() -> None:
    with StubServer(faults=FaultPlan(script={1: "429"})) as stub:
        response = httpx.post(f"{stub.url}/chat/completions", json={"messages": []})
    assert response.status_code == 429 and response.headers["Retry-After"] == "0"


def test_delay_longer_than_client_timeout() -> None:
    plan = FaultPlan(script={1: "timeout"}, delay_s=5.0)
    with StubServer(faults=plan) as stub, pytest.raises(openai.APITimeoutError):
        _structured(stub, Verdict, timeout=0.3).invoke("hi")


def test_client_retries_recover_from_transient_faults() -> None:
    with StubServer(faults=FaultPlan(script={1: "429", 2: "503"})) as stub:
        result = _structured(stub, Verdict, max_retries=2).invoke("hi")
        assert isinstance(result["parsed"], Verdict)
        assert len(stub.requests) == 3


def test_schema_violating_content_fails_validation() -> None:
    with StubServer(faults=FaultPlan(script={1: "invalid"})) as stub, pytest.raises(ValidationError):
        _structured(stub, Verdict).invoke("hi")


def test_truncated_reply_says_it_hit_the_length_limit() -> None:
    with StubServer(faults=FaultPlan(script={1: "truncated"})) as stub:
        with pytest.raises(openai.LengthFinishReasonError):
            _structured(stub, Verdict).invoke("hi")
        assert stub.requests  # the request did reach the server


def test_empty_content_is_a_parsing_error() -> None:
    with StubServer(faults=FaultPlan(script={1: "empty"})) as stub:
        result = _structured(stub, Verdict).invoke("hi")
    assert result["parsed"] is None and result["parsing_error"] is not None


def test_responder_exception_becomes_500() -> None:
    def broken(body: dict[str, Any]) -> str:
        raise RuntimeError("boom")

    with StubServer(responder=broken) as stub, pytest.raises(openai.InternalServerError):
        _structured(stub, Verdict).invoke("hi")


def test_fault_plan_rate_is_seeded_and_order_independent() -> None:
    plan = FaultPlan(rate=0.5, seed=7, kinds=("500", "empty"))
    first = [plan.fault_for(n) for n in range(1, 41)]
    assert first == [FaultPlan(rate=0.5, seed=7, kinds=("500", "empty")).fault_for(n) for n in range(1, 41)]
    assert {None, "500", "empty"} == set(first)
    assert FaultPlan(script={3: "drop"}, rate=0.0).fault_for(3) == "drop"
    with pytest.raises(ValueError):
        FaultPlan(script={1: "418"})


def test_stop_does_not_wait_for_sleeping_handler() -> None:
    stub = StubServer(faults=FaultPlan(script={1: "timeout"}, delay_s=30.0)).start()
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            httpx.post(f"{stub.url}/chat/completions", json={"messages": []}, timeout=60)
        except httpx.HTTPError as exc:  # expected: the stub hangs up instead of answering
            outcome.append(exc)

    client = threading.Thread(target=call, daemon=True)
    client.start()
    while not stub.requests:
        threading.Event().wait(0.01)
    stub.stop()
    client.join(timeout=5)
    assert not client.is_alive()
    assert outcome and isinstance(outcome[0], httpx.RemoteProtocolError)


# ---------------------------------------------------------------------------------------------
# schema_instance unit checks
# ---------------------------------------------------------------------------------------------


def test_schema_instance_keywords() -> None:
    schema = {
        "type": "object",
        "properties": {
            "c": {"const": "fixed"},
            "e": {"enum": [None, "b"]},
            "o": {"oneOf": [{"type": "null"}, {"type": "integer", "minimum": 4, "multipleOf": 3}]},
            "t": {"type": ["null", "boolean"]},
            "s": {"type": "string", "minLength": 120},
            "n": {"type": "number", "exclusiveMinimum": 1, "exclusiveMaximum": 2},
            "d": {"type": "string", "format": "date"},
            "a": {"type": "array", "items": {"type": "string"}, "minItems": 3, "uniqueItems": True},
            "z": {"type": "array", "items": {"type": "string"}, "maxItems": 0},
        },
    }
    value = schema_instance(schema, {"c": "overridden"})
    assert value["c"] == "overridden" and value["e"] == "b" and value["o"] == 6 and value["t"] is True
    assert len(value["s"]) >= 120 and 1 < value["n"] < 2 and value["d"] == "2025-01-15"
    assert len(set(value["a"])) == 3 and value["z"] == []


def test_schema_instance_validates_pydantic_schemas() -> None:
    for model in (Conversation, Verdict, Turn):
        model.model_validate(schema_instance(model.model_json_schema()))


# ---------------------------------------------------------------------------------------------
# standalone mode
# ---------------------------------------------------------------------------------------------


def test_standalone_main_prints_url_and_serves() -> None:
    script = Path(__file__).with_name("stub_server.py")
    proc = subprocess.Popen([sys.executable, str(script), "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert json.loads(httpx.get(f"{url}/models", timeout=5).text)["data"][0]["id"] == "stub-model"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
