"""Review web app through its HTTP API (in-process client): claims, decisions, auth, paths."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from autolabel.config import ReviewConfig
from autolabel.errors import AuthError
from autolabel.review.app import STATIC_DIR, create_app
from autolabel.store import queue as sq
from autolabel.store.labels import iter_labels
from tests.support.review import build_queue

ANN = {"X-Reviewer": "ann"}
BOB = {"X-Reviewer": "bob"}


def local(app) -> TestClient:
    """An in-process client that talks to the app as http://127.0.0.1:8765."""
    return TestClient(app, base_url="http://127.0.0.1:8765")


@pytest.fixture
def client(workspace, tmp_path):
    build_queue(workspace, 4, image_dir=tmp_path / "images", priorities=[4, 3, 2, 1])
    app = create_app(workspace.path, ReviewConfig(lease_seconds=60))
    with local(app) as c:
        yield c


def n_decisions(ws) -> int:
    return ws.conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]


def test_page_and_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/static/app.js">' in page.text
    for name, kind in [("app.js", "javascript"), ("app.css", "css")]:
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    cfg = client.get("/api/config", headers=ANN).json()
    assert cfg == {**cfg, "auth": "name", "reviewer": "ann", "lease_seconds": 60.0}


def test_claim_decide_undo_over_http(client, workspace):
    first = client.post("/api/next", headers=ANN).json()["item"]
    second = client.post("/api/next", headers=BOB).json()["item"]
    assert first["priority"] == 4 and second["priority"] == 3
    assert client.get("/api/held", headers=ANN).json()["items"][0]["item_id"] == first["item_id"]

    r = client.post(
        "/api/decide", headers=ANN, json={"item_id": first["item_id"], "action": "accept"}
    )
    assert r.status_code == 200, r.text
    again = client.post(
        "/api/decide", headers=BOB, json={"item_id": first["item_id"], "action": "reject"}
    )
    assert again.status_code == 409
    assert "already decided by ann" in again.json()["detail"]
    stolen = client.post(
        "/api/decide", headers=ANN, json={"item_id": second["item_id"], "action": "accept"}
    )
    assert stolen.status_code == 409 and "bob holds it now" in stolen.json()["detail"]

    adj = client.post(
        "/api/decide",
        headers=BOB,
        json={"item_id": second["item_id"], "action": "adjust", "box": [5, 6, 105, 96]},
    )
    assert adj.status_code == 200
    boxes = {lab.proposal_id: lab.box for lab in iter_labels(workspace, include="reviewed")}
    assert boxes == {
        first["proposal_id"]: tuple(first["box"]),
        second["proposal_id"]: (5, 6, 105, 96),
    }

    undone = client.post("/api/undo", headers=BOB, json={}).json()
    assert undone["action"] == "adjust" and undone["item"]["item_id"] == second["item_id"]
    stats = client.get("/api/stats", headers=BOB).json()
    assert (stats["done"], stats["remaining"], stats["mine"]) == (1, 3, 0)
    nothing = client.post("/api/undo", headers=BOB, json={})
    assert nothing.status_code == 404 and "no decision left to undo" in nothing.json()["detail"]


def test_bad_box_is_400_with_message(client, workspace):
    item = client.post("/api/next", headers=ANN).json()["item"]
    r = client.post(
        "/api/decide",
        headers=ANN,
        json={"item_id": item["item_id"], "action": "adjust", "box": [0, 0, 9999, 10]},
    )
    assert r.status_code == 400 and "inside the 320x240 image" in r.json()["detail"]
    assert n_decisions(workspace) == 0


def test_name_mode_requires_a_reviewer_name(client):
    r = client.post("/api/next")
    assert r.status_code == 401 and "X-Reviewer" in r.json()["detail"]
    bad = client.post("/api/next", headers={"X-Reviewer": "../../x"})
    assert bad.status_code == 400


def test_image_served_by_id_with_preview_and_cache_headers(workspace, tmp_path):
    from PIL import Image

    build_queue(workspace, 1, image_dir=tmp_path / "img", size=(2000, 1000))
    app = create_app(workspace.path, ReviewConfig(preview_max_side=500))
    with local(app) as c:
        r = c.get("/api/images/1")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert "max-age" in r.headers["cache-control"]
        assert Image.open(io.BytesIO(r.content)).size == (500, 250)
        small = c.get("/api/images/1?max_side=100")  # rounded up to the 256 px preview
        assert Image.open(io.BytesIO(small.content)).size == (256, 128)
        cached = c.get("/api/images/1", headers={"If-None-Match": r.headers["etag"]})
        assert cached.status_code == 304
        assert c.get("/api/images/2").status_code == 404


