"""The run configuration: every CLI flag plus personas, categories, tier mix, techniques, prompts.

Loaded from YAML (``--config run.yaml``) and validated by pydantic; a bad key or value becomes one
line naming the file and the key. CLI flags override the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from teacherforge.agents.critic import CriticThresholds
from teacherforge.agents.planner import DEFAULT_PERSONAS, PlanSettings
from teacherforge.agents.rules import RuleSettings
from teacherforge.agents.small_teacher import SmallSettings
from teacherforge.agents.verifier import VerifierSettings
from teacherforge.retrieval.embedder import DEFAULT_EMBEDDER
from teacherforge.retrieval.retriever import SearchMode


class ConfigError(Exception):
    """A configuration problem, phrased as one line that names the file/key and the fix."""


class RunConfig(BaseModel):
    model_config = {"extra": "forbid"}

    n: int = Field(default=10, ge=1, description="Number of samples to generate.")
    seed: int = 0
    concurrency: int = Field(default=16, ge=1, le=1024)
    adaptive: bool = Field(default=False, description="AIMD on 429s and latency, with --concurrency as cap.")
    llm_url: str | list[str] | None = Field(
        default=None,
        description="OpenAI-compatible base URL, or several (replicas of one model); None = embedded.",
    )
    model: str | None = None
    critic_url: str | None = None
    critic_model: str | None = None
    structured_output: Literal["auto", "json_schema", "json_mode"] = Field(
        default="auto", description="auto probes the server once; vLLM and the embedded one do json_schema."
    )
    api_key_env: str = Field(default="OPENAI_API_KEY", description="Env var holding the API key, if any.")
    temperature: float = Field(default=0.7, ge=0, le=2)
    critic_temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(
        default=3072, ge=16, description="Generous on purpose: schema caps end the JSON well before this."
    )
    timeout_s: float = Field(default=300.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=20)
    call_deadline_s: float = Field(
        default=900.0, gt=0, description="Wall-clock cap on one call: all its attempts and backoff waits."
    )
    max_revisions: int = Field(default=2, ge=0, le=10)
    top_k: int = Field(default=3, ge=1, le=50)
    search: SearchMode = "hybrid"
    embedder: str = DEFAULT_EMBEDDER
    language: str = "en"
    prompt_dir: Path | None = None
    profile: Literal["standard", "small"] | None = Field(
        default=None,
        description="small: short prompts, extractive evidence, no critic (docs/quality.md). Unset: small "
        "when the embedded server is used (no llm_url), standard otherwise; run records the choice.",
    )
    small: SmallSettings = Field(default_factory=SmallSettings)
    plan: PlanSettings = Field(default_factory=PlanSettings)
    rules: RuleSettings = Field(default_factory=RuleSettings)
    verifier: VerifierSettings = Field(default_factory=VerifierSettings)
    critic_thresholds: CriticThresholds = Field(default_factory=CriticThresholds)
    # Sections read by `teacherforge train` / `eval` (validated there), so one YAML can hold a whole loop.
    train: dict | None = None
    eval: dict | None = None

    def llm_urls(self) -> list[str]:
        """The generator's base URLs (empty: the embedded model)."""
        if self.llm_url is None:
            return []
        return [self.llm_url] if isinstance(self.llm_url, str) else list(self.llm_url)

    @property
    def small_profile(self) -> bool:
        """Unset counts as standard: only ``load_config`` (the CLI) picks small for the embedded model."""
        return self.profile == "small"

    def config_hash(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _format_error(source: str, exc: ValidationError, flags: set[str]) -> str:
    """One line: where (file or flag), which key, what is wrong, and what was given."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "(top level)"
    if loc and loc[0] in flags:  # the value came from a flag, not from the file
        source, key = "command line", f"--{key.replace('_', '-')}"
    if err["type"] == "extra_forbidden":
        return f"{source}: unknown key '{key}'; check the spelling against docs/cli.md"
    if loc and loc[-1] == "[key]":  # a dict key outside a Literal, e.g. an unknown tier name
        expected = (err.get("ctx") or {}).get("expected", "")
        return f"{source}: {'.'.join(loc[:-2])}: unknown name '{loc[-2]}'; use {expected}"
    message = err["msg"].removeprefix("Value error, ")
    given = err.get("input")
    if isinstance(given, str | int | float) and not isinstance(given, bool) and len(str(given)) <= 60:
        message += f" (got {given!r})"
    return f"{source}: {key}: {message}"


def _named_personas(data: dict, source: str) -> None:
    """Let ``plan.personas`` name built-in personas (``- anxious parent``) next to full entries."""
    plan = data.get("plan")
    personas = plan.get("personas") if isinstance(plan, dict) else None
    if not isinstance(personas, list):
        return
    builtin = {p.name.lower(): p for p in DEFAULT_PERSONAS}
    for i, entry in enumerate(personas):
        if isinstance(entry, str):
            persona = builtin.get(entry.strip().lower())
            if persona is None:
                raise ConfigError(
                    f"{source}: plan.personas.{i}: unknown persona '{entry}'; built-in: "
                    f"{', '.join(builtin)}; or write {{name: ..., description: ...}}"
                )
            personas[i] = persona.model_dump()


def _read_yaml(path: Path):
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text; re-save it as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc}); pass a YAML file") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"{path}: not valid YAML{where} ({problem}); fix the syntax there (spaces, not tabs; "
            "close brackets and quotes)"
        ) from exc


def load_config(path: Path | None, overrides: dict) -> RunConfig:
    """Merge a YAML file (if given) with CLI overrides (None values are ignored)."""
    data: dict = {}
    source = str(path) if path else "command line"
    if path is not None:
        loaded = _read_yaml(path)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping of keys to values")
        data = loaded or {}
    flags = {k for k, v in overrides.items() if v is not None}
    data.update({k: v for k, v in overrides.items() if v is not None})
    _named_personas(data, source)
    try:
        return with_profile(RunConfig.model_validate(data))
    except ValidationError as exc:
        raise ConfigError(_format_error(source, exc, flags)) from exc


def with_profile(config: RunConfig) -> RunConfig:
    """The config with its profile decided: as set, else small for the embedded model and standard for
    a given endpoint. Decided when the config is loaded, so ``run.started`` records the choice and a
    resumed run keeps it. The small profile also turns hard negatives off if ``small.hard_negatives``
    says so (recorded the same way: ``plan.hard_negative_rate: 0``)."""
    if config.profile is None:
        config = config.model_copy(update={"profile": "standard" if config.llm_urls() else "small"})
    if config.small_profile and config.small.hard_negatives == "off" and config.plan.hard_negative_rate:
        config = config.model_copy(
            update={"plan": config.plan.model_copy(update={"hard_negative_rate": 0.0})}
        )
    return config
