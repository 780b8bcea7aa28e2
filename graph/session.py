"""Resolving the endpoints a run talks to: a given vLLM/OpenAI URL, or the embedded local server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from teacherforge.agents.llm import Endpoint
from teacherforge.graph.config import RunConfig
from teacherforge.graph.endpoints import check_endpoint


@contextmanager
def run_endpoints(config: RunConfig, log_line=print) -> Iterator[tuple[Endpoint, Endpoint]]:
    """Yield (generator, critic) endpoints; start and stop the embedded server when no URL is given."""
    api_key = os.environ.get(config.api_key_env) or "local"
    if config.llm_url is not None:
        model = check_endpoint(config.llm_url, config.model, api_key)
        generator = Endpoint(config.llm_url, model, api_key)
        yield generator, _critic(config, generator, api_key)
        return
    from teacherforge.graph.serve.local import LocalServer

    with LocalServer(model_path=config.model) as server:
        log_line(f"embedded model server: {server.model} at {server.url}")
        generator = Endpoint(server.url, server.model, "local")
        yield generator, _critic(config, generator, api_key)


def _critic(config: RunConfig, generator: Endpoint, api_key: str) -> Endpoint:
    if config.critic_url is None and config.critic_model is None:
        return generator
    url = config.critic_url or generator.url
    model = check_endpoint(
        url, config.critic_model or (generator.model if url == generator.url else None), api_key
    )
    return Endpoint(url, model, api_key if config.critic_url else generator.api_key)
