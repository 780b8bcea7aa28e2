"""One structured LLM call: messages in, a validated pydantic object out, every attempt recorded.

Agents never touch the database: each attempt becomes an :class:`LLMCallRecord` that the graph
turns into an ``llm.call`` event. Retries are tenacity's (bounded attempts, exponential backoff with
jitter, ``Retry-After`` honoured); HTTP retries inside the OpenAI client are switched off so that
no attempt goes unrecorded.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import openai
from langchain_core.messages import AIMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from teacherforge.prompts import RenderedPrompt

T = TypeVar("T", bound=BaseModel)
StructuredMethod = Literal["json_schema", "json_mode"]
OFFLINE_MISS = "offline: request changed since it was recorded; not sent to the model (--offline)"


@dataclass(frozen=True)
class Endpoint:
    """Where an agent's requests go. The API key is never written to an event."""

    url: str
    model: str
    api_key: str = "local"
    structured: StructuredMethod = "json_schema"


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.7
    max_tokens: int = 1024
    seed: int | None = None
    timeout_s: float = 120.0


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    initial_wait_s: float = 0.5
    max_wait_s: float = 20.0


@dataclass
class LLMCallRecord:
    """One attempt at one request, successful or not; the payload of an ``llm.call`` event."""

    agent: str
    endpoint: str
    model: str
    messages: list[dict[str, str]]
    params: dict[str, Any]
    schema_name: str
    template: str
    template_hash: str
    request_hash: str
    attempt: int
    latency_ms: float
    raw: str | None = None
    parsed: dict[str, Any] | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    error: str | None = None
    reused: bool = False


@dataclass
class AgentResult(Generic[T]):
    """A validated output plus the attempts it took."""

    output: T
    calls: list[LLMCallRecord] = field(default_factory=list)


class LLMCallFailed(Exception):
    """All attempts failed; ``calls`` keeps every attempt so the failure is queryable."""

    def __init__(self, agent: str, calls: list[LLMCallRecord]):
        self.agent = agent
        self.calls = calls
        last = calls[-1].error if calls else "no attempt made"
        super().__init__(f"{agent}: {len(calls)} attempt(s) failed; last error: {last}")


class _BadReply(Exception):
    """The server answered, but the reply did not parse into the schema."""


