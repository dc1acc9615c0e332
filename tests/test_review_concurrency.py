"""50 reviewers work one queue of 2,000 items through a real server: each item decided once."""

from __future__ import annotations

import socket
import threading
from collections import Counter

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from autolabel.config import ReviewConfig  # noqa: E402
from autolabel.review.server import serve_in_thread  # noqa: E402
from tests.support.review import build_queue  # noqa: E402

N_ITEMS = 2000
N_REVIEWERS = 50
# like browsers, send small requests at once (else delayed-ACK stalls of ~40 ms each)
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


@pytest.mark.slow
def test_fifty_reviewers_decide_every_item_exactly_once(workspace):
    build_queue(workspace, N_ITEMS // 4, per_image=4)
    claims: dict[str, list[int]] = {}
    decided: dict[str, list[int]] = {}
    errors: list[str] = []
    start = threading.Barrier(N_REVIEWERS)

    def reviewer(name: str, base: str) -> None:
        mine_claims, mine_done = [], []
        claims[name], decided[name] = mine_claims, mine_done
        headers = {"X-Reviewer": name}
        try:
            transport = httpx.HTTPTransport(socket_options=NODELAY)
            with httpx.Client(base_url=base, headers=headers, timeout=60, transport=transport) as c:
                start.wait()
                k = 0
                while True:
                    r = c.post("/api/next")
                    r.raise_for_status()
                    item = r.json()["item"]
                    if item is None:
                        return
                    mine_claims.append(item["item_id"])
                    action = ("accept", "reject", "adjust")[k % 3]
                    body = {"item_id": item["item_id"], "action": action}
                    if action == "adjust":
                        body["box"] = [1, 1, 50, 50]
                    d = c.post("/api/decide", json=body)
                    if d.status_code != 200:
                        errors.append(f"{name}: {d.status_code} {d.text[:200]}")
                        return
                    mine_done.append(item["item_id"])
                    k += 1
        except Exception as exc:  # surfaced through ``errors`` below
            errors.append(f"{name}: {exc!r}")

    with serve_in_thread(workspace.path, ReviewConfig(port=0, lease_seconds=300)) as server:
        threads = [
            threading.Thread(target=reviewer, args=(f"r{i}", server.url))
            for i in range(N_REVIEWERS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads)

    assert errors == []
    all_claims = Counter(i for lst in claims.values() for i in lst)
    assert len(all_claims) == N_ITEMS
    assert max(all_claims.values()) == 1, "an item was handed to two reviewers"
    assert sum(len(v) for v in decided.values()) == N_ITEMS
    # the database agrees: every item done once, one decision per item, by its claimer
    rows = workspace.conn.execute(
        "SELECT queue_item_id, COUNT(*), MIN(reviewer) FROM decisions GROUP BY queue_item_id"
    ).fetchall()
    assert len(rows) == N_ITEMS and all(r[1] == 1 for r in rows)
    owner = {i: name for name, lst in decided.items() for i in lst}
    assert all(owner[r[0]] == r[2] for r in rows)
    status = dict(
        workspace.conn.execute("SELECT status, COUNT(*) FROM queue_items GROUP BY status")
    )
    assert status == {"done": N_ITEMS}
    assert sum(1 for lst in decided.values() if lst) > N_REVIEWERS // 2  # work was shared
