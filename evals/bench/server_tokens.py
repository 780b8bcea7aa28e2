"""Raw tokens/s of the embedded local model server (prompt processing and generation).

Why: the pipeline's wall time on CPU boxes is dominated by the teacher server; this gives the
two numbers needed to budget a run (prompt tok/s, generation tok/s, plus grammar-constrained
generation, which pays for the JSON-schema grammar on every token). Prints one JSON line.

Run from the repo root: ``python -m evals.bench.server_tokens [--model X.gguf] [--requests 3]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from typing import Any

import httpx

from teacherforge.serve.local import LocalServer

_FILLER = (
    "Rivers carry sediment from mountains to the sea, shaping valleys, deltas and floodplains. "
    "Engineers measure discharge in cubic metres per second and model floods with hydrographs. "
)
_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 300},
        "points": {"type": "array", "items": {"type": "string", "maxLength": 200}, "maxItems": 8},
    },
    "required": ["title", "points"],
}


def _chat(
    client: httpx.Client,
    server: LocalServer,
    prompt: str,
    max_tokens: int,
    response_format: dict[str, Any] | None = None,
) -> tuple[dict[str, int], float]:
    """One request; returns (usage, seconds). The nonce defeats llama.cpp's prompt-prefix cache."""
    body: dict[str, Any] = {
        "model": server.model, "max_tokens": max_tokens, "temperature": 0,
        "messages": [{"role": "system", "content": f"Request {uuid.uuid4().hex}."},
                     {"role": "user", "content": prompt}],
    }  # fmt: skip
    if response_format:
        body["response_format"] = response_format
    started = time.perf_counter()
    reply = client.post(f"{server.url}/chat/completions", json=body)
    reply.raise_for_status()
    return reply.json()["usage"], time.perf_counter() - started


def measure(server: LocalServer, requests: int, prompt_repeats: int, gen_tokens: int) -> dict[str, Any]:
    """Prompt rate from long prompts with 1 output token; generation rates net of prompt time."""
    with httpx.Client(timeout=600, trust_env=False) as client:  # loopback only, never via a proxy
        _chat(client, server, "warm up", 4)
        prompt_rates, prompt_tokens = [], 0
        for _ in range(requests):
            usage, secs = _chat(client, server, _FILLER * prompt_repeats + "Summarise.", 1)
            prompt_tokens = usage["prompt_tokens"]
            prompt_rates.append(prompt_tokens / secs)
        prompt_rate = statistics.median(prompt_rates)

        def gen_rate(prompt: str, fmt: dict[str, Any] | None) -> tuple[float, int]:
            rates, tokens = [], 0
            for _ in range(requests):
                usage, secs = _chat(client, server, prompt, gen_tokens, fmt)
                gen_secs = max(secs - usage["prompt_tokens"] / prompt_rate, 1e-6)
                rates.append(usage["completion_tokens"] / gen_secs)
                tokens += usage["completion_tokens"]
            return statistics.median(rates), tokens

        free, free_tokens = gen_rate("Write a long, detailed essay about rivers.", None)
        fmt = {"type": "json_schema", "json_schema": {"name": "Notes", "schema": _SCHEMA, "strict": True}}
        constrained, json_tokens = gen_rate("List detailed notes about rivers as JSON.", fmt)
    return {
        "prompt_tokens_per_s": round(prompt_rate, 1),
        "gen_tokens_per_s": round(free, 1),
        "json_schema_gen_tokens_per_s": round(constrained, 1),
        "prompt_tokens_per_request": prompt_tokens,
        "gen_tokens_total": free_tokens,
        "json_gen_tokens_total": json_tokens,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="tokens/s of the embedded local model server")
    p.add_argument("--model", default=None, help="GGUF path (default: bundled SmolLM2-135M-Instruct)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--requests", type=int, default=3, help="requests per measurement")
    p.add_argument("--prompt-repeats", type=int, default=20, help="filler repeats (~36 tokens each)")
    p.add_argument("--gen-tokens", type=int, default=128)
    args = p.parse_args(argv)
    with LocalServer(args.model, threads=args.threads) as server:
        result = measure(server, args.requests, args.prompt_repeats, args.gen_tokens)
        meta = {
            "bench": "server_tokens",
            "model": server.model,
            "threads": server.threads,
            "startup_s": round(server.startup_seconds or 0.0, 2),
            "requests": args.requests,
        }
    print(json.dumps(meta | result))


if __name__ == "__main__":
    main()
