"""The dashboard over HTTP (Starlette's TestClient): pages, actions, authentication, CSRF, escaping.

Each test runs on fakeredis, a real redis-server and a real cluster (the ``backend`` fixture).
The browser test is tests/test_browser.py."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import fakeredis
import pytest
import redis
import redis.cluster
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

import delayq
from delayq.web import create_app
from tests.helpers import unique_name

XSS = b"<script>alert(1)</script>"
BASE = "http://localhost"  # the dashboard answers loopback names only, by default


class Site:
    """A dashboard on one backend, with a sync queue API to set the scene."""

    def __init__(self, backend: str, request: pytest.FixtureRequest) -> None:
        self.prefix = unique_name("web")  # its own prefix: the queue list shows only this test's queues
        if backend == "fake":
            server = fakeredis.FakeServer()
            self.raw: Any = fakeredis.FakeRedis(server=server)
            self.target: Any = lambda: fakeredis.FakeAsyncRedis(server=server)
            self.cluster = False
        elif backend == "real":
            url = request.getfixturevalue("redis_url")
            self.raw, self.target, self.cluster = redis.Redis.from_url(url), lambda: url, False
        else:
            url = request.getfixturevalue("cluster_url")
            self.raw, self.target, self.cluster = redis.cluster.RedisCluster.from_url(url), lambda: url, True

    def queue(self, name: str, **kwargs: Any) -> delayq.Queue:
        return delayq.Queue(self.raw, name, prefix=self.prefix, **kwargs)

    def app(self, **options: Any) -> Starlette:
        return create_app(self.target(), cluster=self.cluster, prefix=self.prefix, **options)

    def client(self, **options: Any) -> TestClient:
        return TestClient(self.app(**options), base_url=BASE)


@pytest.fixture(params=["fake", "real", "cluster"])
def site(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    for var in ("DELAYQ_WEB_USERNAME", "DELAYQ_WEB_PASSWORD", "DELAYQ_WEB_PUBLIC_READ", "DELAYQ_WEB_SECRET"):
        monkeypatch.delenv(var, raising=False)
    s = Site(str(request.param), request)
    yield s
    s.raw.close()


def token(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found, "the page has an action form"
    return found[1]


def act(client: TestClient, page: str, **fields: str) -> Any:
    return client.post("/action", data={"csrf": token(page), **fields}, follow_redirects=True)


def count(page: str, state: str) -> str:
    found = re.search(rf'data-count="{state}">([^<]*)<', page)
    assert found, state
    return found[1]


def scene(site: Site, name: str) -> delayq.Queue:
    """A queue with a job in every state; the dead one's payload is an XSS attempt."""
    q = site.queue(name, max_attempts=1)
    q.enqueue(XSS, id="xss")
    q.enqueue(b"flying", id="flying")
    jobs = {j.id: j for j in q.dequeue(10, lock_ttl=60)}
    q.nack(jobs["xss"], error="ValueError: <b>bad</b> input")
    q.enqueue(b'{"to": "a@example.com"}', id="ready")
    q.enqueue(b"\x00\x01\xffbinary", id="later", delay=3600)
    return q


def test_the_queue_list_shows_counts_lag_and_pause(site: Site) -> None:
    a, b = scene(site, "alpha"), site.queue("beta")
    b.enqueue_many([b"x"] * 3)
    b.pause()
    with site.client() as client:
        page = client.get("/")
        assert page.status_code == 200
        rows = dict(re.findall(r'<tr data-queue="([^"]+)">(.*?)</tr>', page.text, flags=re.S))
        assert set(rows) == {"alpha", "beta"}
        assert [count(rows["alpha"], s) for s in ("ready", "delayed", "in_flight", "dead")] == ["1", "1", "1", "1"]
        assert [count(rows["beta"], s) for s in ("ready", "delayed", "in_flight", "dead")] == ["3", "0", "0", "0"]
        assert "paused" in rows["beta"] and "running" in rows["alpha"]
        # htmx asks for the table alone, every few seconds
        assert 'hx-trigger="every 2.0s"' in page.text
        a.enqueue_many([b"more"] * 4)
        partial = client.get("/", headers={"HX-Request": "true"})
        assert partial.text.lstrip().startswith('<div id="queues"') and "<html" not in partial.text
        alpha = dict(re.findall(r'<tr data-queue="([^"]+)">(.*?)</tr>', partial.text, flags=re.S))["alpha"]
        assert count(alpha, "ready") == "5"
        assert count(alpha, "age") != "-"


