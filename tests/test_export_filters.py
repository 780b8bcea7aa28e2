"""Export filters (score, plan fields, dates, runs), the report of what they left out, and
``--redact-pii`` wired in before formatting."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from conftest import query, run_generation
from scripted import GoodModel
from stub_server import StubServer
from typer.testing import CliRunner

from teacherforge.cli.app import app

PLAN = {"min_user_turns": 1, "max_user_turns": 2, "hard_negative_rate": 0.2, "multi_source_rate": 0}
EMAIL = "jane.doe@example.com"
DIMENSIONS = ["groundedness", "persona_fidelity", "tier_match", "refusal_correctness", "naturalness"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def planted_model() -> GoodModel:
    """Naturalness 3, 4, 5 in turn (all pass the critic); every user message leaves an e-mail address."""
    model = GoodModel()
    model.overrides["Critique"] = lambda body, n: {
        "scores": {**dict.fromkeys(DIMENSIONS, 5), "naturalness": 3 + n % 3},
        "problems": [],
    }
    model.overrides["UserMessage"] = lambda body, n: {
        "message": model._UserMessage(body)["message"] + f" Answer me at {EMAIL} please."
    }
    return model


@pytest.fixture(scope="module")
def forge(ingested_template, tmp_path_factory) -> tuple[Path, str, str]:
    """Two runs in one database: 12 conversations, then 3 more."""
    db = tmp_path_factory.mktemp("filters") / "forge.duckdb"
    shutil.copy(ingested_template, db)
    with StubServer(planted_model()) as stub:
        first = run_generation(db, stub.url, n=12, seed=2, top_k=1, plan=PLAN)
    with StubServer(planted_model()) as stub:  # a second server: a client cached per URL outlives its loop
        second = run_generation(db, stub.url, n=3, seed=3, top_k=1, plan=PLAN)
    assert first.accepted == 12 and second.accepted == 3
    return db, first.run_id, second.run_id


def export(db: Path, out: Path, *flags) -> tuple[list[dict], object]:
    result = invoke("export", "--db", db, "--out", out, "--split", "1,0,0", *flags)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()], result


def samples(db: Path, run_id: str) -> list[tuple]:
    sql = "SELECT sample_id, tier, persona, category, technique FROM samples WHERE run_id = ?"
    return query(db, sql, run_id)


def test_plan_field_filters_keep_only_matching_records(forge, tmp_path):
    db, run_id, _ = forge
    rows = samples(db, run_id)
    for flag, column in (("--tier", 1), ("--persona", 2), ("--category", 3), ("--technique", 4)):
        values = sorted({r[column] for r in rows})
        wanted = values[:2] if len(values) > 2 else values[:1]
        args = [a for v in wanted for a in (flag, v)]
        records, result = export(db, tmp_path / "x.jsonl", "--run", run_id, *args)
        key = flag.lstrip("-")
        expected = sorted(r[0] for r in rows if r[column] in wanted)
        assert sorted(r["metadata"]["sample_id"] for r in records) == expected and expected
        assert {r["metadata"][key] for r in records} == set(wanted)
        if len(expected) < len(rows):
            assert f"filtered out {len(rows) - len(expected)} of {len(rows)}: " in result.stderr
            assert f"by {key}" in result.stderr


def test_a_filter_value_no_sample_has_is_a_one_line_error_listing_the_real_ones(forge, tmp_path):
    db, run_id, _ = forge
    result = invoke("export", "--db", db, "--run", run_id, "--out", tmp_path / "x.jsonl", "--tier", "edg")
    assert result.exit_code == 2
    assert "--tier 'edg' matches no sample" in result.stderr and "direct" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    bad = invoke("export", "--db", db, "--out", tmp_path / "x.jsonl", "--min-score", "fluency=4")
    assert bad.exit_code == 2 and "naturalness" in bad.stderr


def test_min_score_on_every_dimension_or_one(forge, tmp_path):
    db, run_id, _ = forge
    everything, _ = export(db, tmp_path / "all.jsonl", "--run", run_id)
    natural = {r["metadata"]["sample_id"]: r["metadata"]["critic_scores"]["naturalness"] for r in everything}
    assert set(natural.values()) == {3, 4, 5}
    four, result = export(db, tmp_path / "four.jsonl", "--run", run_id, "--min-score", "4")
    assert {r["metadata"]["sample_id"] for r in four} == {s for s, n in natural.items() if n >= 4}
    assert "by min-score" in result.stderr
    five, _ = export(db, tmp_path / "five.jsonl", "--run", run_id, "--min-score", "naturalness=5")
    assert {r["metadata"]["sample_id"] for r in five} == {s for s, n in natural.items() if n == 5}
    assert all(min(r["metadata"]["critic_scores"].values()) >= 5 for r in five)


def test_since_and_until_select_by_when_the_sample_finished(forge, tmp_path):
    db, run_id, _ = forge
    today = dt.datetime.now(dt.UTC).date()
    kept, _ = export(db, tmp_path / "a.jsonl", "--run", run_id, "--since", today - dt.timedelta(days=1),
                     "--until", today)  # fmt: skip
    assert len(kept) == 12  # a bare --until date includes that day
    later, result = export(db, tmp_path / "b.jsonl", "--run", run_id, "--since", today + dt.timedelta(days=1))
    assert later == [] and "12 by since" in result.stderr
    empty_hf = invoke("export", "--db", db, "--run", run_id, "--out", tmp_path / "hf", "--format", "hf",
                      "--since", today + dt.timedelta(days=1))  # fmt: skip
    assert empty_hf.exit_code == 2 and "nothing was written" in empty_hf.stderr
    last = query(db, "SELECT sample_id, max(ts) FROM events WHERE run_id = ? AND sample_id IS NOT NULL "
                 "GROUP BY 1 ORDER BY 2", run_id)  # fmt: skip
    cutoff = last[6][1]
    early, _ = export(db, tmp_path / "c.jsonl", "--run", run_id, "--until", cutoff.isoformat())
    assert {r["metadata"]["sample_id"] for r in early} == {s for s, ts in last if ts < cutoff}
    assert 0 < len(early) < 12
    bad = invoke("export", "--db", db, "--out", tmp_path / "d.jsonl", "--since", "yesterday")
    assert bad.exit_code == 2 and "--since 'yesterday'" in bad.stderr


def test_runs_default_to_the_latest_and_take_several_or_all(forge, tmp_path):
    db, first, second = forge
    latest, result = export(db, tmp_path / "l.jsonl")
    assert {r["metadata"]["run_id"] for r in latest} == {second} and f"of {second} to" in result.stdout
    both, _ = export(db, tmp_path / "b.jsonl", "--run", first, "--run", second)
    every, _ = export(db, tmp_path / "e.jsonl", "--run", "all")
    assert len(both) == len(every) == 15
    assert {r["metadata"]["run_id"] for r in every} == {first, second}
    bad = invoke("export", "--db", db, "--out", tmp_path / "x.jsonl", "--run", "run-nope")
    assert bad.exit_code == 2 and "--run run-nope: no such run" in bad.stderr


@pytest.mark.skipif(
    importlib.util.find_spec("teacherforge.retrieval.redact") is None,
    reason="retrieval/redact.py not present",
)
def test_redact_pii_masks_a_planted_email_in_every_format(forge, tmp_path):
    db, run_id, _ = forge
    plain, _ = export(db, tmp_path / "plain.jsonl", "--run", run_id)
    assert EMAIL in json.dumps(plain)
    for fmt in ("openai", "sharegpt", "alpaca"):
        out = tmp_path / f"{fmt}.jsonl"
        records, result = export(db, out, "--run", run_id, "--format", fmt, "--redact-pii")
        text = json.dumps(records)
        assert EMAIL not in text and "jane.doe" not in text and len(records) == len(plain)
        assert "redacted" in result.stderr
    result = invoke("export", "--db", db, "--run", run_id, "--out", tmp_path / "hf", "--format", "hf",
                    "--redact-pii", "--split", "1,0,0")  # fmt: skip
    assert result.exit_code == 0, result.output
    datasets = pytest.importorskip("datasets")
    parquet = tmp_path / "hf" / "parquet"
    rows = datasets.load_dataset("parquet", data_dir=str(parquet), cache_dir=str(tmp_path))
    text = json.dumps(rows["train"].to_list())
    assert EMAIL not in text and len(rows["train"]) == len(plain)


def test_a_sample_that_failed_before_its_first_turn_is_counted_as_left_out(ingested_template, tmp_path):
    """Every sample of the run is accounted for: one whose first question never came has nothing to
    export and is reported under "no turns" (it used to be left out of the count)."""
    db = tmp_path / "forge.duckdb"
    shutil.copy(ingested_template, db)
    model = GoodModel()
    # the second sample's first question: every attempt gets a reply that is not a UserMessage
    model.overrides["UserMessage"] = lambda body, n: {"nothing": "here"} if 1 <= n <= 3 else None
    one_turn = {**PLAN, "min_user_turns": 1, "max_user_turns": 1, "hard_negative_rate": 0}
    with StubServer(model) as stub:
        summary = run_generation(db, stub.url, n=4, seed=2, top_k=1, plan=one_turn, concurrency=1)
    assert (summary.accepted, summary.failed) == (3, 1)
    (failed,) = query(db, "SELECT sample_id FROM samples WHERE status = 'failed'")[0]
    assert query(db, "SELECT count(*) FROM turns WHERE sample_id = ?", failed)[0][0] == 0
    records, result = export(db, tmp_path / "x.jsonl", "--run", summary.run_id)
    assert len(records) == 3 and failed not in {r["metadata"]["sample_id"] for r in records}
    assert "filtered out 1 of 4: 1 by no turns" in result.stderr
