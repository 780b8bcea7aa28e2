"""The naive baseline the diversity numbers are compared with: one plain prompt per seed context.

Same chunks as the dataset's samples, no persona, tier, Evol operator or critic: "here is a text,
write a question about it". If TeacherForge's first user turns are not more diverse than this, the
planning machinery is not paying for itself. Needs an LLM, so it runs only when asked
(``--baseline-url``); its questions are written next to the report for inspection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from teacherforge.dataset.report_data import RunData

TEMPLATES = Path(__file__).parent / "report_templates"


@dataclass
class Baseline:
    url: str
    model: str
    questions: list[dict] = field(default_factory=list)  # {sample_id, question}
    errors: list[str] = field(default_factory=list)


def baseline_messages(context: str) -> list[dict[str, str]]:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), undefined=StrictUndefined, autoescape=False)
    module = env.get_template("baseline.j2").make_module({"context": context})
    return [
        {"role": "system", "content": module.system.strip()},
        {"role": "user", "content": module.user.strip()},
    ]


def resolve_endpoint(data: RunData, url: str, model: str | None) -> tuple[str, str]:
    """``--baseline-url run`` reuses the run's recorded generator endpoint (and model)."""
    generator = data.endpoints.get("generator") or {}
    if url == "run":
        url = generator.get("url") or ""
        if not url:
            raise ValueError("the run recorded no generator URL; give --baseline-url URL")
    model = model or generator.get("model") or data.config.get("model")
    if not model:
        raise ValueError("no model for the baseline; give --baseline-model NAME")
    return url.rstrip("/"), model


def generate_baseline(data: RunData, url: str, model: str, limit: int, timeout_s: float = 120.0) -> Baseline:
    """One question per dataset sample (first ``limit``), from that sample's seed chunks."""
    baseline = Baseline(url, model)
    key = os.environ.get(data.config.get("api_key_env") or "OPENAI_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    temperature = data.config.get("temperature", 0.7)
    seed = int(data.config.get("seed") or 0)
    with httpx.Client(timeout=timeout_s, headers=headers) as client:
        for index, sample in enumerate(data.dataset[:limit]):
            context = "\n\n".join(data.chunk_text.get(c, "") for c in sample.seed_chunk_ids).strip()
            if not context:
                baseline.errors.append(f"{sample.sample_id}: no seed chunks recorded")
                continue
            body = {
                "model": model,
                "messages": baseline_messages(context),
                "temperature": temperature,
                "max_tokens": 200,
                "seed": seed * 100_003 + index,
            }
            try:
                response = client.post(f"{url}/chat/completions", json=body)
                response.raise_for_status()
                text = (response.json()["choices"][0]["message"]["content"] or "").strip()
            except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
                baseline.errors.append(f"{sample.sample_id}: {type(exc).__name__}: {str(exc)[:160]}")
                continue
            if text:
                baseline.questions.append({"sample_id": sample.sample_id, "question": text[:1000]})
    return baseline