def test_a_queue_page_lists_each_state_with_paging(site: Site) -> None:
    q = scene(site, "jobs")
    q.enqueue_many([f"p{i}".encode() for i in range(5)], ids=[f"p{i}" for i in range(5)])
    with site.client(page_size=4) as client:
        ready = client.get("/queue", params={"name": "jobs"}).text
        assert count(ready, "ready") == "6"
        ids = re.findall(r'<tr data-job="([^"]+)">', ready)
        assert len(ids) == 4 and "page 1 of 2" in ready
        second = client.get("/queue", params={"name": "jobs", "page": "2"}).text
        more = re.findall(r'<tr data-job="([^"]+)">', second)
        assert len(more) == 2 and not set(ids) & set(more)
        dead = client.get("/queue", params={"name": "jobs", "state": "dead"}).text
        assert re.findall(r'<tr data-job="([^"]+)">', dead) == ["xss"]
        assert "ValueError: &lt;b&gt;bad&lt;/b&gt; input" in dead
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dead and "<script>alert" not in dead
        flying = client.get("/queue", params={"name": "jobs", "state": "in_flight"}).text
        assert re.findall(r'<tr data-job="([^"]+)">', flying) == ["flying"]
        assert "in 59s" in flying or "in 60s" in flying
        delayed = client.get("/queue", params={"name": "jobs", "state": "delayed"}).text
        assert "later" in delayed and r"\x00\x01\xffbinary" in delayed and 'data-action="reschedule"' in delayed
        assert "No heartbeats" in delayed
        counts = client.get("/partials/counts", params={"name": "jobs", "state": "dead"}).text
        assert counts.lstrip().startswith('<div id="counts"') and count(counts, "dead") == "1"


def test_a_job_page_shows_the_payload_as_text_never_as_markup(site: Site) -> None:
    scene(site, "one")
    with site.client() as client:
        dead = client.get("/job", params={"name": "one", "id": "xss"})
        assert dead.status_code == 200
        assert 'data-state="dead"' in dead.text and "ValueError: &lt;b&gt;bad&lt;/b&gt; input" in dead.text
        assert '<pre class="payload" data-kind="text">&lt;script&gt;alert(1)&lt;/script&gt;</pre>' in dead.text
        assert dead.text.count("<script") == 1, "only the page's own htmx"
        assert "script-src 'self'" in dead.headers["content-security-policy"]
        binary = client.get("/job", params={"name": "one", "id": "later"}).text
        assert 'data-kind="hex"' in binary and "00 01 ff 62 69 6e 61 72 79" in binary
        js = client.get("/job", params={"name": "one", "id": "ready"}).text
        assert 'data-kind="json"' in js and "&#34;to&#34;: &#34;a@example.com&#34;" in js
        missing = client.get("/job", params={"name": "one", "id": "nope"})
        assert missing.status_code == 404 and "No job with this id" in missing.text
        assert client.get("/job", params={"name": "bad{name}", "id": "x"}).status_code == 400
        assert client.get("/queue", params={"name": "one", "state": "flying"}).status_code == 400


