"""A stop through composer's engine journals docker's kill events: the stop signal, then
9 when the grace period ends; 9 alone when PID 1 cannot catch the stop signal (the shim
kills it at once). `composer events` shows them before the die and stop."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from rootfs import make_busybox_rootfs

from composer.ops import journal
from runtime.logs import parse_time
from runtime.oci.spec import ContainerSpec

# "ready" once the trap is set
SURVIVES_TERM = "trap 'echo term' TERM; echo ready; while :; do sleep 0.1; done"
ENDS_ON_TERM = "trap 'exit 0' TERM; echo ready; while :; do sleep 0.1; done"


@pytest.fixture
def engine(composer_root: Path, tmp_path: Path):
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    eng = journal.engine_class()(composer_root)
    eng.test_rootfs = rootfs
    yield eng
    for info in eng.list():
        eng.remove(info["id"], force=True)


def _stopped(engine, *args: str, timeout: float) -> tuple[list[dict], dict]:
    """The kills journaled by a stop, and the container's record after it."""
    container_id = engine.create(ContainerSpec(rootfs=str(engine.test_rootfs), args=list(args)))
    engine.start(container_id)
    directory = engine.inspect(container_id)["dir"]
    if args[0] == "sh":
        deadline = time.monotonic() + 20  # a hang guard, not a speed check
        while not any(r["log"].strip() == "ready" for r in engine.logs(container_id)):
            assert time.monotonic() < deadline, "the shell never set its trap"
            time.sleep(0.01)
    engine.stop(container_id, timeout=timeout)
    entries, _ = journal.read(directory)
    return entries, engine.inspect(container_id)


def _signals(entries: list[dict]) -> list[int]:
    assert all(e["action"] == "kill" for e in entries), entries
    return [int(e["attributes"]["signal"]) for e in entries]


def test_grace_period_over_journals_term_then_kill(engine):
    entries, info = _stopped(engine, "sh", "-c", SURVIVES_TERM, timeout=0.5)
    assert info["killed"] is True and "still running" in info["stop_reason"]
    assert _signals(entries) == [signal.SIGTERM, signal.SIGKILL]
    times = [parse_time(e["time"]) for e in entries]
    assert times[0] <= times[1] <= parse_time(info["finished_at"])


def test_stop_signal_obeyed_journals_it_alone(engine):
    entries, info = _stopped(engine, "sh", "-c", ENDS_ON_TERM, timeout=30)
    assert (info["killed"], info["exit_code"]) == (False, 0)
    assert _signals(entries) == [signal.SIGTERM]
    assert parse_time(entries[0]["time"]) <= parse_time(info["finished_at"])


def test_pid1_that_cannot_catch_term_journals_kill_alone(engine):
    entries, info = _stopped(engine, "sleep", "1000", timeout=30)
    assert info["killed"] is True and "does not catch SIGTERM" in info["stop_reason"]
    assert _signals(entries) == [signal.SIGKILL]


def test_stopping_a_stopped_container_journals_nothing(engine):
    container_id = engine.create(ContainerSpec(rootfs=str(engine.test_rootfs), args=["true"]))
    engine.start(container_id)
    engine.wait(container_id)
    engine.stop(container_id)
    assert journal.read(engine.inspect(container_id)["dir"]) == ([], 0)


SERVICE = f"""
services:
  web:
    image: busybox:latest
    command: ["sh", "-c", "{SURVIVES_TERM}"]
"""


def test_composer_events_show_the_kills_before_die_and_stop(project):
    from runtime.logs import format_time

    project.write(SERVICE)
    project.run("up", "-d")
    project.wait_for_log("web", "ready")
    since = format_time(time.time_ns())
    project.run("stop", "-t", "1")
    replayed = project.run("events", "--json", "--since", since, "--until", "1s").stdout
    events = [json.loads(line) for line in replayed.splitlines()]
    actions = [(e["action"], e["attributes"].get("signal")) for e in events]
    assert actions == [("kill", "15"), ("kill", "9"), ("die", None), ("stop", None)], actions
