"""PII redaction: typed placeholders such as ``[EMAIL]`` replace each find.

Why not presidio: presidio-analyzer needs spaCy plus a language model from spaCy's model hub (not
PyPI), so it cannot be installed offline or in CI here; and for the pattern kinds below presidio
itself uses regexes with checksums too. Names and postal addresses are found by
:mod:`teacherforge.retrieval.redact_entities`: ADDRESS by rules, NAME by the small spaCy English NER
that the ``pii`` extra installs from PyPI, plus cue rules (the only NAME finder without the extra;
a warning says so once). ``kinds=PATTERN_KINDS`` keeps the pattern-only behaviour. Figures:
docs/reliability.md.

Patterns, in priority order (an earlier kind wins where two overlap):

=========== ===========================================================================
EMAIL       local@domain.tld
IBAN        2 letters, 2 check digits, 11-30 letters/digits (spaces allowed); ISO 13616 mod-97 check
CARD        13-19 digits, optionally in space/dash groups; Luhn check; not one repeated digit
SSN         US 123-45-6789 (not 000/666/9xx area, 00 group, 0000 serial), or 9 digits after "SSN"
NI_NUMBER   UK National Insurance AB123456C (official prefix letters, suffix A-D; spaces allowed)
PHONE       10-15 digits in 2+ groups split by space/dot/dash, optional +country code and (area);
            not a date (2024-03-15, 15.03.2024), a range of years or a dotted IPv4 address
ADDRESS     house number + street + type word, continental forms, PO boxes, + city/state/postcode
NAME        spaCy PERSON entities (pii extra) and cue rules; not inside a building/award/org name
=========== ===========================================================================
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import partial
from typing import Any

from teacherforge.retrieval.redact_entities import find_addresses, find_names


@dataclass(frozen=True)
class Finding:
    """One redacted span of the original text; ``value`` stays in memory, never in a log or event."""

    kind: str
    start: int
    end: int
    value: str

    @property
    def placeholder(self) -> str:
        return f"[{self.kind}]"


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def luhn_ok(number: str) -> bool:
    digits = [int(d) for d in _digits(number)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return bool(digits) and total % 10 == 0


def iban_ok(candidate: str) -> bool:
    iban = re.sub(r"\s", "", candidate).upper()
    if not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _card_ok(candidate: str) -> bool:
    digits = _digits(candidate)
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_ok(digits)


DATE_LIKE = re.compile(r"^(\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})$")
YEAR_RANGE = re.compile(r"^(19|20)\d\d(\s*[-/]\s*(19|20)\d\d)+$")
IP_LIKE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
NOT_PHONE = (DATE_LIKE, YEAR_RANGE, IP_LIKE)


def _phone_ok(candidate: str) -> bool:
    digits = _digits(candidate)
    text = candidate.strip()
    if not 10 <= len(digits) <= 15 or any(p.match(text) for p in NOT_PHONE):
        return False
    groups = re.split(r"[\s.\-()]+", text.lstrip("+"))
    return len([g for g in groups if g]) >= 2 or text.startswith("+")


def _ssn_ok(candidate: str) -> bool:
    digits = _digits(candidate)
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


Validator = Callable[[str], bool]

# (kind, pattern, validator); a pattern's group 1, when present, is the span to redact
PATTERNS: list[tuple[str, re.Pattern[str], Validator | None]] = [
    (
        "EMAIL",
        re.compile(
            r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
        ),
        None,
    ),
    ("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"), iban_ok),
    ("CARD", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), _card_ok),
    ("SSN", re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])"), _ssn_ok),
    ("SSN", re.compile(r"(?i:\b(?:ssn|social security(?: number)?)\b)\W{0,4}(\d{9})\b"), _ssn_ok),
    (
        "NI_NUMBER",
        re.compile(
            r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"
        ),
        None,
    ),
    (
        "PHONE",
        re.compile(
            r"(?<![\w+.-])(?:\+\d{7,15}|(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,5}\)[\s.-]?)?\d{1,5}(?:[\s.-]\d{2,8}){0,5})"
            r"(?![\w-]|\.\d)"
        ),
        _phone_ok,
    ),
]
PATTERN_KINDS = tuple(dict.fromkeys(kind for kind, _, _ in PATTERNS))
ENTITY_KINDS = ("ADDRESS", "NAME")  # after the pattern kinds: a pattern find wins an overlap
KINDS = PATTERN_KINDS + ENTITY_KINDS


def find_pii(text: str, kinds: Collection[str] | None = None, ner: bool | None = None) -> list[Finding]:
    """Validated, non-overlapping findings in text order; an earlier kind wins an overlap.

    ``kinds``: which kinds to look for (default all of ``KINDS``; ``PATTERN_KINDS`` = patterns only).
    ``ner``: for NAME, None = the spaCy model when the ``pii`` extra is installed, else cue rules and a
    warning; True = the model or a RuntimeError naming the install command; False = cue rules only.
    """
    wanted = set(KINDS if kinds is None else kinds)
    if wanted - set(KINDS):
        raise ValueError(f"unknown PII kind(s) {sorted(wanted - set(KINDS))}; known: {', '.join(KINDS)}")
    accepted: list[Finding] = []
    for kind, pattern, validator in PATTERNS:
        if kind not in wanted:
            continue
        for match in pattern.finditer(text):
            group = 1 if pattern.groups else 0
            start, end = match.span(group)
            value = match.group(group)
            if validator is not None and not validator(value):
                continue
            if any(start < f.end and f.start < end for f in accepted):
                continue
            accepted.append(Finding(kind, start, end, value))
    for kind, finder in (("ADDRESS", find_addresses), ("NAME", partial(find_names, ner=ner))):
        if kind in wanted:
            spans = finder(text, [(f.start, f.end) for f in accepted])
            accepted += [Finding(kind, start, end, text[start:end]) for start, end in spans]
    return sorted(accepted, key=lambda f: f.start)


def redact_text(
    text: str, kinds: Collection[str] | None = None, ner: bool | None = None
) -> tuple[str, list[Finding]]:
    """``text`` with every finding replaced by its typed placeholder, and the findings."""
    findings = find_pii(text, kinds, ner)
    parts, last = [], 0
    for f in findings:
        parts += [text[last : f.start], f.placeholder]
        last = f.end
    parts.append(text[last:])
    return "".join(parts), findings


KEEP_KEYS = frozenset({"role", "name", "tool_call_id", "type", "chunk_id"})  # ids, not text


def _redact_value(value: Any, kinds: Collection[str] | None, ner: bool | None) -> Any:
    if isinstance(value, str):
        return redact_text(value, kinds, ner)[0]
    if isinstance(value, list):
        return [_redact_value(v, kinds, ner) for v in value]
    if isinstance(value, dict):
        return {k: v if k in KEEP_KEYS else _redact_value(v, kinds, ner) for k, v in value.items()}
    return value


def redact_messages(
    messages: list[dict], kinds: Collection[str] | None = None, ner: bool | None = None
) -> list[dict]:
    """New chat messages with PII redacted in every text field (content, thought, content parts).

    ``role``/``name``-like keys are left alone; the input is not modified. ``kinds``/``ner``: see
    :func:`find_pii`.
    """
    return [_redact_value(message, kinds, ner) for message in messages]


def redaction_counts(
    messages: list[dict], kinds: Collection[str] | None = None, ner: bool | None = None
) -> dict[str, int]:
    """How many findings of each kind the messages hold (for an export summary or event)."""
    counts: dict[str, int] = {}

    def walk(value: Any) -> None:
        if isinstance(value, str):
            for f in find_pii(value, kinds, ner):
                counts[f.kind] = counts.get(f.kind, 0) + 1
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for k, v in value.items():
                if k not in KEEP_KEYS:
                    walk(v)

    walk(messages)
    return counts


def redact_document(
    doc: Any, kinds: Collection[str] | None = None, ner: bool | None = None
) -> dict[str, int]:
    """Redact a loaded :class:`~teacherforge.retrieval.documents.Document` in place (``ingest --redact-pii``).

    Section and page offsets are moved by the length change of the placeholders before them, so
    chunks still know their section and page. Returns the number of findings per kind.
    """
    text, findings = redact_text(doc.text, kinds, ner)
    if not findings:
        return {}

    def moved(offset: int) -> int:
        return offset + sum(len(f.placeholder) - (f.end - f.start) for f in findings if f.end <= offset)

    doc.text = text
    doc.sections = [(moved(o), s) for o, s in doc.sections]
    doc.pages = [(moved(o), p) for o, p in doc.pages]
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    return counts
