"""Resolving the endpoints a run talks to: a given vLLM/OpenAI URL, or the embedded local server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from teacherforge.agents.llm import Endpoint, StructuredMethod
from teacherforge.graph.config import RunConfig
from teacherforge.graph.endpoints import check_endpoint, probe_structured_output


@contextmanager
def run_endpoints(
    config: RunConfig, log_line=print, keep_server: bool = False
) -> Iterator[tuple[Endpoint, Endpoint]]:
    """Yield (generator, critic) endpoints; start and stop the embedded server when no URL is given.

    With ``keep_server`` the embedded server is left running and remembered, and later runs reuse it.
    """
    api_key = os.environ.get(config.api_key_env) or "local"
    urls = config.llm_urls()
    if urls:
        first, *replicas = urls
        model = check_endpoint(first, config.model, api_key)
        for url in replicas:  # data-parallel replicas must all serve the model the first one serves
            check_endpoint(url, model, api_key)
        method = _method(config, first, model, api_key)
        generator = Endpoint(first, model, api_key, method, tuple(replicas))
        yield generator, _critic(config, generator, api_key)
        return
    from teacherforge.serve import kept
    from teacherforge.serve.local import LocalServer, bundled_teacher_gguf

    model_path = str(Path(config.model).resolve()) if config.model else str(bundled_teacher_gguf())
    reused = kept.find(model_path)
    if reused is not None:
        log_line(f"reusing kept embedded model server: {reused.model} at {reused.url} (pid {reused.pid})")
        generator = Endpoint(reused.url, reused.model, "local")
        yield generator, _critic(config, generator, api_key)
        return
    server = LocalServer(model_path=model_path, watch_parent=not keep_server).start()
    log_line(f"embedded model server: {server.model} at {server.url}")
    try:
        generator = Endpoint(server.url, server.model, "local")
        yield generator, _critic(config, generator, api_key)
    finally:
        if keep_server and server.pid is not None:
            kept.remember(kept.KeptServer(server.url, server.model, model_path, server.pid))
            log_line(f"kept the model server running at {server.url}; stop it with: kill {server.pid}")
            server.detach()
        else:
            server.stop()


def _critic(config: RunConfig, generator: Endpoint, api_key: str) -> Endpoint:
    if config.critic_url is None and config.critic_model is None:
        return generator
    url = config.critic_url or generator.url
    wanted = config.critic_model or (generator.model if url == generator.url else None)
    model = check_endpoint(url, wanted, api_key)
    key = api_key if config.critic_url else generator.api_key
    method = generator.structured if url == generator.url else _method(config, url, model, key)
    # the critic shares the generator's replicas when it uses the same URL and model
    replicas = generator.replicas if (url, model) == (generator.url, generator.model) else ()
    return Endpoint(url, model, key, method, replicas)


def _method(config: RunConfig, url: str, model: str, api_key: str) -> StructuredMethod:
    """The structured-output method: as configured, or probed once when ``auto``."""
    if config.structured_output != "auto":
        return config.structured_output
    return probe_structured_output(url, model, api_key)
