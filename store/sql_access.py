"""The read-only SQL surface users query (`teacherforge sql`): lock-down, queries, parquet output.

Kept in store/ with the views it reads, so every SQL statement the project sends lives here.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

TABLES_QUERY = (
    "SELECT table_name AS name, lower(table_type) AS kind "
    "FROM information_schema.tables ORDER BY table_type, table_name"
)


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Read-only covers the file; no file access and locked settings stop ATTACH of another database
    read-write, COPY ... TO, INSTALL/LOAD, and turning either back on."""
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def run_query(con: duckdb.DuckDBPyConnection, query: str) -> tuple[list[str], list[str], list[tuple]]:
    """Columns, DuckDB type names and rows; a statement without a result gives no columns."""
    relation = con.sql(query)
    if relation is None:
        return [], [], []
    return relation.columns, [str(t) for t in relation.types], relation.fetchall()


def describe_query(name: str) -> str:
    """The shell's ``.schema NAME``."""
    return f"DESCRIBE {name}"


def quote_identifier(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def write_parquet(columns: list[str], types: list[str], rows: list[tuple], path: Path) -> None:
    """Through a private in-memory DuckDB: the query's own connection has no file access.

    Raises ``duckdb.Error`` when the file cannot be written.
    """
    names: list[str] = []
    for column in columns:  # 'select 1, 1' has two columns named 1; a table cannot
        name, n = column, 1
        while name in names:
            n += 1
            name = f"{column}_{n}"
        names.append(name)
    mem = duckdb.connect()
    try:
        spec = ", ".join(
            quote_identifier(name) + (" VARCHAR" if kind.strip('"') == "NULL" else f" {kind}")
            for name, kind in zip(names, types, strict=True)
        )
        mem.execute(f"CREATE TABLE result ({spec or 'empty VARCHAR'})")
        if rows:
            appender = mem.appender("result")
            appender.append_rows(rows)
            appender.flush()
        target = str(path).replace("'", "''")
        mem.execute(f"COPY result TO '{target}' (FORMAT parquet)")
    finally:
        mem.close()


def runs_table(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """`teacherforge runs`: one row per run from the ``runs`` view."""
    return con.execute(
        "SELECT run_id, status, target, accepted, rejected, failed, config_hash, started_at, finished_at "
        "FROM runs ORDER BY started_at"
    )


def event_count(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT count(*) FROM events").fetchall()[0][0]
