"""PII redaction: typed placeholders, checksums, inputs left alone, and measured recall and precision."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from teacherforge.retrieval.redact import KINDS, find_pii, iban_ok, luhn_ok, redact_messages, redact_text

LABELLED = Path(__file__).parent / "data" / "pii_labelled.jsonl"
# Measured on tests/data/pii_labelled.jsonl (docs/reliability.md): precision 44/45, recall 44/46.
PRECISION_FLOOR = 0.95
RECALL_FLOOR = 0.93


def labelled() -> list[dict]:
    return [json.loads(line) for line in LABELLED.read_text().splitlines() if line.strip()]


def score() -> tuple[int, int, int]:
    """(true positives, false positives, false negatives); a hit must cover the whole labelled span."""
    tp = fp = fn = 0
    for row in labelled():
        text = row["text"]
        gold = []
        for p in row["pii"]:
            start = text.index(p["value"])
            gold.append((p["kind"], start, start + len(p["value"])))
        matched: set[tuple] = set()
        for f in find_pii(text):
            covers = [g for g in gold if g[0] == f.kind and f.start <= g[1] and g[2] <= f.end]
            hit = next((g for g in covers if g not in matched), None)
            if hit is None:
                fp += 1
            else:
                tp += 1
                matched.add(hit)
        fn += len(gold) - len(matched)
    return tp, fp, fn


def test_labelled_set_is_big_enough_and_has_near_misses():
    rows = labelled()
    assert len(rows) >= 60
    assert sum(1 for r in rows if not r["pii"]) >= 25  # dates, versions, prices, chunk ids, ISBNs, IPs ...
    assert {p["kind"] for r in rows for p in r["pii"]} == set(KINDS)


def test_recall_and_precision_meet_the_measured_floors():
    tp, fp, fn = score()
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert precision >= PRECISION_FLOOR, f"precision {precision:.3f} ({tp} tp, {fp} fp)"
    assert recall >= RECALL_FLOOR, f"recall {recall:.3f} ({tp} tp, {fn} fn)"


def test_placeholders_are_typed_and_text_around_them_is_kept():
    text = "Mail jo@example.org, call (555) 123-4567, card 4111 1111 1111 1111, fee $9,800 on 2024-03-15."
    redacted, findings = redact_text(text)
    assert redacted == "Mail [EMAIL], call [PHONE], card [CARD], fee $9,800 on 2024-03-15."
    assert [f.kind for f in findings] == ["EMAIL", "PHONE", "CARD"]
    assert [text[f.start : f.end] for f in findings] == [f.value for f in findings]
    assert redact_text(redacted) == (redacted, [])  # idempotent: placeholders are not PII


def test_checksums_decide_cards_and_ibans():
    assert luhn_ok("4111 1111 1111 1111") and not luhn_ok("4111 1111 1111 1112")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB82 WEST 1234 5698 7654 33")
    assert redact_text("ref 4111 1111 1111 1112")[1] == []
    assert [f.kind for f in find_pii("IBAN DE89370400440532013000")] == ["IBAN"]


def test_redact_messages_covers_every_text_field_and_leaves_the_input_alone():
    messages = [
        {"role": "system", "content": "You help students."},
        {"role": "user", "content": "I'm ann@example.com, SSN 123-45-6789"},
        {"role": "assistant", "content": "Noted.", "thought": "User gave AB123456C and +44 20 7946 0958."},
        {"role": "user", "content": [{"type": "text", "text": "IBAN GB82WEST12345698765432"}]},
    ]
    original = copy.deepcopy(messages)
    redacted = redact_messages(messages)
    assert messages == original
    assert [m["role"] for m in redacted] == ["system", "user", "assistant", "user"]
    assert redacted[1]["content"] == "I'm [EMAIL], SSN [SSN]"
    assert redacted[2]["thought"] == "User gave [NI_NUMBER] and [PHONE]."
    assert redacted[3]["content"] == [{"type": "text", "text": "IBAN [IBAN]"}]
    assert redacted[0] == messages[0]
