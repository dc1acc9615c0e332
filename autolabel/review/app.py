"""The review web app (FastAPI): assembles auth, routes and the review queue.

:func:`create_app` opens the workspace, gives each server thread its own connection and
:class:`~autolabel.review.queue.ReviewQueue`, and mounts :mod:`autolabel.review.routes` behind
the identity check of :mod:`autolabel.review.auth`. Its options are the ``review`` config
section, passed in by the caller: the app never reads the workspace config. Serving lives in
:mod:`autolabel.review.server`.

This module imports FastAPI at import time; the CLI imports it only inside ``autolabel
review``, so ``import autolabel.cli`` stays light.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from autolabel.errors import (
    AuthError,
    AutolabelError,
    ConflictError,
    ImageError,
    NotFoundError,
)
from autolabel.review.auth import check_bind, identity_dependency, is_loopback, origin_problem
from autolabel.review.previews import PreviewCache
from autolabel.review.queue import ReviewQueue
from autolabel.review.routes import STATIC_DIR, RouteSettings, build_router

if TYPE_CHECKING:
    from autolabel.config import ExportConfig, ReviewConfig
    from autolabel.store.db import Workspace

__all__ = ["DEFAULT_MAX_BODY_BYTES", "STATIC_DIR", "create_app"]

DEFAULT_MAX_BODY_BYTES = 64 * 1024
MAX_DETAIL_CHARS = 300
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'; "
        b"base-uri 'none'; form-action 'self'; object-src 'none'",
    ),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
]


def _status_for(exc: AutolabelError) -> int:
    if isinstance(exc, (NotFoundError, ImageError)):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, AuthError):
        return 401
    return 400


class _BodyLimit:
    """ASGI middleware: requests with a body over ``max_bytes`` get 413 before any work."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await self._reject(send)
                    return
        seen = 0
        max_bytes = self.max_bytes

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    raise HTTPException(413, f"request body: expected <= {max_bytes} bytes")
            return message

        await self.app(scope, limited, send)

    async def _reject(self, send: Any) -> None:
        body = json.dumps({"detail": f"request body: expected <= {self.max_bytes} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _Guard:
    """ASGI middleware: refuse cross-origin writes (403) and add anti-framing headers.

    A page on another ``127.0.0.1`` port is *same-site*, so the ``SameSite`` token cookie
    goes along with its requests; only the ``Origin`` (and ``Sec-Fetch-Site``) header tells
    it apart from the review page. See :func:`autolabel.review.auth.origin_problem`.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        problem = origin_problem(
            scope["method"],
            scope.get("scheme", "http"),
            {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])},
        )
        if problem is not None:
            await JSONResponse({"detail": problem}, status_code=403)(
                scope, receive, send_with_headers
            )
            return
        await self.app(scope, receive, send_with_headers)


def _validation_detail(exc: RequestValidationError) -> str:
    """One short line naming the bad fields, without echoing the input (which may be huge,
    or ``inf``, which JSON cannot carry)."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    text = "; ".join(parts) or "invalid request"
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 3] + "..."


class _Queues:
    """One connection (and :class:`ReviewQueue`) per server thread; all closed at shutdown."""

    def __init__(self, ws: Workspace, lease_seconds: float) -> None:
        self.ws = ws
        self.lease_seconds = lease_seconds
        self._local = threading.local()
        self._conns: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self) -> ReviewQueue:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.ws.connect()
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return ReviewQueue(self.ws, lease_seconds=self.lease_seconds, conn=conn)

    def close(self) -> None:
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self.ws.close()


def create_app(
    workspace: str | Path,
    review: ReviewConfig | None = None,
    *,
    export: ExportConfig | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    static_dir: str | Path | None = None,
) -> Any:
    """Build the FastAPI app for a workspace.

    Args:
        workspace: the workspace folder.
        review: the ``review`` config section: ``host`` (anything but loopback needs
            reviewers), ``lease_seconds``, ``preview_max_side`` (default: its defaults).
        export: the ``export`` section; its ``size``/``resize`` give the upscale factors
            the gallery shows (default: its defaults).
        max_body_bytes: larger request bodies get 413.
        static_dir: folder with index.html/app.js/app.css (default: the package's).

    Raises:
        AuthError: non-loopback ``host`` and no reviewer tokens.
        WorkspaceError: not a workspace.
    """
    from autolabel.config import ExportConfig, ReviewConfig
    from autolabel.store import Workspace

    cfg = review if review is not None else ReviewConfig()
    exp = export if export is not None else ExportConfig()
    ws = Workspace.open(workspace)
    queues = _Queues(ws, float(cfg.lease_seconds))
    try:
        check_bind(cfg.host, queues().has_reviewers())
    except BaseException:
        queues.close()
        raise
    settings = RouteSettings(
        lease_seconds=float(cfg.lease_seconds),
        preview_max_side=int(cfg.preview_max_side),
        static_root=Path(static_dir).resolve() if static_dir else STATIC_DIR,
        previews=PreviewCache(ws.path / "cache" / "review", max_side=int(cfg.preview_max_side)),
        workspace_name=ws.path.name,
        export_size=int(exp.size),
        export_resize=str(exp.resize),
    )
    app = FastAPI(
        title="autolabel review",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=_lifespan(queues.close),
    )
    app.state.workspace = ws
    app.state.lease_seconds = settings.lease_seconds
    app.add_middleware(_BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(_Guard)  # outermost: headers on every answer, 413s included

    @app.exception_handler(AutolabelError)
    async def _library_error(request: Request, exc: AutolabelError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=_status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc)}, status_code=422)

    identity = identity_dependency(queues, loopback=is_loopback(cfg.host))
    app.include_router(build_router(queues, identity, settings))
    return app


def _lifespan(close: Callable[[], None]) -> Any:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        close()

    return lifespan
