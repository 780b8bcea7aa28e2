"""`teacherforge sql` cannot change the database, another database or any file, and says why in one line."""

from __future__ import annotations

import hashlib
import json

import duckdb
import pytest
from typer.testing import CliRunner

from teacherforge.cli.app import app

runner = CliRunner()

WRITES = [
    "delete from events",
    "drop table events",
    "update events set type = 'x'",
    "insert into events (event_id) values ('e')",
    "create table t (x int)",
    "create or replace view samples as select 1 as x",
    "alter table events add column y int",
    "select 1; delete from events",
    "attach '{other}' as other (READ_WRITE)",
    "attach '{new}' as fresh",
    "copy events to '{csv}'",
    "export database '{export}'",
    "install httpfs",
    "set enable_external_access = true",
    "set lock_configuration = false",
]


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def other_db(tmp_path):
    path = tmp_path / "other.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create table t (x int)")
    con.close()
    return path


@pytest.mark.parametrize("statement", WRITES)
def test_sql_refuses_every_write_with_one_line_and_leaves_files_alone(db_path, tmp_path, other_db, statement):
    targets = {
        "other": other_db,
        "new": tmp_path / "new.duckdb",
        "csv": tmp_path / "out.csv",
        "export": tmp_path / "export",
    }
    before, other_before = digest(db_path), digest(other_db)
    result = runner.invoke(app, ["sql", statement.format(**targets), "--db", str(db_path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error:") and result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.output
    assert "read-only" in result.stderr
    assert digest(db_path) == before and digest(other_db) == other_before
    assert not any(targets[k].exists() for k in ("new", "csv", "export"))


def test_sql_still_answers_queries_after_refusing(db_path):
    assert runner.invoke(app, ["sql", "delete from chunks", "--db", str(db_path)]).exit_code == 2
    query = "select count(*) as n from chunks"
    result = runner.invoke(app, ["sql", query, "--db", str(db_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["n"] > 0
