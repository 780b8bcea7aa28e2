"""Checking an OpenAI-compatible endpoint before a run, so a wrong URL or model fails in a second."""

from __future__ import annotations

from typing import Literal

import httpx

from teacherforge.agents.llm import probe_chat


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


PROBE_SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}


def probe_structured_output(
    url: str, model: str, api_key: str | None = None, timeout_s: float = 120.0
) -> Literal["json_schema", "json_mode"]:
    """Which structured-output method the server honours: ``json_schema`` (vLLM, the embedded server),
    else ``json_mode`` (``json_object`` plus the schema in the prompt; replies are still validated).

    One tiny request per method, once per run; the choice is recorded in ``run.started``.
    """
    formats = {
        "json_schema": {
            "type": "json_schema",
            "json_schema": {"name": "Probe", "schema": PROBE_SCHEMA, "strict": True},
        },
        "json_mode": {"type": "json_object"},
    }
    for method, response_format in formats.items():
        try:
            response = probe_chat(url, model, response_format, api_key, timeout_s)
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise EndpointError(f"{url}: structured-output probe failed ({reason})") from exc
        if response.status_code == 200:
            return method
        last = f"HTTP {response.status_code}: {response.text[:200]}"
    raise EndpointError(
        f"{url} accepts neither json_schema nor json_object response formats ({last}); "
        "TeacherForge needs one of them (vLLM and the embedded server support json_schema)"
    )
