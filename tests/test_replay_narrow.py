"""``teacherforge replay`` on a narrow terminal: event names are never cut, and a rejection's reasons
come one per line and once each (the timeline is stacked below 100 columns, a table above)."""

from __future__ import annotations

import shutil

import pytest
from conftest import query
from typer.testing import CliRunner
from ui_support import make_run, sample_ids

from teacherforge.cli.app import app
from teacherforge.cli.common import out

runner = CliRunner()


@pytest.fixture(scope="module")
def db(ingested_template, tmp_path_factory):
    path = tmp_path_factory.mktemp("narrow") / "forge.duckdb"
    shutil.copy(ingested_template, path)
    make_run(path)
    return path


@pytest.mark.parametrize("width", [60, 80, 160])
def test_replay_fits_the_terminal_without_cutting_names_or_repeating_reasons(db, width, monkeypatch):
    monkeypatch.setattr(out, "width", width)
    rejected = sample_ids(db, "rejected")[0]
    result = runner.invoke(app, ["replay", rejected, "--db", str(db)])
    assert result.exit_code == 0, result.output
    text = result.output
    for name in ("sample.planned", "retrieval.done", "critique.done", "refine.done", "sample.rejected"):
        assert name in text, f"{name} cut at width {width}"
    assert "…" not in text.split("after seq")[0]  # nothing in the timeline is elided
    reasons = [line.strip() for line in text.splitlines() if line.strip().startswith("reason: ")]
    assert reasons and len(reasons) == len(set(reasons))
    assert all(line.count("reason: ") <= 1 for line in text.splitlines())
    question = query(db, "SELECT content FROM turns WHERE sample_id = ? AND turn_index = 0", rejected)[0][0]
    flat = " ".join(text.replace("│", " ").split())
    assert " ".join(question.split()) in flat  # conversation panels wrap their lines instead of cropping
