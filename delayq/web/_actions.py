"""The one endpoint that acts: POST /action, checked for read-only, credentials and CSRF, then one queue call."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .. import aio
from .._errors import InvalidArgument, InvalidType
from .._inspect import QueueRef
from ._dashboard import Dashboard
from ._params import link, ref_from
from ._security import csrf_ok

__all__ = ["MAX_FORM_BYTES", "MESSAGES", "act", "flash", "perform"]

MAX_FORM_BYTES = 16 * 1024
"""An action's form is a few short fields: a larger body is refused unread."""

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


def flash(params: Any) -> str | None:
    """The message an action's redirect asked for, or None."""
    template = MESSAGES.get(params.get("done", ""))
    if template is None:
        return None
    n = params.get("n", "")
    # a link can carry any text: a count is digits or nothing, so a crafted link cannot make it say more
    return template.format(id=params.get("id", "")[:200], n=n if n.isdigit() and len(n) <= 12 else "?")


async def perform(dash: Dashboard, request: Request) -> Response:
    """POST /action: refuse (403 read-only or CSRF, 401 credentials, 413 too big) or act and redirect back.

    Raises:
        HTTPException: 400 for a bad queue, action or id.
    """
    settings = dash.settings
    if settings.read_only:
        return dash.render(request, "error.html", 403, title="Read-only", problem="This dashboard is read-only.")
    if not settings.auth.allows(request):
        return dash.challenge(request)
    size = request.headers.get("content-length", "")
    if not size.isdigit() or int(size) > MAX_FORM_BYTES:
        message = f"An action's form is at most {MAX_FORM_BYTES} bytes, with its length given."
        return dash.render(request, "error.html", 413, title="Refused", problem=message)
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not csrf_ok(request, settings.secret or b"", fields.get("csrf", "")):
        message = "The form was not sent from this dashboard's page (CSRF check). Reload the page and try again."
        return dash.render(request, "error.html", 403, title="Refused", problem=message)
    ref = await dash.known(ref_from(fields))
    done, extra = await act(dash.queue(ref), fields.get("action", ""), fields, ref)
    root = request.scope.get("root_path", "").rstrip("/")
    back = fields.get("back", "")
    # only a path inside this app: never another host ("//x", "/\\x" are hosts to a browser)
    inside = back.startswith(f"{root}/") and not back.startswith("//") and "\\" not in back
    target = back if inside else link(root, "/queue", name=ref.name)
    separator = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{separator}{urlencode({'done': done, **extra})}", 303)


async def act(queue: aio.Queue, verb: str, fields: dict[str, str], ref: QueueRef) -> tuple[str, dict[str, str]]:
    """Do one action; returns the ``done`` code and what its message shows.

    Raises:
        HTTPException: 400 for an unknown action or a bad id.
        ScriptError, redis.RedisError: Redis refused or did not answer (the app's 503 page).
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
    except (InvalidArgument, InvalidType) as exc:
        raise HTTPException(400, str(exc)[:300]) from exc
    raise HTTPException(400, f"unknown action {verb[:40]!r}")
