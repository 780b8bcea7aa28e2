"""The ``teacherforge`` command line (Typer): each command group lives in its own module.

Contract for scripts (docs/cli.md): ``run`` prints the run id as its first stdout line and, with
``--json``, a final JSON summary line; ``sql``/``replay``/``search`` take ``--format json``; errors
are one line on stderr with a non-zero exit code.
"""

from __future__ import annotations

from teacherforge.graph import (  # noqa: F401  (they register commands)
    cli_data,
    cli_export,
    cli_inspect,
    cli_merge,
    cli_report,
    cli_run,
)
from teacherforge.graph.cli_common import app
from teacherforge.graph.cli_student import register as register_student

register_student(app)

__all__ = ["app"]

if __name__ == "__main__":  # python -m teacherforge.graph.cli
    app()
