"""One structured LLM call: messages in, a validated pydantic object out, every attempt recorded.

Agents never touch the database: each attempt becomes an :class:`LLMCallRecord` that the graph
turns into an ``llm.call`` event. Retries are tenacity's (bounded attempts, exponential backoff with
jitter, ``Retry-After`` honoured) under two bounds: a number of attempts and a wall-clock deadline
for the whole call, so a server that answers slowly and badly cannot hold a sample forever. HTTP
retries inside the OpenAI client are switched off so that no attempt goes unrecorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Generic, Literal, Protocol, TypeVar

import httpx
import openai
from langchain_openai import ChatOpenAI
from pydantic import BaseModel
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_exponential_jitter

from teacherforge.agents.chat_transport import ChatCompletionsTransport
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
    # More base URLs serving the same model (data-parallel replicas); a pool spreads attempts over all.
    replicas: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.replicas)


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.7
    max_tokens: int = 1024
    seed: int | None = None
    timeout_s: float = 120.0


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded attempts AND a total deadline per call (all attempts plus the waits between them)."""

    max_attempts: int = 3
    initial_wait_s: float = 0.5
    max_wait_s: float = 20.0
    deadline_s: float | None = 900.0


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


class EndpointRouter(Protocol):
    """Chooses the replica for each attempt (graph/endpoint_pool.py); agents only see this interface."""

    def acquire(self) -> Endpoint: ...

    def release(self, endpoint: Endpoint, failed: bool) -> None: ...


class CallLimiter(Protocol):
    """Caps calls in flight (adaptive concurrency); held for the duration of one attempt."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def observe(self, latency_ms: float, rate_limited: bool) -> None: ...


class CallRefused(Exception):
    """A call gate would not let an attempt go out (a run budget has no room); ``calls`` are the earlier
    attempts of the same call, so the tokens they spent are still recorded."""

    def __init__(self, message: str, detail: dict[str, Any] | None = None):
        super().__init__(message)
        self.detail = detail or {}
        self.calls: list[LLMCallRecord] = []


class CallGate(Protocol):
    """Admits an attempt before it is sent (run budgets, graph/budget.py) and settles it when it ends."""

    async def admit(self, messages: list[dict[str, str]], max_tokens: int) -> Any: ...

    def settle(self, ticket: Any, record: LLMCallRecord) -> None: ...


def endpoint_failed(exc: BaseException) -> bool:
    """Did the server itself fail (unreachable, timed out, 5xx, 429)? Bad replies are the model's."""
    if isinstance(exc, openai.APIConnectionError):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(exc, openai.APIStatusError) and status is not None and (status >= 500 or status == 429)


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


def _no_wait_after_bad_reply(fallback):
    """Retry a bad reply at once (the next attempt has a new seed); back off only for server errors."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return 0.0 if isinstance(exc, _BadReply) else fallback(state)

    return wait


def _reseeded(seed: int | None, attempt: int) -> int | None:
    """The seed of attempt ``attempt`` (1-based) of a reseeded call; the first keeps the call's seed."""
    return None if seed is None else (seed + attempt - 1) & 0x7FFFFFFF


def _stop(max_attempts: int, deadline: float | None):
    """Stop after ``max_attempts``, or when the next wait would end past the call's deadline."""

    def stop(state: RetryCallState) -> bool:
        if state.attempt_number >= max_attempts:
            return True
        return deadline is not None and time.monotonic() + (state.upcoming_sleep or 0.0) >= deadline

    return stop


