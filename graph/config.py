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
from teacherforge.agents.planner import PlanSettings
from teacherforge.agents.rules import RuleSettings
from teacherforge.store.embedder import DEFAULT_EMBEDDER
from teacherforge.store.retriever import SearchMode


class ConfigError(Exception):
    """A configuration problem, phrased as one line that names the file/key and the fix."""


class RunConfig(BaseModel):
    model_config = {"extra": "forbid"}

    n: int = Field(default=10, ge=1, description="Number of samples to generate.")
    seed: int = 0
    concurrency: int = Field(default=16, ge=1, le=1024)
    llm_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL; None = embedded model."
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
    max_revisions: int = Field(default=2, ge=0, le=10)
    top_k: int = Field(default=3, ge=1, le=50)
    search: SearchMode = "hybrid"
    embedder: str = DEFAULT_EMBEDDER
    language: str = "en"
    prompt_dir: Path | None = None
    plan: PlanSettings = Field(default_factory=PlanSettings)
    rules: RuleSettings = Field(default_factory=RuleSettings)
    critic_thresholds: CriticThresholds = Field(default_factory=CriticThresholds)
    # Sections read by `teacherforge train` / `eval` (validated there), so one YAML can hold a whole loop.
    train: dict | None = None
    eval: dict | None = None

    def config_hash(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _format_error(source: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{source}: unknown key '{key}'; check the spelling against docs/cli.md"
    return f"{source}: {key}: {err['msg']}"


def load_config(path: Path | None, overrides: dict) -> RunConfig:
    """Merge a YAML file (if given) with CLI overrides (None values are ignored)."""
    data: dict = {}
    source = str(path) if path else "command line"
    if path is not None:
        if not path.exists():
            raise ConfigError(f"{path}: no such config file")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping of keys to values")
        data = loaded or {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(source, exc)) from exc
