"""The dashboard's routes: pages that only read, one endpoint that acts, and ``/metrics``.

What a page costs Redis (each script is O(log N + page), N the jobs of the queue):

- the queue list: one SCAN walk (kept ``discover_every`` seconds) and one stats call per
  queue (per shard); its table refreshes with the stats calls only;
- a queue: one stats call, one jobs call for the page shown, one HGETALL of the heartbeat
  hash; its counts refresh with one stats call;
- a job: one get call; an action: one script call (one per shard, or per 1000 jobs for
  redrive all and purge).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import redis
import redis.asyncio
import redis.asyncio.cluster
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import aio
from .._core import QueueCore
from .._discover import afind_queues
from .._errors import DelayqError
from .._heartbeats import WorkerInfo, live_workers, workers_key
from .._inspect import STATES, JobState, QueueRef
from .._sharded import MAX_SHARDS
from .._types import QueueStats
from .._validate import MAX_NAME_LENGTH, check_state
from . import _format
from ._security import CSRF_COOKIE, Auth, SecurityHeaders, csrf_nonce, csrf_ok, csrf_token

__all__ = ["WebSettings", "create_app"]

HERE = Path(__file__).resolve().parent

MESSAGES = {
    "cancelled": "Job {id} cancelled.",
    "not_found": "No job {id} in this queue (any more).",
    "redriven": "{n} dead job(s) back in the queue, due now.",
    "rescheduled": "Job {id} is due now.",
    "not_waiting": "Job {id} is not waiting (in flight, dead or gone): not rescheduled.",
    "paused": "Queue paused: workers claim nothing until it is resumed.",
    "already_paused": "The queue was already paused.",
    "resumed": "Queue resumed.",
    "not_paused": "The queue was not paused.",
    "purged": "Purged {n} job(s).",
    "unconfirmed": "Nothing purged: type the queue's name to confirm.",
}
"""What an action's redirect says, by the ``done`` code it carries (the id and count are escaped)."""


