"""The project journal of removals: a container removed between two polls of
`composer events` still shows its last events (kills, die, stop, destroy), in order."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from composer import labels as L
from composer.ops import commands, journal
from runtime.logs import format_time

PROJECT = "demo"
SECOND = 1_000_000_000


def _info(container_id: str, status: str, **fields) -> dict:
    return {
        "id": container_id,
        "name": f"{PROJECT}-web-1",
        "labels": {L.PROJECT: PROJECT, L.SERVICE: "web", L.IMAGE: "sha256:abc"},
        "status": status,
        "created_at": format_time(1 * SECOND),
        "started_at": format_time(2 * SECOND),
        **fields,
    }


def test_a_removal_record_keeps_the_last_state_and_the_journal_tail(tmp_path):
    directory = tmp_path / "c1"
    directory.mkdir()
    journal.append(directory, "kill", 3 * SECOND, signal=15)
    first_line_end = journal.size(directory)
    journal.append(directory, "kill", 4 * SECOND, signal=9)
    info = _info("c1", "exited", finished_at=format_time(5 * SECOND), exit_code=137, killed=True)
    info["log_path"] = "/not/kept"
    journal.record_removal(tmp_path, info, directory)
    (record,) = journal.read_project(journal.project_journal(tmp_path, PROJECT), None)[0]
    assert record["id"] == "c1" and record["action"] == "destroy"
    assert record["container"]["exit_code"] == 137 and record["container"]["killed"] is True
    assert "log_path" not in record["container"]
    assert [(e["at"], e["attributes"]["signal"]) for e in record["journal"]] == [
        (0, "15"),
        (first_line_end, "9"),
    ]


def test_a_container_of_no_project_is_not_recorded(tmp_path):
    journal.record_removal(tmp_path, {"id": "x", "labels": {}}, tmp_path)
    assert not (tmp_path / "projects").exists()


def test_the_tail_of_a_long_journal_starts_at_a_whole_line(tmp_path, monkeypatch):
    monkeypatch.setattr(journal, "_TAIL_LIMIT", 100)
    for n in range(10):
        journal.append(tmp_path, "kill", n, signal=n)
    entries = journal._entries_with_offsets(tmp_path)
    assert entries and entries[-1]["attributes"]["signal"] == "9"
    data = (tmp_path / journal.JOURNAL).read_bytes()
    for entry in entries:  # each offset is where its own line starts
        line = data[entry["at"] :].split(b"\n", 1)[0]
        assert json.loads(line)["attributes"] == entry["attributes"]


def test_a_cursor_follows_the_journal_across_a_rotation(tmp_path, monkeypatch):
    path = journal.project_journal(tmp_path, PROJECT)
    cursor = journal.project_end(path)  # before the file exists
    assert cursor == (0, 0)

    def add(n: int) -> None:
        journal._append_rotating(path, (json.dumps({"n": n}) + "\n").encode())

    add(0)
    records, cursor = journal.read_project(path, cursor)
    assert [r["n"] for r in records] == [0]
    size = os.stat(path).st_size
    monkeypatch.setattr(journal, "PROJECT_JOURNAL_LIMIT", size * 3)
    add(1)
    add(2)  # reaches the limit: this file becomes the older generation
    assert not path.exists() and Path(f"{path}.1").exists()
    add(3)
    records, cursor = journal.read_project(path, cursor)
    assert [r["n"] for r in records] == [1, 2, 3]
    assert journal.read_project(path, cursor) == ([], cursor)
    # From the oldest kept: both generations.
    assert [r["n"] for r in journal.read_project(path, None)[0]] == [0, 1, 2, 3]


def test_a_line_being_written_waits_for_the_next_read(tmp_path):
    path = journal.project_journal(tmp_path, PROJECT)
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"n": 1}\n{"n": ')
    records, cursor = journal.read_project(path, None)
    assert records == [{"n": 1}]
    with open(path, "ab") as handle:
        handle.write(b"2}\n")
    assert journal.read_project(path, cursor)[0] == [{"n": 2}]


class _Backend:
    """What a follower polls: each listing first runs the next scripted step (a change
    made between two polls)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.listed: dict[str, dict] = {}
        self.steps: list = []
        self.idle = 0

    def containers(self, project: str) -> list[dict]:
        if self.steps:
            self.steps.pop(0)()
            self.idle = 0
        else:
            self.idle += 1
            assert self.idle < 100, "the follower waits for events that never come"
        return list(self.listed.values())

    def container_dir(self, container_id: str) -> Path:
        directory = self.root / "containers" / container_id
        directory.mkdir(parents=True, exist_ok=True)
        return directory


def _follow(backend: _Backend, steps: list, last: tuple[str, str]) -> list[tuple]:
    """(id, action, signal) of each event until `last` (id, action) comes."""
    backend.steps = [lambda: None, *steps]  # the first poll only takes stock
    got = []
    for event in commands.container_events(backend, PROJECT):
        got.append((event["id"], event["action"], event["attributes"].get("signal")))
        if got[-1][:2] == last:
            return got
    raise AssertionError("the follower ended")


