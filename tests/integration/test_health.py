"""Healthchecks run by the shim, on the real kernel, under every runtime.

Statuses are sampled from state.json while the test drives the container; the asserts
are about order and content (which statuses, which probe results), never durations.
"""

from __future__ import annotations

import os
import time

import pytest
import test_engine

from runtime import shim
from runtime.engine import ContainerError, Engine
from runtime.oci.spec import ContainerSpec

engine = test_engine.engine
rootfs = test_engine.rootfs

ORDER = ["starting", "unhealthy", "healthy"]


def started(engine: Engine, rootfs, healthcheck, *args: str, **spec) -> str:
    args = args or ("sleep", "1000")
    cid = engine.create(
        ContainerSpec(rootfs=str(rootfs), args=list(args), **spec), healthcheck=healthcheck
    )
    engine.start(cid)
    return cid


def sample_until(engine: Engine, cid: str, check, seen: list, tries: int = 6000) -> dict:
    """Record each health snapshot in `seen` until `check(health)` holds (bounded)."""
    for _ in range(tries):
        health = engine.inspect(cid)["health"]
        seen.append(health)
        if check(health):
            return health
        time.sleep(0.01)
    raise AssertionError(f"never reached; last health: {engine.inspect(cid)['health']}")


def in_order(statuses: list[str], order: list[str]) -> bool:
    ranks = [order.index(s) for s in statuses]
    return ranks == sorted(ranks)


def test_starting_unhealthy_then_healthy_once_the_file_exists(engine, rootfs):
    check = {"test": ["CMD-SHELL", "test -f /tmp/ok"], "interval": 0.1, "retries": 3}
    cid = started(engine, rootfs, check)
    seen: list[dict] = []
    sample_until(engine, cid, lambda h: h["status"] == "unhealthy", seen)
    assert seen[0]["status"] == "starting"
    for health in seen:  # the streak decides: retries failures in a row, not fewer
        assert health["status"] == ("unhealthy" if health["failing_streak"] >= 3 else "starting")
    assert engine.exec(cid, ["touch", "/tmp/ok"]) == 0
    healthy = engine.wait_healthy(cid, timeout=60)
    seen.append(healthy)
    assert in_order([h["status"] for h in seen], ORDER)
    assert healthy["failing_streak"] == 0
    codes = [entry["exit_code"] for entry in healthy["log"]]
    assert codes[-1] == 0 and set(codes[:-1]) <= {1} and len(codes) >= 2
    assert len(healthy["log"]) <= 5
    starts = [entry["start"] for entry in healthy["log"]]
    assert starts == sorted(starts)
    assert all(entry["start"] <= entry["end"] for entry in healthy["log"])
    info = engine.inspect(cid)
    assert [c["health"]["status"] for c in engine.list() if c["id"] == cid] == ["healthy"]
    assert info["healthcheck"]["argv"] == ["/bin/sh", "-c", "test -f /tmp/ok"]


def test_start_interval_probes_in_the_start_period(engine, rootfs):
    # With an interval of an hour, only start_interval can bring a second probe, and
    # failures in the start period do not count: still "starting" with no streak.
    check = {
        "test": ["CMD", "test", "-f", "/tmp/ok"],
        "interval": 3600,
        "start_period": 3600,
        "start_interval": 0.1,
        "retries": 1,
    }
    cid = started(engine, rootfs, check)
    seen: list[dict] = []
    sample_until(engine, cid, lambda h: len(h["log"]) >= 2, seen)
    assert all((h["status"], h["failing_streak"]) == ("starting", 0) for h in seen)
    assert engine.exec(cid, ["touch", "/tmp/ok"]) == 0
    healthy = engine.wait_healthy(cid, timeout=60)
    assert healthy["log"][0]["exit_code"] == 1  # the first probe ran at once, before the file
    assert healthy["log"][-1]["exit_code"] == 0


