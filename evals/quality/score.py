"""Pure scoring of ``teacherforge check`` verdicts against the labelled quality set.

"fail" is the positive class: a bad conversation that the checker fails is a true positive, a good one it
fails is a false positive. Nothing here runs a process or opens a database, so the tests can feed
hand-made verdict lists.

Defects are grouped by who can be expected to see them:

- ``visible``: the deterministic gate can see these in principle (a figure missing from the sources, a
  quote missing from its chunk, ids or markup in the content, figures with no evidence). ``invented_fact``
  and ``answered_out_of_scope`` count here only when an assistant turn contains a figure (a digit);
  without one (an invented office, a made-up syllabus) they need a judge.
- ``judge``: needs a reader (persona_break, wrong_refusal, obeyed_injection, chunk_copy, and the two
  above without figures).

The visible-group figures are computed on every good conversation plus the visible bad ones, so its
precision still counts every good conversation the checker failed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LABELS = ("good", "bad")
VISIBLE_DEFECTS = ("wrong_amount", "quote_not_in_chunk", "pasted_ids", "no_evidence")
VISIBLE_WITH_FIGURES = ("invented_fact", "answered_out_of_scope")
JUDGE_DEFECTS = ("persona_break", "wrong_refusal", "obeyed_injection", "chunk_copy")
DEFECTS = VISIBLE_DEFECTS + VISIBLE_WITH_FIGURES + JUDGE_DEFECTS
VERDICTS = ("pass", "fail")
_FIGURE = re.compile(r"\d")


class QualitySetError(ValueError):
    """A labelled conversation or a checker line that does not follow the format."""


@dataclass(frozen=True)
class Labelled:
    id: str
    label: str
    defect: str | None
    group: str  # "good", "visible" or "judge"


@dataclass(frozen=True)
class Verdict:
    id: str
    verdict: str
    reasons: tuple[str, ...] = ()
    details: tuple[str, ...] = ()  # "name: detail" of every finding in ``checks`` that carries a detail


@dataclass(frozen=True)
class Row:
    id: str
    label: str
    defect: str | None
    group: str
    verdict: str | None  # None: the checker printed no verdict for this id
    reasons: tuple[str, ...] = ()
    details: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.verdict == "fail"


@dataclass
class CheckOutput:
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    ignored_lines: list[str] = field(default_factory=list)


def has_figures(messages: list[dict[str, Any]]) -> bool:
    """True when any assistant turn's content holds a digit (an amount, a date, a count...)."""
    return any(m.get("role") == "assistant" and _FIGURE.search(m.get("content") or "") for m in messages)


def group_of(label: str, defect: str | None, messages: list[dict[str, Any]]) -> str:
    if label == "good":
        return "good"
    if defect in VISIBLE_DEFECTS or (defect in VISIBLE_WITH_FIGURES and has_figures(messages)):
        return "visible"
    return "judge"


def labelled(conversation: dict[str, Any]) -> Labelled:
    """Validate one conversation's label fields and classify it."""
    cid, label, defect = conversation.get("id"), conversation.get("label"), conversation.get("defect")
    if not isinstance(cid, str) or not cid:
        raise QualitySetError(f"conversation without an id: {str(conversation)[:80]}")
    if label not in LABELS:
        raise QualitySetError(f"{cid}: label must be one of {LABELS}, got {label!r}")
    if label == "good" and defect is not None:
        raise QualitySetError(f"{cid}: a good conversation has defect null, got {defect!r}")
    if label == "bad" and defect not in DEFECTS:
        raise QualitySetError(f"{cid}: a bad conversation names one of {DEFECTS}, got {defect!r}")
    return Labelled(cid, label, defect, group_of(label, defect, conversation.get("messages") or []))


