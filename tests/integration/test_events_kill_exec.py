"""`composer events` reports kills and execs (which change no container state) like
docker: `kill` with the signal, `exec_create: CMD`, `exec_start: CMD`, `exec_die` with
the exec's id and exit code; live and replayed with --since."""

from __future__ import annotations

import json
import signal
import time

SERVICE = """
services:
  web:
    image: busybox:latest
    command:
      - sh
      - -c
      - "trap 'echo got-usr1' USR1; while true; do sleep 0.1; done"
"""


def _act(project) -> None:
    """A kill the service survives, an exec, then a kill it does not survive."""
    project.run("kill", "-s", "USR1", "web")
    project.wait_for_log("web", "got-usr1")
    assert project.run("exec", "-T", "web", "sh", "-c", "exit 3", check=False).returncode == 3
    project.run("kill", "web")


def _check(project, seen: list[dict]) -> None:
    mine = [e for e in seen if e["action"] not in ("create", "start")]
    actions = [e["action"] for e in mine]
    assert actions == [
        "kill",
        "exec_create: sh -c exit 3",
        "exec_start: sh -c exit 3",
        "exec_die",
        "kill",
        "die",
    ], actions
    usr1, create, start, exec_die, sigkill, die = mine
    assert usr1["attributes"]["signal"] == str(int(signal.SIGUSR1))
    assert sigkill["attributes"]["signal"] == str(int(signal.SIGKILL))
    exec_id = create["attributes"]["execID"]
    assert len(exec_id) == 64
    assert start["attributes"]["execID"] == exec_die["attributes"]["execID"] == exec_id
    assert exec_die["attributes"]["exitCode"] == "3"
    assert sigkill["time"] <= die["time"]
    for event in mine:
        assert event["service"] == "web" and event["type"] == "container"
        assert event["attributes"]["name"] == f"{project.name}-web-1"
        assert event["id"] == die["id"]


def test_kill_and_exec_are_reported_live(project):
    from runtime.logs import format_time

    project.write(SERVICE)
    project.run("up", "-d")
    since = format_time(time.time_ns())
    events = project.follow_events(since)
    try:
        _act(project)
        seen: list[dict] = []
        while not any(e["action"] == "die" for e in seen):
            line = events.stdout.readline()
            assert line, f"events ended early: {events.stderr.read()}"
            seen.append(json.loads(line))
    finally:
        events.send_signal(signal.SIGINT)
        assert events.wait(timeout=20) == 130
        events.stdout.close()
        events.stderr.close()
    _check(project, seen)


def test_kill_and_exec_are_replayed_since_a_time_in_docker_text_form(project):
    from runtime.logs import format_time

    project.write(SERVICE)
    project.run("up", "-d")
    since = format_time(time.time_ns())
    _act(project)
    replayed = project.run("events", "--json", "--since", since, "--until", "1s").stdout
    _check(project, [json.loads(line) for line in replayed.splitlines()])
    text = project.run("events", "--since", since, "--until", "1s").stdout.splitlines()
    kills = [line for line in text if " container kill " in line]
    assert len(kills) == 2 and kills[1].endswith(f"signal={int(signal.SIGKILL)})")
    (exec_die,) = [line for line in text if " container exec_die " in line]
    assert "exitCode=3" in exec_die and "execID=" in exec_die


def test_a_kill_before_since_is_not_replayed(project):
    from runtime.logs import format_time

    project.write(SERVICE)
    project.run("up", "-d")
    project.run("kill", "-s", "USR1", "web")
    project.wait_for_log("web", "got-usr1")
    since = format_time(time.time_ns())
    assert project.run("exec", "-T", "web", "true").returncode == 0
    replayed = project.run("events", "--json", "--since", since, "--until", "1s").stdout
    actions = [json.loads(line)["action"] for line in replayed.splitlines()]
    assert actions == ["exec_create: true", "exec_start: true", "exec_die"]
