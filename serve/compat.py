"""OpenAI-compatible chat server running llama.cpp in-process (CPU path of the local teacher).

Why not ``python -m llama_cpp.server``: it rejects ``response_format: json_schema`` (what the agents
send, the same body as langchain's ``with_structured_output(method="json_schema")``), ignores
``max_completion_tokens`` (what langchain-openai sends instead of ``max_tokens``) and its
schema grammar lets raw control characters into JSON strings. Here the request is translated
by protocol.py and the grammar built with the string rule tightened to llama.cpp's json.gbnf.
One request runs at a time (a lock); /health and /v1/models stay responsive meanwhile.

Run: ``python -m teacherforge.serve.compat --model X.gguf --port P``.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from functools import lru_cache
from typing import Any

from teacherforge.serve.protocol import (
    ChatRequest,
    RequestError,
    bounded_ints_as_enums,
    compact_repetition,
    model_id_for,
    parse_chat_request,
    sse_chunks,
    tighten_string_chars,
)


@lru_cache(maxsize=64)
def _grammar_for(schema_json: str | None) -> str:
    from llama_cpp import llama_grammar
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    if schema_json is None:
        return JSON_GBNF  # already uses the strict char class
    llama_grammar._build_repetition = compact_repetition  # see compact_repetition: long strings crashed
    schema = bounded_ints_as_enums(json.loads(schema_json))
    return tighten_string_chars(json_schema_to_gbnf(json.dumps(schema)))


def grammar_text(req: ChatRequest) -> str | None:
    """GBNF enforcing the request's JSON schema / JSON mode, or None for free text."""
    if not req.json_mode:
        return None
    try:
        return _grammar_for(None if req.schema is None else json.dumps(req.schema, sort_keys=True))
    except Exception as exc:  # the converter raises assorted errors on unsupported schemas
        raise RequestError(f"cannot turn the JSON schema into a grammar: {exc}") from exc


class Engine:
    """One llama.cpp model behind a lock: llama.cpp contexts are not safe to share."""

    def __init__(
        self,
        model_path: str,
        model_id: str,
        n_ctx: int,
        n_threads: int,
        chat_format: str | None,
        default_max_tokens: int | None,
        verbose: bool = False,
    ) -> None:
        from llama_cpp import Llama

        self.model_id, self.default_max_tokens = model_id, default_max_tokens
        self._lock = threading.Lock()
        self._valid_grammars: set[str] = set()
        self._llm = Llama(
            model_path=model_path,
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            chat_format=chat_format,
            verbose=verbose,
        )

    def complete(self, req: ChatRequest) -> dict[str, Any]:
        from llama_cpp import LlamaGrammar

        text = grammar_text(req)
        grammar = LlamaGrammar.from_string(text, verbose=False) if text else None
        with self._lock:
            if text:
                self._check_grammar(text)
            try:
                out = self._llm.create_chat_completion(
                    messages=req.messages,
                    max_tokens=req.max_tokens,
                    temperature=req.temperature,
                    top_p=req.top_p,
                    stop=list(req.stop),
                    seed=req.seed,
                    grammar=grammar,
                )
            except ValueError as exc:  # e.g. prompt longer than the context window
                raise RequestError(str(exc)) from exc
        out["model"] = self.model_id
        return out

    def _check_grammar(self, text: str) -> None:
        """Parse the grammar once ourselves: llama_cpp adds a NULL sampler on failure and segfaults."""
        if text in self._valid_grammars:
            return
        import llama_cpp

        sampler = llama_cpp.llama_sampler_init_grammar(self._llm._model.vocab, text.encode(), b"root")
        if not sampler:
            raise RequestError("llama.cpp rejected the grammar built from the JSON schema (see server log)")
        llama_cpp.llama_sampler_free(sampler)
        self._valid_grammars.add(text)


def build_app(engine: Engine) -> Any:
    """Starlette app exposing /v1/chat/completions, /v1/models and /health."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    def error(status: int, message: str, kind: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)

    async def chat(request: Request) -> Any:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise RequestError("the request body must be a JSON object")
            req = parse_chat_request(body, engine.default_max_tokens)
            completion = await run_in_threadpool(engine.complete, req)
        except (RequestError, json.JSONDecodeError) as exc:
            return error(400, str(exc), "invalid_request_error")
        except Exception as exc:  # keep serving; report like OpenAI does
            return error(500, f"{type(exc).__name__}: {exc}", "server_error")
        if req.stream:
            return StreamingResponse(sse_chunks(completion), media_type="text/event-stream")
        return JSONResponse(completion)

    async def models(_: Request) -> JSONResponse:
        card = {"id": engine.model_id, "object": "model", "created": int(time.time())}
        return JSONResponse({"object": "list", "data": [card | {"owned_by": "teacherforge"}]})

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "model": engine.model_id})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


def _exit_with_parent(parent_pid: int) -> None:
    """Die if our launcher dies without stopping us (SIGKILL leaves no chance to clean up)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="path to a GGUF file")
    p.add_argument("--model-id", help="id clients send (default: from the file name)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--n-ctx", type=int, default=8192)
    p.add_argument("--threads", type=int, default=max(1, len(os.sched_getaffinity(0))))
    p.add_argument("--chat-format", default=None, help="llama_cpp chat format (default: the GGUF's template)")
    p.add_argument("--default-max-tokens", type=int, default=2048, help="cap when a request sends none")
    p.add_argument("--parent-pid", type=int, default=None, help="exit when this pid stops being our parent")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.parent_pid is not None:
        _exit_with_parent(args.parent_pid)

    import uvicorn

    engine = Engine(
        args.model,
        args.model_id or model_id_for(args.model),
        args.n_ctx,
        args.threads,
        args.chat_format,
        args.default_max_tokens,
        args.verbose,
    )
    uvicorn.run(build_app(engine), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