class _DeadlineExceeded(Exception):
    """The call's total deadline ran out in the middle of an attempt."""


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
        # Sees every attempt sent to the model (not reused ones): budgets and failure detection.
        self.observer: Callable[[LLMCallRecord], None] | None = None
        self.params = params
        self.retry = retry or RetryPolicy()
        self._transports: list[ChatCompletionsTransport] = []
        # Replicas of one model (--llm-url given several times): each attempt asks the router.
        self.router: EndpointRouter | None = None
        self.limiter: CallLimiter | None = None  # adaptive concurrency (--adaptive)
        self.gate: CallGate | None = None  # run budgets: may hold or refuse (CallRefused) an attempt
        self._chats: dict[str, ChatOpenAI] = {}  # one client per replica URL, made on first use

    def _chat_for(self, endpoint: Endpoint) -> ChatOpenAI:
        chat = self._chats.get(endpoint.url)
        if chat is None:
            chat = self._chats[endpoint.url] = self._new_chat(endpoint)
        return chat

    def _new_chat(self, endpoint: Endpoint) -> ChatOpenAI:
        # Our own transport under ChatOpenAI (agents/chat_transport.py): one aiohttp POST per attempt
        # instead of the OpenAI SDK's request stack, about a third of the event loop's CPU per call.
        # It is also bound to this run's event loop: langchain-openai caches one HTTP client per URL
        # for the whole process, and a second asyncio.run on the same URL failed with "Event loop is
        # closed" when that one was used. An LLM object lives in one run, hence one loop.
        transport = ChatCompletionsTransport(endpoint.url, endpoint.api_key, self.params.timeout_s)
        self._transports.append(transport)
        return ChatOpenAI(
            base_url=endpoint.url,
            api_key=endpoint.api_key,
            model=endpoint.model,
            temperature=self.params.temperature,
            max_tokens=self.params.max_tokens,
            timeout=self.params.timeout_s,
            max_retries=0,
            async_client=transport,
        )

    async def aclose(self) -> None:
        """Close the HTTP connections; call it on the event loop the calls ran on, when they are done."""
        transports, self._transports = self._transports, []
        for transport in transports:
            await transport.aclose()
        self._chats.clear()

    def _params_for(
        self, seed: int | None, max_tokens: int | None = None, temperature: float | None = None
    ) -> dict[str, Any]:
        return {
            "temperature": self.params.temperature if temperature is None else temperature,
            "max_tokens": self.params.max_tokens if max_tokens is None else max_tokens,
            "seed": seed,
        }

    async def call(
        self,
        agent: str,
        schema: type[T],
        prompt: RenderedPrompt,
        seed: int | None = None,
        validate: Callable[[T], T] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        reseed: bool = False,
        attempts: int | None = None,
    ) -> AgentResult[T]:
        """Ask for ``schema``; retry bad replies and transient errors; raise LLMCallFailed when exhausted.

        ``validate`` checks what a schema cannot (a turn index that exists, no duplicates): it returns
        the object, possibly cleaned, or raises ``ValueError``. A reply it rejects is retried exactly
        like one that did not parse, and its attempt is recorded with the error ``invalid: ...``.

        ``max_tokens`` and ``temperature`` replace the client's for this call (the small-model profile
        bounds each role). With ``reseed``, attempt k is sent with seed + k - 1 and without a backoff
        wait after a bad reply: a server that honours the seed gives the same bad reply to the same
        request. Each attempt's ``params`` show the seed it was sent with; ``request_hash`` stays the
        call's (its first attempt's), so a resume reuses the reply the call ended with. ``attempts``
        replaces the retry policy's number of attempts for this call.
        """
        json_schema = _json_schema(schema)
        messages = prompt.messages
        if self.method != "json_schema":
            messages = _with_schema_hint(messages, schema)
        params = self._params_for(seed, max_tokens, temperature)
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
        reused = _reusable(schema, recorded, validate) if recorded is not None else None
        if recorded is not None and reused is not None:
            record = LLMCallRecord(**record_args, attempt=1, latency_ms=0.0, reused=True, **recorded)
            return AgentResult(output=reused, calls=[record])
        if self.offline:
            record = LLMCallRecord(**record_args, attempt=1, latency_ms=0.0, error=OFFLINE_MISS)
            raise LLMCallFailed(agent, [record])
        calls: list[LLMCallRecord] = []
        deadline_s = self.retry.deadline_s
        deadline = time.monotonic() + deadline_s if deadline_s is not None else None
        backoff = _retry_after_wait(
            wait_exponential_jitter(multiplier=self.retry.initial_wait_s, max=self.retry.max_wait_s)
        )
        retrying = AsyncRetrying(
            stop=_stop(attempts or self.retry.max_attempts, deadline),
            wait=_no_wait_after_bad_reply(backoff) if reseed else backoff,
            retry=retry_if_exception_type(_RETRYABLE),
            reraise=True,
        )
        overrides = {"max_tokens": params["max_tokens"], "temperature": params["temperature"]}
        try:
            async for attempt in retrying:
                with attempt:
                    number = attempt.retry_state.attempt_number
                    sent_seed = _reseeded(seed, number) if reseed else seed
                    ticket = await self.gate.admit(messages, params["max_tokens"]) if self.gate else None
                    endpoint = self.router.acquire() if self.router is not None else self.endpoint
                    record = LLMCallRecord(
                        **{**record_args, "endpoint": endpoint.url, "params": {**params, "seed": sent_seed}},
                        attempt=number,
                        latency_ms=0.0,
                    )
                    calls.append(record)
                    try:
                        parsed = await self._routed(
                            endpoint, schema, sent_seed, messages, record, deadline, overrides
                        )
                        output = _validated(schema.model_validate(parsed), validate, record)
                    finally:
                        if self.gate is not None and ticket is not None:
                            self.gate.settle(ticket, record)
                        if self.observer is not None:
                            self.observer(record)
                    return AgentResult(output=output, calls=calls)
        except CallRefused as exc:
            exc.calls = calls
            raise
        except (*_RETRYABLE, _DeadlineExceeded) as exc:
            raise LLMCallFailed(agent, calls) from exc
        raise LLMCallFailed(agent, calls)  # pragma: no cover - tenacity reraises before this

    async def _routed(
        self, endpoint: Endpoint, schema, seed, messages, record, deadline, overrides: dict[str, Any]
    ) -> dict:
        """One attempt on ``endpoint``; the router and the limiter hear how it went."""
        chat = self._chat_for(endpoint)
        failure: BaseException | None = None
        try:
            if self.limiter is None:
                return await self._attempt_within(chat, schema, seed, messages, record, deadline, overrides)
            async with self.limiter:
                return await self._attempt_within(chat, schema, seed, messages, record, deadline, overrides)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if self.router is not None:
                self.router.release(endpoint, failure is not None and endpoint_failed(failure))
            if self.limiter is not None:
                self.limiter.observe(record.latency_ms, getattr(failure, "status_code", None) == 429)

    async def _attempt_within(
        self,
        chat: ChatOpenAI,
        schema: type[BaseModel],
        seed: int | None,
        messages: list[dict[str, str]],
        record: LLMCallRecord,
        deadline: float | None,
        overrides: dict[str, Any],
    ) -> dict:
        """One attempt, cut off when the call's total deadline passes (recorded as the attempt's error)."""
        if deadline is None:
            return await self._attempt(chat, schema, seed, messages, record, overrides)
        started = time.perf_counter()
        try:
            return await asyncio.wait_for(
                self._attempt(chat, schema, seed, messages, record, overrides),
                max(0.001, deadline - time.monotonic()),
            )
        except TimeoutError as exc:
            record.latency_ms = (time.perf_counter() - started) * 1000
            record.error = f"deadline: the call's total deadline of {self.retry.deadline_s:g}s ran out"
            raise _DeadlineExceeded(record.error) from exc

    async def _attempt(
        self,
        chat: ChatOpenAI,
        schema: type[BaseModel],
        seed: int | None,
        messages: list[dict[str, str]],
        record: LLMCallRecord,
        overrides: dict[str, Any],
    ) -> dict:
        """Send one request through langchain-openai and validate the reply against ``schema``.

        One ``ainvoke`` with a ready-made ``response_format`` rather than a fresh
        ``with_structured_output`` chain per attempt: the chain rebuilt two JSON schemas and ran six
        nested runnables per call, about a third of TeacherForge's CPU per call (evals/bench). The
        format travels in ``extra_body``: the request on the wire is the same, but langchain-openai
        then takes the SDK's plain ``create`` path instead of ``parse``, which re-validated every
        reply into a pydantic object we do not use (~1 ms of CPU per call). We validate it once here.
        """
        kwargs: dict[str, Any] = {"extra_body": {"response_format": response_format_for(schema, self.method)}}
        if seed is not None:
            kwargs["seed"] = seed
        defaults = {"max_tokens": self.params.max_tokens, "temperature": self.params.temperature}
        kwargs.update({k: v for k, v in overrides.items() if v != defaults[k]})  # per-call bounds
        started = time.perf_counter()
        try:
            reply = await chat.ainvoke(messages, **kwargs)
        except openai.APIError as exc:
            record.latency_ms = (time.perf_counter() - started) * 1000
            record.error = _api_error_text(exc)
            raise
        finish = reply.response_metadata.get("finish_reason")
        if finish == "length":  # the reply hit max_tokens inside the JSON: retried like a parse failure
            record.error = f"parse: reply cut off at max_tokens ({overrides['max_tokens']}); raise max_tokens"
        elif finish == "content_filter":
            record.error = "parse: the server's content filter stopped the reply"
        record.latency_ms = (time.perf_counter() - started) * 1000
        record.raw = reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
        usage = reply.usage_metadata or {}
        record.tokens_in = usage.get("input_tokens")
        record.tokens_out = usage.get("output_tokens")
        if record.error is not None:
            raise _BadReply(record.error)
        try:
            if not record.raw.strip():
                raise ValueError("empty reply")
            parsed = schema.model_validate_json(record.raw)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            record.error = f"parse: {_one_line(str(exc))}"
            raise _BadReply(record.error) from exc
        record.parsed = parsed.model_dump()
        return record.parsed