def test_a_probe_that_hangs_is_killed_at_its_timeout(engine, rootfs):
    marker = f"9{os.getpid()}{time.monotonic_ns() % 100000}"  # sleep seconds, and unique
    check = {"test": ["CMD", "sleep", marker], "interval": 0.1, "timeout": 0.3, "retries": 2}
    cid = started(engine, rootfs, check)
    seen: list[dict] = []
    health = sample_until(engine, cid, lambda h: h["status"] == "unhealthy", seen)
    assert [e["exit_code"] for e in health["log"]] == [-1] * len(health["log"])
    assert health["log"][0]["output"] == "Health check exceeded timeout (0.3s)"
    # One probe at a time, and a timed-out one does not linger in the container.
    for _ in range(20):
        assert len(probes_running(marker)) <= 1
        time.sleep(0.01)
    engine.stop(cid, timeout=600)
    assert probes_running(marker) == []


def probes_running(marker: str) -> list[int]:
    """Pids of `sleep <marker>` itself (not the runtime's exec that names it)."""
    wanted = f"sleep\0{marker}\0".encode()
    found = []
    for pid in test_engine._processes_with(marker.encode()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read() == wanted:
                    found.append(pid)
        except OSError:
            continue
    return found


def test_probe_output_is_kept_and_cut(engine, rootfs):
    check = {"test": ["CMD-SHELL", "echo out; echo err >&2; head -c 9000 /dev/zero | tr '\\0' x"]}
    cid = started(engine, rootfs, check)
    health = engine.wait_healthy(cid, timeout=60)
    output = health["log"][-1]["output"]  # the success that made it healthy
    # runc's exec copies the probe's stdout and stderr in two goroutines: either may come first.
    assert sorted(output.split("\n")[:2]) == ["err", "out"], health["log"]
    assert len(output.encode()) == 4096


def test_none_disables_the_check(engine, rootfs):
    cid = started(engine, rootfs, {"test": ["NONE"], "interval": 0.1})
    info = engine.inspect(cid)
    assert info["healthcheck"] is None and info["health"] is None
    with pytest.raises(ContainerError, match="no healthcheck"):
        engine.wait_healthy(cid, timeout=5)
    assert shim.request(info["dir"], {"cmd": "status"})["status"] == "running"
    assert engine.inspect(cid)["health"] is None  # nothing probed meanwhile


def test_health_starts_over_with_each_restart(engine, rootfs):
    # Run 1 is healthy, then exits 1 when told; on-failure brings run 2, whose probe
    # blocks until told: meanwhile its health can only be the fresh "starting".
    run = (
        "n=$(cat /tmp/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/n; "
        "if [ $n = 1 ]; then while [ ! -f /tmp/die ]; do sleep 0.05; done; exit 1; fi; "
        "exec sleep 1000"
    )
    probe = "test $(cat /tmp/n) = 1 || { while [ ! -f /tmp/go ]; do sleep 0.05; done; false; }"
    cid = engine.create(
        ContainerSpec(rootfs=str(rootfs), args=["sh", "-c", run]),
        healthcheck={"test": ["CMD-SHELL", probe], "interval": 0.1, "timeout": 600},
        restart="on-failure",
    )
    engine.start(cid)
    engine.wait_healthy(cid, timeout=60)
    assert engine.exec(cid, ["touch", "/tmp/die"]) == 0
    for _ in range(6000):
        info = engine.inspect(cid)
        if info["restart_count"] == 1 and info["status"] == "running":
            break
        time.sleep(0.01)
    assert info["restart_count"] == 1
    health = info["health"]
    assert (health["status"], health["failing_streak"]) == ("starting", 0)
    assert health["log"] and {e["exit_code"] for e in health["log"]} == {0}  # run 1's, kept
    assert engine.exec(cid, ["touch", "/tmp/go"]) == 0
    seen: list[dict] = []
    sample_until(engine, cid, lambda h: h["status"] == "unhealthy", seen)
    assert seen[-1]["log"][-1]["exit_code"] == 1


def test_wait_healthy_gives_up_when_the_container_ends(engine, rootfs):
    cid = started(engine, rootfs, {"test": ["CMD", "false"], "interval": 0.1}, "sleep", "0.5")
    with pytest.raises(ContainerError, match="exited before it was healthy"):
        engine.wait_healthy(cid, timeout=60)
