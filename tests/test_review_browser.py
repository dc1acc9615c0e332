"""End to end in a real browser (Debian chromium + Playwright): keys, drag, caption, undo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autolabel.store.labels import iter_labels
from tests.support.review import build_queue

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _need_browser() -> None:
    required = os.environ.get("AUTOLABEL_REQUIRE_BROWSER") == "1"
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed (pip install playwright)"
    if problem:
        if required:
            pytest.fail(f"AUTOLABEL_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(problem)


def _decisions(ws) -> list[tuple]:
    return [
        tuple(r)
        for r in ws.conn.execute(
            "SELECT queue_item_id, reviewer, action, x0, y0, x1, y1, caption, target_id "
            "FROM decisions ORDER BY id"
        )
    ]


@pytest.mark.browser
@pytest.mark.slow
def test_review_page_keyboard_drag_caption_undo(workspace, tmp_path):
    _need_browser()
    from playwright.sync_api import expect, sync_playwright

    from autolabel.config import ReviewConfig
    from autolabel.review.server import serve_in_thread

    build_queue(
        workspace,
        5,
        image_dir=tmp_path / "images",
        size=(640, 480),
        priorities=[5, 4, 3, 2, 1],
    )
    shot = tmp_path / "review_page.png"
    with (
        serve_in_thread(workspace.path, ReviewConfig(port=0, lease_seconds=60)) as server,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.set_default_timeout(20_000)
            page.goto(server.url + "/")
            # loopback without tokens: the page asks who is reviewing
            page.fill("#reviewer-name", "ann")
            page.press("#reviewer-name", "Enter")
            stage = page.locator("#stage")
            expect(stage).to_have_attribute("data-item-id", "1")
            expect(page.locator("#reason")).to_have_text("uncertain")
            expect(page.locator("#work-box")).to_be_visible()

            page.keyboard.press("a")
            expect(stage).to_have_attribute("data-item-id", "2")
            page.keyboard.press("a")
            expect(stage).to_have_attribute("data-item-id", "3")
            expect(page.locator("#counter")).to_contain_text("done 2")

            page.keyboard.press("u")  # undo the second accept: item 2 comes back
            expect(stage).to_have_attribute("data-item-id", "2")

            # drag the bottom-right corner of the box 100 screen px right and 50 down
            handle = page.locator("#work-box .handle.br")
            hb = handle.bounding_box()
            img = page.locator("#img").bounding_box()
            scale = img["width"] / 640
            x, y = hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x + 50, y + 25, steps=4)
            page.mouse.move(x + 100, y + 50, steps=4)
            page.mouse.up()
            expect(page.locator("#work-box")).to_have_class("box work edited")
            page.keyboard.press("a")
            expect(stage).to_have_attribute("data-item-id", "3")

            page.keyboard.press("c")
            page.fill("#caption-input", "a red square on noise")
            page.press("#caption-input", "Enter")
            expect(page.locator("#caption")).to_have_text("caption: a red square on noise")
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000

    rows = _decisions(workspace)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (1, "ann", "accept"),
        (2, "ann", "accept"),
        (2, "ann", "undo"),
        (2, "ann", "adjust"),
        (3, "ann", "caption"),
    ]
    assert rows[2][8] is not None  # the undo names the second accept
    # the proposal box of item 2 is [10, 15, 60, 65] (see build_queue); x1/y1 moved by the drag
    x0, y0, x1, y1 = rows[3][3:7]
    assert (x0, y0) == pytest.approx((10, 15), abs=1.0)
    assert x1 == pytest.approx(60 + 100 / scale, abs=3.0)
    assert y1 == pytest.approx(65 + 50 / scale, abs=3.0)
    assert rows[4][7] == "a red square on noise"
    labels = {lab.proposal_id: lab for lab in iter_labels(workspace, include="reviewed")}
    assert sorted(labels) == [1, 2]
    assert labels[2].box == pytest.approx((x0, y0, x1, y1))
    status = dict(workspace.conn.execute("SELECT id, status FROM queue_items"))
    assert (status[1], status[2], status[3]) == ("done", "done", "claimed")


@pytest.mark.browser
@pytest.mark.slow
def test_gallery_flag_with_the_keyboard_changes_the_estimate(workspace, tmp_path):
    """Issue 18 item 6: open the gallery, flag one crop with X, see the estimate drop."""
    _need_browser()
    from playwright.sync_api import expect, sync_playwright

    from autolabel.config import ReviewConfig
    from autolabel.review.server import serve_in_thread
    from tests.support.review import auto_workspace

    auto_ids = auto_workspace(workspace, tmp_path / "images")
    shot = tmp_path / "gallery.png"
    with (
        serve_in_thread(workspace.path, ReviewConfig(port=0)) as server,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(20_000)
            page.goto(server.url + "/gallery")
            page.fill("#reviewer-name", "ann")
            page.press("#reviewer-name", "Enter")
            cells = page.locator(".cell")
            expect(cells).to_have_count(len(auto_ids))
            estimate = page.locator("#estimate")
            expect(estimate).to_contain_text("1.000")
            first = cells.nth(0)
            expect(first).to_have_class("cell sel")
            expect(first).to_contain_text("source 1080×2340")
            expect(first.locator(".upscale")).to_have_text("upscale ×4.48")
            expect(first.locator(".upscale")).to_have_class("upscale up-warn")
            # the source thumbnail and the crop tile have decoded images
            page.wait_for_function(
                "() => [...document.querySelectorAll('.src img')].every(i => i.naturalWidth > 0)"
            )
            flagged_pid = int(first.get_attribute("data-proposal-id"))
            page.keyboard.press("x")
            expect(estimate).to_contain_text("0.750")
            expect(first).to_have_class("cell sel flagged")
            page.screenshot(path=str(shot))
            # filter by phrase: only bags
            page.select_option("#f-phrase", "bag")
            expect(cells).to_have_count(2)  # the flagged bag thumbnail left the auto set
            expect(page.locator("#count")).to_have_text("2 auto-accepted")
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    last = workspace.conn.execute(
        "SELECT proposal_id, reviewer, action FROM decisions ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert tuple(last) == (flagged_pid, "ann", "reject")


@pytest.mark.browser
@pytest.mark.slow
def test_decisions_are_sent_in_the_background_and_a_failed_send_is_retried(workspace, tmp_path):
    """Issue 18: the next item shows at once; a failed send is shown, retried, never lost."""
    _need_browser()
    from playwright.sync_api import expect, sync_playwright

    from autolabel.config import ReviewConfig
    from autolabel.review.server import serve_in_thread

    build_queue(workspace, 6, image_dir=tmp_path / "images", priorities=[6, 5, 4, 3, 2, 1])
    failures = {"left": 3}
    with (
        serve_in_thread(workspace.path, ReviewConfig(port=0, lease_seconds=60)) as server,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.set_default_timeout(20_000)

            def flaky(route):
                if failures["left"] > 0:
                    failures["left"] -= 1
                    route.abort("connectionrefused")
                else:
                    route.continue_()

            page.route("**/api/decide", flaky)
            page.goto(server.url + "/")
            page.fill("#reviewer-name", "ann")
            page.press("#reviewer-name", "Enter")
            stage = page.locator("#stage")
            expect(stage).to_have_attribute("data-item-id", "1")
            page.keyboard.press("a")
            expect(stage).to_have_attribute("data-item-id", "2")  # no wait for the server
            expect(page.locator("#pending")).to_be_visible()
            expect(page.locator("#pending")).to_contain_text("not saved yet")
            page.keyboard.press("r")
            expect(stage).to_have_attribute("data-item-id", "3")
            # the retries get through, in order; the warning goes away
            expect(page.locator("#pending")).to_be_hidden(timeout=30_000)
            expect(page.locator("#counter")).to_contain_text("done 2")
            assert page.evaluate("localStorage.getItem('autolabel.outbox.ann')") == "[]"
        finally:
            browser.close()
    rows = _decisions(workspace)
    assert [(r[0], r[2]) for r in rows] == [(1, "accept"), (2, "reject")]
    assert failures["left"] == 0


@pytest.mark.browser
@pytest.mark.slow
def test_page_opened_with_a_full_window_of_held_items_keeps_claiming(workspace, tmp_path):
    """A page that gets back 4 held items must claim new ones once they are decided (a fill
    with nothing to do used to stay 'in progress' forever and the queue looked empty)."""
    _need_browser()
    from playwright.sync_api import expect, sync_playwright

    from autolabel.config import ReviewConfig
    from autolabel.review.queue import ReviewQueue
    from autolabel.review.server import serve_in_thread

    build_queue(workspace, 8, image_dir=tmp_path / "images", priorities=list(range(8, 0, -1)))
    q = ReviewQueue(workspace, lease_seconds=60)
    for _ in range(4):  # an earlier page (closed without releasing) holds a full window
        q.next("ann")
    with (
        serve_in_thread(workspace.path, ReviewConfig(port=0, lease_seconds=60)) as server,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.set_default_timeout(20_000)
            page.add_init_script("localStorage.setItem('autolabel.reviewer', 'ann');")
            page.goto(server.url + "/")
            stage = page.locator("#stage")
            expect(stage).to_have_attribute("data-item-id", "1")
            for k in range(2, 8):
                page.keyboard.press("a")
                expect(stage).to_have_attribute("data-item-id", str(k))
        finally:
            browser.close()