TRAVERSALS = [
    "/static/../autolabel.db",
    "/static/..%2fautolabel.db",
    "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/static/..%252f..%252fetc%252fpasswd",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/queue.py",
    "/static/app.js%00.png",
    "/api/images/..%2f..%2fautolabel.db",
    "/api/images/%2fetc%2fpasswd",
    "/api/images/1%2f..%2f..%2fetc%2fpasswd",
    "/api/images/-1",
    "/api/images/1e3",
    "/api/items/..%2f1",
    "/etc/passwd",
    "/autolabel.db",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_attempts_get_404(client, path):
    r = client.get(path, headers=ANN)
    assert r.status_code == 404, (path, r.status_code, r.text[:100])
    assert b"root:" not in r.content and b"SQLite" not in r.content


def test_symlinked_static_file_pointing_outside_is_404(workspace, tmp_path):
    static = tmp_path / "static"
    static.mkdir()
    shutil.copy(STATIC_DIR / "index.html", static / "index.html")
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    os.symlink(secret, static / "app.js")
    os.symlink(STATIC_DIR / "app.css", static / "app.css")  # also outside this folder
    with local(create_app(workspace.path, static_dir=static)) as c:
        assert c.get("/").status_code == 200
        for path in ["/static/app.js", "/static/app.css", "/static/secret.txt"]:
            r = c.get(path)
            assert r.status_code == 404 and b"secret" not in r.content


def test_non_loopback_needs_tokens_and_then_every_request_needs_one(workspace):
    build_queue(workspace, 2)
    with pytest.raises(AuthError, match="needs reviewer tokens"):
        create_app(workspace.path, ReviewConfig(host="0.0.0.0"))
    token = sq.add_reviewer(workspace, "ann")
    with local(create_app(workspace.path, ReviewConfig(host="0.0.0.0"))) as c:
        for method, path in [
            ("GET", "/"),
            ("GET", "/static/app.js"),
            ("POST", "/api/next"),
            ("GET", "/api/images/1"),
            ("GET", "/api/stats"),
        ]:
            r = c.request(method, path)
            assert r.status_code == 401, path
            assert "token" in r.json()["detail"]
            # a reviewer name is not a credential once tokens exist
            assert c.request(method, path, headers=ANN).status_code == 401
            bad = c.request(method, path, headers={"Authorization": "Bearer nope"})
            assert bad.status_code == 401 and "unknown" in bad.json()["detail"]
        auth = {"Authorization": f"Bearer {token}"}
        item = c.post("/api/next", headers=auth).json()["item"]
        assert item["claimed_by"] == "ann"
        assert (
            c.get("/api/config", headers={"X-Autolabel-Token": token}).json()["reviewer"] == "ann"
        )
        # the page link carries ?token=; the server keeps it in an HttpOnly cookie
        page = c.get(f"/?token={token}")
        assert page.status_code == 200
        assert "httponly" in page.headers["set-cookie"].lower()
        assert c.get("/api/held").json()["items"][0]["item_id"] == item["item_id"]


def test_loopback_with_reviewers_also_requires_tokens(workspace):
    build_queue(workspace, 1)
    token = sq.add_reviewer(workspace, "ann")
    with local(create_app(workspace.path)) as c:
        assert c.post("/api/next", headers=ANN).status_code == 401
        assert c.post(f"/api/next?token={token}").status_code == 200


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"{not json", {"content-type": "application/json"}, 422),
        (b'{"item_id": 1, "action": "accept"', {"content-type": "application/json"}, 422),
        (b'{"item_id": "one", "action": "accept"}', {"content-type": "application/json"}, 422),
        (
            b'{"item_id": 1, "action": "accept", "admin": true}',
            {"content-type": "application/json"},
            422,
        ),
        (
            b'{"item_id": 1, "action": "adjust", "box": [1, 2]}',
            {"content-type": "application/json"},
            422,
        ),
        (b"[1, 2, 3]", {"content-type": "application/json"}, 422),
        (
            b'{"item_id": 1, "action": "accept", "caption": "' + b"x" * 70_000 + b'"}',
            {"content-type": "application/json"},
            413,
        ),
    ],
)
def test_malformed_or_oversized_bodies_are_4xx_and_change_nothing(
    client, workspace, body, headers, status
):
    item = client.post("/api/next", headers=ANN).json()["item"]
    assert item["item_id"] == 1
    r = client.post("/api/decide", content=body, headers={**ANN, **headers})
    assert r.status_code == status, r.text[:200]
    assert n_decisions(workspace) == 0
    row = workspace.conn.execute(
        "SELECT status, claimed_by FROM queue_items WHERE id = 1"
    ).fetchone()
    assert tuple(row) == ("claimed", "ann")


