"""``teacherforge ui``: review and debug the event log in a browser (docs/ui.md).

The command only checks its flags and serves; the app lives in ui/. Binding anywhere but loopback
needs a token, checked before a socket opens.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from teacherforge.cli.common import DEFAULT_DB, DbOption, app, err, fail

TOKEN_ENV = "TEACHERFORGE_UI_TOKEN"


@app.command()
def ui(
    db: DbOption = DEFAULT_DB,
    host: Annotated[
        str, typer.Option(help="Interface to bind; anything but loopback needs --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: any free port).")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(help=f"Required by every request (header, cookie or ?token=); or ${TOKEN_ENV}."),
    ] = None,
    reviewer: Annotated[
        str | None, typer.Option(help="Name recorded with each decision (default: $USER).")
    ] = None,
    price_in: Annotated[float, typer.Option(help="USD per 1M input tokens, for the dashboard's cost.")] = 0.0,
    price_out: Annotated[float, typer.Option(help="USD per 1M output tokens.")] = 0.0,
) -> None:
    """Browse samples, read each conversation with its chunks and events, approve/reject/edit/tag them."""
    from teacherforge.ui.settings import UiSettings, UnsafeBind

    if not db.exists():
        fail(f"{db}: no such database; run 'teacherforge ingest' and 'teacherforge run' first, or check --db")
    options = {"reviewer": reviewer} if reviewer else {}
    try:
        settings = UiSettings(db=db, host=host, port=port, token=token or os.environ.get(TOKEN_ENV) or None,
                              price_in=price_in, price_out=price_out, **options)  # fmt: skip
    except UnsafeBind as exc:
        fail(str(exc))
    try:
        from teacherforge.ui.server import serve
    except ImportError as exc:  # fastapi/uvicorn come with the package's web dependencies
        fail(f"teacherforge ui needs FastAPI and uvicorn, which this install lacks ({exc})")

    shown = f"[{host}]" if ":" in host else host
    suffix = "/?token=…" if settings.token else "/"
    err.print(f"teacherforge ui: http://{shown}:{port}{suffix} on {db} (Ctrl-C stops)", highlight=False)
    serve(settings)
