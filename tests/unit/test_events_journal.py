"""The journal of kills and execs that `composer events` merges with state changes."""

from __future__ import annotations

import json

from composer.ops import commands, journal


def test_lines_are_read_once_and_a_line_being_written_waits(tmp_path):
    journal.append(tmp_path, "kill", 1_000_000_000, signal=9)
    entries, offset = journal.read(tmp_path)
    assert entries == [
        {"time": "1970-01-01T00:00:01.000000000Z", "action": "kill", "attributes": {"signal": "9"}}
    ]
    assert offset == journal.size(tmp_path)
    with open(tmp_path / journal.JOURNAL, "a") as handle:
        handle.write('{"time": "1970-01-01T00:00:02')  # a writer is mid-line
    assert journal.read(tmp_path, offset) == ([], offset)
    with open(tmp_path / journal.JOURNAL, "a") as handle:
        handle.write('.000000000Z", "action": "exec_die", "attributes": {}}\n')
    entries, later = journal.read(tmp_path, offset)
    assert [e["action"] for e in entries] == ["exec_die"]
    assert later == journal.size(tmp_path) > offset


def test_a_container_gone_meanwhile_is_no_error(tmp_path):
    gone = tmp_path / "removed"
    journal.append(gone, "kill", signal=9)  # must not fail the kill it reports
    assert journal.read(gone, 5) == ([], 5)
    assert journal.size(gone) == 0


def test_journaled_events_look_like_the_others_and_honour_since(tmp_path):
    info = {
        "id": "c" * 64,
        "name": "demo-web-1",
        "labels": {"io.composer.service": "web", "io.composer.image": "sha256:abc"},
    }
    journal.append(tmp_path, "exec_create: sh -c true", 1_000, execID="e1")
    journal.append(tmp_path, "exec_die", 3_000, execID="e1", exitCode=0)
    offsets: dict[str, int] = {}
    events = commands._journaled(info, tmp_path, 0, offsets, since_ns=2_000)
    assert [e["action"] for e in events] == ["exec_die"]
    (die,) = events
    assert die["type"] == "container" and die["service"] == "web" and die["id"] == info["id"]
    assert die["attributes"] == {
        "name": commands.name_of(info),
        "image": "sha256:abc",
        "execID": "e1",
        "exitCode": "0",
    }
    assert offsets[info["id"]] == journal.size(tmp_path)
    assert commands._journaled(info, tmp_path, offsets[info["id"]], offsets) == []
    json.dumps(die)  # what --json prints
