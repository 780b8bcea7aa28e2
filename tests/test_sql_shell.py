"""`teacherforge sql`: the interactive prompt, and results written as csv, json, parquet or a table."""

from __future__ import annotations

import csv
import json

import duckdb
from conftest import query
from typer.testing import CliRunner

from teacherforge.cli.app import app

runner = CliRunner()
QUERY = "select chunk_id, document, start_char from chunks order by chunk_id limit 5"


def sql(db_path, *args, input=None):
    return runner.invoke(app, ["sql", *args, "--db", str(db_path)], input=input)


def test_prompt_runs_statements_ending_in_semicolon_until_quit(db_path):
    n_chunks = query(db_path, "select count(*) from chunks")[0][0]
    session = "\n".join(
        [
            "select count(*) as n_chunks",  # a statement may span lines
            "from chunks;",
            ".tables",
            ".bogus",
            "delete from chunks;",  # refused, and the prompt goes on
            "select 'still here' as answer;",
            ".quit",
            "select 'after quit' as never;",
        ]
    )
    result = sql(db_path, input=session + "\n")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "n_chunks" in text and str(n_chunks) in text
    assert "samples" in text and "view" in text and "base table" in text  # .tables
    assert "still here" in text and "after quit" not in text
    errors = result.stderr.strip().splitlines()
    assert errors[0].startswith("unknown command '.bogus'")
    assert errors[1].startswith("error:") and "read-only" in errors[1]
    assert query(db_path, "select count(*) from chunks")[0][0] == n_chunks


def test_prompt_ends_at_end_of_input(db_path):
    result = sql(db_path, input="select 42 as answer;\n")
    assert result.exit_code == 0 and "42" in result.stdout


def test_out_writes_csv_json_and_a_table(db_path, tmp_path):
    expected = query(db_path, QUERY)
    assert sql(db_path, QUERY, "--format", "csv", "--out", tmp_path / "a.csv").exit_code == 0
    with (tmp_path / "a.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["chunk_id", "document", "start_char"]
    assert [(r[0], r[1], int(r[2])) for r in rows[1:]] == expected

    result = sql(db_path, QUERY, "--out", tmp_path / "b.json")  # format from the suffix
    assert result.exit_code == 0 and result.stdout == ""
    assert "wrote 5 row(s)" in result.stderr
    records = json.loads((tmp_path / "b.json").read_text())
    assert [(r["chunk_id"], r["document"], r["start_char"]) for r in records] == expected

    assert sql(db_path, QUERY, "--out", tmp_path / "c.txt").exit_code == 0
    table = (tmp_path / "c.txt").read_text()
    assert "chunk_id" in table and expected[0][0] in table and "\x1b[" not in table


def test_out_writes_parquet_with_the_query_types(db_path, tmp_path):
    target = tmp_path / "r.parquet"
    statement = (
        "select chunk_id, start_char, [1, 2] as nums, {'a': 1} as rec, null as nothing, "
        "1 as dup, 2 as dup from chunks order by chunk_id limit 3"
    )
    result = sql(db_path, statement, "--format", "parquet", "--out", target)
    assert result.exit_code == 0, result.output
    con = duckdb.connect()
    try:
        rows = con.execute(f"select * from read_parquet('{target}')").fetchall()
        described = con.execute(f"describe select * from read_parquet('{target}')").fetchall()
        types = {r[0]: r[1] for r in described}
    finally:
        con.close()
    ids = [r[0] for r in query(db_path, "select chunk_id from chunks order by chunk_id limit 3")]
    assert [r[0] for r in rows] == ids and rows[0][2:] == ([1, 2], {"a": 1}, None, 1, 2)
    assert types["start_char"] == "INTEGER" and types["nums"] == "INTEGER[]" and "dup_2" in types


def test_bad_format_and_parquet_without_out_are_one_line_errors(db_path, tmp_path):
    no_out = sql(db_path, QUERY, "--format", "parquet")
    assert no_out.exit_code == 2 and "add --out" in no_out.stderr
    bad = sql(db_path, QUERY, "--format", "xlsx")
    assert bad.exit_code == 2 and "table|csv|json|parquet" in bad.stderr
    missing = sql(db_path, QUERY, "--out", tmp_path / "nope" / "x.csv")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


def test_csv_on_stdout_has_unix_lines_for_shell_capture(db_path):
    """The quickstart reads a sample id with `sql --format csv | tail -n 1`: a trailing \\r broke replay."""
    result = sql(db_path, "select chunk_id from chunks order by 1 limit 2", "--format", "csv")
    assert result.exit_code == 0
    assert "\r" not in result.stdout
    last = result.stdout.splitlines()[-1]
    assert last == query(db_path, "select chunk_id from chunks order by 1 limit 2")[1][0]
