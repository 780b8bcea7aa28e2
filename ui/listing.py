"""The samples list: filter, search, sort and page the in-memory index (ui/sample_index.py).

Why plain Python: the index holds a few fields per sample, so 10,000 rows filter and sort in a few
milliseconds; the same query string drives the page, the JSON API and "next sample" on a sample page.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from teacherforge.ui.sample_index import DIMENSIONS, SampleIndex, SampleRow

FACETS = ("status", "tier", "persona", "technique", "category", "verdict", "review")
FILTERS = (*FACETS, "run", "revisions", "min_score", "tag", "q")
PER_PAGE, MAX_PER_PAGE = 50, 500
NONE = "none"  # the filter value for "no verdict" / "not reviewed"


def review_state(row: SampleRow, pending: set[str]) -> str:
    """One word for the review column and filter: pending, approved, rejected, edited or none."""
    if row.sample_id in pending:
        return "pending"
    return row.decision or ("edited" if row.edited_turns else NONE)


SORTS: dict[str, Callable[[SampleRow], Any]] = {
    "sample_id": lambda r: r.sample_id,
    "status": lambda r: r.status,
    "tier": lambda r: r.tier or "",
    "persona": lambda r: r.persona or "",
    "technique": lambda r: r.technique or "",
    "category": lambda r: r.category or "",
    "revisions": lambda r: r.revisions,
    "score": lambda r: -1 if r.min_score is None else r.min_score,
    "verdict": lambda r: r.verdict or "",
    "review": lambda r: r.decision or "",
    "started": lambda r: r.started_at.isoformat() if r.started_at else "",
    **{d: (lambda r, d=d: (r.scores or {}).get(d, -1)) for d in DIMENSIONS},
}


@dataclass
class ListQuery:
    """A parsed query string; unknown or malformed values fall back to defaults rather than failing."""

    filters: dict[str, str] = field(default_factory=dict)
    sort: str = "sample_id"
    descending: bool = False
    page: int = 1
    per_page: int = PER_PAGE

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> ListQuery:
        filters = {k: str(params[k]).strip() for k in FILTERS if str(params.get(k) or "").strip()}
        sort = params.get("sort") if params.get("sort") in SORTS else "sample_id"
        return cls(filters, sort, params.get("order") == "desc", _int(params.get("page"), 1, 1),
                   _int(params.get("per_page"), PER_PAGE, 1, MAX_PER_PAGE))  # fmt: skip

    def params(self, **changes: Any) -> dict[str, str]:
        out = {**self.filters, "sort": self.sort, "order": "desc" if self.descending else "asc"}
        if self.page > 1:
            out["page"] = str(self.page)
        if self.per_page != PER_PAGE:
            out["per_page"] = str(self.per_page)
        out.update({k: str(v) for k, v in changes.items() if v is not None})
        return {k: v for k, v in out.items() if v != ""}

    def url(self, **changes: Any) -> str:
        return "?" + urlencode(self.params(**changes))


def _int(value: Any, default: int, low: int, high: int | None = None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return max(low, min(number, high)) if high else max(low, number)


@dataclass
class Listing:
    rows: list[SampleRow]
    total: int
    query: ListQuery
    run: str | None
    facets: dict[str, list[tuple[str, int]]]
    tags: list[str]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.query.per_page))


def in_run(index: SampleIndex, run: str | None) -> list[SampleRow]:
    return [r for r in index.samples.values() if run in (None, "all") or r.run_id == run]


def _predicates(f: dict[str, str], pending: set[str]) -> list[Callable[[SampleRow], bool]]:
    """One test per filter that is set, so a row is only checked against what the person asked for."""
    tests: list[Callable[[SampleRow], bool]] = []
    for name in ("status", "tier", "persona", "technique", "category"):
        if name in f:
            tests.append(lambda r, name=name, want=f[name]: getattr(r, name) == want)
    if "verdict" in f:
        tests.append(lambda r, want=f["verdict"]: (r.verdict or NONE) == want)
    if "review" in f:
        tests.append(lambda r, want=f["review"]: review_state(r, pending) == want)
    if "revisions" in f:
        tests.append(lambda r, want=f["revisions"]: str(r.revisions) == want)
    if "min_score" in f:
        low = _int(f["min_score"], 0, 0)
        tests.append(lambda r: r.min_score is not None and r.min_score >= low)
    if "tag" in f:
        tests.append(lambda r, want=f["tag"]: want in r.tags)
    if "q" in f:
        whole, terms = f["q"].lower(), f["q"].lower().split()
        tests.append(lambda r: r.sample_id.lower() == whole or all(t in r.text for t in terms))
    return tests


class ListCache:
    """Answers for the current index version: a sorted list per query, the facets per run."""

    def __init__(self, size: int = 32):
        self.size = size
        self.version = -1
        self.entries: dict[tuple, Any] = {}

    def get(self, index: SampleIndex, key: tuple, make: Callable[[], Any]) -> Any:
        if index.version != self.version:
            self.version, self.entries = index.version, {}
        if key not in self.entries:
            if len(self.entries) >= self.size:
                self.entries.pop(next(iter(self.entries)))
            self.entries[key] = make()
        return self.entries[key]


CACHES: weakref.WeakKeyDictionary[SampleIndex, ListCache] = weakref.WeakKeyDictionary()


def _cache(index: SampleIndex) -> ListCache:
    if index not in CACHES:
        CACHES[index] = ListCache()
    return CACHES[index]


def filtered(index: SampleIndex, query: ListQuery, pending: set[str]) -> tuple[str | None, list[SampleRow]]:
    """The run shown (default: the latest) and its samples that pass the filters, sorted."""
    run = query.filters.get("run") or index.latest_run()

    def make() -> list[SampleRow]:
        tests = _predicates(query.filters, pending)
        rows = [r for r in in_run(index, run) if all(test(r) for test in tests)]
        rows.sort(key=lambda r: r.sample_id)  # a stable tie-break under every sort
        rows.sort(key=SORTS[query.sort], reverse=query.descending)
        return rows

    return run, _cache(index).get(index, _key("rows", run, query, pending), make)


def _key(kind: str, run: str | None, query: ListQuery, pending: set[str]) -> tuple:
    return kind, run, tuple(sorted(query.filters.items())), query.sort, query.descending, frozenset(pending)


def _facets(index: SampleIndex, run: str | None, pending: set[str]) -> tuple[dict, list[str]]:
    counts: dict[str, Counter] = {name: Counter() for name in FACETS}
    tags: set[str] = set()
    for r in in_run(index, run):
        for name, value in (("status", r.status), ("tier", r.tier), ("persona", r.persona),
                            ("technique", r.technique), ("category", r.category)):  # fmt: skip
            if value:
                counts[name][value] += 1
        counts["verdict"][r.verdict or NONE] += 1
        counts["review"][review_state(r, pending)] += 1
        tags.update(r.tags)
    return {name: sorted(c.items()) for name, c in counts.items()}, sorted(tags)


def listing(index: SampleIndex, query: ListQuery, pending: set[str]) -> Listing:
    run, rows = filtered(index, query, pending)
    start = (query.page - 1) * query.per_page
    facets, tags = _cache(index).get(
        index, ("facets", run, frozenset(pending)), lambda: _facets(index, run, pending)
    )
    return Listing(rows[start : start + query.per_page], len(rows), query, run, facets, tags)


def neighbours(
    index: SampleIndex, query: ListQuery, sample_id: str, pending: set[str]
) -> tuple[str | None, str | None]:
    """The samples before and after ``sample_id`` in the filtered, sorted list (for j/k on a sample page)."""
    run, rows = filtered(index, query, pending)
    at = _cache(index).get(index, _key("positions", run, query, pending),
                           lambda: {r.sample_id: i for i, r in enumerate(rows)}).get(sample_id)  # fmt: skip
    if at is None:
        return None, rows[0].sample_id if rows else None
    return (rows[at - 1].sample_id if at else None), (rows[at + 1].sample_id if at + 1 < len(rows) else None)
