"""A loopback Weaviate for tests: REST (meta, ready, schema) plus an in-process gRPC ``WeaviateServicer``.

It follows the approach of weaviate-python-client's own mock tests: the real v4 client talks to a
fake server, so the adapter's requests (schema, batch import, filters, hybrid/near_vector/bm25
search) are exercised end to end. Search semantics mirror Weaviate's: cosine distance for
near_vector, BM25 on the requested properties, relative-score fusion (min-max scaled scores) or
ranked fusion ``w / (60 + rank)`` (rank from 0), with ``alpha`` weighting the vector side.
Everything binds to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import bm25s
import numpy as np
import pytest

pytest.importorskip("weaviate", reason="weaviate-client is not installed (pip install -e '.[weaviate]')")
import grpc  # noqa: E402  (installed with weaviate-client)
from google.protobuf.json_format import MessageToDict  # noqa: E402
from weaviate.proto.v1 import (  # noqa: E402
    base_pb2,
    base_search_pb2,
    batch_delete_pb2,
    batch_pb2,
    health_weaviate_pb2,
    properties_pb2,
    search_get_pb2,
    weaviate_pb2_grpc,
)

OPS = base_pb2.Filters


class FakeWeaviate(weaviate_pb2_grpc.WeaviateServicer):
    def __init__(self, version: str = "1.32.0", api_key: str | None = None, reject=None):
        self.version, self.api_key, self.reject = version, api_key, reject or (lambda props: None)
        self.schemas: dict[str, dict] = {}
        self.objects: dict[str, dict[str, tuple[dict, np.ndarray]]] = {}
        self.searches: list[search_get_pb2.SearchRequest] = []
        self.auth_seen: list[str | None] = []
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> FakeWeaviate:
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _rest_handler(self))
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        weaviate_pb2_grpc.add_WeaviateServicer_to_server(self, self._grpc)
        check = grpc.unary_unary_rpc_method_handler(
            self._health,
            request_deserializer=health_weaviate_pb2.WeaviateHealthCheckRequest.FromString,
            response_serializer=health_weaviate_pb2.WeaviateHealthCheckResponse.SerializeToString,
        )
        self._grpc.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": check}),)
        )
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        self.url = f"http://127.0.0.1:{self._http.server_port}"
        return self

    def __exit__(self, *exc) -> None:
        self._grpc.stop(0)
        self._http.shutdown()
        self._http.server_close()

    def _authorised(self, header: str | None) -> bool:
        self.auth_seen.append(header)
        return self.api_key is None or header == f"Bearer {self.api_key}"

    def _check(self, context) -> None:
        if not self._authorised(dict(context.invocation_metadata()).get("authorization")):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad api key")

    def _health(self, request, context):
        return health_weaviate_pb2.WeaviateHealthCheckResponse(
            status=health_weaviate_pb2.WeaviateHealthCheckResponse.SERVING
        )

    # -- gRPC ------------------------------------------------------------------------------------
    def BatchObjects(self, request, context):
        self._check(context)
        errors = []
        with self._lock:
            for i, obj in enumerate(request.objects):
                props = _struct_props(obj.properties.non_ref_properties)
                reason = self.reject(props)
                if reason or obj.collection not in self.schemas:
                    errors.append(batch_pb2.BatchObjectsReply.BatchError(index=i, error=reason or "no class"))
                    continue
                raw = obj.vector_bytes or (obj.vectors[0].vector_bytes if obj.vectors else b"")
                self.objects[obj.collection][obj.uuid] = (props, np.frombuffer(raw, dtype="<f4").copy())
        return batch_pb2.BatchObjectsReply(took=0.001, errors=errors)

    def BatchDelete(self, request, context):
        self._check(context)
        with self._lock:
            store = self.objects.get(request.collection, {})
            doomed = [u for u, (p, _) in store.items() if _matches(request.filters, p)]
            for u in doomed:
                del store[u]
        return batch_delete_pb2.BatchDeleteReply(took=0.001, matches=len(doomed), successful=len(doomed))

    def Search(self, request, context):
        self._check(context)
        self.searches.append(request)
        with self._lock:
            items = [
                (u, p, v)
                for u, (p, v) in self.objects.get(request.collection, {}).items()
                if not request.HasField("filters") or _matches(request.filters, p)
            ]
        if request.HasField("near_vector"):
            ranked = _by_vector(items, _vector(request.near_vector))
            hits = [(u, p, {"distance": 1 - s}) for u, p, s in ranked]
        elif request.HasField("bm25_search"):
            ranked = _by_bm25(items, request.bm25_search.query, list(request.bm25_search.properties))
            hits = [(u, p, {"score": s}) for u, p, s in ranked]
        else:
            h = request.hybrid_search
            hits = _hybrid(items, h)
        wanted = list(request.properties.non_ref_properties)
        results = [_result(u, p, meta, wanted) for u, p, meta in hits[: request.limit or 10]]
        return search_get_pb2.SearchReply(took=0.001, results=results)


# -- search semantics ------------------------------------------------------------------------------
def _vector(message) -> np.ndarray:
    if isinstance(message, base_search_pb2.Hybrid) and message.HasField("near_vector"):
        message = message.near_vector
    raw = message.vector_bytes or (message.vectors[0].vector_bytes if message.vectors else b"")
    return np.frombuffer(raw, dtype="<f4") if raw else np.asarray(message.vector, dtype=np.float32)


def _by_vector(items, query: np.ndarray):
    sims = [(u, p, float(v @ query / (np.linalg.norm(v) * np.linalg.norm(query)))) for u, p, v in items]
    return sorted(sims, key=lambda t: -t[2])


def _by_bm25(items, query: str, properties: list[str]):
    if not items:
        return []
    props = properties or ["text"]
    corpus = [" ".join(str(p.get(k) or "") for k in props) for _, p, _ in items]
    model = bm25s.BM25()
    model.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False)
    tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
    if not tokens.vocab:
        return []
    inverse = {v: k for k, v in tokens.vocab.items()}
    scores = model.get_scores([inverse[i] for i in tokens.ids[0]])
    ranked = [(u, p, float(s)) for (u, p, _), s in zip(items, scores, strict=True) if s > 0]
    return sorted(ranked, key=lambda t: -t[2])


def _hybrid(items, h: base_search_pb2.Hybrid):
    """Ranked: w / (60 + rank). Relative score: w * min-max scaled score, each side over its results."""
    alpha = h.alpha_param if h.use_alpha_param else h.alpha
    fused: dict[str, list] = {}
    sides = [
        (alpha, _by_vector(items, _vector(h))),
        (1 - alpha, _by_bm25(items, h.query, list(h.properties))),
    ]
    for weight, ranked in sides:
        scores = [s for _, _, s in ranked]
        low, high = (min(scores), max(scores)) if scores else (0.0, 0.0)
        for rank, (u, p, s) in enumerate(ranked):
            if h.fusion_type == base_search_pb2.Hybrid.FUSION_TYPE_RANKED:
                part = weight / (60 + rank)
            else:
                part = weight * ((s - low) / (high - low) if high > low else 1.0)
            fused.setdefault(u, [p, 0.0])[1] += part
    hits = sorted(fused.items(), key=lambda kv: -kv[1][1])
    return [(u, p, {"score": s}) for u, (p, s) in hits]


def _matches(f: base_pb2.Filters, props: dict) -> bool:
    if f.operator == OPS.OPERATOR_AND:
        return all(_matches(sub, props) for sub in f.filters)
    if f.operator == OPS.OPERATOR_OR:
        return any(_matches(sub, props) for sub in f.filters)
    value = props.get(f.target.property or (f.on[0] if f.on else ""))
    expected = f.value_text if f.HasField("value_text") else f.value_int
    if f.operator == OPS.OPERATOR_EQUAL:
        return value == expected
    if f.operator == OPS.OPERATOR_NOT_EQUAL:
        return value != expected
    raise NotImplementedError(f"fake Weaviate: filter operator {f.operator}")


def _struct_props(struct) -> dict:
    props = MessageToDict(struct, preserving_proto_field_name=True) if struct.fields else {}
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in props.items()}


def _result(uuid: str, props: dict, meta: dict, wanted: list[str]) -> search_get_pb2.SearchResult:
    fields = {}
    for key, value in props.items():
        if wanted and key not in wanted:
            continue
        if value is None:
            fields[key] = properties_pb2.Value(null_value=0)
        elif isinstance(value, int):
            fields[key] = properties_pb2.Value(int_value=value)
        else:
            fields[key] = properties_pb2.Value(text_value=str(value))
    metadata = search_get_pb2.MetadataResult(id=uuid)
    for key, value in meta.items():
        setattr(metadata, key, value)
        setattr(metadata, f"{key}_present", True)
    return search_get_pb2.SearchResult(
        properties=search_get_pb2.PropertiesResult(non_ref_props=properties_pb2.Properties(fields=fields)),
        metadata=metadata,
    )


# -- REST ------------------------------------------------------------------------------------------
def _rest_handler(fake: FakeWeaviate):
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            path = self.path.split("?")[0]
            if path == "/v1/.well-known/ready":
                return self._reply(200, {})
            if not fake._authorised(self.headers.get("authorization")):
                return self._reply(401, {"error": [{"message": "bad api key"}]})
            name = path.removeprefix("/v1/schema/") if path.startswith("/v1/schema/") else None
            if path == "/v1/meta":
                return self._reply(200, {"version": fake.version, "modules": {}})
            if self.command == "POST" and path == "/v1/schema":
                fake.schemas[body["class"]] = body
                fake.objects.setdefault(body["class"], {})
                return self._reply(200, body)
            if name and self.command == "GET":
                return self._reply(200, fake.schemas[name]) if name in fake.schemas else self._reply(404, {})
            if name and self.command == "DELETE":
                fake.schemas.pop(name, None)
                fake.objects.pop(name, None)
                return self._reply(200, {})
            return self._reply(
                404, {"error": [{"message": f"fake Weaviate: no route {self.command} {path}"}]}
            )

        do_GET = do_POST = do_DELETE = do_PUT = _route

        def log_message(self, *args) -> None:
            pass

    return Handler


def test_fake_answers_health_on_loopback_only():
    from teacherforge.retrieval.weaviate_client import _grpc_health

    with FakeWeaviate() as fake:
        assert fake.url.startswith("http://127.0.0.1:")
        _grpc_health("127.0.0.1", fake.grpc_port, False, 5.0, None)