@pytest.fixture
def backend(tmp_path, monkeypatch):
    monkeypatch.setattr(commands.time, "sleep", lambda _: None)
    return _Backend(tmp_path)


def _start(backend: _Backend, container_id: str):
    return lambda: backend.listed.update({container_id: _info(container_id, "running")})


def _remove(backend: _Backend, container_id: str, *kills: int, **end):
    """Journal the kills, then record the removal as the engine does and unlist it."""

    def step() -> None:
        directory = backend.container_dir(container_id)
        for n, sig in enumerate(kills):
            journal.append(directory, "kill", (3 + n) * SECOND, signal=sig)
        info = _info(container_id, "exited", finished_at=format_time(5 * SECOND), **end)
        journal.record_removal(backend.root, info, directory)
        backend.listed.pop(container_id)

    return step


def test_a_container_stopped_and_removed_between_polls_shows_its_end(backend):
    steps = [_start(backend, "c1"), _remove(backend, "c1", 15, 9, exit_code=137, killed=True)]
    assert _follow(backend, steps, ("c1", "destroy")) == [
        ("c1", "create", None),
        ("c1", "start", None),
        ("c1", "kill", "15"),
        ("c1", "kill", "9"),
        ("c1", "die", None),
        ("c1", "stop", None),
        ("c1", "destroy", None),
    ]


def test_journal_lines_already_read_are_not_shown_again(backend):
    def usr1() -> None:
        journal.append(backend.container_dir("c1"), "kill", 2 * SECOND, signal=10)

    steps = [_start(backend, "c1"), usr1, _remove(backend, "c1", 9, exit_code=137)]
    assert _follow(backend, steps, ("c1", "destroy"))[2:] == [
        ("c1", "kill", "10"),
        ("c1", "kill", "9"),
        ("c1", "die", None),
        ("c1", "destroy", None),
    ]


def test_a_record_of_a_container_still_listed_is_not_doubled(backend):
    def recorded_but_listed() -> None:
        gone = _info("c1", "exited", finished_at=format_time(5 * SECOND), exit_code=0)
        journal.record_removal(backend.root, gone, backend.container_dir("c1"))
        backend.listed["c1"] = gone  # its directory is not deleted yet

    def c2_created() -> None:
        backend.listed["c2"] = _info("c2", "created", started_at=None)

    def c1_gone_c2_running() -> None:
        del backend.listed["c1"]
        backend.listed["c2"] = _info("c2", "running")

    steps = [_start(backend, "c1"), recorded_but_listed, c2_created, c1_gone_c2_running]
    assert _follow(backend, steps, ("c2", "start")) == [
        ("c1", "create", None),
        ("c1", "start", None),
        ("c1", "die", None),
        ("c1", "destroy", None),
        ("c2", "create", None),
        ("c2", "start", None),
    ]


def test_a_container_made_and_removed_between_polls_shows_its_whole_life(backend):
    def brief() -> None:
        now = format_time(time.time_ns())  # after the follower began
        info = _info("c1", "exited", created_at=now, started_at=now, finished_at=now)
        journal.record_removal(backend.root, {**info, "exit_code": 0}, backend.container_dir("c1"))

    assert _follow(backend, [brief], ("c1", "destroy")) == [
        ("c1", "create", None),
        ("c1", "start", None),
        ("c1", "die", None),
        ("c1", "destroy", None),
    ]


def test_a_removal_nobody_recorded_is_reported_after_a_grace(backend):
    def unlisted() -> None:
        del backend.listed["c1"]  # as a removal by runtime.engine.Engine itself

    events = _follow(backend, [_start(backend, "c1"), unlisted], ("c1", "destroy"))
    assert [action for _, action, _ in events] == ["create", "start", "die", "destroy"]
    assert backend.idle >= commands._UNRECORDED_REMOVAL_POLLS  # it waited for a record


def test_since_replays_removed_containers_from_the_project_journal(tmp_path):
    backend = _Backend(tmp_path)
    old = _info("c0", "exited", finished_at=format_time(3 * SECOND), exit_code=0)
    journal.record_removal(tmp_path, old, backend.container_dir("c0"))
    directory = backend.container_dir("c1")
    journal.append(directory, "kill", 6 * SECOND, signal=9)
    gone = _info(
        "c1",
        "exited",
        started_at=format_time(5 * SECOND),
        finished_at=format_time(7 * SECOND),
        exit_code=137,
    )
    journal.record_removal(tmp_path, gone, directory)
    events = list(commands.container_events(backend, PROJECT, since_ns=5 * SECOND, until_ns=0))
    # c0's destroy is now (the record's time), its run before 5 s.
    assert [(e["id"], e["action"]) for e in events] == [
        ("c1", "start"),
        ("c1", "kill"),
        ("c1", "die"),
        ("c0", "destroy"),
        ("c1", "destroy"),
    ]
