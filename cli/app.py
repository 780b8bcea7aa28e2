"""The ``teacherforge`` command line (Typer): each command group lives in its own module.

Contract for scripts (docs/cli.md): ``run`` prints the run id as its first stdout line and, with
``--json``, a final JSON summary line; ``sql``/``replay``/``search`` take ``--format json``; errors
are one line on stderr with a non-zero exit code.
"""

from __future__ import annotations

from teacherforge.cli import (  # noqa: F401  (they register commands)
    check,
    data,
    doctor,
    export,
    merge,
    replay,
    report,
    run,
    serve,
    sql,
    ui,
)
from teacherforge.cli.common import app
from teacherforge.cli.student import register as register_student

register_student(app)

__all__ = ["app"]

if __name__ == "__main__":  # python -m teacherforge.cli.app
    app()
