"""Training settings: the ``train:`` section of a YAML file, overridden by ``teacherforge train`` flags.

Pydantic, so a typo or a bad value becomes one line naming the file and the key, like ``run.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError


class SettingsError(Exception):
    """A bad ``train:``/``eval:`` section or flag; the message names the file and the key."""


class TrainSettings(BaseModel):
    model_config = {"extra": "forbid"}

    base_model: str | None = Field(default=None, description="HF id or folder; None = bundled Gemma 3 270M.")
    thought: Literal["drop", "inline"] = "drop"
    r: int = Field(default=8, ge=1, le=512)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    targets: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])
    lr: float = Field(default=2e-4, gt=0)
    epochs: float = Field(default=2.0, gt=0)
    max_steps: int = Field(default=-1, description="Stop after this many steps (overrides epochs when > 0).")
    batch_size: int = Field(default=2, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    max_len: int = Field(default=1024, ge=32)
    heldout_share: float = Field(default=0.2, ge=0, lt=1)
    seed: int = 0
    save_steps: int = Field(default=50, ge=1)
    report_to: Literal["none", "wandb", "mlflow"] = "none"
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads (default: torch's).")


class EvalSettings(BaseModel):
    model_config = {"extra": "forbid"}

    max_items: int = Field(default=24, ge=1, description="Held-out user turns to evaluate.")
    max_new_tokens: int = Field(default=96, ge=1)
    top_k: int = Field(default=3, ge=1, le=50)
    search: Literal["vector", "bm25", "hybrid"] = "hybrid"
    max_len: int = Field(default=1024, ge=32)
    concurrency: int = Field(default=4, ge=1)


def load_section(path: Path | None, section: str) -> dict:
    """The ``section`` mapping of a YAML file (other keys are other commands' business)."""
    if path is None:
        return {}
    if not path.exists():
        raise SettingsError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict) or not isinstance(data.get(section) or {}, dict):
        raise SettingsError(f"{path}: '{section}' must be a mapping of keys to values")
    return dict(data.get(section) or {})


def build(model: type[BaseModel], path: Path | None, section: str, overrides: dict) -> BaseModel:
    data = load_section(path, section)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join([section, *(str(p) for p in err["loc"])])
        source = str(path) if path else "command line"
        if err["type"] == "extra_forbidden":
            raise SettingsError(f"{source}: unknown key '{key}'; see docs/student.md") from exc
        raise SettingsError(f"{source}: {key}: {err['msg']}") from exc
