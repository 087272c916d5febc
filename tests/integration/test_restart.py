"""Restart policies carried out by the shim, on the real kernel, under every runtime.

Each test polls state.json (bounded) and asserts outcomes and orderings, never
durations: the backoff's timing is the shim's business, its effects are checked here.
"""

from __future__ import annotations

import time

import pytest
import test_engine

from runtime.engine import ContainerError, Engine
from runtime.oci.spec import ContainerSpec
from runtime.state import pid_alive

engine = test_engine.engine
rootfs = test_engine.rootfs

# A run counter kept in the rootfs, which every run of the container shares.
_COUNT = "n=$(cat /tmp/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/n; echo run $n; "


def started(engine: Engine, rootfs, script: str, restart: str, **spec) -> str:
    cid = engine.create(
        ContainerSpec(rootfs=str(rootfs), args=["sh", "-c", script], **spec), restart=restart
    )
    engine.start(cid)
    return cid


def until(engine: Engine, cid: str, check, tries: int = 6000) -> dict:
    """Poll inspect until `check(info)` holds; bounded, so a broken shim fails the test."""
    for _ in range(tries):
        info = engine.inspect(cid)
        if check(info):
            return info
        time.sleep(0.01)
    raise AssertionError(f"never reached; last state: {engine.inspect(cid)}")


def boundaries_and_lines(engine: Engine, cid: str) -> list:
    return [
        ("restart", r["restart_count"]) if r.get("boundary") else r["log"]
        for r in engine.logs(cid)
        if not r["log"].startswith("[composer-shim]")  # the shim's own notes
    ]


def assert_ended_for_good(engine: Engine, cid: str) -> dict:
    info = engine.inspect(cid)
    assert info["status"] == "exited"
    assert info["shim_exited"] is True  # it answers the stop, then exits: give it a moment
    for _ in range(10_000):
        if not pid_alive(info["shim_pid"], info["shim_start_time"]):
            break
        time.sleep(0.001)
    assert not pid_alive(info["shim_pid"], info["shim_start_time"])  # nothing can restart it
    assert not pid_alive(info["pid"], info["pid_start_time"])
    return info


def test_restart_no_leaves_it_exited(engine, rootfs):
    cid = started(engine, rootfs, _COUNT + "exit 3", "no")
    assert engine.wait(cid, timeout=60) == 3
    info = assert_ended_for_good(engine, cid)
    assert info["restart_count"] == 0
    assert boundaries_and_lines(engine, cid) == ["run 1\n"]


def test_on_failure_restarts_exactly_n_times(engine, rootfs):
    cid = started(engine, rootfs, _COUNT + "exit 1", "on-failure:2")
    assert engine.wait(cid, timeout=120) == 1  # wait ends with the last run, not the first
    info = assert_ended_for_good(engine, cid)
    assert (info["restart_count"], info["exit_code"]) == (2, 1)
    assert boundaries_and_lines(engine, cid) == [
        "run 1\n",
        ("restart", 1),
        "run 2\n",
        ("restart", 2),
        "run 3\n",
    ]
    marks = [r for r in engine.logs(cid) if r.get("boundary")]
    assert [m["previous_exit_code"] for m in marks] == [1, 1]
    assert all(m["text"] == "" for m in marks)  # invisible in plain `logs` output


def test_on_failure_leaves_a_success_alone(engine, rootfs):
    cid = started(engine, rootfs, _COUNT + "exit 0", "on-failure")
    assert engine.wait(cid, timeout=60) == 0
    assert assert_ended_for_good(engine, cid)["restart_count"] == 0


@pytest.mark.parametrize("policy", ["always", "unless-stopped"])
def test_restarts_after_exit_0_and_a_kill_from_inside_until_stopped(engine, rootfs, policy):
    # Run 1 exits 0, run 2 kills itself with SIGKILL (no pid namespace: PID 1 of a
    # namespace could not), run 3 stays up until the engine stops it.
    script = _COUNT + "case $n in 1) exit 0;; 2) kill -9 $$;; *) exec sleep 1000;; esac"
    cid = started(engine, rootfs, script, policy, namespaces={"pid": "host"})
    info = until(engine, cid, lambda i: i["restart_count"] == 2 and i["status"] == "running")
    test_engine.wait_for_log(engine, cid, "run 3\n")
    assert info["exit_code"] == 137 and info["signal"] == 9  # the last exit: run 2's kill
    reply = engine.stop(cid, timeout=600)
    assert reply["status"] == "exited" and reply["signal"] == 15
    info = assert_ended_for_good(engine, cid)
    assert info["restart_count"] == 2
    marks = [r["previous_exit_code"] for r in engine.logs(cid) if r.get("boundary")]
    assert marks == [0, 137]
    with pytest.raises(ContainerError, match="not running"):
        engine.kill(cid)


@pytest.mark.parametrize("how", ["stop", "kill", "remove"])
def test_ending_a_container_while_it_waits_to_restart(engine, rootfs, how):
    # It fails at once, over and over; the growing backoff leaves it "restarting" long
    # enough to be caught there, and whatever comes in must end the loop for good.
    cid = started(engine, rootfs, _COUNT + "exit 1", "always")
    info = until(engine, cid, lambda i: i["status"] == "restarting" and i["restart_count"] >= 3)
    if how == "stop":
        reply = engine.stop(cid, timeout=600)
        assert reply["status"] == "exited" and reply["exit_code"] == 1
    elif how == "kill":
        engine.kill(cid)
        assert engine.wait(cid, timeout=60) == 1
    else:
        with pytest.raises(ContainerError, match="restarting"):
            engine.remove(cid)
        engine.remove(cid, force=True)
        test_engine.assert_no_trace(engine, info)
        return
    ended = assert_ended_for_good(engine, cid)
    runs = [line for line in boundaries_and_lines(engine, cid) if isinstance(line, str)]
    assert len(runs) == ended["restart_count"] + 1  # no run began after the end


def test_stop_while_running_ends_the_loop(engine, rootfs):
    # A user stop is not an exit the policy answers; a start by hand re-arms the policy.
    cid = started(engine, rootfs, _COUNT + "exec sleep 1000", "always")
    test_engine.wait_for_log(engine, cid, "run 1\n")
    engine.stop(cid, timeout=600)
    info = assert_ended_for_good(engine, cid)
    assert info["restart_count"] == 0
    assert boundaries_and_lines(engine, cid) == ["run 1\n"]
    engine.start(cid)  # a start by hand runs the policy again, counting from zero
    test_engine.wait_for_log(engine, cid, "run 2\n")
    assert engine.inspect(cid)["restart_count"] == 0
    engine.kill(cid)
    assert engine.wait(cid, timeout=60) == 137
    assert assert_ended_for_good(engine, cid)["restart_count"] == 0


def test_bad_policy_is_refused_at_create(engine, rootfs):
    spec = ContainerSpec(rootfs=str(rootfs), args=["true"])
    with pytest.raises(ValueError, match="unknown restart policy"):
        engine.create(spec, restart="sometimes")
    assert engine.list() == []


def test_a_terminal_container_gets_a_new_terminal_each_run(engine, rootfs):
    cid = started(engine, rootfs, "tty; exit 2", "on-failure:1", terminal=True)
    assert engine.wait(cid, timeout=60) == 2
    lines = boundaries_and_lines(engine, cid)
    assert len(lines) == 3 and lines[1] == ("restart", 1)
    assert all(line.startswith("/dev/pts/") for line in (lines[0], lines[2]))
