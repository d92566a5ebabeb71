"""`delayq web` and `delayq exporter`: the commands that serve, each on a socket bound before it starts.

A port in use, or an address that is not this machine's, is one line (never a traceback).
`delayq web` answers to loopback Host names, its --host and each --allow-host (see
``delayq.web._security`` for why a dashboard must check the Host it is asked for).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from ._cli_base import CliError, connect, resolve_url
from ._inspect import QueueRef

__all__ = ["EXPORTER_PORT", "LOOPBACK_HOSTS", "allowed_hosts", "cmd_exporter", "cmd_web", "listen"]

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
"""delayq.web's default allowed hosts (repeated here: importing delayq.web needs the web extra)."""

EXPORTER_PORT = 9640
"""`delayq exporter`'s default port."""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _queue_refs(specs: list[str] | None) -> list[QueueRef] | None:
    """--queue NAME or NAME/SHARDS, as QueueRefs (None when none are given); a plain queue named
    ``a/3`` is ``a/3/1``."""
    if not specs:
        return None
    refs = []
    for spec in specs:
        name, slash, shards = spec.rpartition("/")
        if slash and shards.isdigit():
            refs.append(QueueRef(name, int(shards)))
        else:
            refs.append(QueueRef(spec))
    return refs


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) and listening, for the server to serve on.

    Raises:
        CliError: The address cannot be had (in use, not this machine's, no permission).
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def allowed_hosts(host: str, extra: list[str] | None) -> list[str] | None:
    """The Host names `delayq web` answers: loopback, --host (a name or a specific address) and
    --allow-host; None (= $DELAYQ_WEB_ALLOWED_HOSTS, else loopback) when only the defaults apply."""
    names = list(extra or ())
    if host not in ("", "0.0.0.0", "::") and not _loopback(host):
        names.append(host)
    if not names:
        return None
    return [*LOOPBACK_HOSTS, *dict.fromkeys(names)]


def cmd_web(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: PLC0415  (the web extra is optional)

        from .web import create_app  # noqa: PLC0415
    except ImportError as exc:
        raise CliError(f"the dashboard needs the web extra: pip install 'delayq[web]' ({exc})", 2) from exc
    connect(args).close()  # a clear error now rather than on the first page
    anyone = not (os.environ.get("DELAYQ_WEB_USERNAME") and os.environ.get("DELAYQ_WEB_PASSWORD"))
    if anyone and not args.read_only and not _loopback(args.host) and not args.no_auth:
        raise CliError(
            f"refusing to let anyone on the network act on the queues (--host {args.host}): set DELAYQ_WEB_USERNAME "
            "and DELAYQ_WEB_PASSWORD, or pass --read-only, or --no-auth if something in front of it authenticates",
            2,
        )
    app = create_app(
        resolve_url(args.url),
        cluster=args.cluster,
        prefix=args.prefix,
        read_only=args.read_only,
        queues=_queue_refs(args.queue),
        refresh=args.refresh,
        allowed_hosts=allowed_hosts(args.host, args.allow_host),
    )
    sock = listen(args.host, args.port)
    hosts = ", ".join(app.state.delayq.settings.allowed_hosts)
    port = sock.getsockname()[1]
    hint = ""
    if args.host in ("0.0.0.0", "::") and not args.allow_host and not os.environ.get("DELAYQ_WEB_ALLOWED_HOSTS"):
        hint = "; add --allow-host NAME for each name or address people will use to reach it"
    where = f"http://{_url_host(args.host)}:{port}{args.root_path}/"
    print(f"delayq web: {where} (answers to Host {hosts}{hint})", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, root_path=args.root_path, log_level=args.log_level, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def cmd_exporter(args: argparse.Namespace) -> int:
    try:
        from prometheus_client import start_http_server  # noqa: PLC0415  (the prometheus extra is optional)
        from prometheus_client.registry import CollectorRegistry  # noqa: PLC0415

        from .metrics import QueueCollector  # noqa: PLC0415
    except ImportError as exc:
        raise CliError(f"the exporter needs the prometheus extra: pip install 'delayq[prometheus]' ({exc})", 2) from exc
    client = connect(args)
    collector = QueueCollector(client, prefix=args.prefix, queues=_queue_refs(args.queue))
    registry = _exporter_registry(collector, CollectorRegistry)
    try:
        server, _ = start_http_server(args.port, addr=args.host, registry=registry)
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    print(f"delayq exporter: http://{_url_host(args.host)}:{server.server_port}/metrics", file=sys.stderr, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    return 0


def _exporter_registry(collector: Any, registry_type: Callable[..., Any]) -> Any:
    """The exporter's registry: the queue gauges, and the workers' metrics from PROMETHEUS_MULTIPROC_DIR."""
    from prometheus_client.multiprocess import MultiProcessCollector  # noqa: PLC0415

    registry = registry_type(auto_describe=False)
    registry.register(collector)
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    return registry
