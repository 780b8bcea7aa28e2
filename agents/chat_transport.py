"""The HTTP request under ``ChatOpenAI``: one aiohttp POST per attempt instead of the OpenAI SDK's stack.

Why: agents talk through langchain-openai (the design card), but what runs under it on the hot path is
ours to choose (issue #19). On its non-streaming path ``ChatOpenAI`` calls exactly one method of the
SDK, ``async_client.with_raw_response.create(**payload)``, and reads ``parse()`` and ``headers`` of the
result. The SDK spends about a third of TeacherForge's event-loop CPU per call there, mostly walking
every message against its request TypedDicts (a transform that changes nothing in a chat payload)
and building typed response objects that langchain-openai dumps back into a dict
(docs/performance.md, "Per-call CPU"). :class:`ChatCompletionsTransport` takes that place: the same
JSON body on the wire (``tests/test_chat_transport.py`` compares the two), the reply
handed over as the dict langchain-openai accepts, and failures raised as the SDK's own exception
classes, so retries, ``Retry-After``, the endpoint pool and ``llm_calls.error`` read them as before.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import aiohttp
import openai
import orjson

# The httpx flavour the installed SDK builds its exceptions from (``httpx`` up to openai 2.x,
# ``httpx2`` after): its error classes need a request and a response object of that library.
_SDK_CLIENT = next(c for c in openai.DefaultAsyncHttpxClient.__mro__ if c.__name__ == "AsyncClient")
_SDK_HTTPX = importlib.import_module(_SDK_CLIENT.__module__.split(".")[0])

_STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


class RawReply:
    """What ``ChatOpenAI`` reads from ``with_raw_response.create``: ``parse()`` and ``headers``."""

    def __init__(self, body: Any, headers: Any):
        self._body = body
        self.headers = headers

    def parse(self) -> Any:
        return self._body


class ChatCompletionsTransport:
    """``POST {base_url}/chat/completions`` on one aiohttp session, bound to the running event loop.

    Pass it to ``ChatOpenAI(async_client=...)``. The session is opened on first use, so the object
    can be built outside a loop; :meth:`aclose` closes it (on the loop the calls ran on).
    """

    def __init__(self, base_url: str, api_key: str, timeout_s: float):
        self.url = f"{base_url.rstrip('/')}/chat/completions"
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    @property
    def with_raw_response(self) -> ChatCompletionsTransport:
        return self

    async def create(self, **payload: Any) -> RawReply:
        """Send one request; the SDK's keyword conventions (``extra_body``, ``extra_headers``) hold.

        StructuredLLM builds every ChatOpenAI it uses, so the SDK's other request options never come;
        one that does is refused rather than sent as a body field or dropped.
        """
        unsupported = sorted({"extra_query", "timeout"} & payload.keys())
        if unsupported:
            raise TypeError(f"ChatCompletionsTransport does not support {', '.join(unsupported)}")
        body = {k: v for k, v in payload.items() if k not in ("extra_body", "extra_headers")}
        body.update(payload.get("extra_body") or {})
        headers = {**self._headers, **(payload.get("extra_headers") or {})}
        try:
            async with self._open().post(self.url, data=orjson.dumps(body), headers=headers) as response:
                content = await response.read()
                if response.status >= 400:
                    raise _status_error(self.url, response.status, response.headers, content)
                return RawReply(_decoded(content, response.content_type), response.headers)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise openai.APITimeoutError(request=_SDK_HTTPX.Request("POST", self.url)) from exc
        except aiohttp.ClientError as exc:
            raise openai.APIConnectionError(
                message=f"Connection error: {type(exc).__name__}: {exc}",
                request=_SDK_HTTPX.Request("POST", self.url),
            ) from exc

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No connection cap of our own: the run's concurrency (and --adaptive) bounds requests in flight.
            # trust_env: HTTP(S)_PROXY and NO_PROXY apply, as they did with the SDK's clients.
            connector = aiohttp.TCPConnector(limit=0)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, trust_env=True)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _decoded(content: bytes, content_type: str) -> Any:
    """The JSON reply as a dict; a non-JSON body stays text, which langchain-openai reports as such."""
    if "json" not in content_type:
        return content.decode(errors="replace")
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return content.decode(errors="replace")


def _status_error(url: str, status: int, headers: Any, content: bytes) -> openai.APIStatusError:
    """The SDK's exception for an HTTP error, with the same message (``Error code: N - <body>``)."""
    text = content.decode(errors="replace").strip()
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = text
    response = _SDK_HTTPX.Response(
        status, headers=list(headers.items()), content=content, request=_SDK_HTTPX.Request("POST", url)
    )
    data = body.get("error", body) if isinstance(body, dict) else body
    cls = _STATUS_ERRORS.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
    return cls(f"Error code: {status} - {body}", response=response, body=data)
