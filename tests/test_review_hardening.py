"""Review app under attack (issue 15, causes 12 and 14): 4xx instead of 500 for odd ids and
numbers, non-finite leases refused, cross-origin writes refused, anti-framing headers."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from autolabel.config import ReviewConfig, load_config
from autolabel.errors import ConfigError, InputError
from autolabel.review.app import create_app
from autolabel.review.queue import ReviewQueue
from autolabel.store import queue as sq
from tests.support.review import build_queue

ANN = {"X-Reviewer": "ann"}
BASE = "http://127.0.0.1:8765"
BIG = 2**63  # one past SQLite's INTEGER range


@pytest.fixture
def client(workspace, tmp_path):
    build_queue(workspace, 3, image_dir=tmp_path / "images", priorities=[3, 2, 1])
    with TestClient(create_app(workspace.path, ReviewConfig(lease_seconds=60)), base_url=BASE) as c:
        yield c


def n_decisions(ws) -> int:
    return ws.conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]


# -- cause 12: 4xx, never 500 ---------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/api/items/²",
        "/api/items/%C2%B2",
        "/api/items/١",  # Arabic-Indic digit one: str.isdigit() is True
        f"/api/items/{BIG}",
        f"/api/items/{10**30}",
        "/api/images/²",
        f"/api/images/{BIG}",
    ],
)
def test_odd_ids_in_paths_are_404_not_500(client, path):
    r = client.get(path, headers=ANN)
    assert r.status_code == 404, (path, r.status_code, r.text[:200])


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/api/decide", {"item_id": BIG, "action": "accept"}),
        ("/api/decide", {"item_id": -BIG - 1, "action": "accept"}),
        ("/api/decide", {"item_id": 10**30, "action": "reject"}),
        ("/api/undo", {"decision_id": BIG}),
        ("/api/renew", {"item_ids": [1, BIG]}),
        ("/api/release", {"item_ids": [BIG]}),
    ],
)
def test_ids_beyond_64_bits_are_4xx_not_500(client, workspace, route, body):
    client.post("/api/next", headers=ANN)
    before = n_decisions(workspace)
    r = client.post(route, headers=ANN, json=body)
    assert 400 <= r.status_code < 500, (route, r.status_code, r.text[:200])
    assert n_decisions(workspace) == before


@pytest.mark.parametrize(
    "raw",
    [
        b'{"item_id": 1e400, "action": "accept"}',
        b'{"item_id": -1e400, "action": "accept"}',
        b'{"item_id": NaN, "action": "accept"}',
        b'{"item_id": Infinity, "action": "accept"}',
        b'{"item_id": 1, "action": "adjust", "box": [1, 2, 1e400, 50]}',
        b'{"item_id": 1, "action": "adjust", "box": [NaN, 2, 30, 50]}',
    ],
)
def test_non_finite_numbers_in_bodies_are_4xx(client, workspace, raw):
    client.post("/api/next", headers=ANN)
    r = client.post("/api/decide", headers={**ANN, "content-type": "application/json"}, content=raw)
    assert 400 <= r.status_code < 500, (raw, r.status_code, r.text[:200])
    assert n_decisions(workspace) == 0


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1e300"])
def test_non_finite_or_huge_lease_in_config_is_a_config_error(tmp_path, value):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"review:\n  lease_seconds: {value}\n")
    with pytest.raises(ConfigError, match="lease_seconds"):
        load_config(cfg)


@pytest.mark.parametrize("lease", [math.inf, math.nan, -1.0, 0.0, 1e300])
def test_review_queue_refuses_non_finite_or_out_of_range_leases(workspace, lease):
    with pytest.raises(InputError, match="lease_seconds"):
        ReviewQueue(workspace, lease_seconds=lease)


def test_conflict_message_with_a_long_lease_is_a_409(workspace):
    """A year-long lease (the maximum) still formats its conflict message."""
    build_queue(workspace, 1)
    year = 365 * 24 * 3600.0
    ReviewQueue(workspace, lease_seconds=year).next("ann")
    with pytest.raises(Exception) as info:
        ReviewQueue(workspace, lease_seconds=year).decide("bob", 1, "accept")
    assert "ann holds it" in str(info.value)


# -- cause 14: origin checks and anti-framing headers ----------------------------------------
FOREIGN_ORIGINS = [
    "http://127.0.0.1:9999",  # another local port: same site, other origin
    "http://localhost:8765",
    "https://127.0.0.1:8765",
    "http://evil.example",
    "null",
]


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_cross_origin_writes_are_refused_even_with_the_cookie(workspace, origin):
    build_queue(workspace, 2)
    token = sq.add_reviewer(workspace, "ann")
    with TestClient(create_app(workspace.path), base_url=BASE) as c:
        assert c.get(f"/?token={token}").status_code == 200  # the page sets the cookie
        r = c.post(
            "/api/next", headers={"origin": origin, "content-type": "text/plain"}, content=b""
        )
        assert r.status_code == 403, (origin, r.status_code, r.text[:200])
        assert "origin" in r.json()["detail"]
        held = workspace.conn.execute(
            "SELECT COUNT(*) FROM queue_items WHERE status = 'claimed'"
        ).fetchone()[0]
        assert held == 0
        # same origin (what the page sends) and no Origin at all (scripts, curl) still work
        ok = c.post("/api/next", headers={"origin": BASE})
        assert ok.status_code == 200 and ok.json()["item"]["claimed_by"] == "ann"
        assert c.post("/api/next").status_code == 200


def test_fetch_metadata_cross_site_write_is_refused(client, workspace):
    r = client.post("/api/next", headers={**ANN, "sec-fetch-site": "same-site"})
    assert r.status_code == 403
    r = client.post("/api/next", headers={**ANN, "sec-fetch-site": "same-origin"})
    assert r.status_code == 200


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/api/config", "/api/images/1"])
def test_every_response_forbids_framing_and_referrers(client, path):
    r = client.get(path, headers=ANN)
    assert r.status_code == 200
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-content-type-options"] == "nosniff"
    bad = client.get("/api/items/²", headers=ANN)
    assert bad.headers["x-frame-options"] == "DENY"
