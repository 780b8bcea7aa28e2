"""The report's figures as PNG files (matplotlib, Agg backend: no display needed).

Every figure is always written, with a "no data" note when its data are empty, so the HTML page
never has a broken image and a reader sees why a chart is blank.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from teacherforge.dataset.report_data import SCORE_DIMENSIONS, Sample  # noqa: E402

COLORS = {"target": "#9e9e9e", "planned": "#64b5f6", "dataset": "#1565c0", "baseline": "#ef8a62"}
DPI = 100


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path.name


def _empty(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777")
    ax.set_xticks([])
    ax.set_yticks([])


def mix_plot(path: Path, title: str, series: dict[str, dict[str, float]]) -> str:
    """Grouped bars of shares per category value: target, planned, dataset."""
    keys = sorted({k for values in series.values() for k in values})
    fig, ax = plt.subplots(figsize=(max(5.5, 1.3 * len(keys) + 2), 3.4))
    if not keys:
        _empty(ax)
    else:
        width = 0.8 / max(1, len(series))
        for i, (name, values) in enumerate(series.items()):
            xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(keys))]
            ax.bar(xs, [100 * values.get(k, 0) for k in keys], width, label=name, color=COLORS.get(name))
        ax.set_xticks(range(len(keys)), [k.replace(" ", "\n", 1) for k in keys], fontsize=8)
        ax.set_ylabel("% of samples")
        top = max((100 * v for values in series.values() for v in values.values()), default=0)
        ax.set_ylim(0, max(10.0, top * 1.3))  # headroom for the legend
        ax.legend(fontsize=8, ncol=len(series), loc="upper center")
    ax.set_title(title)
    return _save(fig, path)


def score_histograms(path: Path, samples: list[Sample]) -> str:
    """Final critic score per dimension, accepted vs rejected samples."""
    fig, axes = plt.subplots(1, len(SCORE_DIMENSIONS), figsize=(13, 2.8), sharey=True)
    for ax, dim in zip(axes, SCORE_DIMENSIONS, strict=True):
        groups = {
            status: [s.scores[dim] for s in samples if s.status == status and s.scores and dim in s.scores]
            for status in ("accepted", "rejected")
        }
        if not any(groups.values()):
            _empty(ax)
        else:
            bottom = [0] * 5
            for status, color in (("accepted", COLORS["dataset"]), ("rejected", COLORS["baseline"])):
                counts = Counter(groups[status])
                heights = [counts.get(v, 0) for v in range(1, 6)]
                ax.bar(range(1, 6), heights, bottom=bottom, color=color, label=status)
                bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
            ax.set_xticks(range(1, 6))
        ax.set_title(dim.replace("_", " "), fontsize=9)
    axes[0].set_ylabel("samples")
    if any(s.scores for s in samples):
        axes[-1].legend(fontsize=7)
    return _save(fig, path)


def revisions_plot(path: Path, by_tier: dict[str, Counter]) -> str:
    """Stacked bars per tier: how many judged samples needed 0, 1, 2, ... refiner rounds."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    tiers = sorted(by_tier)
    if not tiers:
        _empty(ax)
    else:
        levels = sorted({r for c in by_tier.values() for r in c})
        bottom = [0] * len(tiers)
        cmap = plt.get_cmap("Blues")
        for i, level in enumerate(levels):
            heights = [by_tier[t].get(level, 0) for t in tiers]
            color = cmap(0.35 + 0.6 * i / max(1, len(levels) - 1))
            ax.bar(tiers, heights, bottom=bottom, label=f"{level} revision(s)", color=color)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ax.set_ylabel("accepted + rejected samples")
        ax.legend(fontsize=8)
    ax.set_title("Revisions per tier")
    return _save(fig, path)


def lengths_plot(path: Path, samples: list[Sample]) -> str:
    from teacherforge.dataset.report_metrics import words

    panels = {
        "words per conversation": [sum(len(words(c)) for _, c in s.turns) for s in samples],
        "words per user turn": [len(words(c)) for s in samples for r, c in s.turns if r == "user"],
        "words per assistant turn": [len(words(c)) for s in samples for r, c in s.turns if r == "assistant"],
        "turns per conversation": [len(s.turns) for s in samples],
    }
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 2.8))
    for ax, (title, values) in zip(axes, panels.items(), strict=True):
        if values:
            ax.hist(values, bins=min(20, max(1, len(set(values)))), color=COLORS["dataset"])
        else:
            _empty(ax)
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def diversity_plot(path: Path, dataset: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    metrics = ("distinct_1", "distinct_2", "mean_pairwise_distance")
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    series = {"dataset": dataset, **({"baseline": baseline} if baseline else {})}
    if not dataset.get("n"):
        _empty(ax)
    else:
        width = 0.8 / len(series)
        for i, (name, values) in enumerate(series.items()):
            xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(metrics))]
            ax.bar(xs, [values.get(m) or 0 for m in metrics], width, label=name, color=COLORS[name])
        ax.set_xticks(range(len(metrics)), ["distinct-1", "distinct-2", "mean pairwise\ndistance"])
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    ax.set_title("Diversity of first user turns" + ("" if baseline else " (no baseline)"))
    return _save(fig, path)


def rates_plot(path: Path, rates: dict[str, float | None]) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 2.8))
    known = {k: v for k, v in rates.items() if v is not None}
    if not known:
        _empty(ax)
    else:
        names = list(known)
        ax.barh(names, [100 * known[n] for n in names], color=COLORS["dataset"])
        for y, name in enumerate(names):
            ax.text(100 * known[name] + 1, y, f"{100 * known[name]:.0f}%", va="center", fontsize=8)
        ax.set_xlim(0, 110)
        ax.invert_yaxis()
        ax.set_xlabel("%")
    ax.set_title("Rates")
    return _save(fig, path)