def test_every_action(site: Site) -> None:
    q = scene(site, "acts")
    with site.client() as client:
        page = client.get("/queue", params={"name": "acts", "state": "dead"}).text
        done = act(client, page, action="redrive", name="acts", id="xss", back="/queue?name=acts&state=dead")
        assert done.status_code == 200 and "1 dead job(s) back in the queue" in done.text
        assert q.stats().dead == 0 and (q.get("xss") or pytest.fail()).state == "ready"
        done = act(client, page, action="reschedule", name="acts", id="later")
        assert "Job later is due now." in done.text and q.stats().delayed == 0
        done = act(client, page, action="cancel", name="acts", id="ready")
        assert "Job ready cancelled." in done.text and q.get("ready") is None
        done = act(client, page, action="cancel", name="acts", id="ready")
        assert "No job ready in this queue" in done.text
        done = act(client, page, action="pause", name="acts")
        assert "Queue paused" in done.text and q.stats().paused
        assert 'data-count="paused"><span class="badge warn">paused' in done.text
        assert 'data-action="resume"' in done.text
        assert "Queue resumed." in act(client, page, action="resume", name="acts").text and not q.stats().paused
        for job in q.dequeue(10, lock_ttl=60):
            q.nack(job)  # max_attempts=1: dead (the one in flight stays there)
        assert q.stats().dead == 2
        assert "2 dead job(s) back" in act(client, page, action="redrive_all", name="acts").text
        total = q.stats().total
        refused = act(client, page, action="purge", name="acts", confirm="act")
        assert "Nothing purged" in refused.text and q.stats().total == total
        assert f"Purged {total} job(s)." in act(client, page, action="purge", name="acts", confirm="acts").text
        assert q.stats().total == 0
        for elsewhere in ("//evil.example/x", "/\\evil.example/x", "https://evil.example/"):
            fields = {"csrf": token(page), "action": "resume", "name": "acts", "back": elsewhere}
            moved = client.post("/action", data=fields, follow_redirects=False)
            assert moved.headers["location"].startswith("/queue?name=acts&done="), elsewhere
        spoofed = client.get("/queue", params={"name": "acts", "done": "purged", "n": "0. Call +1 555 0100 now"}).text
        assert "Purged ? job(s)." in spoofed and "555" not in spoofed
        assert act(client, page, action="explode", name="acts").status_code == 400
        assert act(client, page, action="cancel", name="acts", id="").status_code == 400


def test_actions_need_the_csrf_token_from_the_same_site(site: Site) -> None:
    q = scene(site, "csrf")
    with site.client() as client:
        first = client.get("/queue", params={"name": "csrf"})
        cookie = first.headers["set-cookie"].lower()
        assert "delayq_csrf=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        page = first.text
        fields = {"action": "purge", "name": "csrf", "confirm": "csrf"}
        assert client.post("/action", data=fields).status_code == 403
        assert client.post("/action", data={**fields, "csrf": "0" * 64}).status_code == 403
        evil = client.post("/action", data={**fields, "csrf": token(page)}, headers={"Origin": "https://evil.example"})
        assert evil.status_code == 403
        with site.client() as other:  # another browser: its own cookie, so this page's token is not its
            other.get("/")
            assert other.post("/action", data={**fields, "csrf": token(page)}).status_code == 403
        assert q.stats().total == 4
        assert "set-cookie" not in client.get("/").headers, "one nonce per browser, kept"


def test_credentials_guard_pages_and_actions(site: Site) -> None:
    q = scene(site, "auth")
    good = "Basic " + base64.b64encode(b"ops:s3cret").decode()
    bad = "Basic " + base64.b64encode(b"ops:wrong").decode()
    with site.client(username="ops", password="s3cret") as client:
        refused = client.get("/")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
        assert client.get("/", headers={"Authorization": bad}).status_code == 401
        assert client.get("/metrics").status_code == 401
        page = client.get("/queue", params={"name": "auth"}, headers={"Authorization": good})
        assert page.status_code == 200 and "signed in" in page.text
        fields = {"csrf": token(page.text), "action": "pause", "name": "auth"}
        assert client.post("/action", data=fields).status_code == 401
        assert not q.stats().paused
        assert client.post("/action", data=fields, headers={"Authorization": good}, follow_redirects=False).status_code == 303
        assert q.stats().paused
    with site.client(username="ops", password="s3cret", public_read=True) as client:
        page = client.get("/queue", params={"name": "auth"})
        assert page.status_code == 200 and 'href="/login"' in page.text
        fields = {"csrf": token(page.text), "action": "resume", "name": "auth"}
        assert client.post("/action", data=fields).status_code == 401, "looking is public, acting is not"
        assert q.stats().paused
        assert client.get("/login").status_code == 401
        assert client.get("/login", headers={"Authorization": good}, follow_redirects=False).status_code == 303


def test_read_only_shows_no_actions_and_refuses_them(site: Site) -> None:
    q = scene(site, "ro")
    with site.client(read_only=True) as client:
        page = client.get("/queue", params={"name": "ro", "state": "dead"}).text
        assert "read-only" in page and 'action="/action"' not in page
        assert client.post("/action", data={"action": "purge", "name": "ro", "confirm": "ro"}).status_code == 403
        assert q.stats().total == 4


