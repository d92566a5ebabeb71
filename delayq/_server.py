"""Start a private redis-server on a free loopback port (used by the tests and `delayq bench`)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["RedisCluster", "RedisServer", "ServerUnavailable", "free_port"]


class ServerUnavailable(RuntimeError):
    """No redis-server binary was found, or it did not start."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A redis-server child process on 127.0.0.1, in a temporary directory; stopped on exit.

    Args:
        *extra: More ``redis-server`` arguments, e.g. ``"--appendonly", "yes"``.
        binary: The redis-server to run; default the one on PATH.

    Raises:
        ServerUnavailable: No redis-server, or it did not answer PING within 10 s.
    """

    def __init__(self, *extra: str, binary: str | None = None) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise ServerUnavailable("redis-server is not on PATH (Debian/Ubuntu: apt-get install redis-server)")
        self.binary = found
        self.extra = extra
        self.port = 0
        self.dir = Path(tempfile.mkdtemp(prefix="delayq-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of the server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server on a free port and wait until it answers PING."""
        for _ in range(5):
            if self._launch(free_port()):
                return self
        raise ServerUnavailable(f"redis-server did not start; see {self.dir / 'redis.log'}")

    def restart(self, *, kill: bool = False) -> None:
        """Stop the server (SIGTERM, or SIGKILL with ``kill``) and start it again on the same
        port and directory, so that it reloads what it persisted.

        Raises:
            ServerUnavailable: It did not come back within 10 s.
        """
        if kill and self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.stop()
        if not self._launch(self.port):
            raise ServerUnavailable(f"redis-server did not restart; see {self.dir / 'redis.log'}")

    def _launch(self, port: int) -> bool:
        self.port = port
        args = [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.dir), "--logfile", str(self.dir / "redis.log"), *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self._wait_ready():
            return True
        self.stop()
        return False

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisCluster:
    """A local Redis Cluster of ``masters`` masters with ``replicas`` replicas each, on loopback.

    Nodes are ``redis-server --cluster-enabled yes`` processes on free ports, joined
    by ``redis-cli --cluster create``. Stopped (all nodes) on exit.

    Args:
        masters: Number of masters (at least 3, as redis-cli requires).
        replicas: Replicas per master.
        node_timeout_ms: ``cluster-node-timeout``; small, so a failover takes about a second.

    Raises:
        ServerUnavailable: redis-server or redis-cli is missing, or the cluster did not form.
    """

    def __init__(self, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 1000) -> None:
        self.cli = shutil.which("redis-cli")
        if self.cli is None or shutil.which("redis-server") is None:
            raise ServerUnavailable("redis-server and redis-cli are needed (Debian/Ubuntu: apt-get install redis-server)")
        self.masters, self.replicas, self.node_timeout_ms = masters, replicas, node_timeout_ms
        self.nodes: list[RedisServer] = []

    @property
    def url(self) -> str:
        """A redis:// URL of one node, for ``redis.cluster.RedisCluster.from_url``."""
        return self.nodes[0].url

    def start(self) -> RedisCluster:
        """Start the nodes, create the cluster, and wait until every node says cluster_state:ok."""
        timeout = str(self.node_timeout_ms)
        try:
            for _ in range(self.masters * (1 + self.replicas)):
                node = RedisServer(
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", timeout,
                    "--cluster-replica-validity-factor", "0",
                )  # fmt: skip
                self.nodes.append(node.start())
            assert self.cli is not None
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            create = [self.cli, "--cluster", "create", *addresses, "--cluster-replicas", str(self.replicas), "--cluster-yes"]
            done = subprocess.run(create, capture_output=True, text=True, timeout=60, check=False)
            if done.returncode != 0:
                raise ServerUnavailable(f"redis-cli --cluster create failed: {done.stdout[-500:]} {done.stderr[-500:]}")
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ok(self, timeout: float = 30) -> None:
        """Wait until every live node reports cluster_state:ok and knows all slots."""
        assert self.cli is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    [self.cli, "-p", str(n.port), "cluster", "info"], capture_output=True, text=True, timeout=5, check=False
                ).stdout
                for n in self.nodes
                if n.proc is not None and n.proc.poll() is None
            ]
            if states and all("cluster_state:ok" in s and "cluster_slots_assigned:16384" in s for s in states):
                return
            time.sleep(0.1)
        raise ServerUnavailable("the cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        """Stop every node and remove their directories."""
        for node in self.nodes:
            node.__exit__(None, None, None)
        self.nodes = []

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
