"""Which tables and columns a DuckDB file has.

Why: a file may predate a table or column (written by an older release) or never have been
ingested, and readers must tell those cases apart from an empty table instead of failing on a
missing name.
"""

from __future__ import annotations

import duckdb


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """True if a table (or view) called ``name`` exists in any attached schema."""
    rows = con.execute("SELECT 1 FROM information_schema.tables WHERE table_name = ?", [name]).fetchall()
    return bool(rows)


def has_column(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    """True if ``table`` has a column called ``column``."""
    sql = "SELECT 1 FROM information_schema.columns WHERE table_name = ? AND column_name = ?"
    return bool(con.execute(sql, [table, column]).fetchall())
