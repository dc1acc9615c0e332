"""The review app's routes; they talk only to the review queue (:class:`ReviewQueue`).

Routes (JSON unless noted; each needs the identity :mod:`autolabel.review.auth` resolves):

- ``GET /`` the page; ``GET /static/{app.js,app.css}`` its assets (a fixed list, no paths).
- ``GET /api/config`` who am I, auth mode, lease length.
- ``POST /api/next`` claim the next item; ``GET /api/held`` items I hold (after a reload).
- ``POST /api/decide`` accept / adjust / reject / caption / skip; ``POST /api/undo``.
- ``POST /api/renew`` keep my leases; ``POST /api/release`` give items back.
- ``GET /api/stats`` done / remaining counts; ``GET /api/items/{id}`` one item.
- ``GET /gallery`` the spot-check page; ``GET /api/gallery`` auto-accepted boxes (filters:
  phrase, score range; with the precision estimate); ``POST /api/gallery/flag`` /
  ``unflag`` mark one wrong (an audit outcome) or take that back.
- ``GET /api/images/{id}?max_side=N`` the image by workspace id: a JPEG preview whose side is
  ``N`` rounded up to one of a few fixed sizes (cached, bounded; ETag).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from autolabel.review.auth import TOKEN_COOKIE, Identity
from autolabel.review.previews import PreviewCache
from autolabel.review.queue import ReviewQueue

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "gallery.html": "text/html; charset=utf-8",
    "gallery.js": "text/javascript; charset=utf-8",
}
IMAGE_CACHE_SECONDS = 24 * 3600


MAX_ID = 2**63 - 1
"""Largest id SQLite stores (INTEGER is 64-bit signed); larger ids are refused with 422."""

Id = Annotated[int, Field(strict=True, ge=0, le=MAX_ID)]
Coord = Annotated[float, Field(allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DecideBody(Strict):
    item_id: Id
    action: str = Field(max_length=16)
    box: list[Coord] | None = Field(None, min_length=4, max_length=4)
    caption: str | None = Field(None, max_length=4000)
    reason: str | None = Field(None, max_length=400)


class UndoBody(Strict):
    decision_id: Id | None = None


class ItemsBody(Strict):
    item_ids: list[Id] | None = Field(None, max_length=1000)


class FlagBody(Strict):
    proposal_id: Id


class UnflagBody(Strict):
    decision_id: Id


def path_id(text: str) -> int:
    """An id from a URL path segment: 1-18 ASCII digits, else HTTP 404.

    ``str.isdigit`` alone accepts ``"²"`` and other Unicode digits that ``int`` refuses, and
    19+ digits can exceed SQLite's 64-bit integers.
    """
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise HTTPException(404, "not found")
    return int(text)


@dataclass(frozen=True)
class RouteSettings:
    """What the routes need besides the queue.

    Attributes:
        lease_seconds: claim length (reported to the page; the queue enforces it).
        preview_max_side: longest side of served images.
        static_root: folder with index.html/app.js/app.css.
        previews: the preview cache (fixed sizes, bounded decodes and disk use).
        workspace_name: shown in the page.
        export_size: the export's ``size`` (the gallery shows each box's upscale factor).
        export_resize: the export's ``resize`` mode.
    """

    lease_seconds: float
    preview_max_side: int
    static_root: Path
    previews: PreviewCache
    workspace_name: str
    export_size: int = 448
    export_resize: str = "fit"


def build_router(
    queue: Callable[[], ReviewQueue],
    identity: Callable[[Request], Awaitable[Identity]],
    settings: RouteSettings,
) -> APIRouter:
    """All routes of the review app.

    Args:
        queue: returns this thread's :class:`ReviewQueue` (one connection per thread).
        identity: the dependency that authenticates a request.
        settings: lease length, preview size, static and cache folders.
    """
    router = APIRouter()
    who = Depends(identity)
    _page_routes(router, who, settings)
    _queue_routes(router, queue, who, settings)
    _stats_route(router, queue, who)
    _gallery_routes(router, queue, who, settings)
    _image_route(router, queue, who, settings)
    return router


def _static(root: Path, name: str) -> Response:
    if name not in STATIC_FILES:
        raise HTTPException(404, "not found")
    try:
        real = (root / name).resolve(strict=True)
    except OSError:
        raise HTTPException(404, "not found") from None
    if real.parent != root or not real.is_file():
        raise HTTPException(404, "not found")
    return FileResponse(real, media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})


def _page_routes(router: APIRouter, who: Any, settings: RouteSettings) -> None:
    @router.get("/", include_in_schema=False)
    def index(request: Request, ident: Identity = who) -> Response:
        resp = _static(settings.static_root, "index.html")
        token = request.query_params.get("token")
        if ident.mode == "token" and token:
            resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
        return resp

    @router.get("/gallery", include_in_schema=False)
    def gallery_page(ident: Identity = who) -> Response:
        return _static(settings.static_root, "gallery.html")

    @router.get("/static/{name}", include_in_schema=False)
    def static(name: str, ident: Identity = who) -> Response:
        return _static(settings.static_root, name)

    @router.get("/api/config")
    def config(ident: Identity = who) -> dict[str, Any]:
        return {
            "auth": ident.mode,
            "reviewer": ident.reviewer,
            "lease_seconds": settings.lease_seconds,
            "preview_max_side": settings.preview_max_side,
            "workspace": settings.workspace_name,
        }


def _queue_routes(
    router: APIRouter, queue: Callable[[], ReviewQueue], who: Any, settings: RouteSettings
) -> None:
    @router.post("/api/next")
    def next_item(ident: Identity = who) -> dict[str, Any]:
        return {"item": queue().next(ident.require())}

    @router.get("/api/held")
    def held(ident: Identity = who) -> dict[str, Any]:
        return {"items": queue().held(ident.require())}

    @router.get("/api/items/{item_id}")
    def item(item_id: str, ident: Identity = who) -> dict[str, Any]:
        ident.require()
        return {"item": queue().item(path_id(item_id))}

    @router.post("/api/decide")
    def decide(body: DecideBody, ident: Identity = who) -> dict[str, Any]:
        decision_id = queue().decide(
            ident.require(),
            body.item_id,
            body.action,
            box=body.box,
            caption=body.caption,
            reason=body.reason,
        )
        return {"decision_id": decision_id, "item_id": body.item_id, "action": body.action}

    @router.post("/api/undo")
    def undo(body: UndoBody, ident: Identity = who) -> dict[str, Any]:
        return queue().undo(ident.require(), decision_id=body.decision_id)

    @router.post("/api/renew")
    def renew(body: ItemsBody, ident: Identity = who) -> dict[str, Any]:
        n = queue().renew(ident.require(), body.item_ids)
        return {"renewed": n, "lease_until": time.time() + settings.lease_seconds}

    @router.post("/api/release")
    def release(body: ItemsBody, ident: Identity = who) -> dict[str, Any]:
        return {"released": queue().release(ident.require(), body.item_ids or [])}


def _gallery_routes(
    router: APIRouter, queue: Callable[[], ReviewQueue], who: Any, settings: RouteSettings
) -> None:
    @router.get("/api/gallery")
    def gallery(
        phrase: str | None = Query(None, max_length=200),
        min_score: float | None = Query(None, ge=-1e9, le=1e9),
        max_score: float | None = Query(None, ge=-1e9, le=1e9),
        order: str = Query("upscale", max_length=16),
        offset: int = Query(0, ge=0, le=10_000_000),
        limit: int = Query(60, ge=1, le=500),
        ident: Identity = who,
    ) -> dict[str, Any]:
        ident.require()
        return queue().gallery(
            phrase=phrase or None,
            min_score=min_score,
            max_score=max_score,
            order=order,
            offset=offset,
            limit=limit,
            export_size=settings.export_size,
            export_resize=settings.export_resize,
        )

    @router.post("/api/gallery/flag")
    def flag(body: FlagBody, ident: Identity = who) -> dict[str, Any]:
        return queue().flag(ident.require(), body.proposal_id)

    @router.post("/api/gallery/unflag")
    def unflag(body: UnflagBody, ident: Identity = who) -> dict[str, Any]:
        return queue().unflag(ident.require(), body.decision_id)


def _stats_route(router: APIRouter, queue: Callable[[], ReviewQueue], who: Any) -> None:
    # counting 1M queue rows takes ~0.3 s: reuse the counts for 10x as long as they took
    cache: dict[str, Any] = {"at": 0.0, "ttl": -1.0, "value": None}
    lock = threading.Lock()

    @router.get("/api/stats")
    def stats(ident: Identity = who) -> dict[str, Any]:
        q = queue()
        with lock:
            now = time.monotonic()
            if cache["value"] is None or now - cache["at"] > cache["ttl"]:
                cache["value"] = q.stats()
                cache["at"] = time.monotonic()
                cache["ttl"] = 10 * (cache["at"] - now)
            out = dict(cache["value"])
        if ident.reviewer is not None:
            out["mine"] = q.reviewer_done(ident.reviewer)
        return out


def _image_route(
    router: APIRouter, queue: Callable[[], ReviewQueue], who: Any, settings: RouteSettings
) -> None:
    previews = settings.previews

    @router.get("/api/images/{image_id}")
    def image(
        image_id: str,
        request: Request,
        max_side: int | None = Query(None, ge=0, le=1_000_000),
        ident: Identity = who,
    ) -> Response:
        row = queue().image_file(path_id(image_id))
        side = previews.side(max_side)
        version = (row["sha256"] or str(row["mtime_ns"] or 0))[:16]
        etag = f'"{row["id"]}-{version}-{side}"'
        headers = {"Cache-Control": f"private, max-age={IMAGE_CACHE_SECONDS}", "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        path = previews.get(row["path"], f"{row['id']}_{version}", side)
        return FileResponse(path, media_type="image/jpeg", headers=headers)
