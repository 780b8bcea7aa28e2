"""Request guards: loopback Host names, the token, cross-site POSTs, and headers that forbid scripts.

Why each: a page on any web site can make the browser send requests to 127.0.0.1, and a DNS name
re-bound to 127.0.0.1 can even read the answers. So, bound to loopback, only loopback Host names
are served; elsewhere every request needs the token (header, cookie, or ``?token=`` once). A POST
must come from our own origin (Origin and Sec-Fetch-Site), be JSON (which no cross-site form can
send) or a form carrying this process's CSRF token (checked by the route). The Content-Security-
Policy allows only our own inline script (a nonce per response) and no other source at all, so
even a mistake in escaping could not run a document's ``<script>``.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from teacherforge.ui.settings import UiSettings, is_loopback

COOKIE = "tf_ui_token"
FORM = "application/x-www-form-urlencoded"
SAFE_METHODS = ("GET", "HEAD")
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; script-src 'nonce-{nonce}'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")  # fmt: skip

Next = Callable[[Request], Awaitable[Response]]


def _refuse(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    return PlainTextResponse(message, status_code=status)


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def guard(settings: UiSettings) -> Callable[[Request, Next], Awaitable[Response]]:
    async def middleware(request: Request, call_next: Next) -> Response:
        host = request.headers.get("host", "")
        if settings.token is None and not is_loopback(_host_name(host)):
            return _refuse(request, 421, f"this UI answers only to 127.0.0.1/localhost, not '{host}'")
        if settings.token is not None:
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            given = request.query_params.get("token")
            if same(given, settings.token):  # once from a link: keep it in a cookie, drop it from the URL
                rest = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
                response = RedirectResponse(request.url.path + (f"?{rest}" if rest else ""), status_code=303)
                response.set_cookie(COOKIE, settings.token, httponly=True, samesite="strict")
                return response
            if not (same(bearer, settings.token) or same(request.cookies.get(COOKIE), settings.token)):
                return _refuse(request, 401, "a token is required: open the link with ?token=… or send "
                                             "'Authorization: Bearer …'")  # fmt: skip
        if request.method not in SAFE_METHODS:
            origin = request.headers.get("origin")
            if origin is not None and origin != f"{request.url.scheme}://{host}":
                return _refuse(request, 403, f"cross-site request refused (Origin {origin})")
            if request.headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
                return _refuse(request, 403, "cross-site request refused (Sec-Fetch-Site)")
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind not in ("application/json", FORM):
                return _refuse(request, 415, "send application/json (or the page's own form)")
        request.state.nonce = secrets.token_urlsafe(16)
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP.format(nonce=request.state.nonce)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-store"
        return response

    return middleware
