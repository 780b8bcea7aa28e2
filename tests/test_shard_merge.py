"""Sharded runs and merge: n shards merged tell the same story as one unsharded run with that run id."""

from __future__ import annotations

import gc
import json
import shutil

import pytest
from conftest import query
from scripted import GoodModel
from stub_server import StubServer
from typer.testing import CliRunner

from teacherforge.cli.app import app
from teacherforge.graph.config import ConfigError, RunConfig
from teacherforge.graph.shard import Shard, parse_shard, plan_hash, shard_jobs, shared_run_id
from teacherforge.store.database import connect
from teacherforge.store.merge import MergeError, merge
from teacherforge.store.verify import verify

runner = CliRunner()
PLAN_COLUMNS = "sample_id, run_id, tier, persona, technique, category, user_turns"


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    gc.collect()  # in-process runs: release their DuckDB handles before another command attaches the file
    return result


def test_shards_are_disjoint_and_cover_the_plan():
    slices = [shard_jobs("run-x", 10, Shard(i, 3)) for i in range(3)]
    ids = [j.sample_id for s in slices for j in s]
    assert sorted(ids) == [f"run-x-{k:05d}" for k in range(10)] and len(set(ids)) == 10
    assert [j.index for j in slices[1]] == [1, 4, 7]


def test_parse_shard_rejects_bad_specs():
    assert parse_shard("2/4") == Shard(2, 4)
    for bad in ("4/4", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def test_plan_hash_ignores_where_and_how_fast():
    base = RunConfig(n=6, seed=3)
    moved = base.model_copy(update={"llm_url": ["http://a/v1", "http://b/v1"], "concurrency": 64})
    assert plan_hash(base) == plan_hash(moved) and shared_run_id(base) == shared_run_id(moved)
    assert plan_hash(base) != plan_hash(base.model_copy(update={"seed": 4}))


def _copies(db_path, tmp_path, *names):
    paths = []
    for name in names:
        path = tmp_path / f"{name}.duckdb"
        shutil.copy(db_path, path)
        paths.append(path)
    return paths


def test_two_shards_merged_equal_one_unsharded_run(db_path, tmp_path):
    whole, a, b = _copies(db_path, tmp_path, "whole", "a", "b")
    common = ["--n", "5", "--seed", "11", "--concurrency", "2", "--model", "stub-model"]
    with StubServer(GoodModel()) as stub:
        first = invoke("run", "--db", a, "--llm-url", stub.url, "--shard", "0/2", *common)
        second = invoke("run", "--db", b, "--llm-url", stub.url, "--shard", "1/2", *common)
        run_id = first.stdout.splitlines()[0]
        assert second.stdout.splitlines()[0] == run_id  # derived from the config, not the clock
        one = invoke("run", "--db", whole, "--llm-url", stub.url, "--run-id", run_id, *common)
    assert first.exit_code == second.exit_code == one.exit_code == 0, one.output
    assert query(a, "SELECT count(*) FROM samples")[0][0] == 3  # indexes 0, 2, 4
    merged = tmp_path / "all.duckdb"
    result = invoke("merge", a, b, "--into", merged, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["runs"][run_id] == {"shards": [0, 1], "count": 2, "missing": [], "status": "finished"}
    plan_sql = f"SELECT {PLAN_COLUMNS} FROM samples ORDER BY sample_id"
    assert query(merged, plan_sql) == query(whole, plan_sql)
    assert len(query(merged, plan_sql)) == 5
    runs = query(merged, "SELECT run_id, status, target, accepted + rejected + failed FROM runs")
    assert runs == [(run_id, "finished", 5, 5)]
    # every chunk once, and the log is consistent (seq per stream, parents, views vs fold)
    assert query(merged, "SELECT count(*) FROM chunks") == query(a, "SELECT count(*) FROM chunks")
    con = connect(merged, read_only=True)
    try:
        assert verify(con) == []
    finally:
        con.close()
    exported = tmp_path / "data.jsonl"
    assert invoke("export", "--db", merged, "--run", run_id, "--out", exported).exit_code == 0


def test_merge_refuses_the_same_shard_twice_and_unrelated_runs(db_path, tmp_path):
    a, b, c, d = _copies(db_path, tmp_path, "a", "b", "c", "d")
    with StubServer(GoodModel()) as stub:
        for path in (a, b):  # shard 0 of one run, generated twice (different event ids)
            invoke("run", "--db", path, "--llm-url", stub.url, "--n", 2, "--shard", "0/2", "--run-id=run-r")
        for path in (c, d):  # two unsharded runs that happen to share an id
            invoke("run", "--db", path, "--llm-url", stub.url, "--n", "1", "--run-id", "run-same")
    with pytest.raises(MergeError, match="run run-r: shard 0 is in more than one file"):
        merge([a, b], tmp_path / "x.duckdb")
    with pytest.raises(MergeError, match="run run-same was started separately"):
        merge([c, d], tmp_path / "y.duckdb")
    assert not (tmp_path / "x.duckdb").exists() and not (tmp_path / "y.duckdb").exists()
    result = invoke("merge", a, a, "--into", tmp_path / "z.duckdb")
    assert result.exit_code == 2 and "given twice" in result.output
    result = invoke("merge", a, "--into", b)
    assert result.exit_code == 2 and "exists" in result.output


def test_merge_of_separate_runs_keeps_both(db_path, tmp_path):
    a, b = _copies(db_path, tmp_path, "a", "b")
    with StubServer(GoodModel()) as stub:
        ra = invoke("run", "--db", a, "--llm-url", stub.url, "--n", "1").stdout.splitlines()[0]
        rb = invoke("run", "--db", b, "--llm-url", stub.url, "--n", "2", "--seed", "5").stdout.splitlines()[0]
    merged = tmp_path / "all.duckdb"
    report = merge([a, b], merged)
    assert report.runs == {} and report.duplicate_events > 0  # the shared ingest events, once
    rows = query(merged, "SELECT run_id, target FROM runs ORDER BY target")
    assert rows == [(ra, 1), (rb, 2)]


def test_merge_refuses_different_corpora(db_path, tmp_path):
    a, b = _copies(db_path, tmp_path, "a", "b")
    con = connect(b)
    con.execute("UPDATE chunks SET text = text || '!' WHERE chunk_id = (SELECT min(chunk_id) FROM chunks)")
    con.close()
    with pytest.raises(MergeError, match="chunks .* differs between"):
        merge([a, b], tmp_path / "x.duckdb")


def test_shard_resume_keeps_to_its_slice(db_path, tmp_path):
    (a,) = _copies(db_path, tmp_path, "a")
    with StubServer(GoodModel()) as stub:
        invoke("run", "--db", a, "--llm-url", stub.url, "--n", "4", "--shard", "1/2", "--run-id", "run-s")
        result = invoke("run", "--db", a, "--llm-url", stub.url, "--resume", "run-s")
    assert result.exit_code == 0, result.output
    assert "0 to (re)generate" in result.output
    ids = [r[0] for r in query(a, "SELECT sample_id FROM samples ORDER BY 1")]
    assert ids == ["run-s-00001", "run-s-00003"]
