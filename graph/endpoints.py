"""Checking an OpenAI-compatible endpoint before a run, so a wrong URL or model fails in a second."""

from __future__ import annotations

import httpx


class EndpointError(Exception):
    """The endpoint is unreachable or does not serve the model; the message names both."""


def served_models(url: str, api_key: str | None = None, timeout_s: float = 10.0) -> list[str]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(f"{url.rstrip('/')}/models", headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise EndpointError(
            f"{url}: unreachable ({type(exc).__name__}: {exc}); is the server running?"
        ) from exc
    if response.status_code != 200:
        raise EndpointError(f"{url}/models answered HTTP {response.status_code}: {response.text[:200]}")
    try:
        return [m["id"] for m in response.json().get("data", [])]
    except (ValueError, KeyError, TypeError) as exc:
        raise EndpointError(f"{url}/models: not an OpenAI-compatible model list") from exc


def check_endpoint(url: str, model: str | None, api_key: str | None = None) -> str:
    """Return the model to use: the one asked for (if served) or the server's only model."""
    models = served_models(url, api_key)
    if model is None:
        if len(models) == 1:
            return models[0]
        raise EndpointError(f"{url} serves {len(models)} models {models[:5]}; choose one with --model")
    if models and model not in models:
        raise EndpointError(f"{url} does not serve model '{model}'; it serves {models[:5]}")
    return model
