"""The OpenAI chat wire format, as the local llama.cpp server (compat.py) understands it.

Pure functions only (no llama_cpp, no starlette) so the translation rules can be unit-tested and
imported by the launcher without loading the native library: which OpenAI fields are honoured
(``max_completion_tokens`` before ``max_tokens``; ``response_format`` json_schema/json_object),
which are refused with a 400, and how the JSON-schema grammar is made strict about control chars.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_QUANT_SUFFIX = re.compile(r"[.-](i?q\d[\w]*|f16|bf16|f32|fp16)$", re.IGNORECASE)
# llama.cpp's json.gbnf string char class: no quote, backslash, DEL or C0 control characters.
_STRICT_CHAR_CLASS = r'[^"\\\x7F\x00-\x1F]'
_INT_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_MAX_ENUM_RANGE = 1000


class RequestError(ValueError):
    """A client mistake: answered with HTTP 400 in OpenAI's error shape."""


@dataclass(frozen=True)
class ChatRequest:
    """The subset of an OpenAI chat request that the engine acts on."""

    messages: list[dict[str, str]]
    max_tokens: int | None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    schema: dict[str, Any] | None = None
    json_mode: bool = False
    stream: bool = False


def model_id_for(path: str | os.PathLike[str]) -> str:
    """Client-facing id from a GGUF name: ``SmolLM2-135M-Instruct.Q4_1.gguf`` -> ``smollm2-135m-instruct``."""
    stem = Path(path).name.removesuffix(".gguf")
    return _QUANT_SUFFIX.sub("", stem).lower()


def _text_of(content: Any) -> str:
    """Flatten OpenAI content parts to text: chat templates expect a plain string."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(parts) == len(content):
            return "".join(parts)
    raise RequestError("only text message content is supported")


def _messages_of(body: dict[str, Any]) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list")
    out = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise RequestError("each message needs a string 'role'")
        role = "system" if m["role"] == "developer" else m["role"]
        out.append({"role": role, "content": _text_of(m.get("content"))})
    return out


def _max_tokens_of(body: dict[str, Any], default: int | None) -> int | None:
    """``max_completion_tokens`` (newer clients) wins over the legacy ``max_tokens``."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise RequestError(f"'{key}' must be a positive integer")
            return value
    return default


def _format_of(response_format: Any) -> tuple[dict[str, Any] | None, bool]:
    """(schema, json_mode) from OpenAI's response_format (and llama.cpp's json_object+schema form)."""
    if response_format is None:
        return None, False
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None, False
    if kind == "json_object":
        schema = response_format.get("schema")
        return (schema if isinstance(schema, dict) else None), True
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise RequestError("response_format.json_schema.schema must be an object")
        return spec["schema"], True
    raise RequestError(f"unsupported response_format type: {kind!r}")


def parse_chat_request(body: dict[str, Any], default_max_tokens: int | None = None) -> ChatRequest:
    """Validate an OpenAI chat body into a ChatRequest (raises RequestError)."""
    if body.get("n", 1) != 1:
        raise RequestError("only n=1 is supported")
    if body.get("tools") or body.get("functions"):
        raise RequestError("tools/function calling is not supported; use response_format json_schema")
    stop = body.get("stop") or ()
    schema, json_mode = _format_of(body.get("response_format"))
    temperature, top_p = body.get("temperature"), body.get("top_p")
    return ChatRequest(
        messages=_messages_of(body),
        max_tokens=_max_tokens_of(body, default_max_tokens),
        temperature=1.0 if temperature is None else float(temperature),
        top_p=1.0 if top_p is None else float(top_p),
        stop=(stop,) if isinstance(stop, str) else tuple(stop),
        seed=body.get("seed"),
        schema=schema,
        json_mode=json_mode,
        stream=bool(body.get("stream")),
    )


def tighten_string_chars(gbnf: str) -> str:
    """Forbid raw control characters in the converter's ``char`` rule (invalid JSON otherwise)."""
    lines = gbnf.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("char ::= ") and _STRICT_CHAR_CLASS not in line:
            if '[^"\\\\]' not in line:
                raise RuntimeError(f"unexpected char rule from llama_cpp's schema converter: {line}")
            lines[i] = line.replace('[^"\\\\]', _STRICT_CHAR_CLASS, 1)
    return "\n".join(lines)


def compact_repetition(
    item: str,
    min_items: int,
    max_items: int | None,
    separator_rule: str | None = None,
    item_rule_is_literal: bool = False,
) -> str:
    """GBNF ``item{m,n}`` instead of llama_cpp's n nested optional groups.

    The vendored converter spells ``maxLength: 1500`` as 1500 nested ``(char (char ...)?)?``;
    llama.cpp's grammar parser refuses that ("exceeds sane defaults") and llama_cpp then crashes
    on the NULL sampler. Same signature as ``llama_cpp.llama_grammar._build_repetition``.
    """
    if max_items == 0:
        return ""
    unit = f"({item})" if " " in item else item
    if min_items == 0 and max_items == 1:
        return f"{unit}?"
    if separator_rule is None:
        if max_items is None:
            return (
                f"{unit}*" if min_items == 0 else f"{unit}+" if min_items == 1 else f"{unit}{{{min_items},}}"
            )
        return f"{unit}{{{min_items},{max_items}}}"
    rest_max = None if max_items is None else max_items - 1
    rest = compact_repetition(f"{separator_rule} {item}", max(min_items - 1, 0), rest_max)
    result = f"{item} {rest}".rstrip()
    return f"({result})?" if min_items == 0 else result


def _int_bound(schema: dict[str, Any], inclusive: str, exclusive: str, lower: bool) -> int | None:
    if isinstance(schema.get(inclusive), int | float):
        return math.ceil(schema[inclusive]) if lower else math.floor(schema[inclusive])
    if isinstance(schema.get(exclusive), int | float):
        return math.floor(schema[exclusive]) + 1 if lower else math.ceil(schema[exclusive]) - 1
    return None


def bounded_ints_as_enums(schema: Any) -> Any:
    """Turn small bounded integers into enums, which the grammar can enforce.

    llama_cpp's schema converter ignores minimum/maximum, so a critic score ``Field(ge=1, le=5)``
    could come out as 7 and fail validation; an enum of the allowed values cannot.
    """
    if isinstance(schema, list):
        return [bounded_ints_as_enums(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: bounded_ints_as_enums(value) for key, value in schema.items()}
    if out.get("type") == "integer" and "enum" not in out and "const" not in out:
        low = _int_bound(out, "minimum", "exclusiveMinimum", lower=True)
        high = _int_bound(out, "maximum", "exclusiveMaximum", lower=False)
        if low is not None and high is not None and 0 <= high - low < _MAX_ENUM_RANGE:
            kept = {key: value for key, value in out.items() if key not in _INT_BOUNDS and key != "type"}
            return kept | {"enum": list(range(low, high + 1))}
    return out


def sse_chunks(completion: dict[str, Any]) -> Iterator[str]:
    """Replay a finished completion as OpenAI stream events (streaming clients still work)."""
    choice = completion["choices"][0]
    base = {k: completion[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    message = {"role": "assistant", "content": choice["message"]["content"]}
    for delta, finish in ((message, None), ({}, choice["finish_reason"])):
        event = base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        yield f"data: {json.dumps(event)}\n\n"
    yield f"data: {json.dumps(base | {'choices': [], 'usage': completion['usage']})}\n\n"
    yield "data: [DONE]\n\n"
