"""Assistant-token perplexity: how likely the student finds the teacher's accepted replies.

Only assistant tokens count (their closing ``<end_of_turn>`` included): the user turns are given,
not predicted. Token spans come from rendering the chat template on growing prefixes, so this
works with any model's own template, not only ones that mark assistant turns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def assistant_spans(tokenizer: Any, messages: Sequence[dict[str, str]]) -> tuple[list[int], list[int]]:
    """(token ids of the whole conversation, 1 for assistant tokens else 0)."""

    def ids(msgs: Sequence[dict[str, str]], prompt: bool) -> list[int]:
        text = tokenizer.apply_chat_template(list(msgs), tokenize=False, add_generation_prompt=prompt)
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    full = ids(messages, False)
    mask = [0] * len(full)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(ids(messages[:i], True))
        end = len(ids(messages[: i + 1], False))
        for t in range(start, min(end, len(full))):
            mask[t] = 1
    return full, mask


def nll_sum(
    model: Any, tokenizer: Any, messages: Sequence[dict[str, str]], max_len: int
) -> tuple[float, int]:
    """(summed negative log-likelihood, number of scored tokens) over one conversation's assistant turns."""
    import torch

    full, mask = assistant_spans(tokenizer, messages)
    full, mask = full[:max_len], mask[:max_len]
    if sum(mask[1:]) == 0:
        return 0.0, 0
    input_ids = torch.tensor([full])
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits[0, :-1].float()
    targets = input_ids[0, 1:]
    losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    weights = torch.tensor(mask[1:], dtype=losses.dtype)
    return float((losses * weights).sum()), int(weights.sum())


def perplexity(
    model: Any, tokenizer: Any, conversations: Sequence[Sequence[dict]], max_len: int = 1024
) -> float:
    """exp(mean NLL) over every assistant token of every conversation; nan when there is none."""
    total, count = 0.0, 0
    for messages in conversations:
        s, n = nll_sum(model, tokenizer, messages, max_len)
        total, count = total + s, count + n
    return math.exp(total / count) if count else float("nan")
