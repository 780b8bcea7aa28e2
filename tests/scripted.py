"""A scripted 'good model' for the stub server: replies that a careful teacher would give.

Replies are derived from the request itself (source ids and text in the prompt), so the rules
pass on merit; tests then bend single agents (a critic that fails once, a teacher that cites a
chunk it never saw) to drive the graph down each path.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable
from typing import Any

from stub_server import StubReply

SOURCE = re.compile(r'<source id="([^"]+)"[^\n]*>\n(.*?)\n</source>', re.DOTALL)
HARD_NEGATIVE_MARK = "which the documents do not cover: "
REFUSAL = "I'm sorry, the documents do not cover {topic}, so I can't answer it reliably."
REFINER_HARD_NEGATIVE = "a topic the documents do not cover"


def schema_name(body: dict) -> str:
    """The pydantic model asked for: from json_schema, or from the schema hint that json_mode adds."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return fmt["json_schema"]["name"]
    hint = re.search(r"for schema (\w+)", body["messages"][0]["content"])
    return hint.group(1) if hint else "Probe"


def system_text(body: dict) -> str:
    return body["messages"][0]["content"]


def user_text(body: dict) -> str:
    return body["messages"][-1]["content"]


def sources(body: dict) -> list[tuple[str, str]]:
    return SOURCE.findall(user_text(body))


def turn_sources(prompt: str, turn: int) -> list[tuple[str, str]]:
    """The refiner prompt's sources for one failing turn (each turn has its own 'Sources for turn N:')."""
    block = prompt.split(f"Sources for turn {turn}:", 1)[-1].split("Sources for turn ", 1)[0]
    return SOURCE.findall(block) or SOURCE.findall(prompt)


def passage_of(words: list[str], limit: int) -> str:
    """Whole words up to ``limit`` characters: a figure is never cut in half ("$1,200" -> "$1,2")."""
    out = ""
    for word in words:
        if len(out) + len(word) + 1 > limit:
            break
        out = f"{out} {word}" if out else word
    return out or " ".join(words)[:limit]


def _request_key(body: dict) -> int:
    """A stable number for a request's messages."""
    digest = hashlib.sha256(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest()
    return int(digest[:8], 16) % 100_000


class GoodModel:
    """Callable responder; ``overrides`` maps a schema name to a function that may replace the reply."""

    def __init__(
        self,
        overrides: dict[str, Callable[[dict, int], Any]] | None = None,
        first_question: int = 0,
        keyed_questions: bool = False,
    ) -> None:
        """``first_question`` numbers this model's questions from there: a fork answered by a second stub
        keeps its parent's first turn, and both stubs counting from 0 could ask the same question twice.

        ``keyed_questions`` numbers each question by a hash of its request instead of by arrival order,
        so a sample gets the same questions however the samples of a run interleave (two runs of one
        plan compared sample for sample)."""
        self.overrides = overrides or {}
        self.calls: dict[str, int] = {}
        self._counter = itertools.count(first_question)
        self.keyed_questions = keyed_questions

    def __call__(self, body: dict) -> Any:
        name = schema_name(body)
        n = self.calls.get(name, 0)
        self.calls[name] = n + 1
        override = self.overrides.get(name)
        if override is not None:
            reply = override(body, n)
            if reply is not None:
                return reply
        return getattr(self, f"_{name}")(body)

    def _Probe(self, body: dict) -> dict:
        """TeacherForge's one-off structured-output probe at run start."""
        return {"ok": True}

    def _UserMessage(self, body: dict) -> dict:
        system = system_text(body)
        k = _request_key(body) if self.keyed_questions else next(self._counter)
        if HARD_NEGATIVE_MARK in system:
            topic = system.split(HARD_NEGATIVE_MARK, 1)[1].split(".\n", 1)[0].strip().rstrip(".")
            return {"message": f"Question {k}: can you tell me about {topic}?"}
        found = sources(body)
        tokens = (found[k % len(found)][1] if found else "the rules").split()
        start = (k * 7) % max(1, len(tokens) - 6)  # a different window each turn: no repeated questions
        words = " ".join(tokens[start : start + 6])
        return {"message": f"Question {k}: what do the rules say about {words}?"}

    def _TeacherReply(self, body: dict) -> dict:
        found = sources(body)
        transcript = user_text(body)
        if "can you tell me about" in transcript.rsplit("USER:", 1)[-1] or not found:
            asked = transcript.rsplit("USER:", 1)[-1].split("\n", 1)[0].strip()
            refusal = REFUSAL.format(topic=f"'{asked}'")
            return {
                "thought": "None of the sources mention this topic.",
                "evidence": [],
                "cited_chunk_ids": [],
                "content": refusal,
            }
        turn = transcript.count("USER:")
        chunk_id, text = found[turn % len(found)]
        words = text.split()
        start = (turn * 15) % max(1, len(words) - 20)  # a different passage each turn: no repeated answers
        passage = passage_of(words[start:], 300)
        return {
            "thought": f"The question is answered by [{chunk_id}].",
            "evidence": [{"chunk_id": chunk_id, "quote": passage}],
            "cited_chunk_ids": [chunk_id],
            "content": "According to the documents: " + passage,
        }

    def _Critique(self, body: dict) -> dict:
        scores = dict.fromkeys(
            ["groundedness", "persona_fidelity", "tier_match", "refusal_correctness", "naturalness"], 5
        )
        return {"scores": scores, "problems": []}

    def _Refinement(self, body: dict) -> dict:
        prompt = user_text(body)
        failing = [int(x) for x in re.findall(r"\d+", prompt.rsplit("Failing assistant turns:", 1)[1])]
        if REFINER_HARD_NEGATIVE in system_text(body):
            return {
                "revised_turns": [
                    {
                        "turn_index": i,
                        "thought": "Not in the sources.",
                        "evidence": [],
                        "cited_chunk_ids": [],
                        "content": REFUSAL.format(topic="this question"),
                    }
                    for i in failing
                ]
            }
        revised = []
        for i in failing:
            chunk_id, text = turn_sources(prompt, i)[0]
            passage = passage_of(text.split(), 200)
            revised.append(
                {
                    "turn_index": i,
                    "thought": f"Rewritten from [{chunk_id}].",
                    "evidence": [{"chunk_id": chunk_id, "quote": passage}],
                    "cited_chunk_ids": [chunk_id],
                    "content": "Revised answer: " + passage,
                }
            )
        return {"revised_turns": revised}


def failing_critique(problem_turn: int = 1) -> dict:
    scores = {
        "groundedness": 2,
        "persona_fidelity": 5,
        "tier_match": 5,
        "refusal_correctness": 5,
        "naturalness": 5,
    }
    return {
        "scores": scores,
        "problems": [{"turn_index": problem_turn, "problem": "states a fee not in the sources"}],
    }


def http_error(status: int) -> StubReply:
    return StubReply(content="", status=status)