@dataclass
class WebSettings:
    """How the dashboard reaches Redis and who may do what.

    Attributes:
        client: A ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``
            (``decode_responses=False``), or a redis:// URL to make one from (one per event loop).
        cluster: With a URL: it names a Redis Cluster node.
        prefix: The queues' key prefix.
        queues: The queues to show; None = every queue found by SCAN (plus these, when given).
        read_only: Show no actions and refuse every POST.
        username: HTTP basic user; default ``$DELAYQ_WEB_USERNAME``.
        password: HTTP basic password; default ``$DELAYQ_WEB_PASSWORD``.
        public_read: With credentials set, let anyone look (actions still need them);
            default ``$DELAYQ_WEB_PUBLIC_READ=1``.
        secret: The CSRF key; default ``$DELAYQ_WEB_SECRET``, else random per process (so
            several processes behind one address need the variable).
        refresh: Seconds between the counts' refreshes.
        page_size: Jobs per page.
        discover_every: Seconds a SCAN's list of queues is kept.
    """

    client: Any = None
    cluster: bool = False
    prefix: str = "delayq"
    queues: Sequence[str | QueueRef] | None = None
    read_only: bool = False
    username: str | None = None
    password: str | None = None
    public_read: bool | None = None
    secret: bytes | None = None
    refresh: float = 2.0
    page_size: int = 50
    discover_every: float = 10.0
    auth: Auth = field(init=False)

    def __post_init__(self) -> None:
        if self.client is None:
            self.client = os.environ.get("DELAYQ_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://localhost:6379/0"
        QueueCore("probe", prefix=self.prefix)  # a bad prefix fails here, not on the first page
        self.username = self.username if self.username is not None else os.environ.get("DELAYQ_WEB_USERNAME")
        self.password = self.password if self.password is not None else os.environ.get("DELAYQ_WEB_PASSWORD")
        if self.public_read is None:
            self.public_read = os.environ.get("DELAYQ_WEB_PUBLIC_READ") == "1"
        if self.secret is None:
            env = os.environ.get("DELAYQ_WEB_SECRET")
            self.secret = env.encode() if env else secrets.token_bytes(32)
        self.auth = Auth(self.username, self.password)
        if bool(self.username) != bool(self.password):
            raise DelayqError("set both DELAYQ_WEB_USERNAME and DELAYQ_WEB_PASSWORD (or neither)")


class _Dashboard:
    """The app's state: clients, queues, the list of queues found, the templates."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        self.queues: dict[tuple[int, QueueRef], aio.Queue] = {}
        self.found: tuple[float, list[QueueRef]] = (-math.inf, [])
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,  # every value is text: a payload like <script> is shown, never run
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(iso=_format.iso, duration=_format.duration, age=_format.age, preview=_format.preview)
        self.templates.globals.update(relative=_format.relative, payload_view=_format.payload_view, STATES=STATES)

    # -- Redis

    def client(self) -> Any:
        """The client for the running event loop (a redis.asyncio client belongs to one loop)."""
        given = self.settings.client
        if not isinstance(given, str):
            return given
        loop = asyncio.get_running_loop()
        client = self.clients.get(loop)
        if client is None:
            if self.settings.cluster:
                client = redis.asyncio.cluster.RedisCluster.from_url(given)
            else:
                client = redis.asyncio.Redis.from_url(given)
            self.clients[loop] = client
        return client

    def queue(self, ref: QueueRef) -> aio.Queue:
        """The queue object for a ref (kept: a sharded queue's tags take a moment to compute)."""
        client = self.client()
        key = (id(client), ref)
        queue = self.queues.get(key)
        if queue is None:
            queue = self.queues[key] = aio.Queue(client, ref.name, prefix=self.settings.prefix, shards=ref.shards)
        return queue

    async def aclose(self) -> None:
        """Close the clients this app made from a URL (a client given to it is the caller's to close)."""
        clients, self.clients = list(self.clients.values()), weakref.WeakKeyDictionary()
        self.queues.clear()
        for client in clients:
            await client.aclose()

    async def refs(self) -> list[QueueRef]:
        """The queues to show: those configured, and (unless only those) those found by SCAN."""
        given = [q if isinstance(q, QueueRef) else QueueRef(q) for q in self.settings.queues or ()]
        if self.settings.queues is not None:
            return given
        found_at, found = self.found
        if time.monotonic() - found_at >= self.settings.discover_every:
            found = await afind_queues(self.client(), prefix=self.settings.prefix)
            self.found = (time.monotonic(), found)
        return sorted(set(found) | set(given))

    async def all_stats(self, refs: list[QueueRef]) -> list[tuple[QueueRef, QueueStats]]:
        """Each queue's stats: one script call per queue (per shard), concurrently."""
        stats = await asyncio.gather(*(self.queue(ref).stats() for ref in refs))
        return list(zip(refs, stats, strict=True))

    async def workers(self, ref: QueueRef) -> list[WorkerInfo]:
        """The live workers of a queue, from its heartbeat hash (see delayq._heartbeats)."""
        raw = await self.client().hgetall(workers_key(self.settings.prefix, ref.name))
        return live_workers(raw, time.time())

    # -- responses

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        """A page (or a fragment), with what every template needs; sets the CSRF cookie when new."""
        nonce, new = csrf_nonce(request)
        root = request.scope.get("root_path", "").rstrip("/")
        settings = self.settings
        html = self.templates.get_template(template).render(
            root=root,
            link=lambda path, **params: link(root, path, **params),
            csrf=csrf_token(settings.secret or b"", nonce),
            can_act=not settings.read_only,
            read_only=settings.read_only,
            signed_in=settings.auth.enabled and settings.auth.allows(request),
            auth_enabled=settings.auth.enabled,
            refresh=settings.refresh,
            **context,
        )
        response = HTMLResponse(html, status_code=status)
        if new:
            response.set_cookie(
                CSRF_COOKIE,
                nonce,
                path=root or "/",
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        return response

    def challenge(self, request: Request) -> HTMLResponse:
        """401 with a basic-auth challenge: the browser asks for the credentials."""
        response = self.render(request, "error.html", 401, title="Sign in", message="Sign in to see this page or to act.")
        response.headers["www-authenticate"] = 'Basic realm="delayq", charset="UTF-8"'
        return response

    def can_read(self, request: Request) -> bool:
        return bool(self.settings.public_read) or self.settings.auth.allows(request)


def link(root: str, path: str, **params: Any) -> str:
    """A URL inside the app (relative to the host, under the mount point), with query parameters."""
    query = urlencode({k: v for k, v in params.items() if v is not None and v != ""})
    return f"{root}{path}" + (f"?{query}" if query else "")


def ref_from(params: Any) -> QueueRef:
    """The queue named by the ``name`` and ``shards`` parameters, checked.

    Raises:
        HTTPException: 400, naming the bad value.
    """
    name = params.get("name", "")
    try:
        QueueCore(name)
        shards = int(params.get("shards") or 1)
    except (DelayqError, ValueError) as exc:
        raise HTTPException(400, f"bad queue: {exc}"[: MAX_NAME_LENGTH + 100]) from exc
    if not 1 <= shards <= MAX_SHARDS:
        raise HTTPException(400, f"shards must be between 1 and {MAX_SHARDS}, got {shards}")
    return QueueRef(name, shards)


def int_param(params: Any, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter, clamped to [low, high].

    Raises:
        HTTPException: 400 when it is not an integer.
    """
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        return max(low, min(high, int(raw)))
    except ValueError as exc:
        raise HTTPException(400, f"{name} must be a whole number, got {raw!r}") from exc


Handler = Callable[[Request], Awaitable[Response]]


def create_app(client: Any = None, *, settings: WebSettings | None = None, **options: Any) -> Starlette:
    """The dashboard as a Starlette app, to serve (``delayq web``) or to mount.

    Args:
        client: A ``redis.asyncio`` client or a redis:// URL (default ``$DELAYQ_REDIS_URL``).
        settings: All the settings at once (then give no ``client`` or options).
        **options: Any other field of :class:`WebSettings` (``prefix``, ``read_only`` ...).

    Returns:
        The app. Every page and action needs a Redis answer; when Redis fails the page
        says so with status 503. Clients it makes from a URL are closed by its lifespan;
        mounted in another app (whose lifespan does not reach it), give it a client of
        your own, or ``await app.state.delayq.aclose()`` when yours shuts down.

    Raises:
        InvalidArgument, InvalidType: A bad prefix.
        DelayqError: Only one of username and password.
    """
    if settings is None:
        settings = WebSettings(client=client, **options)
    elif client is not None or options:
        raise DelayqError("give settings, or a client and options, not both")
    dash = _Dashboard(settings)

    def reading(handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            if not dash.can_read(request):
                return dash.challenge(request)
            return await handler(request)

        return guarded

    async def overview(request: Request) -> Response:
        rows = await dash.all_stats(await dash.refs())
        partial = request.headers.get("hx-request") == "true"
        response = dash.render(request, "_queues.html" if partial else "overview.html", rows=rows)
        response.headers["vary"] = "HX-Request"  # one URL, two bodies: never serve one for the other
        return response

    async def queue_page(request: Request) -> Response:
        params = request.query_params
        ref = ref_from(params)
        state = check_state(params.get("state") or "ready")
        size = settings.page_size
        page = int_param(params, "page", 1, 1, 10**9)
        queue = dash.queue(ref)
        stats, jobs, workers = await asyncio.gather(
            queue.stats(), queue.list_jobs(state, offset=(page - 1) * size, limit=size, preview=160), dash.workers(ref)
        )
        pages = max(1, math.ceil(jobs.total / size))
        return dash.render(
            request,
            "queue.html",
            ref=ref,
            stats=stats,
            jobs=jobs,
            state=state,
            page=page,
            pages=pages,
            workers=workers,
            now=time.time(),
            message=flash(params),
        )

    async def counts(request: Request) -> Response:
        ref = ref_from(request.query_params)
        state: JobState = check_state(request.query_params.get("state") or "ready")
        stats = await dash.queue(ref).stats()
        return dash.render(request, "_counts.html", ref=ref, stats=stats, state=state)

    async def job_page(request: Request) -> Response:
        params = request.query_params
        ref = ref_from(params)
        job_id = params.get("id", "")
        try:
            job = await dash.queue(ref).get(job_id)
        except DelayqError as exc:
            raise HTTPException(400, str(exc)[:300]) from exc
        status = 200 if job is not None else 404
        return dash.render(
            request, "job.html", status, ref=ref, job_id=job_id, job=job, limit=_format.MAX_SHOWN_BYTES, message=flash(params)
        )

    async def workers_page(request: Request) -> Response:
        refs = await dash.refs()
        found = await asyncio.gather(*(dash.workers(ref) for ref in refs))
        return dash.render(request, "workers.html", rows=list(zip(refs, found, strict=True)), now=time.time())

    async def login(request: Request) -> Response:
        if not settings.auth.enabled or settings.auth.allows(request):
            return RedirectResponse(link(request.scope.get("root_path", "").rstrip("/"), "/"), 303)
        return dash.challenge(request)

    async def action(request: Request) -> Response:
        if settings.read_only:
            return dash.render(request, "error.html", 403, title="Read-only", message="This dashboard is read-only.")
        if not settings.auth.allows(request):
            return dash.challenge(request)
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not csrf_ok(request, settings.secret or b"", fields.get("csrf", "")):
            message = "The form was not sent from this dashboard's page (CSRF check). Reload the page and try again."
            return dash.render(request, "error.html", 403, title="Refused", message=message)
        ref = ref_from(fields)
        done, extra = await act(dash.queue(ref), fields.get("action", ""), fields, ref)
        root = request.scope.get("root_path", "").rstrip("/")
        back = fields.get("back", "")
        # only a path inside this app: never another host ("//x", "/\\x" are hosts to a browser)
        inside = back.startswith(f"{root}/") and not back.startswith("//") and "\\" not in back
        target = back if inside else link(root, "/queue", name=ref.name)
        separator = "&" if "?" in target else "?"
        return RedirectResponse(f"{target}{separator}{urlencode({'done': done, **extra})}", 303)

    async def metrics(request: Request) -> Response:
        try:
            from .. import metrics as prometheus  # noqa: PLC0415  (the prometheus extra is optional)
        except ImportError:
            return PlainTextResponse("install the prometheus extra: pip install 'delayq[prometheus]'\n", 404)
        started = time.perf_counter()
        try:
            refs = await dash.refs()
            labels = prometheus.queue_labels(refs)
            stats = {labels[ref]: s for ref, s in await dash.all_stats(refs)}
            up = True
        except (redis.RedisError, OSError):
            stats, up = {}, False
        families = prometheus.queue_families(stats, up=up, seconds=time.perf_counter() - started)
        return Response(prometheus.render(families), media_type=prometheus.CONTENT_TYPE_LATEST)

    async def redis_down(request: Request, exc: Exception) -> Response:
        return dash.render(request, "error.html", 503, title="Redis did not answer", message=f"{type(exc).__name__}: {exc}")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return dash.render(request, "error.html", exc.status_code, title=f"Error {exc.status_code}", message=exc.detail)

    async def bad_value(request: Request, exc: Exception) -> Response:
        return dash.render(request, "error.html", 400, title="Bad request", message=str(exc)[:500])

    routes = [
        Route("/", reading(overview), name="overview"),
        Route("/queue", reading(queue_page), name="queue"),
        Route("/partials/counts", reading(counts), name="counts"),
        Route("/job", reading(job_page), name="job"),
        Route("/workers", reading(workers_page), name="workers"),
        Route("/metrics", reading(metrics), name="metrics"),
        Route("/login", login, name="login"),
        Route("/action", action, methods=["POST"], name="action"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await dash.aclose()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: http_error,
            redis.RedisError: redis_down,
            ConnectionError: redis_down,
            DelayqError: bad_value,
        },
    )
    app.add_middleware(SecurityHeaders)
    app.state.delayq = dash
    return app


def flash(params: Any) -> str | None:
    """The message an action's redirect asked for, or None."""
    template = MESSAGES.get(params.get("done", ""))
    if template is None:
        return None
    return template.format(id=params.get("id", "")[:200], n=params.get("n", "?")[:12])


async def act(queue: aio.Queue, verb: str, fields: dict[str, str], ref: QueueRef) -> tuple[str, dict[str, str]]:
    """Do one action; returns the ``done`` code and what its message shows.

    Raises:
        HTTPException: 400 for an unknown action or a bad id.
    """
    job_id = fields.get("id", "")
    try:
        if verb == "cancel":
            return ("cancelled" if await queue.cancel(job_id) else "not_found"), {"id": job_id}
        if verb == "reschedule":
            return ("rescheduled" if await queue.reschedule(job_id) else "not_waiting"), {"id": job_id}
        if verb == "redrive":
            return "redriven", {"n": str(await queue.redrive([job_id]))}
        if verb == "redrive_all":
            return "redriven", {"n": str(await queue.redrive())}
        if verb == "pause":
            return ("paused" if await queue.pause() else "already_paused"), {}
        if verb == "resume":
            return ("resumed" if await queue.resume() else "not_paused"), {}
        if verb == "purge":
            if fields.get("confirm", "") != ref.name:
                return "unconfirmed", {}
            return "purged", {"n": str(await queue.purge())}
    except DelayqError as exc:
        raise HTTPException(400, str(exc)[:300]) from exc
    raise HTTPException(400, f"unknown action {verb[:40]!r}")
