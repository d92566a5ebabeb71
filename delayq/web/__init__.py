"""The delayq dashboard: a Starlette app (the ``web`` extra: ``pip install "delayq[web]"``).

Run it with ``delayq web`` (uvicorn), or mount it into an existing Starlette or FastAPI
application::

    import redis.asyncio
    from delayq.web import create_app

    app.mount("/delayq", create_app(redis.asyncio.Redis.from_url("redis://localhost:6379/0")))

Pages: every queue with its counts, lag and pause (refreshing on their own); one
queue's ready, delayed, in-flight and dead jobs, paged; one job with its payload and
last error; the live workers (from their heartbeats). Actions: cancel, reschedule
now, redrive one or all dead letters, pause, resume, purge (typed confirmation).
``/metrics`` serves the Prometheus metrics when the ``prometheus`` extra is installed.
Server-rendered with Jinja2 and a vendored htmx; no JavaScript build step.

Authentication: HTTP basic, from ``DELAYQ_WEB_USERNAME`` and ``DELAYQ_WEB_PASSWORD`` (or
the arguments); see :mod:`delayq.web._security` for CSRF and the headers.
"""

from __future__ import annotations

from ._app import WebSettings, create_app

__all__ = ["WebSettings", "create_app"]