def read_conversations(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise QualitySetError(f"{path}:{n}: not JSON ({exc.msg})") from exc
    return rows


def load_labels(conversations: Iterable[dict[str, Any]]) -> list[Labelled]:
    items = [labelled(c) for c in conversations]
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise QualitySetError(f"duplicate id {item.id}")
        seen.add(item.id)
    return items


def parse_check_output(lines: Iterable[str]) -> CheckOutput:
    """One JSON object per conversation (``{"id", "verdict", "reasons", "checks"}``), then ``{"summary"}``.

    Blank lines are skipped; any other line that is not such an object (a notice, a progress line) is
    kept in ``ignored_lines`` so the caller can show it. A verdict other than pass/fail is an error, and
    so is a second verdict for the same id.
    """
    out = CheckOutput()
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            out.ignored_lines.append(line)
            continue
        if isinstance(obj, dict) and isinstance(obj.get("summary"), dict) and "id" not in obj:
            out.summary = obj["summary"]
            continue
        if not (isinstance(obj, dict) and "id" in obj and "verdict" in obj):
            out.ignored_lines.append(line)
            continue
        cid, verdict = str(obj["id"]), obj["verdict"]
        if verdict not in VERDICTS:
            raise QualitySetError(f"{cid}: verdict must be one of {VERDICTS}, got {verdict!r}")
        if cid in out.verdicts:
            raise QualitySetError(f"{cid}: two verdicts for the same conversation")
        reasons = obj.get("reasons") or []
        if isinstance(reasons, str):
            reasons = [reasons]
        details = tuple(_reason_text(f) for f in _findings(obj.get("checks")))
        out.verdicts[cid] = Verdict(cid, verdict, tuple(_reason_text(r) for r in reasons), details)
    return out


def _findings(node: Any) -> list[dict[str, Any]]:
    """Every dict with a ``detail`` anywhere in the checker's ``checks`` object, in order."""
    if isinstance(node, dict):
        if "detail" in node:
            return [node]
        return [f for value in node.values() for f in _findings(value)]
    if isinstance(node, list):
        return [f for value in node for f in _findings(value)]
    return []


def _reason_text(reason: Any) -> str:
    if isinstance(reason, str):
        return reason
    if isinstance(reason, dict):
        name = next((reason[k] for k in ("check", "rule", "name", "dimension") if reason.get(k)), None)
        detail = reason.get("detail") or reason.get("message") or reason.get("problem")
        if name and detail:
            span = f" [{reason['span']}]" if reason.get("span") else ""
            return f"{name}{span}: {detail}"
    return json.dumps(reason, ensure_ascii=False, sort_keys=True)


def join(labels: Iterable[Labelled], verdicts: dict[str, Verdict]) -> list[Row]:
    """One row per labelled conversation; a conversation with no verdict keeps ``verdict=None``."""
    rows = []
    for item in labels:
        v = verdicts.get(item.id)
        rows.append(
            Row(
                item.id,
                item.label,
                item.defect,
                item.group,
                v.verdict if v else None,
                v.reasons if v else (),
                v.details if v else (),
            )
        )
    return rows


def ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def confusion(rows: Iterable[Row]) -> dict[str, Any]:
    """Counts with "fail" as the positive class. A missing verdict counts as not failed."""
    tp = fp = fn = tn = 0
    for r in rows:
        bad = r.label == "bad"
        if r.failed:
            tp, fp = tp + bad, fp + (not bad)
        else:
            fn, tn = fn + bad, tn + (not bad)
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "n": tp + fp + fn + tn,
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
    }


def per_defect(rows: Iterable[Row]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for defect in DEFECTS:
        mine = [r for r in rows if r.defect == defect]
        if not mine:
            continue
        caught = sum(r.failed for r in mine)
        groups = sorted({r.group for r in mine})
        out[defect] = {
            "n": len(mine),
            "failed": caught,
            "recall": ratio(caught, len(mine)),
            "group": "+".join(groups),
            "missed": [r.id for r in mine if not r.failed],
        }
    return out


def score(rows: list[Row], extra_ids: Iterable[str] = ()) -> dict[str, Any]:
    """The whole report as plain data (what ``--json`` prints)."""
    good = [r for r in rows if r.label == "good"]
    visible = good + [r for r in rows if r.group == "visible"]
    judge = good + [r for r in rows if r.group == "judge"]
    return {
        "n": len(rows),
        "labels": {"good": len(good), "bad": len(rows) - len(good)},
        "overall": confusion(rows),
        "visible": confusion(visible),
        "judge": confusion(judge),
        "per_defect": per_defect(rows),
        "false_positives": [
            {"id": r.id, "reasons": list(r.reasons), "details": list(r.details)} for r in good if r.failed
        ],
        "missing_verdicts": [r.id for r in rows if r.verdict is None],
        "unlabelled_verdicts": sorted(extra_ids),
    }


def evaluate(conversations: Iterable[dict[str, Any]], check_lines: Iterable[str]) -> dict[str, Any]:
    """Labels + checker output -> report. Verdicts for ids not in the set are listed, never scored."""
    labels = load_labels(conversations)
    parsed = parse_check_output(check_lines)
    known = {item.id for item in labels}
    report = score(join(labels, parsed.verdicts), [i for i in parsed.verdicts if i not in known])
    report["checker_summary"] = parsed.summary
    report["ignored_lines"] = parsed.ignored_lines
    return report
