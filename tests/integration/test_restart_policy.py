"""deploy.restart_policy's timing as the shim carries it out: a fixed delay between runs,
max_attempts for any condition, and a window after which a restart counts as a success.
Durations are read from the log's timestamps and asserted as lower bounds only."""

from __future__ import annotations

import itertools

import pytest
import test_engine
import test_restart

from runtime.engine import Engine
from runtime.logs import parse_time
from runtime.oci.spec import ContainerSpec

engine = test_engine.engine
rootfs = test_engine.rootfs

_COUNT = test_restart._COUNT  # prints "run N", N counted across runs


def started(engine: Engine, rootfs, script: str, restart: str, **timing) -> str:
    spec = ContainerSpec(rootfs=str(rootfs), args=["sh", "-c", script])
    cid = engine.create(spec, restart=restart, **timing)
    engine.start(cid)
    return cid


def gaps(engine: Engine, cid: str) -> list[float]:
    """Seconds between consecutive restart marks. A run starts after its mark and ends
    before the wait for the next one begins, so each gap is at least that wait (the
    first wait has no mark before it: output can be read after the exit, so no bound)."""
    marks = [parse_time(r["time"]) for r in engine.logs(cid) if r.get("boundary")]
    return [(later - earlier) / 1e9 for earlier, later in itertools.pairwise(marks)]


def runs(engine: Engine, cid: str) -> list[str]:
    return [
        line for line in test_restart.boundaries_and_lines(engine, cid) if isinstance(line, str)
    ]


def test_delay_separates_the_runs(engine, rootfs):
    cid = started(engine, rootfs, _COUNT + "exit 1", "on-failure:3", restart_delay=0.7)
    assert engine.wait(cid, timeout=120) == 1
    info = test_restart.assert_ended_for_good(engine, cid)
    assert info["restart_count"] == 3
    assert runs(engine, cid) == [f"run {n}\n" for n in range(1, 5)]
    measured = gaps(engine, cid)
    assert len(measured) == 2 and all(gap >= 0.7 for gap in measured), measured


def test_max_attempts_limits_any_condition(engine, rootfs):
    # deploy.restart_policy: condition any, max_attempts 2 -> "always" with a limit:
    # even runs that succeed are restarted, twice.
    cid = started(engine, rootfs, _COUNT + "exit 0", "always", restart_max_attempts=2)
    assert engine.wait(cid, timeout=120) == 0
    info = test_restart.assert_ended_for_good(engine, cid)
    assert info["restart_count"] == 2
    assert runs(engine, cid) == ["run 1\n", "run 2\n", "run 3\n"]


def test_a_run_that_outlasts_the_window_resets_the_attempts(engine, rootfs):
    # max_attempts 2, window 3 s: runs 2 and 4 and 5 fail at once and count; run 3
    # lasts 4 s, beyond the window, so the count starts again after it. Without the
    # window the limit would have ended it after run 3.
    script = _COUNT + "[ $n = 3 ] && sleep 4; exit 1"
    cid = started(
        engine,
        rootfs,
        script,
        "on-failure",
        restart_max_attempts=2,
        restart_window=3.0,
        restart_delay=0.0,
    )
    assert engine.wait(cid, timeout=120) == 1
    info = test_restart.assert_ended_for_good(engine, cid)
    assert info["restart_count"] == 4
    assert runs(engine, cid) == [f"run {n}\n" for n in range(1, 6)]


def test_plain_restart_backs_off_doubling_from_100ms(engine, rootfs):
    cid = started(engine, rootfs, _COUNT + "exit 1", "on-failure:4")
    assert engine.wait(cid, timeout=120) == 1
    measured = gaps(engine, cid)
    assert len(measured) == 3  # waits of 0.2, 0.4 and 0.8 s at least
    assert all(gap >= 0.1 * 2 ** (k + 1) for k, gap in enumerate(measured)), measured


def test_negative_timing_is_refused_at_create(engine, rootfs):
    spec = ContainerSpec(rootfs=str(rootfs), args=["true"])
    with pytest.raises(ValueError, match="delay must not be negative"):
        engine.create(spec, restart="always", restart_delay=-1)
    assert engine.list() == []


def test_compose_deploy_restart_policy_reaches_the_shim(project):
    project.write(
        """
services:
  flaky:
    image: busybox:latest
    command: ["sh", "-c", "echo try; exit 2"]
    deploy:
      restart_policy: {condition: on-failure, delay: 0.5s, max_attempts: 2, window: 10s}
"""
    )
    project.run("up", "-d")
    containers = Engine(project.root)
    (info,) = containers.list({"io.composer.project": project.name})
    assert containers.wait(info["id"], timeout=120) == 2
    info = containers.inspect(info["id"])
    timing = (info["restart_delay"], info["restart_window"], info["restart_max_attempts"])
    assert timing == (0.5, 10.0, 2)
    assert info["restart_count"] == 2
    assert project.logs("flaky").count("try\n") == 3
    measured = gaps(containers, info["id"])
    assert len(measured) == 1 and measured[0] >= 0.5, measured
