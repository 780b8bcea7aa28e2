"""The `serve` command: start an OpenAI-compatible model server (embedded llama.cpp or vLLM)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from teacherforge.cli.common import app, err, fail, server_error_types


@app.command()
def serve(
    backend: Annotated[str, typer.Option(help="llama (CPU, embedded default) | vllm (GPU box)")] = "llama",
    model: Annotated[
        str | None,
        typer.Option(help="GGUF path (llama; default: bundled SmolLM2-135M-Instruct) or HF id (vllm)"),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Bind address; 0.0.0.0 exposes the server to your network.")
    ] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Default: a free port (llama) or 8000 (vllm).")] = None,
    threads: Annotated[int | None, typer.Option(help="llama: CPU threads (default: free cores).")] = None,
    max_model_len: Annotated[int, typer.Option(help="Context length (n_ctx for llama).")] = 8192,
    print_command: Annotated[
        bool, typer.Option(help="vllm: print the command instead of running it.")
    ] = False,
) -> None:
    """Start an OpenAI-compatible model server and print its URL (Ctrl-C stops it)."""
    if backend == "vllm":
        from teacherforge.serve.vllm import DEFAULT_MODEL, VllmCommand, VllmNotInstalledError, exec_vllm

        command = VllmCommand(
            model=model or DEFAULT_MODEL, host=host, port=port or 8000, max_model_len=max_model_len
        )
        print(" ".join(command.argv()) if print_command else command.url, flush=True)
        if print_command:
            return
        try:
            exec_vllm(command)
        except VllmNotInstalledError as exc:
            fail(str(exc))
    if backend != "llama":
        fail(f"--backend must be llama or vllm (got '{backend}')")
    from teacherforge.serve.local import LocalServer

    try:
        server = LocalServer(model, host=host, port=port, threads=threads, n_ctx=max_model_len).start()
    except server_error_types() as exc:
        fail(str(exc))
    print(server.url, flush=True)
    err.print(f"serving {server.model} ({server.threads} threads); Ctrl-C stops it", highlight=False)
    died = None
    try:
        while died is None:  # wake up now and then: a server that dies is reported, not waited on
            time.sleep(1.0)
            died = server.exit_description()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    if died is not None:  # stop() has printed why it died
        raise typer.Exit(1)
