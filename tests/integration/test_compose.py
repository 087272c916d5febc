"""`composer` end to end on the real kernel: busybox services in the test session's
own network namespace, a private COMPOSER_ROOT, and nothing left afterwards."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

from tests.compose_helpers import COMPOSER, Project, assert_nothing_left
from tests.netns import assert_local_route

SERVER_CLIENT = """
services:
  server:
    image: busybox:latest
    command: ["sh", "-c", "echo ready; while true; do echo hello | nc -l -p 8080; done"]
    ports: ["127.0.0.1:18080:8080"]
  client:
    image: busybox:latest
    depends_on: [server]
    command: ["sh", "-c", "until nc server 8080 </dev/null; do sleep 0.2; done; sleep 600"]
"""


def test_services_find_each_other_and_ports_are_published(project):
    project.write(SERVER_CLIENT)
    project.run("up", "-d")
    assert "hello" in project.wait_for_log("client", "hello")
    rows = {row["Service"]: row for row in project.ps()}
    assert rows["server"]["State"] == rows["client"]["State"] == "running"
    assert rows["server"]["Ports"] == "127.0.0.1:18080->8080/tcp"
    only = project.run("ps", "--filter", "service=server", "--format", "json").stdout
    assert [row["Service"] for row in json.loads(only)] == ["server"]
    assert rows["client"]["Name"] == f"{project.name}-client-1"
    assert_local_route("127.0.0.1", {"lo"})
    with socket.create_connection(("127.0.0.1", 18080), timeout=5) as conn:
        assert conn.recv(16) == b"hello\n"


def test_unchanged_services_are_left_alone_and_changed_ones_recreated(project):
    project.write(SERVER_CLIENT)
    project.run("up", "-d")
    before = {row["Service"]: row["ID"] for row in project.ps()}
    again = project.run("up", "-d")
    assert "Up to date" in again.stderr
    assert {row["Service"]: row["ID"] for row in project.ps()} == before
    project.write(SERVER_CLIENT.replace("echo ready", "echo changed"))
    changed = project.run("up", "-d")
    assert "Recreate (configuration changed)" in changed.stderr
    after = {row["Service"]: row["ID"] for row in project.ps()}
    assert after["server"] != before["server"] and after["client"] == before["client"]


def test_completed_jobs_gate_dependents_and_are_not_rerun(project):
    project.write("""
services:
  migrate:
    image: busybox:latest
    command: ["sh", "-c", "echo migrated"]
  app:
    image: busybox:latest
    depends_on:
      migrate: {condition: service_completed_successfully}
    command: ["sleep", "600"]
""")
    project.run("up", "-d")
    rows = {row["Service"]: row for row in project.ps()}
    assert rows["migrate"]["State"] == "exited" and rows["migrate"]["ExitCode"] == 0
    assert rows["app"]["State"] == "running"
    project.run("up", "-d")
    assert project.logs("migrate").count("migrated") == 1


def test_failed_job_stops_its_dependents(project):
    project.write("""
services:
  migrate:
    image: busybox:latest
    command: ["sh", "-c", "exit 3"]
  app:
    image: busybox:latest
    depends_on:
      migrate: {condition: service_completed_successfully}
    command: ["sleep", "600"]
""")
    result = project.run("up", "-d", check=False)
    assert result.returncode == 1
    assert "dependency migrate failed: exited with code 3" in result.stderr
    assert "Traceback" not in result.stderr


def test_down_kills_a_pid1_that_ignores_sigterm_at_once(project):
    project.write("""
services:
  stubborn:
    image: busybox:latest
    command: ["sleep", "600"]
""")
    project.run("up", "-d")
    result = project.run("down")
    assert "does not catch SIGTERM" in result.stderr and "killed at once" in result.stderr


def test_a_second_folder_with_the_same_project_name_is_refused(project, tmp_path):
    project.write(SERVER_CLIENT)
    project.run("up", "-d")
    other = Project(tmp_path / "elsewhere", project.root)
    other.directory.mkdir()
    other.env["COMPOSE_PROJECT_NAME"] = project.name
    other.write(SERVER_CLIENT)
    result = other.run("down", check=False)
    assert result.returncode == 1
    assert "already used by the project in" in result.stderr
    assert len(project.ps()) == 2  # nothing of the first project was touched


def test_secrets_configs_init_and_post_start_hooks(project):
    project.env["TOKEN"] = "s3cr3t-value"
    project.write("""
