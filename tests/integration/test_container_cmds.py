"""The container commands (exec, run, kill, pause, unpause, rm, create, top, port, wait,
cp, events, ls) end to end: busybox services on the real kernel, in the test session's
network namespace, with a private COMPOSER_ROOT and nothing left afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid

from tests.compose_helpers import COMPOSER

SERVICES = """
services:
  db:
    image: busybox:latest
    command: ["sleep", "600"]
  web:
    image: busybox:latest
    depends_on: [db]
    environment: {GREETING: hello}
    ports: ["127.0.0.1:18091:8080"]
    command:
      - sh
      - -c
      - "trap 'echo got-usr1' USR1; while true; do echo tick; sleep 0.1; done"
  job:
    image: busybox:latest
    profiles: [jobs]
    command: ["sh", "-c", "sleep 0.5; echo done; exit 4"]
"""


def _rows(project) -> dict[str, dict]:
    return {row["Name"]: row for row in project.ps()}


def _service_rows(project, service: str) -> list[dict]:
    return [row for row in project.ps() if row["Service"] == service]


def _pid_of(project, service: str) -> int:
    from runtime.engine import Engine

    engine = Engine(project.root)
    (info,) = [
        i
        for i in engine.list({"io.composer.project": project.name})
        if i["labels"]["io.composer.service"] == service
    ]
    return info["pid"]


def test_exec_returns_the_commands_exit_code_and_honours_env_workdir_user(project):
    project.write(SERVICES)
    project.run("up", "-d")
    assert project.run("exec", "-T", "web", "sh", "-c", "exit 7", check=False).returncode == 7
    out = project.run(
        "exec",
        "-T",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "-u",
        "1000:1001",
        "web",
        "sh",
        "-c",
        'echo "$FOO $(pwd) $(id -u):$(id -g) $GREETING"',
    ).stdout
    assert out.strip() == "bar /tmp 1000:1001 hello"
    piped = subprocess.run(
        [*COMPOSER, "exec", "-T", "web", "tr", "a-z", "A-Z"],
        input="through stdin\n",
        cwd=project.directory,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.stdout == "THROUGH STDIN\n"
    missing = project.run("exec", "-T", "--index", "2", "web", "true", check=False)
    assert missing.returncode == 1 and "has no container number 2" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_exec_privileged_gets_capabilities_the_container_lacks(project):
    project.write(SERVICES)
    project.run("up", "-d")
    show = ["sh", "-c", "grep CapEff /proc/self/status"]
    plain = int(project.run("exec", "-T", "db", *show).stdout.split()[1], 16)
    privileged = int(project.run("exec", "-T", "--privileged", "db", *show).stdout.split()[1], 16)
    cap_sys_admin = 1 << 21
    assert not plain & cap_sys_admin and privileged & cap_sys_admin


def test_run_rm_streams_output_and_returns_the_exit_code_without_deps(project):
    project.write(SERVICES)
    result = project.run(
        "run", "--rm", "--no-deps", "web", "sh", "-c", "echo out; echo err >&2; exit 3", check=False
    )
    assert result.returncode == 3
    assert result.stdout == "out\n"
    assert "err\n" in result.stderr
    assert project.ps() == []  # no db started, and the one-off is gone
    both = project.run("run", "--rm", "-d", "web", check=False)
    assert both.returncode == 1 and "cannot be combined" in both.stderr


def test_run_starts_dependencies_unless_no_deps(project):
    project.write(SERVICES)
    result = project.run("run", "--rm", "-e", "X=42", "web", "sh", "-c", "echo $X $GREETING")
    assert result.stdout == "42 hello\n"
    rows = project.ps()
    assert [(r["Service"], r["State"]) for r in rows] == [("db", "running")]


def test_run_publishes_service_ports_only_when_asked(project):
    project.write(SERVICES)
    plain = project.run("run", "-d", "--no-deps", "web").stdout.strip()
    with_ports = project.run("run", "-d", "--no-deps", "--service-ports", "web").stdout.strip()
    extra = project.run("run", "-d", "--no-deps", "-p", "127.0.0.1:18092:9000", "web")
    rows = _rows(project)
    assert plain.startswith(f"{project.name}-web-run-")
    assert rows[plain]["Ports"] == ""
    assert rows[with_ports]["Ports"] == "127.0.0.1:18091->8080/tcp"
    assert rows[extra.stdout.strip()]["Ports"] == "127.0.0.1:18092->9000/tcp"


def test_run_answers_to_its_name_not_the_service_unless_use_aliases(project):
    from runtime.network.dns_records import load_records

    project.write(SERVICES)
    hidden = project.run("run", "-d", "--no-deps", "web").stdout.strip()
    shown = project.run("run", "-d", "--no-deps", "--use-aliases", "web").stdout.strip()
    records = load_records(project.name, project.root)["containers"].values()
    by_name = {entry["name"]: entry for entry in records}
    assert by_name[hidden]["service"] is None
    assert all(not a["aliases"] for a in by_name[hidden]["networks"].values())
    assert by_name[shown]["service"] == "web"


def test_kill_sends_the_signal_given(project):
    project.write(SERVICES)
    project.run("up", "-d")
    project.run("kill", "-s", "USR1", "web")
    project.wait_for_log("web", "got-usr1")
    assert {r["Service"]: r["State"] for r in project.ps()}["web"] == "running"
    project.run("kill", "db")
    db = _service_rows(project, "db")[0]
    assert db["State"] == "exited" and db["ExitCode"] == 137
    bad = project.run("kill", "-s", "NOSUCH", "web", check=False)
    assert bad.returncode == 1 and "unknown signal" in bad.stderr


def test_pause_freezes_the_processes_and_unpause_thaws_them(project):
    project.write(SERVICES)
    project.run("up", "-d")
    project.wait_for_log("web", "tick")
    pid = _pid_of(project, "web")
    project.run("pause", "web")
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        assert state in ("D", "T")
        before = project.logs("web").count("tick")
        time.sleep(0.5)  # ticks come every 0.1 s when it runs
        assert project.logs("web").count("tick") == before
        for refused in (("exec", "-T", "web", "true"), ("kill", "web")):
            result = project.run(*refused, check=False)
            assert result.returncode == 1 and "unpause" in result.stderr
        listed = json.loads(project.run("ls", "--format", "json").stdout)
        assert {r["Name"]: r["Status"] for r in listed}[project.name] == "paused(1), running(1)"
    finally:
        project.run("unpause", "web")
    after = project.logs("web").count("tick")
    deadline = time.monotonic() + 20
    while project.logs("web").count("tick") <= after:
        assert time.monotonic() < deadline, "no output after unpause"
        time.sleep(0.1)


def test_kill_remove_orphans_removes_services_no_longer_in_the_file(project):
    project.write(SERVICES)
    project.run("up", "-d", "db")
    project.write(SERVICES.replace("db", "store"))
    project.run("kill", "--remove-orphans", "store")
    assert project.ps() == []


def test_rm_removes_stopped_containers_only_and_stops_first_with_s(project):
    project.write(SERVICES)
    project.run("up", "-d")
    project.run("stop", "web")
    nothing = project.run("rm", "-f", "db")
    assert "No stopped containers" in nothing.stderr
    project.run("rm", "-f")
    assert [r["Service"] for r in project.ps()] == ["db"]
    project.run("rm", "-s", "-v", "db")
    assert project.ps() == []


def test_create_makes_containers_without_starting_them(project):
    project.write(SERVICES)
    project.run("create", "db")
    rows = project.ps()
    assert [(r["Service"], r["State"]) for r in rows] == [("db", "created")]


def test_start_starts_existing_containers_and_makes_none(project):
    project.write(SERVICES)
    nothing = project.run("start", check=False)
    assert nothing.returncode == 1
    assert "has no container to start" in nothing.stderr
    assert project.ps() == []
    project.run("create", "db")
    project.run("start", "db")
    assert [(r["Service"], r["State"]) for r in project.ps()] == [("db", "running")]


def test_top_lists_the_containers_processes(project):
    project.write(SERVICES)
    project.run("up", "-d")
    out = project.run("top", "db").stdout
    lines = out.splitlines()
    assert lines[0] == f"{project.name}-db-1"
    assert lines[1].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    pid = _pid_of(project, "db")
    rows = [line.split() for line in lines[2:]]
    assert any(r[0] == "root" and r[1] == str(pid) and r[-2:] == ["sleep", "600"] for r in rows)


def test_port_prints_the_published_address(project):
    project.write(SERVICES)
    project.run("up", "-d")
    assert project.run("port", "web", "8080").stdout.strip() == "127.0.0.1:18091"
    unpublished = project.run("port", "web", "9999", check=False)
    assert unpublished.returncode == 1 and "no port 9999/tcp" in unpublished.stderr


def _with_jobs(project) -> None:
    # In the environment, so the fixture's `down` sees the job too.
    project.env["COMPOSE_PROFILES"] = "jobs"
    project.write(SERVICES)


def test_wait_prints_and_returns_the_exit_code(project):
    _with_jobs(project)
    project.run("up", "-d", "job")
    result = project.run("wait", "job", check=False)
    assert result.stdout.strip() == "4"
    assert result.returncode == 4


def test_wait_down_project_takes_everything_down(project):
    _with_jobs(project)
    project.run("up", "-d", "job", "db")
    project.run("wait", "--down-project", "job", "db", check=False)
    assert project.ps() == []


def test_cp_both_directions_and_links_stay_inside(project, tmp_path):
    project.write(SERVICES)
    project.run("up", "-d")
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("alpha\n")
    (source / "sub" / "b.txt").write_text("beta\n")
    os.chmod(source / "a.txt", 0o640)
    project.run("cp", str(source), "web:/tmp/")
    listing = project.run("exec", "-T", "web", "sh", "-c", "cat /tmp/in/a.txt /tmp/in/sub/b.txt")
    assert listing.stdout == "alpha\nbeta\n"
    mode = project.run("exec", "-T", "web", "stat", "-c", "%a %u", "/tmp/in/a.txt").stdout
    assert mode.split() == ["640", "0"]

    project.run("exec", "-T", "web", "sh", "-c", "mkdir /tmp/out && echo gamma > /tmp/out/c")
    project.run("cp", "web:/tmp/out", str(tmp_path))
    assert (tmp_path / "out" / "c").read_text() == "gamma\n"
    # /etc/hostname is a file bind-mounted into the container, not in its root filesystem.
    project.run("cp", "web:/etc/hostname", str(tmp_path / "hostname"))
    assert (tmp_path / "hostname").read_text().strip() == f"{project.name}-web-1"
    project.run("cp", "web:/etc", str(tmp_path / "etc"))
    assert (tmp_path / "etc" / "hostname").read_text() == (tmp_path / "hostname").read_text()

    # A link to / inside the container means the container's /, never the host's.
    unique = f"composer-cp-{uuid.uuid4().hex[:8]}"
    project.run("exec", "-T", "web", "ln", "-s", "/", "/tmp/rootlink")
    (tmp_path / "x").write_text("inside\n")
    project.run("cp", str(tmp_path / "x"), f"web:/tmp/rootlink/tmp/{unique}")
    assert not os.path.exists(f"/tmp/{unique}")
    assert project.run("exec", "-T", "web", "cat", f"/tmp/{unique}").stdout == "inside\n"
    project.run("exec", "-T", "web", "ln", "-s", "../../../../etc/hostname", "/tmp/up")
    project.run("cp", "-L", "web:/tmp/up", str(tmp_path / "up"))
    assert (tmp_path / "up").read_text().strip() == f"{project.name}-web-1"


def test_events_show_start_and_die(project):
    from runtime.logs import format_time

    _with_jobs(project)
    since = format_time(time.time_ns())
    events = project.follow_events(since)
    try:
        project.run("up", "-d", "job")
        seen = []
        while not any(e["action"] == "die" for e in seen):
            line = events.stdout.readline()
            assert line, f"events ended early: {events.stderr.read()}"
            seen.append(json.loads(line))
    finally:
        events.send_signal(signal.SIGINT)
        assert events.wait(timeout=20) == 130
        events.stdout.close()
        events.stderr.close()
    actions = [e["action"] for e in seen]
    assert actions[:3] == ["create", "start", "die"]
    die = seen[2]
    assert die["service"] == "job" and die["type"] == "container"
    assert die["attributes"]["exitCode"] == "4"
    assert die["attributes"]["name"] == f"{project.name}-job-1"


def test_ls_lists_the_project(project):
    project.write(SERVICES)
    project.run("create", "db")
    listed = json.loads(project.run("ls", "--format", "json").stdout)
    assert project.name not in [row["Name"] for row in listed]  # nothing running
    everything = json.loads(project.run("ls", "-a", "--format", "json").stdout)
    row = {r["Name"]: r for r in everything}[project.name]
    assert row["Status"] == "created(1)"
    assert row["ConfigFiles"] == str(project.directory / "compose.yaml")
    project.run("start", "db")
    table = project.run("ls").stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "CONFIG", "FILES"]
    assert any(line.split()[:2] == [project.name, "running(1)"] for line in table[1:])