def test_mounted_under_a_path_in_another_app(site: Site) -> None:
    q = scene(site, "mounted")
    inner = site.app()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await inner.state.delayq.aclose()  # a mounted app's own lifespan does not run

    outer = Starlette(routes=[Mount("/ops/delayq", app=inner)], lifespan=lifespan)
    with TestClient(outer, base_url=BASE) as client:
        home = client.get("/ops/delayq/")
        assert home.status_code == 200 and 'href="/ops/delayq/queue?name=mounted"' in home.text
        assert "Path=/ops/delayq;" in home.headers["set-cookie"]
        assert 'src="/ops/delayq/static/htmx.min.js"' in home.text
        assert client.get("/ops/delayq/static/htmx.min.js").text.startswith("var htmx=")
        page = client.get("/ops/delayq/queue", params={"name": "mounted", "state": "dead"})
        done = client.post(
            "/ops/delayq/action",
            data={"csrf": token(page.text), "action": "redrive_all", "name": "mounted", "back": "https://evil.example/"},
            follow_redirects=False,
        )
        assert done.status_code == 303 and done.headers["location"].startswith("/ops/delayq/queue?name=mounted&")
        assert q.stats().dead == 0


def test_workers_from_heartbeats(site: Site) -> None:
    q = scene(site, "beats")
    now = time.time()
    key = f"{site.prefix}:{{beats}}:workers"
    with site.client() as client:
        assert "No heartbeats" in client.get("/workers").text
        beat: Callable[..., bytes] = lambda **kw: json.dumps(  # noqa: E731
            {"host": "web-1", "pid": 42, "concurrency": 8, "counters": {"processed": 7}, "started": now - 300, **kw}
        ).encode()
        site.raw.hset(key, mapping={"w1": beat(last_seen=now - 2), "w2": beat(last_seen=(now - 3600) * 1000), "w3": b"{not json"})
        ahead = json.dumps({"host": "web-2", "pid": 7, "concurrency": 1, "last_seen": (now + 30) * 1000})  # ms, clock ahead
        site.raw.hset(key, "w4", ahead)
        page = client.get("/queue", params={"name": "beats"}).text
        assert "web-1" in page and "processed 7" in page and "w1" in page and "w2" not in page and "w3" not in page
        rows = dict(re.findall(r'<td class="id">([^<]+)</td>(.*?)</tr>', page, flags=re.S))
        times = {w: dict(re.findall(r'data-time="(\w+)">([^<]*)<', rows[w])) for w in ("w1", "w4")}
        assert re.fullmatch(r"5m \d+s ago", times["w1"]["started"]), times  # seconds pass as the page renders
        assert re.fullmatch(r"\d\.\ds ago|\d+s ago", times["w1"]["last_seen"]), times
        assert times["w4"] == {"started": "-", "last_seen": times["w4"]["last_seen"]}
        assert re.fullmatch(r"2\d(\.\d)?s ahead of this clock|30s ahead of this clock", times["w4"]["last_seen"]), times
        assert "w1" in client.get("/workers").text
    site.raw.delete(key)
    q.purge()


def test_metrics_endpoint(site: Site) -> None:
    scene(site, "metered")
    with site.client() as client:
        text = client.get("/metrics").text
    assert 'delayq_jobs{queue="metered",shards="1",state="ready"} 1.0' in text
    assert 'delayq_jobs{queue="metered",shards="1",state="dead"} 1.0' in text
    assert 'delayq_queue_paused{queue="metered",shards="1"} 0.0' in text
    assert "delayq_up 1.0" in text
    assert re.search(r'delayq_oldest_ready_age_seconds\{queue="metered",shards="1"\} [0-9.e-]+', text)


def test_redis_down_is_a_page_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DELAYQ_WEB_USERNAME", "DELAYQ_WEB_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    with TestClient(create_app("redis://127.0.0.1:1/0"), base_url=BASE) as client:
        page = client.get("/")
        assert page.status_code == 503 and "Redis did not answer" in page.text
        assert 'class="flash"' not in page.text and page.text.count("ConnectionError") == 1, "said once, as the problem"
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and "delayq_up 0.0" in metrics.text
        # a refresh gets a fragment in place of the counts, still refreshing (not the whole error page)
        for path, target in (("/", "queues"), ("/partials/counts?name=q&state=dead", "counts")):
            fragment = client.get(path, headers={"HX-Request": "true"})
            assert fragment.status_code == 503 and "<html" not in fragment.text and "Redis did not answer" in fragment.text
            assert fragment.text.startswith(f'<div id="{target}" hx-get="{path.replace("&", "&amp;")}" hx-trigger="every')


