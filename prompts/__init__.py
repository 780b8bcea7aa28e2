"""Prompt templates: one Jinja2 file per agent role and language, with a ``system`` and a ``user`` block.

Every rendered prompt carries its template name and a hash of the template source, which go into
each ``llm.call`` event, so a dataset row can always be traced to the exact prompt text that made it.
A user's ``prompt_dir`` is searched before the bundled templates (prompt overrides).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined

BUNDLED_DIR = Path(__file__).parent

# Markup that could end a fence or open a new role if a document contained it: the prompts' own
# <source>/<answer> tags, chat-template tokens (<|im_start|>, <start_of_turn>, [INST], <<SYS>>) and
# bare role tags. Its '<' (or '[') is written as an entity, so the text stays readable but inert.
_FENCE_BREAKERS = re.compile(
    r"<(?=\s*/?\s*(?:source|answer|system|user|assistant|start_of_turn|end_of_turn|bos|eos|s)\b)"
    r"|<(?=\|)|(?<=\|)>|<<(?=\s*/?\s*SYS\s*>>)|\[(?=\s*/?\s*INST\s*\])",
    re.IGNORECASE,
)
_ENTITIES = {"<": "&lt;", ">": "&gt;", "<<": "&lt;&lt;", "[": "&#91;"}


def fence(text: object) -> str:
    """Text to put inside a fence: it can never close the fence or pose as a chat turn."""
    return _FENCE_BREAKERS.sub(lambda m: _ENTITIES[m.group(0)], str(text))


def fence_attr(text: object) -> str:
    """A value for a tag attribute: fenced, and its quotes and newlines cannot end the attribute."""
    return fence(text).replace('"', "&quot;").replace("\n", " ")


@dataclass(frozen=True)
class RenderedPrompt:
    messages: list[dict[str, str]]
    template: str
    template_hash: str


class PromptLibrary:
    """Loads ``<language>/<role>.j2`` from an optional override folder, then the bundled one.

    Templates see the macros of ``<language>/_macros.j2`` as ``m`` (source fencing, transcripts).
    """

    def __init__(self, language: str = "en", override_dir: Path | None = None):
        self.language = language
        loaders = [FileSystemLoader(str(override_dir))] if override_dir else []
        loaders.append(FileSystemLoader(str(BUNDLED_DIR)))
        self._env = Environment(
            loader=ChoiceLoader(loaders),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            autoescape=False,
            # A run renders with the templates it started with: no stat() per render, and a template
            # edited mid-run cannot make two samples of one run disagree about a template hash.
            auto_reload=False,
        )
        self._hashes: dict[str, str] = {}
        self._env.filters["fence"] = fence
        self._env.filters["fence_attr"] = fence_attr

    def template_name(self, role: str) -> str:
        return f"{self.language}/{role}.j2"

    def render(self, role: str, **context: Any) -> RenderedPrompt:
        """Render the ``system`` and ``user`` blocks of a role's template into chat messages."""
        name = self.template_name(role)
        template = self._env.get_template(name)
        if name not in self._hashes:
            source, _, _ = self._env.loader.get_source(self._env, name)
            self._hashes[name] = _hash(source)
        macros = self._env.get_template(f"{self.language}/_macros.j2").module
        ctx = template.new_context({"m": macros, **context})
        messages = []
        for block in ("system", "user"):
            if block not in template.blocks:
                raise ValueError(f"prompt template {name} has no '{block}' block; add {{% block {block} %}}")
            if block == "user" and "examples" in template.blocks:
                messages += example_messages("".join(template.blocks["examples"](ctx)), name)
            text = "".join(template.blocks[block](ctx)).strip()
            messages.append({"role": block, "content": text})
        return RenderedPrompt(messages=messages, template=name, template_hash=self._hashes[name])


EXAMPLE_MARKER = re.compile(r"^=== (user|assistant)\s*$", re.MULTILINE)


def example_messages(text: str, name: str = "template") -> list[dict[str, str]]:
    """An ``examples`` block as chat turns between the system and the user message (few-shot).

    Why: a 135M model copies the shape of earlier assistant turns far better than it follows a
    described format, so the small-model templates show two or three worked examples as real turns.
    In the block, a line ``=== user`` or ``=== assistant`` starts each turn; they must alternate,
    starting with the user.
    """
    parts = EXAMPLE_MARKER.split(text)
    roles, contents = parts[1::2], [p.strip() for p in parts[2::2]]
    if parts[0].strip() or roles != ["user", "assistant"] * (len(roles) // 2):
        raise ValueError(
            f"prompt template {name}: the examples block must alternate '=== user' and '=== assistant'"
        )
    return [{"role": r, "content": c} for r, c in zip(roles, contents, strict=True)]


@lru_cache(maxsize=256)
def _hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]
