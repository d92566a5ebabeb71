"""The dashboard in a real browser: Debian's chromium driven by Playwright, against `delayq web`
on a real redis-server.

Skipped when Playwright or chromium is missing (apt-get install chromium; pip install playwright;
Playwright's own browser download is not used), and failing instead when DELAYQ_REQUIRE_BROWSER=1
(as in CI). DELAYQ_SCREENSHOT=PATH saves the queue page's screenshot there (docs/dashboard.png).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import redis

import delayq
from delayq._server import RedisServer, free_port
from tests.helpers import unique_name

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USER, PASSWORD = "ops", "correct horse"


def no_browser(reason: str) -> None:
    if os.environ.get("DELAYQ_REQUIRE_BROWSER") == "1":
        pytest.fail(f"DELAYQ_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(f"{reason}; apt-get install chromium and pip install playwright (no browser download is needed)")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    executable = os.environ.get("DELAYQ_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        no_browser("chromium is not installed")
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError:
        no_browser("playwright is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextlib.contextmanager
def serve(url: str, prefix: str, log: Path) -> Iterator[str]:
    """`delayq web` in a subprocess on ``url``, with credentials set and public reading; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "DELAYQ_WEB_USERNAME": USER,
        "DELAYQ_WEB_PASSWORD": PASSWORD,
        "DELAYQ_WEB_PUBLIC_READ": "1",
    }
    args = [sys.executable, "-m", "delayq", "web", "--url", url, "--prefix", prefix, "--port", str(port)]
    with log.open("wb") as sink:
        proc = subprocess.Popen([*args, "--refresh", "0.5"], env=env, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(base + "/static/delayq.css", timeout=1).close()
            break
        except (urllib.error.URLError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(f"delayq web did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def dashboard(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`delayq web` on the session's server; yields (base URL, prefix)."""
    prefix = unique_name("browser")
    with serve(redis_url, prefix, tmp_path / "web.log") as base:
        yield base, prefix


def test_the_dashboard_in_a_browser(chromium: Any, dashboard: tuple[str, str], redis_url: str) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415

    base, prefix = dashboard
    client = redis.Redis.from_url(redis_url)
    q = delayq.Queue(client, "emails", prefix=prefix, max_attempts=1)
    q.enqueue(b"<script>alert(1)</script>", id="xss", at=datetime(2000, 1, 1, tzinfo=timezone.utc))
    q.enqueue_many([json.dumps({"to": f"user{i}@example.com", "template": "welcome"}).encode() for i in range(2)])

    anonymous = chromium.new_context(viewport={"width": 1280, "height": 640})
    page = anonymous.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # 1. the queue list, and its counts changing on their own as jobs come and go
    page.goto(base + "/")
    row = page.locator('tr[data-queue="emails"]')
    expect(row.locator('[data-count="ready"]')).to_have_text("3")
    q.enqueue_many([json.dumps({"to": f"late{i}@example.com"}).encode() for i in range(5)])
    expect(row.locator('[data-count="ready"]')).to_have_text("8", timeout=5000)
    xss, *held = q.dequeue(3, lock_ttl=300)
    assert xss.id == "xss"
    expect(row.locator('[data-count="in_flight"]')).to_have_text("3", timeout=5000)
    expect(row.locator('[data-count="ready"]')).to_have_text("5")
    q.nack(xss, error="ValueError: <b>template</b> not found")  # max_attempts=1: a dead letter
    failures = {
        "invoice-1007": (
            '{"to": "eve@example.com", "template": "invoice"}',
            "TimeoutError: the SMTP server did not answer in 30s",
        ),
        "welcome-4711": ('{"to": "bob@example", "template": "welcome"}', "SMTPRecipientsRefused: bob@example: no MX record"),
    }
    ids = list(failures)
    q.enqueue_many([failures[i][0] for i in ids], ids=ids, at=datetime(2001, 1, 1, tzinfo=timezone.utc))
    for job in q.dequeue(2):
        assert job.id in failures
        q.nack(job, error=failures[job.id][1])
    q.enqueue_many([b'{"to": "later@example.com"}'] * 2, delay=3600)
    expect(row.locator('[data-count="dead"]')).to_have_text("3", timeout=5000)
    expect(row.locator('[data-count="delayed"]')).to_have_text("2")

    # 2. the queue, its dead letters, and the job: the payload is text, never run
    row.get_by_role("link", name="emails").click()
    expect(page.locator("h1")).to_have_text("emails")
    page.locator('a[data-tab="dead"]').click()
    dead_row = page.locator('tr[data-job="xss"]')
    expect(dead_row.locator("td.payload code")).to_have_text("<script>alert(1)</script>")
    expect(dead_row.locator("td.error")).to_have_text("ValueError: <b>template</b> not found")
    screenshot = os.environ.get("DELAYQ_SCREENSHOT")
    if screenshot:
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=screenshot, full_page=True)
    dead_row.get_by_role("link", name="xss").click()
    expect(page.locator("pre.payload")).to_have_text("<script>alert(1)</script>")
    expect(page.locator('[data-state="dead"]')).to_be_visible()

    # 3. no credentials: the redrive is refused with a basic-auth challenge (a person's browser
    # asks for the credentials; Playwright's, having none, gives up), and nothing changes
    page.go_back()
    with page.expect_response(lambda response: response.url.endswith("/action")) as refused:
        page.locator('tr[data-job="xss"] button[data-action="redrive"]').click()
    assert refused.value.status == 401
    assert refused.value.headers["www-authenticate"].startswith("Basic")
    assert q.stats().dead == 3

    # 4. signed in: redrive by clicking, then pause and resume
    signed_in = chromium.new_context(http_credentials={"username": USER, "password": PASSWORD})
    page2 = signed_in.new_page()
    page2.on("dialog", on_dialog)
    page2.goto(base + "/")
    page2.get_by_role("link", name="sign in").click()  # the challenge: the browser gives its credentials
    expect(page2.locator(".who")).to_contain_text("signed in")
    page2.goto(f"{base}/queue?name=emails&state=dead")
    page2.locator('tr[data-job="xss"] button[data-action="redrive"]').click()
    expect(page2.locator(".flash")).to_have_text("1 dead job(s) back in the queue, due now.")
    expect(page2.locator('#counts [data-count="dead"]')).to_have_text("2")
    assert q.stats().dead == 2 and (q.get("xss") or pytest.fail("gone")).state == "ready"
    page2.locator('button[data-action="pause"]').click()
    expect(page2.locator('#counts [data-count="paused"]')).to_have_text("paused")
    assert q.stats().paused and q.dequeue(10) == []
    page2.locator('button[data-action="resume"]').click()
    expect(page2.locator('#counts [data-count="paused"]')).to_have_text("running")
    assert not q.stats().paused

    # the anonymous page kept refreshing; nothing ever ran a script of a payload's
    assert dialogs == [] and errors == []
    q.ack_many(held)
    q.purge()
    anonymous.close()
    signed_in.close()
    client.close()


def test_a_slow_redis_does_not_pile_up_refreshes(chromium: Any, tmp_path: Path) -> None:
    """With Redis stalled for 8 refresh periods, each open page keeps at most one refresh waiting."""
    from playwright.sync_api import expect  # noqa: PLC0415

    with RedisServer() as server, serve(server.url, "slow", tmp_path / "web.log") as base:
        client = redis.Redis.from_url(server.url)
        q = delayq.Queue(client, "q", prefix="slow")
        q.enqueue(b"x")
        context = chromium.new_context()
        page = context.new_page()
        in_flight: dict[str, int] = {}
        most: dict[str, int] = {}
        sent: list[str] = []

        def started(request: Any) -> None:
            kind = request.url.split("?")[0].rsplit("/", 1)[-1] or "list"
            if request.headers.get("hx-request") == "true":
                sent.append(kind)
                in_flight[kind] = in_flight.get(kind, 0) + 1
                most[kind] = max(most.get(kind, 0), in_flight[kind])

        def ended(request: Any) -> None:
            kind = request.url.split("?")[0].rsplit("/", 1)[-1] or "list"
            if request.headers.get("hx-request") == "true":
                in_flight[kind] -= 1

        page.on("request", started)
        page.on("requestfinished", ended)
        page.on("requestfailed", ended)
        for path, kind, cell in (
            ("/", "list", 'tr[data-queue="q"] [data-count="ready"]'),
            ("/queue?name=q", "counts", '#counts [data-count="ready"]'),
        ):
            page.goto(base + path)
            expect(page.locator(cell)).to_have_text(str(q.stats().ready))
            page.wait_for_timeout(1200)  # a few refreshes at 0.5 s
            sent.clear()
            client.execute_command("CLIENT", "PAUSE", 4000, "ALL")  # every command waits 4 s: 8 refresh periods
            page.wait_for_timeout(4500)
            assert most[kind] <= 2, (kind, most)
            assert len(sent) <= 3, (kind, sent)
            q.enqueue(b"y")
            expect(page.locator(cell)).to_have_text(str(q.stats().ready), timeout=5000)  # refreshing again
            most.clear()
        context.close()
        q.purge()
        client.close()


def test_counts_say_when_redis_is_gone_and_come_back_with_it(chromium: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415

    with RedisServer() as server, serve(server.url, "gone", tmp_path / "web.log") as base:
        client = redis.Redis.from_url(server.url)
        delayq.Queue(client, "q", prefix="gone").enqueue_many([b"x"] * 3)
        context = chromium.new_context()
        page = context.new_page()
        for path, where in (("/queue?name=q", "#counts"), ("/", "#queues")):
            page.goto(base + path)
            expect(page.locator(f'{where} [data-count="ready"]').first).to_have_text("3")
            server.stop()
            alert = page.locator(f"{where} [data-unavailable]")
            expect(alert).to_contain_text("Redis did not answer", timeout=8000)  # not the last counts, frozen
            expect(page.locator(f'{where} [data-count="ready"]')).to_have_count(0)
            server.restart()  # empty: nothing was persisted
            delayq.Queue(client, "q", prefix="gone").enqueue_many([b"x"] * 3)
            expect(page.locator(f'{where} [data-count="ready"]').first).to_have_text("3", timeout=8000)
        context.close()
        client.close()