def request_hash(model: str, messages: list[dict[str, str]], params: dict[str, Any], schema: dict) -> str:
    """Content address of a request, independent of the endpoint (for reuse of recorded replies)."""
    blob = json.dumps([model, messages, params, schema], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def _retry_after_wait(fallback: wait_exponential_jitter):
    """Honour a server's Retry-After header on 429/503, else back off exponentially with jitter."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        response = getattr(exc, "response", None)
        header = response.headers.get("retry-after") if response is not None else None
        if header:
            try:
                return min(float(header), 60.0)
            except ValueError:
                pass
        return fallback(state)

    return wait


_RETRYABLE = (_BadReply, openai.APIError)


class StructuredLLM:
    """A chat endpoint that returns pydantic objects decoded under a JSON-schema constraint."""

    def __init__(
        self,
        endpoint: Endpoint,
        params: SamplingParams,
        retry: RetryPolicy | None = None,
        method: StructuredMethod = "json_schema",
    ):
        self.endpoint = endpoint
        self.method = method
        # Recorded replies by request hash (resume, fork, re-runs): a hit costs no model call.
        self.replies: Mapping[str, dict[str, Any]] | None = None
        self.offline = False  # with replies: refuse to call the model on a miss
        self.params = params
        self.retry = retry or RetryPolicy()
        self._chat = ChatOpenAI(
            base_url=endpoint.url,
            api_key=endpoint.api_key,
            model=endpoint.model,
            temperature=params.temperature,
            max_tokens=params.max_tokens,
            timeout=params.timeout_s,
            max_retries=0,
        )

    def _params_for(self, seed: int | None) -> dict[str, Any]:
        return {"temperature": self.params.temperature, "max_tokens": self.params.max_tokens, "seed": seed}

    async def call(
        self, agent: str, schema: type[T], prompt: RenderedPrompt, seed: int | None = None
    ) -> AgentResult[T]:
        """Ask for ``schema``; retry bad replies and transient errors; raise LLMCallFailed when exhausted."""
        json_schema = schema.model_json_schema()
        messages = prompt.messages
        if self.method != "json_schema":
            messages = _with_schema_hint(messages, schema)
        params = self._params_for(seed)
        rhash = request_hash(self.endpoint.model, messages, params, json_schema)
        record_args = {
            "agent": agent,
            "endpoint": self.endpoint.url,
            "model": self.endpoint.model,
            "messages": messages,
            "params": params,
            "schema_name": schema.__name__,
            "template": prompt.template,
            "template_hash": prompt.template_hash,
            "request_hash": rhash,
        }
        recorded = self.replies.get(rhash) if self.replies is not None else None
        if recorded is not None:
            record = LLMCallRecord(**record_args, attempt=1, latency_ms=0.0, reused=True, **recorded)
            return AgentResult(output=schema.model_validate(recorded["parsed"]), calls=[record])
        if self.offline:
            record = LLMCallRecord(**record_args, attempt=1, latency_ms=0.0, error=OFFLINE_MISS)
            raise LLMCallFailed(agent, [record])
        runnable = self._chat.bind(seed=seed) if seed is not None else self._chat
        structured = runnable.with_structured_output(schema, method=self.method, include_raw=True)
        calls: list[LLMCallRecord] = []
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.max_attempts),
            wait=_retry_after_wait(
                wait_exponential_jitter(multiplier=self.retry.initial_wait_s, max=self.retry.max_wait_s)
            ),
            retry=retry_if_exception_type(_RETRYABLE),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    record = LLMCallRecord(
                        **record_args, attempt=attempt.retry_state.attempt_number, latency_ms=0.0
                    )
                    calls.append(record)
                    parsed = await self._attempt(structured, messages, record)
                    return AgentResult(output=schema.model_validate(parsed), calls=calls)
        except _RETRYABLE as exc:
            raise LLMCallFailed(agent, calls) from exc
        raise LLMCallFailed(agent, calls)  # pragma: no cover - tenacity reraises before this

    async def _attempt(self, structured, messages: list[dict[str, str]], record: LLMCallRecord) -> dict:
        started = time.perf_counter()
        try:
            result = await structured.ainvoke(messages)
        except openai.APIError as exc:
            record.latency_ms = (time.perf_counter() - started) * 1000
            record.error = f"{_openai_class(exc)}: {_one_line(str(exc))}"
            raise
        except openai.LengthFinishReasonError as exc:
            # the reply hit max_tokens inside the JSON: a bad reply, retried like a parse failure
            record.latency_ms = (time.perf_counter() - started) * 1000
            record.error = f"parse: reply cut off at max_tokens ({self.params.max_tokens}); raise max_tokens"
            raise _BadReply(record.error) from exc
        except (ValidationError, ValueError) as exc:
            # the OpenAI SDK validates json_schema replies itself: truncated or off-schema JSON lands here
            record.latency_ms = (time.perf_counter() - started) * 1000
            record.error = f"parse: {_one_line(str(exc))}"
            raise _BadReply(record.error) from exc
        record.latency_ms = (time.perf_counter() - started) * 1000
        raw: AIMessage | None = result.get("raw")
        if raw is not None:
            record.raw = raw.content if isinstance(raw.content, str) else json.dumps(raw.content)
            usage = raw.usage_metadata or {}
            record.tokens_in = usage.get("input_tokens")
            record.tokens_out = usage.get("output_tokens")
        parsed = result.get("parsed")
        if parsed is None or result.get("parsing_error") is not None:
            record.error = f"parse: {_one_line(str(result.get('parsing_error') or 'empty reply'))}"
            raise _BadReply(record.error)
        record.parsed = parsed.model_dump()
        return record.parsed


def _with_schema_hint(messages: list[dict[str, str]], schema: type[BaseModel]) -> list[dict[str, str]]:
    """For servers without json_schema support the schema has to travel in the prompt."""
    hint = (
        f"\n\nReply with one JSON object for schema {schema.__name__}, exactly matching this JSON schema:\n"
        + json.dumps(schema.model_json_schema(), separators=(",", ":"))
    )
    first, *rest = messages
    return [{**first, "content": first["content"] + hint}, *rest]


def _openai_class(exc: Exception) -> str:
    """The OpenAI SDK's error class (langchain wraps it in a subclass with a generic name)."""
    for cls in type(exc).__mro__:
        if cls.__module__.split(".")[0] == "openai":
            return cls.__name__
    return type(exc).__name__


def _one_line(text: str, limit: int = 400) -> str:
    return " ".join(text.split())[:limit]