def test_a_redis_that_stops_answering_gets_a_503_page_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket  # noqa: PLC0415

    for var in ("DELAYQ_WEB_USERNAME", "DELAYQ_WEB_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        with TestClient(create_app(url, timeout=0.3, queues=["q"]), base_url=BASE) as client:
            page = client.get("/")
            assert page.status_code == 503 and "Redis did not answer" in page.text and "Timeout" in page.text
            assert "delayq_up 0.0" in client.get("/metrics").text


def test_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELAYQ_WEB_USERNAME", "only-a-user")
    monkeypatch.delenv("DELAYQ_WEB_PASSWORD", raising=False)
    with pytest.raises(delayq.DelayqError, match="DELAYQ_WEB_PASSWORD"):
        create_app("redis://localhost")
    with pytest.raises(delayq.InvalidArgument, match="prefix"):
        create_app("redis://localhost", prefix="a{b", username="", password="")


# ---------------------------------------------------------------- what an adversary tries


def test_a_page_asked_for_under_another_host_name_is_refused(site: Site) -> None:
    """DNS rebinding: a site's own name pointed at the dashboard's address reads and acts as its own page."""
    q = scene(site, "rebind")
    with site.client() as client:
        page = client.get("/queue", params={"name": "rebind"})
        fields = {"csrf": token(page.text), "action": "purge", "name": "rebind", "confirm": "rebind"}
        evil = {"Host": "attacker.example", "Origin": "http://attacker.example"}
        refused = client.get("/queue", params={"name": "rebind"}, headers=evil)
        assert refused.status_code == 400 and "attacker.example" in refused.text and "allowed_hosts" in refused.text
        assert "set-cookie" not in refused.headers and "rebind" not in refused.text.replace("attacker", "")
        assert client.post("/action", data=fields, headers=evil).status_code == 400
        assert client.get("/metrics", headers=evil).status_code == 400
        assert q.stats().total == 4
        for loopback in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
            assert client.get("/", headers={"Host": loopback}).status_code == 200, loopback
    with site.client(allowed_hosts=["dash.example.com", "*.ops.example"]) as client:
        for host in ("dash.example.com", "DASH.example.com:443", "eu.ops.example"):
            assert client.get("/", headers={"Host": host}).status_code == 200, host
        for host in ("example.com", "ops.example", "dash.example.com.attacker.example", "localhost"):
            assert client.get("/", headers={"Host": host}).status_code == 400, host


def test_allowed_hosts_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELAYQ_WEB_ALLOWED_HOSTS", "ops.example, *.internal")
    with TestClient(create_app("redis://127.0.0.1:1/0")) as client:
        assert client.get("/static/delayq.css", headers={"Host": "ops.example"}).status_code == 200
        assert client.get("/static/delayq.css", headers={"Host": "a.internal"}).status_code == 200
        assert client.get("/static/delayq.css", headers={"Host": "localhost"}).status_code == 400


def test_one_queue_holding_a_stranger_key_does_not_spoil_the_list(site: Site) -> None:
    scene(site, "fine")
    site.raw.set(f"{site.prefix}:{{clash}}:due", "another program's string")
    with site.client(queues=["fine", "clash"]) as client:
        page = client.get("/")
        assert page.status_code == 200
        rows = dict(re.findall(r'<tr data-queue="([^"]+)">(.*?)</tr>', page.text, flags=re.S))
        assert count(rows["fine"], "ready") == "1"
        assert "WRONGTYPE" in rows["clash"] and "data-count" not in rows["clash"]
        assert client.get("/metrics").text.count('queue="fine"') > 0
    with site.client(queues=["clash"]) as client:  # nothing could be read: Redis is refusing
        alone = client.get("/")
        assert alone.status_code == 503 and "WRONGTYPE" in alone.text
    with site.client() as client:  # found by SCAN: the string is nobody's queue
        rows = dict(re.findall(r'<tr data-queue="([^"]+)">(.*?)</tr>', client.get("/").text, flags=re.S))
        assert set(rows) == {"fine"}
    site.raw.delete(f"{site.prefix}:{{clash}}:due")


def test_a_redis_that_refuses_scripts_gets_a_503_page(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DELAYQ_WEB_USERNAME", "DELAYQ_WEB_PASSWORD", "DELAYQ_WEB_PUBLIC_READ"):
        monkeypatch.delenv(var, raising=False)
    raw = redis.Redis.from_url(redis_url)
    user, prefix = unique_name("noscript"), unique_name("acl")
    delayq.Queue(raw, "q", prefix=prefix).enqueue(b"x", id="j")
    raw.acl_setuser(user, enabled=True, passwords=[f"+{user}"], keys=["*"], commands=["+@read", "-evalsha", "-eval"])
    try:
        url = redis_url.replace("redis://", f"redis://{user}:{user}@", 1)
        with TestClient(create_app(url, prefix=prefix), base_url=BASE) as client:
            for path in ("/", "/queue?name=q", "/job?name=q&id=j", "/partials/counts?name=q"):
                page = client.get(path)
                assert page.status_code == 503 and "Redis refused" in page.text and "evalsha" in page.text, path
            assert "delayq_up 0.0" in client.get("/metrics").text
    finally:
        raw.acl_deluser(user)
        delayq.Queue(raw, "q", prefix=prefix).purge()
        raw.close()


def test_a_cluster_client_on_a_lone_server_gets_a_503_page(redis_url: str) -> None:
    with TestClient(create_app(redis_url, cluster=True, username="", password=""), base_url=BASE) as client:
        page = client.get("/")
        assert page.status_code == 503 and "Redis did not answer" in page.text and "Traceback" not in page.text


def test_queues_named_in_urls_do_not_pile_up_in_memory(site: Site) -> None:
    from delayq.web._dashboard import MAX_OPEN_QUEUES  # noqa: PLC0415

    app = site.app()
    with TestClient(app, base_url=BASE) as client:
        for i in range(MAX_OPEN_QUEUES + 40):
            assert client.get("/partials/counts", params={"name": f"made-up-{i}"}).status_code == 200
        kept = client.portal.call(lambda: _open_queues(app))
        assert kept == MAX_OPEN_QUEUES


async def _open_queues(app: Starlette) -> int:
    return len(app.state.delayq.connection().queues)


async def _opened(app: Starlette) -> list[delayq.QueueRef]:
    return list(app.state.delayq.connection().queues)


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("refresh", -1, delayq.InvalidArgument),
        ("refresh", float("nan"), delayq.InvalidArgument),
        ("refresh", "2", delayq.InvalidType),
        ("page_size", 0, delayq.InvalidArgument),
        ("page_size", 10**9, delayq.InvalidArgument),
        ("page_size", 2.5, delayq.InvalidType),
        ("discover_every", -5, delayq.InvalidArgument),
        ("timeout", 0, delayq.InvalidArgument),
        ("queues", ["ok", "a{b"], delayq.InvalidArgument),
        ("queues", "single-name", delayq.InvalidType),
        ("queues", [42], delayq.InvalidType),
        ("read_only", "yes", delayq.InvalidType),
        ("allowed_hosts", ["http://ops.example/"], delayq.InvalidArgument),
        ("allowed_hosts", "ops.example", delayq.InvalidType),
        ("allowed_hosts", [], delayq.InvalidArgument),
        ("secret", b"short", delayq.InvalidArgument),
        ("client", "http://not-redis", delayq.InvalidArgument),
    ],
)
def test_each_bad_setting_is_named(option: str, value: Any, error: type[Exception], monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DELAYQ_WEB_USERNAME", "DELAYQ_WEB_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    options: dict[str, Any] = {"client": "redis://localhost", option: value}
    with pytest.raises(error, match=option):
        create_app(**options)


def test_an_oversized_action_form_is_refused_unread(site: Site) -> None:
    q = scene(site, "big")
    with site.client() as client:
        page = client.get("/queue", params={"name": "big"}).text
        fields = {"csrf": token(page), "action": "purge", "name": "big", "confirm": "big", "pad": "x" * 100_000}
        refused = client.post("/action", data=fields)
        assert refused.status_code == 413 and q.stats().total == 4


def test_a_job_page_fetches_and_shows_only_the_start_of_a_huge_payload(site: Site) -> None:
    from delayq.web._format import MAX_SHOWN_BYTES  # noqa: PLC0415

    q = site.queue("huge")
    q.enqueue(b"\xe2\x82\xac" * (2 * 1024 * 1024), id="euros")  # 6 MiB of text, a character cut at the limit
    with site.client() as client:
        page = client.get("/job", params={"name": "huge", "id": "euros"})
    assert page.status_code == 200 and len(page.content) < 4 * MAX_SHOWN_BYTES
    assert f"(text, the first {MAX_SHOWN_BYTES} of {6 * 1024 * 1024} bytes)" in page.text
    shown = re.search(r'<pre class="payload" data-kind="text">([^<]*)</pre>', page.text)
    assert shown is not None and set(shown[1]) == {"€"} and len(shown[1]) == MAX_SHOWN_BYTES // 3
    q.purge()


def test_every_form_that_acts_is_a_post_carrying_the_csrf_token(site: Site) -> None:
    scene(site, "forms")
    with site.client() as client:
        pages = [client.get("/").text, client.get("/workers").text]
        pages += [
            client.get("/queue", params={"name": "forms", "state": s}).text for s in ("ready", "delayed", "in_flight", "dead")
        ]
        pages += [client.get("/job", params={"name": "forms", "id": i}).text for i in ("xss", "flying", "ready", "later")]
        csrf = token(pages[2])
        forms = [form for page in pages for form in re.findall(r"<form\b.*?</form>", page, flags=re.S)]
        acting = [f for f in forms if 'action="/action"' in f]
        verbs = {re.search(r'name="action" value="(\w+)"', f)[1] for f in acting}  # type: ignore[index]
        assert verbs == {"cancel", "reschedule", "redrive", "redrive_all", "pause", "purge"}
        for form in acting:
            assert 'method="post"' in form and f'name="csrf" value="{csrf}"' in form, form
        for form in forms:
            assert form in acting or ('method="get"' in form and 'action="/job"' in form), form
        assert all("hx-post" not in page and "hx-delete" not in page and "hx-put" not in page for page in pages)
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            assert client.request(method, "/action", params={"action": "purge", "name": "forms"}).status_code == 405


def test_a_long_queue_list_uses_few_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    from delayq._server import RedisServer  # noqa: PLC0415
    from delayq.web._dashboard import MAX_CONCURRENT_CALLS  # noqa: PLC0415

    for var in ("DELAYQ_WEB_USERNAME", "DELAYQ_WEB_PASSWORD", "DELAYQ_WEB_PUBLIC_READ"):
        monkeypatch.delenv(var, raising=False)
    with RedisServer() as server:
        raw = redis.Redis.from_url(server.url)
        for i in range(60):
            delayq.Queue(raw, f"q{i}").enqueue(b"x")
        with TestClient(create_app(server.url, discover_every=0), base_url=BASE) as client:
            for path in ("/", "/", "/metrics", "/workers"):
                assert client.get(path).status_code == 200
            assert len(raw.client_list()) - 1 <= MAX_CONCURRENT_CALLS
            assert client.get("/").text.count("<tr data-queue=") == 60
        raw.close()


def test_a_url_cannot_make_up_a_sharded_queue(site: Site) -> None:
    """Opening a queue of 256 shards costs 70 ms of CPU: only the sharded queues found or configured open."""
    sharded = site.queue("spread", shards=4)
    sharded.enqueue_many([b"x"] * 6)
    app = site.app()
    with TestClient(app, base_url=BASE) as client:
        page = client.get("/queue", params={"name": "spread", "shards": "4"})
        assert page.status_code == 200 and count(page.text, "ready") == "6"
        for i in range(20):
            made_up = client.get("/partials/counts", params={"name": f"made-up-{i}", "shards": "256"})
            assert made_up.status_code == 404 and "of 256 shards" in made_up.text
        opened = client.portal.call(lambda: _opened(app))
        assert opened == [delayq.QueueRef("spread", 4)], "no queue object (no hash tags) for the made-up ones"
        fields = {"csrf": token(page.text), "action": "pause", "name": "spread", "shards": "3"}
        assert client.post("/action", data=fields).status_code == 404 and not sharded.stats().paused
    with site.client(queues=[delayq.QueueRef("spread", 4)]) as client:
        assert client.get("/job", params={"name": "spread", "shards": "4", "id": "nope"}).status_code == 404
        assert "No job with this id" in client.get("/job", params={"name": "spread", "shards": "4", "id": "nope"}).text
        assert client.get("/job", params={"name": "spread", "shards": "2", "id": "nope"}).status_code == 404
    sharded.purge()
