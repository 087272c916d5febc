"""`composer events` sees every event of a container removed between two of its polls:
the kills, die, stop and destroy (the removal's record in the project journal), as
docker compose shows them; a forced removal of a running container is a kill 9 first,
as docker's `rm -f`."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
from rootfs import make_busybox_rootfs

from composer import labels as L
from composer.ops.backend import Backend
from composer.ops.commands import container_events
from runtime.oci.spec import ContainerSpec
from tests.compose_helpers import COMPOSER, in_netns, netns_sandbox, project  # noqa: F401

READY_THEN_EXIT_ON_TERM = "trap 'exit 0' TERM; echo ready; while :; do sleep 0.1; done"


class _Polled(Backend):
    """A backend that says when a follower has listed the containers once."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.polled = threading.Event()

    def containers(self, name: str, **options) -> list[dict]:
        found = super().containers(name, **options)
        self.polled.set()
        return found


@pytest.fixture
def backend(composer_root: Path, tmp_path: Path):
    backend = _Polled(composer_root)
    backend.rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    backend.project = f"t{uuid.uuid4().hex[:8]}"
    yield backend
    for info in backend.engine.list():
        backend.engine.remove(info["id"], force=True)


def _created(backend, *args: str) -> str:
    labels = {L.PROJECT: backend.project, L.SERVICE: "web", L.IMAGE: "busybox"}
    return backend.engine.create(
        ContainerSpec(rootfs=str(backend.rootfs), args=list(args)), labels=labels
    )


def _follow_then(backend, container_id: str, remove) -> list[tuple]:
    """Follow the project's events; start the container after the follower's first poll;
    once the follower has shown its start, `remove` it while the follower is held (it
    polls again only when asked for its next event). (action, signal) of each event."""
    events = container_events(
        backend, backend.project, interval=0.05, until_ns=time.time_ns() + 60 * 10**9
    )
    starter = threading.Thread(
        target=lambda: backend.polled.wait(30) and backend.engine.start(container_id)
    )
    starter.start()
    seen = []
    try:
        for event in events:
            assert event["id"] == container_id
            seen.append((event["action"], event["attributes"].get("signal")))
            if event["action"] == "start":
                remove()
            if event["action"] == "destroy":
                return seen
    finally:
        starter.join()
    raise AssertionError(f"no destroy within a minute: {seen}")


def test_a_container_stopped_and_removed_between_two_polls_shows_its_end(backend):
    container_id = _created(backend, "sleep", "1000")  # PID 1 that cannot catch TERM

    def down() -> None:
        backend.engine.stop(container_id, timeout=10)
        backend.engine.remove(container_id, force=True)

    assert _follow_then(backend, container_id, down) == [
        ("start", None),
        ("kill", str(int(signal.SIGKILL))),
        ("die", None),
        ("stop", None),
        ("destroy", None),
    ]


def test_rm_force_of_a_running_container_is_a_kill_9_then_die_and_destroy(backend):
    container_id = _created(backend, "sleep", "1000")
    seen = _follow_then(
        backend, container_id, lambda: backend.engine.remove(container_id, force=True)
    )
    assert seen == [
        ("start", None),
        ("kill", str(int(signal.SIGKILL))),
        ("die", None),
        ("destroy", None),
    ]


def test_rm_force_is_replayed_since_a_time_with_the_exit_code(backend):
    from runtime.logs import format_time

    container_id = _created(backend, "sleep", "1000")
    backend.engine.start(container_id)
    since = time.time_ns()
    backend.engine.remove(container_id, force=True)
    replayed = list(container_events(backend, backend.project, since_ns=since, until_ns=0))
    assert [(e["action"], e["attributes"].get("signal")) for e in replayed] == [
        ("kill", str(int(signal.SIGKILL))),
        ("die", None),
        ("destroy", None),
    ]
    assert replayed[1]["attributes"]["exitCode"] == str(128 + signal.SIGKILL)
    assert replayed[0]["time"] >= format_time(since)


def test_removing_a_stopped_container_journals_no_kill(backend):
    container_id = _created(backend, "true")
    backend.engine.start(container_id)
    backend.engine.wait(container_id)
    since = time.time_ns()
    backend.engine.remove(container_id, force=True)
    replayed = list(container_events(backend, backend.project, since_ns=since, until_ns=0))
    assert [e["action"] for e in replayed] == ["destroy"]


SERVICES = f"""
services:
  sleeper:
    image: busybox:latest
    command: ["sleep", "1000"]
  trapper:
    image: busybox:latest
    command: ["sh", "-c", "{READY_THEN_EXIT_ON_TERM}"]
"""


def test_a_follower_started_before_down_sees_every_container_end(project):  # noqa: F811
    from runtime.logs import format_time

    project.write(SERVICES)
    since = format_time(time.time_ns())
    project.run("up", "-d")
    project.wait_for_log("trapper", "ready")
    # --since: its first poll replays both starts, so once they are shown it follows.
    follower = project.follow_events(since)
    try:
        seen: list[dict] = []

        def read_until(action: str) -> None:
            while sum(e["action"] == action for e in seen) < 2:
                line = follower.stdout.readline()
                assert line, f"events ended early: {follower.stderr.read()}"
                seen.append(json.loads(line))

        read_until("start")
        project.run("down")
        read_until("destroy")
    finally:
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=20) == 130
        follower.stdout.close()
        follower.stderr.close()
    by_service: dict[str, list[tuple]] = {}
    for event in seen:
        assert event["type"] == "container" and len(event["id"]) == 64
        assert event["attributes"]["name"] == f"{project.name}-{event['service']}-1"
        signal_sent = event["attributes"].get("signal")
        by_service.setdefault(event["service"], []).append((event["action"], signal_sent))
    ending = {name: actions[2:] for name, actions in by_service.items()}
    assert ending == {
        "sleeper": [("kill", "9"), ("die", None), ("stop", None), ("destroy", None)],
        "trapper": [("kill", "15"), ("die", None), ("stop", None), ("destroy", None)],
    }
    dies = {e["service"]: e["attributes"]["exitCode"] for e in seen if e["action"] == "die"}
    assert dies == {"sleeper": "137", "trapper": "0"}