def _validated(output: T, validate: Callable[[T], T] | None, record: LLMCallRecord) -> T:
    """Run the agent's own check on a parsed reply; a rejection becomes this attempt's error."""
    if validate is None:
        return output
    try:
        output = validate(output)
    except ValueError as exc:
        record.error = f"invalid: {_one_line(str(exc))}"
        raise _BadReply(record.error) from exc
    record.parsed = output.model_dump()
    return output


def _reusable(schema: type[T], recorded: dict[str, Any], validate: Callable[[T], T] | None) -> T | None:
    """A recorded reply as the output, or None when today's check rejects it (then the model is asked)."""
    output = schema.model_validate(recorded["parsed"])
    if validate is None:
        return output
    try:
        return validate(output)
    except ValueError:
        return None


PROBE_MESSAGES = [{"role": "user", "content": 'Reply with the JSON object {"ok": true}.'}]


def probe_chat(
    url: str,
    model: str,
    response_format: dict[str, Any],
    api_key: str | None = None,
    timeout_s: float = 120.0,
) -> httpx.Response:
    """Send one tiny chat request with ``response_format`` and return the raw reply, unvalidated.

    Why: before a run, graph/endpoints.py learns which structured-output method the server honours;
    it judges the status code, this sends the request. Transport errors (``httpx.HTTPError``) propagate.
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"model": model, "max_tokens": 16, "temperature": 0, "messages": PROBE_MESSAGES}
    return httpx.post(
        f"{url.rstrip('/')}/chat/completions",
        json={**body, "response_format": response_format},
        headers=headers,
        timeout=timeout_s,
    )


@lru_cache(maxsize=128)
def response_format_for(schema: type[BaseModel], method: StructuredMethod) -> dict[str, Any]:
    """The ``response_format`` body, built once per schema.

    json_schema: exactly what langchain-openai sends for a pydantic class (the OpenAI SDK's strict form
    of the schema, named after the class), so vLLM's guided decoding and OpenAI's strict mode see the
    same request as before. json_mode: a plain JSON object; the schema travels in the prompt.
    """
    if method == "json_mode":
        return {"type": "json_object"}
    strict = openai.pydantic_function_tool(schema)["function"]
    return {
        "type": "json_schema",
        "json_schema": {"name": schema.__name__, "schema": strict["parameters"], "strict": True},
    }


@lru_cache(maxsize=64)
def _json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """A schema's JSON schema, built once: pydantic takes milliseconds per call (evals/bench overhead)."""
    return schema.model_json_schema()


def _with_schema_hint(messages: list[dict[str, str]], schema: type[BaseModel]) -> list[dict[str, str]]:
    """For servers without json_schema support the schema has to travel in the prompt."""
    hint = (
        f"\n\nReply with one JSON object for schema {schema.__name__}, exactly matching this JSON schema:\n"
        + json.dumps(_json_schema(schema), separators=(",", ":"))
    )
    first, *rest = messages
    return [{**first, "content": first["content"] + hint}, *rest]


def _api_error_text(exc: openai.APIError) -> str:
    """``<OpenAI error class>: <message>`` for the ``llm.call`` event (a connection error's message
    names its cause, agents/chat_transport.py)."""
    return f"{_openai_class(exc)}: {_one_line(str(exc))}"


def _openai_class(exc: Exception) -> str:
    """The OpenAI SDK's error class (langchain wraps it in a subclass with a generic name)."""
    for cls in type(exc).__mro__:
        if cls.__module__.split(".")[0] == "openai":
            return cls.__name__
    return type(exc).__name__


def _one_line(text: str, limit: int = 400) -> str:
    return " ".join(text.split())[:limit]
