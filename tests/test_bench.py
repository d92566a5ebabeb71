"""`delayq bench`: argument handling, the fakeredis fallback, a short real run, the benchmarks/ scripts."""

from __future__ import annotations

import importlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from delayq.__main__ import main
from delayq.bench import PHASES

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "delayq", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env or dict(os.environ),
        cwd=ROOT,
    )


def run_script(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run benchmarks/SCRIPT.py from this checkout."""
    return subprocess.run(
        [sys.executable, f"benchmarks/{script}.py", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=checkout_env(),
    )


def checkout_env(**changes: str) -> dict[str, str]:
    """The environment, with this checkout's delayq first on the path (benchmarks/ scripts import it)."""
    env = {k: v for k, v in os.environ.items() if k != "DELAYQ_REDIS_URL"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return {**env, **changes}


@pytest.mark.parametrize("url", ["http://localhost:6379", "not a url", "redis://host:notaport"])
@pytest.mark.parametrize("option", ["--url", "--cluster-url"])
def test_bad_url_is_one_line_and_exit_2(url: str, option: str) -> None:
    result = run_cli("bench", option, url)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "bad Redis URL" in result.stderr and url in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_server_is_one_line_and_exit_1() -> None:
    from delayq._server import free_port  # noqa: PLC0415

    result = run_cli("bench", "--url", f"redis://127.0.0.1:{free_port()}/0")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot reach Redis" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args", [["bench", "--rounds", "0"], ["bench", "--only", "nope"], ["bench", "--rounds", "x"], ["nope"], []]
)
def test_bad_arguments_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert "usage: delayq" in capsys.readouterr().err


def test_bench_url_from_environment(redis_url: str, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    env = dict(os.environ, DELAYQ_REDIS_URL=redis_url)
    result = run_cli("bench", "--only", "enqueue", "--rounds", "1", "--quiet", "--json", str(out), env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["environment"]["target"] == f"Redis at {redis_url}"
    assert data["enqueue"]["lua enqueue_many"]["items_per_s"] > 0
    assert data["enqueue"]["lua enqueue_many"]["server_usec_per_item"] > 0
    assert "enqueue_many at 1000 per call" in result.stdout


def test_fakeredis_fallback_says_so_loudly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DELAYQ_REDIS_URL"}
    env["PATH"] = str(tmp_path)  # no redis-server to be found
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    result = run_cli("bench", "--only", "throughput", "--rounds", "1", "--quiet", "--json", str(out), "--plot", str(png), env=env)
    assert result.returncode == 0, result.stderr
    assert "NOT representative" in result.stderr
    data = json.loads(out.read_text())
    assert data["environment"]["redis_version"] == "fakeredis"
    assert [row["batch"] for row in data["throughput"]["rows"]] == [1, 10, 100, 1000]
    assert all(row["round_trip"]["items_per_s"] > 0 for row in data["throughput"]["rows"])
    assert png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "program", [["-m", "delayq", "bench", "--only", "enqueue"], ["benchmarks/enqueue.py"]], ids=["delayq-bench", "script"]
)
def test_json_records_the_command_line_given(program: list[str], tmp_path: Path) -> None:
    # fakeredis (no redis-server on PATH): its enqueue sizes ignore --full, so the run is short either way
    out = tmp_path / "r.json"
    argv = [sys.executable, *program, "--full", "--rounds", "1", "--quiet", "--json", str(out)]
    result = subprocess.run(
        argv, check=False, capture_output=True, text=True, timeout=120, cwd=ROOT, env=checkout_env(PATH=str(tmp_path))
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["command"] == shlex.join(argv)
    assert data["full"] is True
    assert [k for k in data if k in PHASES] == ["enqueue"]


def test_every_phase_has_its_module_and_a_runnable_script() -> None:
    # dashboard.py measures the web extra's pages, not the queue, server_time.py compares this
    # tree with a git revision (a wheel has no history), and server_floor.py compares dequeue.lua
    # with a script that checks nothing: scripts of their own, not phases
    others = ("dashboard", "server_time", "server_floor")
    scripts = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem not in others)
    assert scripts == sorted(PHASES)
    for name, phase in PHASES.items():
        assert phase.name == name
        assert importlib.import_module(f"delayq.bench.{name}").PHASE is phase
        result = run_script(name, "--help")
        assert result.returncode == 0, result.stderr
        text = " ".join(result.stdout.split())
        assert f"benchmarks/{name}.py [-h] [--url URL]" in text
        assert phase.summary[1:] in text  # the phase's own help (its first letter is capitalised there)
        assert "--only" not in result.stdout


def test_the_floor_script_measures_both_sides_and_drains_its_queues(redis_url: str) -> None:
    """benchmarks/server_floor.py prints the floor, delayq's figure and their ratio, and leaves
    nothing behind on the server it measured."""
    client = redis.Redis.from_url(redis_url)
    before = set(client.scan_iter("delayq:{floor-*")) | set(client.scan_iter("delayq:{dq-*"))
    result = run_script("server_floor", "--rounds", "2", "--jobs", "300", "--url", redis_url)
    assert result.returncode == 0, result.stderr
    figures = [float(line.rsplit(":", 1)[1].strip().rstrip("x")) for line in result.stdout.splitlines()[1:]]
    assert len(figures) == 3 and all(f > 0 for f in figures), result.stdout
    after = set(client.scan_iter("delayq:{floor-*")) | set(client.scan_iter("delayq:{dq-*"))
    assert after == before, "the drained queues' keys are gone"
