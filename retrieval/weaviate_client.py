"""Connecting to Weaviate (weaviate-client v4): settings, errors, and health checks.

``skip_init_checks``: the client's own start-up check asks pypi.org for its latest version, and
we send no traffic anywhere but the configured server. Readiness (REST) and gRPC health are
checked here instead, so a wrong URL or gRPC port fails at once with a one-line message.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx

DEFAULT_COLLECTION = "TeacherforgeChunk"
API_KEY_ENV = "WEAVIATE_API_KEY"


class WeaviateStoreError(Exception):
    """Weaviate cannot be used as asked; the message says what to check."""


@dataclass(frozen=True)
class WeaviateSettings:
    url: str = "http://127.0.0.1:8080"
    grpc_port: int = 50051
    collection: str = DEFAULT_COLLECTION
    api_key_env: str = API_KEY_ENV
    alpha: float = 0.7  # hybrid: 1 = vector only, 0 = BM25 only (same default as retrieval/fusion.py)
    fusion: str = "relative"  # relative (Weaviate's relativeScore) | rrf (Weaviate's ranked fusion)
    index: str = "hnsw"  # "flat" for exact vector search on small collections
    timeout_s: float = 10.0

    @property
    def target(self) -> str:
        """Where the mirror lives, as recorded in the DuckDB file."""
        return f"{self.url.rstrip('/')}#{self.collection}"


def connect_weaviate(settings: WeaviateSettings):
    """Open a v4 client (API key from ``$WEAVIATE_API_KEY`` if set) and check REST and gRPC health."""
    import weaviate
    from weaviate.classes.init import AdditionalConfig, Auth, Timeout

    parsed = urlparse(settings.url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise WeaviateStoreError(f"--weaviate-url must look like http://host:8080 (got '{settings.url}')")
    secure = parsed.scheme == "https"
    key = os.environ.get(settings.api_key_env)
    timeout = Timeout(init=settings.timeout_s, query=settings.timeout_s * 3, insert=settings.timeout_s * 6)
    _rest_ready(settings)
    with translated("connect", settings):
        client = weaviate.connect_to_custom(
            http_host=parsed.hostname,
            http_port=parsed.port or (443 if secure else 80),
            http_secure=secure,
            grpc_host=parsed.hostname,
            grpc_port=settings.grpc_port,
            grpc_secure=secure,
            auth_credentials=Auth.api_key(key) if key else None,
            additional_config=AdditionalConfig(timeout=timeout),
            skip_init_checks=True,
        )
    try:
        _grpc_health(parsed.hostname, settings.grpc_port, secure, settings.timeout_s, key)
    except BaseException:
        client.close()
        raise
    return client


def _rest_ready(settings: WeaviateSettings) -> None:
    """GET /v1/.well-known/ready (the client's is_ready() prints errors on stdout, which is for data)."""
    url = f"{settings.url.rstrip('/')}/v1/.well-known/ready"
    try:
        status = httpx.get(url, timeout=settings.timeout_s).status_code
    except httpx.HTTPError as exc:
        raise WeaviateStoreError(f"cannot reach Weaviate at {settings.url} ({type(exc).__name__})") from exc
    if status != 200:
        raise WeaviateStoreError(f"Weaviate at {settings.url} is not ready (HTTP {status} from {url})")


def _grpc_health(host: str, port: int, secure: bool, timeout: float, key: str | None) -> None:
    import grpc
    from weaviate.proto.v1 import health_weaviate_pb2 as health

    target = f"{host}:{port}"
    channel = (
        grpc.secure_channel(target, grpc.ssl_channel_credentials())
        if secure
        else grpc.insecure_channel(target)
    )
    metadata = (("authorization", f"Bearer {key}"),) if key else None
    try:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health.WeaviateHealthCheckRequest.SerializeToString,
            response_deserializer=health.WeaviateHealthCheckResponse.FromString,
        )
        reply = check(health.WeaviateHealthCheckRequest(), timeout=timeout, metadata=metadata)
    except grpc.RpcError as exc:
        raise WeaviateStoreError(
            f"Weaviate gRPC at {target} does not answer ({exc.code().name}); check --weaviate-grpc-port"
        ) from exc
    finally:
        channel.close()
    if reply.status != health.WeaviateHealthCheckResponse.SERVING:
        raise WeaviateStoreError(f"Weaviate gRPC at {target} is not serving")


@contextmanager
def translated(action: str, settings: WeaviateSettings) -> Iterator[None]:
    """Client exceptions become one-line WeaviateStoreErrors that name the server and the action."""
    from weaviate.exceptions import WeaviateBaseError

    try:
        yield
    except WeaviateBaseError as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "401" in detail or "403" in detail:
            detail += f" (is ${settings.api_key_env} set to a valid key?)"
        raise WeaviateStoreError(f"Weaviate {action} failed at {settings.url}: {detail}") from exc