services:
  app:
    image: busybox:latest
    init: true
    command: ["sh", "-c", "cat /run/secrets/token; echo; cat /etc/app.conf; echo;
              stat -c 'mode=%a' /etc/app.conf; echo pid1=$(cat /proc/1/comm); sleep 600"]
    secrets: [token]
    configs:
      - source: conf
        target: /etc/app.conf
        mode: 0440
    post_start:
      - command: ["sh", "-c", "echo hook-ran > /proc/1/fd/1"]
secrets:
  token:
    environment: TOKEN
configs:
  conf:
    content: "setting=1"
""")
    project.run("up", "-d")
    logs = project.wait_for_log("app", "hook-ran")
    assert "s3cr3t-value" in logs
    assert "setting=1" in logs
    assert "mode=440" in logs
    assert "pid1=composer-init" in logs  # tini runs as PID 1 with `init: true`


def test_a_failing_post_start_hook_is_reported(project):
    project.write("""
services:
  app:
    image: busybox:latest
    command: ["sleep", "600"]
    post_start:
      - command: ["false"]
""")
    result = project.run("up", "-d", check=False)
    assert result.returncode == 1
    assert "post_start hook `false` exited with code 1" in result.stderr


def test_attached_up_exits_with_the_chosen_services_code_and_stops_the_rest(project):
    project.write("""
services:
  tests:
    image: busybox:latest
    command: ["sh", "-c", "echo running tests; sleep 1; exit 3"]
  db:
    image: busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
""")
    result = project.run("up", "--exit-code-from", "tests", "--no-color", check=False)
    assert result.returncode == 3
    assert "running tests" in result.stdout
    assert f"{project.name}-tests-1" in result.stdout  # the log prefix names the container
    states = {row["Service"]: row["State"] for row in project.ps()}
    assert states == {"tests": "exited", "db": "exited"}


def test_an_up_killed_midway_leaves_nothing_the_next_command_cannot_clean(project):
    import signal

    lines = ["services:"]
    for i in range(6):
        lines += [f"  s{i}:", "    image: busybox:latest", '    command: ["sleep", "600"]']
    project.write("\n".join(lines) + "\n")
    for delay in (0.3, 0.8, 1.5):
        proc = subprocess.Popen(
            [*COMPOSER, "up", "-d"],
            cwd=project.directory,
            env=project.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        time.sleep(0.2)
        # Not reaped yet: a zombie, as when nobody waits for a killed CLI; still dead.
        project.run("down", "-t", "0")
        proc.wait()
        assert_nothing_left(project.root)
    project.run("up", "-d")
    assert len([r for r in project.ps() if r["State"] == "running"]) == 6


def test_a_second_command_waits_for_the_lock_and_says_who_holds_it(project):
    from runtime.state import Lock

    project.write(SERVER_CLIENT)
    lock_path = project.root / "projects" / f"{project.name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    holder = Lock(lock_path, "hold the project for a test", timeout=0).acquire()
    proc = subprocess.Popen(
        [*COMPOSER, "up", "-d"],
        cwd=project.directory,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    holder.release()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert "waiting:" in err and "hold the project for a test" in err


def test_dry_run_says_what_would_happen_and_does_nothing(project):
    project.write(SERVER_CLIENT)
    planned = project.run("--dry-run", "up", "-d").stdout
    assert f"Container {project.name}-server-1" in planned and "Create (missing)" in planned
    assert project.ps() == []
    project.run("up", "-d")
    planned = project.run("down", "--dry-run").stdout
    assert "Stop and remove" in planned and f"Network {project.name}_default" in planned
    assert len(project.ps()) == 2


def test_names_resolve_on_an_internal_network_that_has_no_way_out(project):
    project.write("""
services:
  server:
    image: busybox:latest
    command: ["sh", "-c", "while true; do echo inside | nc -l -p 9000; done"]
    networks: [back]
  client:
    image: busybox:latest
    networks: [back]
    command: ["sh", "-c", "ip route | grep -q default && echo has-default-route;
              until nc server 9000 </dev/null; do sleep 0.2; done; sleep 600"]
networks:
  back:
    internal: true
""")
    project.run("up", "-d")
    logs = project.wait_for_log("client", "inside")
    assert "has-default-route" not in logs


def test_dns_command_explains_what_a_service_would_get(project):
    project.write(SERVER_CLIENT)
    project.run("up", "-d")
    result = project.run("dns", "client", "server")
    address = result.stdout.split()[0]
    assert address.startswith("10.") and "server" in result.stderr
    missing = project.run("dns", "client", "nothing-here.composer.internal", check=False)
    assert missing.returncode == 1 and "NXDOMAIN" in missing.stderr
    outside = project.run("dns", "client", "example.org")
    assert "forwarded" in outside.stderr


def test_a_paused_project_stops_and_goes_down_without_hanging(project):
    project.write(SERVER_CLIENT)
    project.run("up", "-d")
    project.run("pause")
    project.run("down", "-t", "0", timeout=60)
    assert project.ps() == []


def test_bind_sources_and_interface_names(project):
    (project.directory / "data").mkdir()
    (project.directory / "data" / "greeting").write_text("hi from the host\n")
    project.write("""
services:
  app:
    image: busybox:latest
    command: ["sh", "-c", "cat /data/greeting; ls -d /made; ip -o link show custom0; sleep 600"]
    volumes:
      - ./data:/data:ro
      - ./made-for-me:/made
    networks:
      default:
        interface_name: custom0
  strict:
    image: busybox:latest
    profiles: [strict]
    command: ["true"]
    volumes:
      - type: bind
        source: ./missing
        target: /missing
""")
    project.run("up", "-d")
    logs = project.wait_for_log("app", "custom0")
    assert "hi from the host" in logs and "/made" in logs
    assert (project.directory / "made-for-me").is_dir()  # the short syntax creates it
    result = project.run("--profile", "strict", "up", "-d", "strict", check=False)
    assert result.returncode == 1
    assert "services.strict.volumes[0]: bind source" in result.stderr
    assert "does not exist" in result.stderr


def test_stop_grace_period_bounds_the_wait_for_a_slow_stopper(project):
    project.write("""
services:
  slow:
    image: busybox:latest
    stop_grace_period: 1s
    command: ["sh", "-c", "trap 'echo got TERM; sleep 30' TERM; while true; do sleep 0.1; done"]
""")
    project.run("up", "-d")
    result = project.run("down")
    assert "still running 1s after SIGTERM: killed with SIGKILL" in result.stderr


def test_wait_reports_json_for_scripts_and_names_a_failing_service(project):
    project.write("""
services:
  ok:
    image: busybox:latest
    command: ["sleep", "600"]
    healthcheck:
      test: ["CMD", "true"]
      start_interval: 100ms
  broken:
    image: busybox:latest
    command: ["sh", "-c", "sleep 0.5; echo cannot start; exit 2"]
    restart: "no"
    x-composer:
      job: true
""")
    result = project.run("up", "-d", "--wait", "--format", "json", check=False)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ready"] is False
    assert "broken" in report["error"] and "exited with code 2" in report["error"]
    assert "cannot start" in report["error"]  # the last log lines come along
    states = {row["Service"]: row["State"] for row in report["containers"]}
    assert states == {"ok": "running", "broken": "exited"}


def test_depends_on_restart_true_restarts_the_dependent_with_its_dependency(project):
    compose = """
services:
  db:
    image: busybox:latest
    command: ["sh", "-c", "echo db VERSION; sleep 600"]
  app:
    image: busybox:latest
    command: ["sh", "-c", "echo app started; sleep 600"]
    depends_on:
      db: {condition: service_started, restart: true}
  other:
    image: busybox:latest
    command: ["sh", "-c", "echo other started; sleep 600"]
    depends_on: [db]
"""
    project.write(compose.replace("VERSION", "1"))
    project.run("up", "-d")
    project.write(compose.replace("VERSION", "2"))
    result = project.run("up", "-d")
    assert "Restarted (db changed)" in result.stderr
    deadline = time.monotonic() + 20
    while project.logs("app").count("app started") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert project.logs("app").count("app started") == 2
    assert project.logs("other").count("other started") == 1  # no restart: true there


def test_up_after_a_restart_of_the_machine_brings_the_project_back(project):
    """A restart of the machine ends every process and takes every mount, link and rule
    away, while the state on disk stays: simulated here on the project's own parts."""
    import signal

    from runtime.network import bridge
    from runtime.network.manager import NetworkManager
    from runtime.oci import syscalls
    from runtime.state import read_json

    project.write(SERVER_CLIENT)
    project.run("up", "-d")
    project.wait_for_log("client", "hello")
    states = [read_json(path) for path in (project.root / "containers").glob("*/state.json")]
    assert len(states) == 2
    for state in states:
        for pid in (state["shim_pid"], state["pid"]):
            os.kill(pid, signal.SIGKILL)
    for state in states:
        directory = Path(state["bundle"]).parent
        deadline = time.monotonic() + 10
        while Path(f"/proc/{state['pid']}").exists() or Path(f"/proc/{state['shim_pid']}").exists():
            assert time.monotonic() < deadline, "the killed processes did not go"
            time.sleep(0.02)
        for pinned in ("rootfs", "netns"):
            syscalls.umount2(str(directory / pinned), syscalls.MNT_DETACH)
    manager = NetworkManager(project.root)
    for network in manager.list():
        bridge.remove_link(network.bridge)
    nft_table = manager.table
    subprocess.run(["nft", "delete", "table", "inet", nft_table], check=True)

    assert {row["State"] for row in project.ps()} == {"exited"}
    project.run("up", "-d")
    rows = {row["Service"]: row for row in project.ps()}
    assert rows["server"]["State"] == rows["client"]["State"] == "running"
    # the same containers (not new ones), with names, addresses and published ports again
    assert sorted(s["id"] for s in states) == sorted(
        read_json(p)["id"] for p in (project.root / "containers").glob("*/state.json")
    )
    deadline = time.monotonic() + 20  # the client found the server by name once more
    while project.logs("client").count("hello") < 2:
        assert time.monotonic() < deadline, project.logs("client")
        time.sleep(0.1)
    assert_local_route("127.0.0.1", {"lo"})
    with socket.create_connection(("127.0.0.1", 18080), timeout=5) as conn:
        assert conn.recv(16) == b"hello\n"
