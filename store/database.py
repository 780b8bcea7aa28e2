"""Opening the project's DuckDB file: one file holds the event log and the chunk index.

One file keeps a dataset and its provenance together (copy one file, query everything with joins
between retrievals and chunk text). DuckDB lets only one process open a file for writing, so the
errors for a locked or missing path are translated into one-line messages that say what to do.
"""

from __future__ import annotations

from pathlib import Path

import duckdb


class DatabaseError(Exception):
    """A database path the user gave cannot be used; the message says why and what to do."""


def connect(path: str | Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    path = Path(path)
    if str(path) != ":memory:":
        if not path.parent.exists():
            raise DatabaseError(
                f"{path}: folder {path.parent} does not exist; create it or pick another --db"
            )
        if read_only and not path.exists():
            raise DatabaseError(f"{path}: no such database; run 'teacherforge ingest' first or check --db")
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" in text.lower():
            raise DatabaseError(
                f"{path}: in use by another teacherforge process (DuckDB allows one writer); "
                "wait for it to finish or use a copy of the file"
            ) from exc
        raise DatabaseError(f"{path}: cannot open ({text.splitlines()[0]})") from exc