def test_oversized_chunked_body_is_413(client, workspace):
    client.post("/api/next", headers=ANN)

    def chunks():
        yield b'{"item_id": 1, "action": "caption", "caption": "'
        for _ in range(100):
            yield b"y" * 1024
        yield b'"}'

    r = client.post(
        "/api/decide", content=chunks(), headers={**ANN, "content-type": "application/json"}
    )
    assert r.status_code == 413
    assert n_decisions(workspace) == 0


def test_page_reads_no_file_paths(client):
    # no route accepts a path: an image path as id or query parameter is refused
    assert client.get("/api/images", params={"path": "/etc/passwd"}).status_code in (404, 405)
    assert client.get("/api/images/1", params={"path": "/etc/passwd"}).status_code == 200
    assert b"root:" not in client.get("/api/images/1", params={"path": "/etc/passwd"}).content


def test_static_listing_covers_package_files():
    assert {p.name for p in Path(STATIC_DIR).iterdir()} >= {"index.html", "app.js", "app.css"}


def test_lease_expiry_and_renewal_over_http(workspace):
    import time

    build_queue(workspace, 2, priorities=[2, 1])
    with local(create_app(workspace.path, ReviewConfig(lease_seconds=2.0))) as c:
        first = c.post("/api/next", headers=ANN).json()["item"]
        time.sleep(1.2)
        assert c.post("/api/renew", headers=ANN, json={}).json()["renewed"] == 1
        time.sleep(1.2)  # 2.4 s after the claim, 1.2 s after the renewal: still ann's
        assert c.post("/api/next", headers=BOB).json()["item"]["item_id"] != first["item_id"]
        time.sleep(2.5)  # now ann's lease is gone (bob's too): bob gets the top item
        assert c.post("/api/next", headers=BOB).json()["item"]["item_id"] == first["item_id"]
        late = c.post(
            "/api/decide", headers=ANN, json={"item_id": first["item_id"], "action": "accept"}
        )
        assert late.status_code == 409 and "bob holds it now" in late.json()["detail"]
        assert c.get("/api/held", headers=ANN).json()["items"] == []
        ok = c.post(
            "/api/decide", headers=BOB, json={"item_id": first["item_id"], "action": "accept"}
        )
        assert ok.status_code == 200
    log = sq.iter_decisions(workspace)
    assert [(d["reviewer"], d["action"]) for d in log] == [("bob", "accept")]


def test_loopback_server_refuses_foreign_host_and_cross_site_posts(client, workspace):
    # DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends Host: evil.example
    r = client.get("/api/config", headers={**ANN, "host": "evil.example:8765"})
    assert r.status_code == 400 and "evil.example" in r.json()["detail"]
    for host in ["localhost:8765", "127.0.0.1", "[::1]:8765"]:
        assert client.get("/api/config", headers={**ANN, "host": host}).status_code == 200
    # a cross-site form/simple POST cannot set X-Reviewer; a query parameter is no substitute
    r = client.post("/api/next?reviewer=eve", content=b"", headers={"content-type": "text/plain"})
    assert r.status_code == 401
    assert (
        workspace.conn.execute(
            "SELECT COUNT(*) FROM queue_items WHERE status='claimed'"
        ).fetchone()[0]
        == 0
    )


def test_app_takes_the_review_section_and_never_reads_the_workspace_config(workspace):
    (workspace.path / "config.yaml").write_text("review:\n  lease_seconds: 999\n")
    with local(create_app(workspace.path)) as c:  # no section: the section's defaults
        assert c.get("/api/config", headers=ANN).json()["lease_seconds"] == 120.0
    section = ReviewConfig(lease_seconds=7, preview_max_side=300)
    with local(create_app(workspace.path, section)) as c:
        cfg = c.get("/api/config", headers=ANN).json()
    assert (cfg["lease_seconds"], cfg["preview_max_side"]) == (7.0, 300)


def test_routes_and_auth_reach_the_store_only_through_the_review_queue():
    import ast

    for name in ("routes.py", "auth.py", "app.py", "server.py"):
        tree = ast.parse((STATIC_DIR.parent / name).read_text())
        imported = {
            node.module if isinstance(node, ast.ImportFrom) else alias.name
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        }
        store = {m for m in imported if m and m.startswith("autolabel.store")}
        allowed = {"autolabel.store", "autolabel.store.db"} if name == "app.py" else set()
        assert store <= allowed, f"{name} imports {store - allowed}"
