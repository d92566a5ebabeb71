"""The dashboard's routes: pages that only read, one endpoint that acts, and ``/metrics``.

What a page costs Redis (each script is O(log N + page), N the jobs of the queue):

- the queue list: one SCAN walk (kept ``discover_every`` seconds) and one stats call per
  queue (per shard); its table refreshes with the stats calls only;
- a queue: one stats call, one jobs call for the page shown, one HGETALL of the heartbeat
  hash; its counts refresh with one stats call;
- a job: one get call; an action: one script call (one per shard, or per 1000 jobs for
  redrive all and purge).

Where things live: the settings in ``_settings``, the app's state (clients, queues, the
templates) in ``_dashboard``, the action endpoint in ``_actions``, request parameters in
``_params``, authentication, CSRF and the headers in ``_security``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .._errors import DelayqError, InvalidArgument, InvalidType, ScriptError
from .._inspect import JobState
from .._validate import check_state
from . import _format
from ._actions import flash, perform
from ._dashboard import HERE, REDIS_FAILURES, Dashboard
from ._params import int_param, link, ref_from, root_of
from ._security import AllowedHosts, SecurityHeaders
from ._settings import WebSettings

__all__ = ["WebSettings", "create_app"]

REDIS_AND_SCRIPT_FAILURES: tuple[type[Exception], ...] = (*REDIS_FAILURES, ScriptError)

Handler = Callable[[Request], Awaitable[Response]]


def create_app(client: Any = None, *, settings: WebSettings | None = None, **options: Any) -> Starlette:
    """The dashboard as a Starlette app, to serve (``delayq web``) or to mount.

    Args:
        client: A ``redis.asyncio`` client or a redis:// URL (default ``$DELAYQ_REDIS_URL``).
        settings: All the settings at once (then give no ``client`` or options).
        **options: Any other field of :class:`WebSettings` (``prefix``, ``read_only``,
            ``allowed_hosts`` ...).

    Returns:
        The app. Every page and action needs a Redis answer; when Redis fails or refuses,
        the page says so with status 503. It answers only requests for its allowed hosts
        (loopback names by default). Clients it makes from a URL are closed by its
        lifespan; mounted in another app (whose lifespan does not reach it), give it a
        client of your own, or ``await app.state.delayq.aclose()`` when yours shuts down.

    Raises:
        InvalidArgument, InvalidType: A bad setting, named.
        DelayqError: Only one of username and password.
    """
    if settings is None:
        settings = WebSettings(client=client, **options)
    elif client is not None or options:
        raise DelayqError("give settings, or a client and options, not both")
    dash = Dashboard(settings)

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
        ref = await dash.known(ref_from(params))
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
        ref = await dash.known(ref_from(request.query_params))
        state: JobState = check_state(request.query_params.get("state") or "ready")
        stats = await dash.queue(ref).stats()
        return dash.render(request, "_counts.html", ref=ref, stats=stats, state=state)

    async def job_page(request: Request) -> Response:
        params = request.query_params
        ref = await dash.known(ref_from(params))
        job_id = params.get("id", "")
        try:
            job = await dash.queue(ref).get(job_id, preview=_format.MAX_SHOWN_BYTES)
        except (InvalidArgument, InvalidType) as exc:
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
            return RedirectResponse(link(root_of(request), "/"), 303)
        return dash.challenge(request)

    async def action(request: Request) -> Response:
        return await perform(dash, request)

    async def metrics(request: Request) -> Response:
        try:
            from .. import metrics as prometheus  # noqa: PLC0415  (the prometheus extra is optional)
        except ImportError:
            return PlainTextResponse("install the prometheus extra: pip install 'delayq[prometheus]'\n", 404)
        started = time.perf_counter()
        try:
            rows = await dash.all_stats(await dash.refs())
            up = all(not isinstance(s, str) for _, s in rows)
        except REDIS_AND_SCRIPT_FAILURES:
            rows, up = [], False
        stats = {ref: s for ref, s in rows if not isinstance(s, str)}
        families = prometheus.queue_families(stats, up=up, seconds=time.perf_counter() - started)
        return Response(prometheus.render(families), media_type=prometheus.CONTENT_TYPE_LATEST)

    async def redis_down(request: Request, exc: Exception) -> Response:
        refused = isinstance(exc, ScriptError) or "permission" in str(exc).lower()
        title = "Redis refused the call" if refused else "Redis did not answer"
        problem = f"{type(exc).__name__}: {exc}"[:500]
        route = getattr(request.scope.get("route"), "name", None)
        if request.headers.get("hx-request") == "true" and route in ("overview", "counts"):
            # htmx swaps a 503 in (see base.html): the counts say Redis failed instead of freezing as they were
            target, path = ("queues", "/") if route == "overview" else ("counts", "/partials/counts")
            again = link(root_of(request), path, **request.query_params)
            return dash.render(request, "_unavailable.html", 503, target=target, again=again, title=title, problem=problem)
        return dash.render(request, "error.html", 503, title=title, problem=problem)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return dash.render(request, "error.html", exc.status_code, title=f"Error {exc.status_code}", problem=exc.detail)

    async def bad_value(request: Request, exc: Exception) -> Response:
        return dash.render(request, "error.html", 400, title="Bad request", problem=str(exc)[:500])

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

    failures: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        failure: redis_down for failure in REDIS_AND_SCRIPT_FAILURES
    }
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, DelayqError: bad_value, **failures},
    )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AllowedHosts, hosts=settings.allowed_hosts or ())
    app.state.delayq = dash
    return app
