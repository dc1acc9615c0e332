"""The review web app (FastAPI) and a small uvicorn runner.

Routes (JSON unless noted; every route needs a reviewer token once tokens exist):

- ``GET /`` the page; ``GET /static/{app.js,app.css}`` its assets (a fixed list, no paths).
- ``GET /api/config`` who am I, auth mode, lease length.
- ``POST /api/next`` claim the next item; ``GET /api/held`` items I hold (after a reload).
- ``POST /api/decide`` accept / adjust / reject / caption / skip; ``POST /api/undo``.
- ``POST /api/renew`` keep my leases; ``POST /api/release`` give items back.
- ``GET /api/stats`` done / remaining counts; ``GET /api/items/{id}`` one item.
- ``GET /api/images/{id}`` the image by workspace id (JPEG preview, cached, ETag).

This module imports FastAPI at import time; the CLI imports it only inside ``autolabel
review``, so ``import autolabel.cli`` stays light.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from autolabel.errors import (
    AuthError,
    AutolabelError,
    ConflictError,
    ImageError,
    InputError,
    NotFoundError,
)

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
DEFAULT_MAX_BODY_BYTES = 64 * 1024
TOKEN_COOKIE = "autolabel_token"
REVIEWER_HEADER = "x-reviewer"
IMAGE_CACHE_SECONDS = 24 * 3600


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8765`` -> ``::1``)."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def check_bind(host: str, n_reviewers: int) -> None:
    """Refuse to serve beyond loopback without reviewer tokens.

    Raises:
        AuthError: ``host`` is not loopback and no reviewer exists.
    """
    if not is_loopback(host) and n_reviewers == 0:
        raise AuthError(
            f"host {host}: binding beyond 127.0.0.1 needs reviewer tokens; create one with "
            "`autolabel reviewers add WORKSPACE NAME` (got 0 reviewers)"
        )


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


class Identity:
    """Who sends a request: ``mode`` is ``token`` (reviewer from a token) or ``name``."""

    def __init__(self, reviewer: str | None, mode: str) -> None:
        self.reviewer = reviewer
        self.mode = mode

    def require(self) -> str:
        if self.reviewer is None:
            raise HTTPException(
                401,
                "reviewer: expected a name in the X-Reviewer header (the page asks for it), "
                "got none",
            )
        return self.reviewer


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DecideBody(Strict):
    item_id: int
    action: str = Field(max_length=16)
    box: list[float] | None = Field(None, min_length=4, max_length=4)
    caption: str | None = Field(None, max_length=4000)
    reason: str | None = Field(None, max_length=400)


class UndoBody(Strict):
    decision_id: int | None = None


class ItemsBody(Strict):
    item_ids: list[int] | None = Field(None, max_length=1000)


def create_app(
    workspace: str | Path,
    *,
    host: str = "127.0.0.1",
    lease_seconds: float | None = None,
    preview_max_side: int | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    static_dir: str | Path | None = None,
) -> Any:
    """Build the FastAPI app for a workspace.

    Args:
        workspace: the workspace folder.
        host: the address the server will bind; anything but loopback needs reviewers.
        lease_seconds: claim length (default: the workspace config, ``review.lease_seconds``).
        preview_max_side: longest side of served images (default: ``review.preview_max_side``).
        max_body_bytes: larger request bodies get 413.
        static_dir: folder with index.html/app.js/app.css (default: the package's).

    Raises:
        AuthError: non-loopback ``host`` and no reviewer tokens.
        WorkspaceError: not a workspace.
    """
    from autolabel.review.queue import ReviewQueue
    from autolabel.store import Workspace
    from autolabel.store import queue as sq

    ws = Workspace.open(workspace)
    cfg = ws.config().review
    lease = float(lease_seconds if lease_seconds is not None else cfg.lease_seconds)
    preview_side = int(preview_max_side if preview_max_side is not None else cfg.preview_max_side)
    static_root = Path(static_dir).resolve() if static_dir else STATIC_DIR
    check_bind(host, sq.count_reviewers(ws))
    loopback = is_loopback(host)
    cache_dir = ws.path / "cache" / "review"

    local = threading.local()
    conns: list[Any] = []
    conns_lock = threading.Lock()

    def queue() -> ReviewQueue:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = ws.connect()
            local.conn = conn
            with conns_lock:
                conns.append(conn)
        return ReviewQueue(ws, lease_seconds=lease, conn=conn)

    async def identity(request: Request) -> Identity:
        # async: a 50 us indexed lookup is cheaper on the loop than a threadpool hop
        q = queue()
        if loopback:
            # a loopback server answers only loopback Host names (defeats DNS rebinding)
            host_name = _host_name(request.headers.get("host", ""))
            if not is_loopback(host_name):
                raise HTTPException(
                    400, f"host: expected 127.0.0.1, localhost or [::1], got {host_name!r}"
                )
        tokens = sq.count_reviewers(ws, conn=q.conn) > 0
        if tokens or not loopback:
            auth = request.headers.get("authorization", "")
            token = (
                (auth[7:].strip() if auth.lower().startswith("bearer ") else "")
                or request.headers.get("x-autolabel-token")
                or request.query_params.get("token")
                or request.cookies.get(TOKEN_COOKIE)
            )
            if not token:
                raise HTTPException(
                    401,
                    "this review server needs a reviewer token: open the link printed by "
                    "`autolabel reviewers add` or send 'Authorization: Bearer TOKEN'",
                )
            name = sq.reviewer_for_token(ws, token, conn=q.conn)
            if name is None:
                raise HTTPException(401, "reviewer token: unknown or revoked token")
            return Identity(name, "token")
        # header only: other sites cannot set it without a CORS preflight, which fails
        name = request.headers.get(REVIEWER_HEADER) or None
        if name is not None:
            try:
                sq.check_reviewer_name(name)
            except InputError as exc:
                raise HTTPException(400, str(exc)) from None
        return Identity(name, "name")

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        with conns_lock:
            for conn in conns:
                conn.close()
            conns.clear()
        ws.close()

    app = FastAPI(
        title="autolabel review",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.workspace = ws
    app.state.lease_seconds = lease
    app.add_middleware(_BodyLimit, max_bytes=max_body_bytes)

    @app.exception_handler(AutolabelError)
    async def _library_error(request: Request, exc: AutolabelError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=_status_for(exc))

    def _static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(404, "not found")
        path = static_root / name
        try:
            real = path.resolve(strict=True)
        except OSError:
            raise HTTPException(404, "not found") from None
        if real.parent != static_root or not real.is_file():
            raise HTTPException(404, "not found")
        return FileResponse(
            real, media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"}
        )

    @app.get("/", include_in_schema=False)
    def index(request: Request, ident: Identity = Depends(identity)) -> Response:
        resp = _static("index.html")
        token = request.query_params.get("token")
        if ident.mode == "token" and token:
            resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
        return resp

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str, ident: Identity = Depends(identity)) -> Response:
        return _static(name)

    @app.get("/api/config")
    def config(ident: Identity = Depends(identity)) -> dict[str, Any]:
        return {
            "auth": ident.mode,
            "reviewer": ident.reviewer,
            "lease_seconds": lease,
            "preview_max_side": preview_side,
            "workspace": ws.path.name,
        }

    @app.post("/api/next")
    def next_item(ident: Identity = Depends(identity)) -> dict[str, Any]:
        q = queue()
        return {"item": q.next(ident.require())}

    @app.get("/api/held")
    def held(ident: Identity = Depends(identity)) -> dict[str, Any]:
        return {"items": queue().held(ident.require())}

    @app.get("/api/items/{item_id}")
    def item(item_id: str, ident: Identity = Depends(identity)) -> dict[str, Any]:
        ident.require()
        if not item_id.isdigit():
            raise HTTPException(404, "not found")
        return {"item": queue().item(int(item_id))}

    @app.post("/api/decide")
    def decide(body: DecideBody, ident: Identity = Depends(identity)) -> dict[str, Any]:
        reviewer = ident.require()
        decision_id = queue().decide(
            reviewer,
            body.item_id,
            body.action,
            box=body.box,
            caption=body.caption,
            reason=body.reason,
        )
        return {"decision_id": decision_id, "item_id": body.item_id, "action": body.action}

    @app.post("/api/undo")
    def undo(body: UndoBody, ident: Identity = Depends(identity)) -> dict[str, Any]:
        return queue().undo(ident.require(), decision_id=body.decision_id)

    @app.post("/api/renew")
    def renew(body: ItemsBody, ident: Identity = Depends(identity)) -> dict[str, Any]:
        n = queue().renew(ident.require(), body.item_ids)
        return {"renewed": n, "lease_until": time.time() + lease}

    @app.post("/api/release")
    def release(body: ItemsBody, ident: Identity = Depends(identity)) -> dict[str, Any]:
        return {"released": queue().release(ident.require(), body.item_ids or [])}

    # counting 1M queue rows takes ~0.3 s: reuse the counts for 10x as long as they took
    stats_cache: dict[str, Any] = {"at": 0.0, "ttl": -1.0, "value": None}
    stats_lock = threading.Lock()

    @app.get("/api/stats")
    def stats(ident: Identity = Depends(identity)) -> dict[str, Any]:
        q = queue()
        with stats_lock:
            now = time.monotonic()
            if stats_cache["value"] is None or now - stats_cache["at"] > stats_cache["ttl"]:
                stats_cache["value"] = sq.queue_stats(ws, conn=q.conn)
                stats_cache["at"] = time.monotonic()
                stats_cache["ttl"] = 10 * (stats_cache["at"] - now)
            out = dict(stats_cache["value"])
        if ident.reviewer is not None:
            out["mine"] = sq.reviewer_done(ws, ident.reviewer, conn=q.conn)
        return out

    @app.get("/api/images/{image_id}")
    def image(
        image_id: str,
        request: Request,
        max_side: int | None = None,
        ident: Identity = Depends(identity),
    ) -> Response:
        if not image_id.isdigit() or len(image_id) > 18:
            raise HTTPException(404, "not found")
        row = sq.image_file(ws, int(image_id), conn=queue().conn)
        side = max_side if max_side and 16 <= max_side < preview_side else preview_side
        version = (row["sha256"] or str(row["mtime_ns"] or 0))[:16]
        etag = f'"{row["id"]}-{version}-{side}"'
        headers = {
            "Cache-Control": f"private, max-age={IMAGE_CACHE_SECONDS}",
            "ETag": etag,
        }
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        path = cache_dir / f"{row['id']}_{version}_{side}.jpg"
        if not path.exists():
            _write_preview(row["path"], path, side)
        return FileResponse(path, media_type="image/jpeg", headers=headers)

    return app


def _write_preview(src: str, dst: Path, max_side: int) -> None:
    """Decode ``src`` (EXIF-corrected RGB), shrink to ``max_side``, write JPEG atomically."""
    from autolabel.imageio import open_image

    im = open_image(src)
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    im.save(tmp, format="JPEG", quality=88)
    os.replace(tmp, dst)


class ReviewServer:
    """uvicorn serving the app in a background thread (tests, notebooks, the benchmark).

    Use as a context manager; ``url`` is set once the socket is bound (port 0 = any free).
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.sock = bind_socket(host, port)
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> ReviewServer:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.time() > deadline:
                raise RuntimeError("review server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    def __enter__(self) -> ReviewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (so the real port is known before serving).

    Raises:
        InputError: the address is in use or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@contextmanager
def serve_in_thread(workspace: str | Path, **options: Any) -> Iterator[ReviewServer]:
    """Start the app for ``workspace`` on 127.0.0.1 (free port) in a thread; stop on exit."""
    host = options.pop("host", "127.0.0.1")
    port = options.pop("port", 0)
    app = create_app(workspace, host=host, **options)
    with ReviewServer(app, host=host, port=port) as server:
        yield server


def serve(
    workspace: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    on_ready: Any = None,
    **options: Any,
) -> None:
    """Run the review app in the foreground until Ctrl-C.

    ``on_ready(url)`` is called once the socket is bound (the CLI prints the URL).
    """
    import uvicorn

    app = create_app(workspace, host=host, **options)
    sock = bind_socket(host, port)
    real_port = int(sock.getsockname()[1])
    shown = f"[{host}]" if ":" in host else host
    if on_ready is not None:
        on_ready(f"http://{shown}:{real_port}/")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
