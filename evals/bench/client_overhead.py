"""CPU per chat call of each layer of the client stack, on the zero-latency stub in another process.

    python -m evals.bench.client_overhead [--calls 400] [--concurrency 1,64]

Where does TeacherForge's own time per LLM call go? This isolates the client: the same request
(a two-message prompt with the UserMessage schema as response_format) sent N times through
- ``structured_llm``: ``agents.llm.StructuredLLM.call`` (what the agents use: retries, records, validation),
- ``chat_openai_ours``: ``ChatOpenAI.ainvoke`` on agents/chat_transport.py (what StructuredLLM uses),
- ``chat_openai_aiohttp`` / ``chat_openai_httpx``: ``ChatOpenAI.ainvoke`` on either of the OpenAI SDK's
  HTTP transports,
- ``openai_sdk``: ``AsyncOpenAI.chat.completions.create`` (httpx transport),
- ``httpx_post``: a bare ``httpx.AsyncClient.post`` plus pydantic validation, the floor of any client
  built on httpx.
It prints one JSON line: CPU ms per call and calls/s for each layer at each concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import httpx
import openai
from langchain_openai import ChatOpenAI

from teacherforge.agents.chat_transport import ChatCompletionsTransport
from teacherforge.agents.llm import Endpoint, SamplingParams, StructuredLLM, response_format_for
from teacherforge.agents.schemas import UserMessage
from teacherforge.evals.bench.pipeline_bench import stub_process
from teacherforge.prompts import RenderedPrompt

MESSAGES = [
    {"role": "system", "content": "You are a student asking about tuition fees. " * 40},
    {"role": "user", "content": "Ask your next question about the refund rules. " * 30},
]


async def _measure(send: Callable[[int], Awaitable[object]], calls: int, concurrency: int) -> dict:
    """CPU ms per call and calls/s for ``calls`` sends with ``concurrency`` in flight (after a warm-up)."""
    for i in range(10):
        await send(i)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await send(i)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(calls)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_ms_per_call": round(cpu * 1000 / calls, 2), "calls_per_s": round(calls / wall, 1)}


async def chat_openai_ours(url: str, calls: int, concurrency: int) -> dict:
    """``ChatOpenAI.ainvoke`` on our transport alone: the part of the floor under every call that
    langchain-openai and the HTTP request make (the main bench reports it beside the pipeline's)."""
    response_format = response_format_for(UserMessage, "json_schema")
    body = {"extra_body": {"response_format": response_format}}
    transport = ChatCompletionsTransport(url, "bench", 60.0)
    ours = ChatOpenAI(
        base_url=url, api_key="bench", model="stub-model", max_retries=0, async_client=transport
    )
    try:
        return await _measure(lambda i: ours.ainvoke(MESSAGES, seed=i, **body), calls, concurrency)
    finally:
        await transport.aclose()


async def _layers(url: str, calls: int, concurrency: int) -> dict:
    response_format = response_format_for(UserMessage, "json_schema")
    body = {"extra_body": {"response_format": response_format}}
    out: dict[str, dict] = {}

    llm = StructuredLLM(Endpoint(url, "stub-model"), SamplingParams())
    prompt = RenderedPrompt(MESSAGES, "en/persona_user.j2", "bench")
    out["structured_llm"] = await _measure(
        lambda i: llm.call("user", UserMessage, prompt, seed=i), calls, concurrency
    )
    await llm.aclose()

    out["chat_openai_ours"] = await chat_openai_ours(url, calls, concurrency)

    for name, client in (
        ("chat_openai_aiohttp", openai.DefaultAioHttpClient(timeout=60)),
        ("chat_openai_httpx", openai.DefaultAsyncHttpxClient(timeout=60)),
    ):
        chat = ChatOpenAI(
            base_url=url, api_key="bench", model="stub-model", max_retries=0, http_async_client=client
        )
        out[name] = await _measure(lambda i, c=chat: c.ainvoke(MESSAGES, seed=i, **body), calls, concurrency)
        await client.aclose()

    sdk = openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=0)
    out["openai_sdk"] = await _measure(
        lambda i: sdk.chat.completions.create(
            model="stub-model", messages=MESSAGES, response_format=response_format, seed=i
        ),
        calls,
        concurrency,
    )
    await sdk.close()

    async with httpx.AsyncClient(base_url=url, timeout=60) as http:

        async def post(i: int) -> None:
            reply = await http.post(
                "/chat/completions",
                json={
                    "model": "stub-model",
                    "messages": MESSAGES,
                    "response_format": response_format,
                    "seed": i,
                },
            )
            UserMessage.model_validate_json(reply.json()["choices"][0]["message"]["content"])

        out["httpx_post"] = await _measure(post, calls, concurrency)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=400)
    p.add_argument("--concurrency", default="1,64", help="comma-separated levels")
    args = p.parse_args(argv)
    result: dict = {"bench": "client_overhead", "calls": args.calls}
    with stub_process(0.0) as url:
        for level in (int(x) for x in args.concurrency.split(",")):
            result[f"c{level}"] = asyncio.run(_layers(url, args.calls, level))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
