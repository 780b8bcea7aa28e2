"""The student answering without retrieval: greedy decoding on CPU from the conversation so far."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from teacherforge.student.data import visible_reply


def reply(model: Any, tokenizer: Any, messages: Sequence[dict[str, str]], max_new_tokens: int) -> str:
    """The visible reply to the last user message (any ``<think>`` block removed)."""
    import torch

    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **ids,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    new = out[0, ids["input_ids"].shape[1] :]
    return visible_reply(tokenizer.decode(new, skip_special_tokens=True))
