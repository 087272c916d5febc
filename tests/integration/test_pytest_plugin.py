"""The composer pytest plugin, run the way a user's suite runs it: pytest inside pytest
(pytester), a busybox project, a real published port, and nothing left afterwards."""

from __future__ import annotations

import os

import pytest

from tests import netns
from tests.compose_helpers import assert_nothing_left
from tests.images import busybox_image

pytest_plugins = ["pytester"]

netns_sandbox = netns.netns_sandbox
in_netns = netns.in_netns

COMPOSE = """
services:
  echo:
    image: busybox:latest
    command: ["sh", "-c", "while true; do echo hello-from-nc | nc -l -p 8080; done"]
    ports: ["127.0.0.1::8080"]
"""

SUITE = """
import socket
import time


def test_reaches_the_published_port(composer_project):
    host, port = composer_project.service_address("echo", 8080)
    assert host == "127.0.0.1" and port > 0
    deadline = time.monotonic() + 30
    while True:  # running is not listening yet
        try:
            with socket.create_connection((host, port), timeout=5) as conn:
                data = conn.recv(64)
            if data:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "nothing answered on the published port"
        time.sleep(0.1)
    assert data == b"hello-from-nc\\n"


def test_exec_logs_and_ps(composer_project):
    result = composer_project.exec("echo", "echo to-stdout; echo to-stderr >&2; exit 3")
    assert result == (3, "to-stdout\\n", "to-stderr\\n")
    rows = composer_project.ps()
    assert [r["Service"] for r in rows] == ["echo"] and rows[0]["State"] == "running"
    assert composer_project.logs("echo") == ""


def test_failure_gets_the_logs(composer_project):
    composer_project.exec("echo", ["sh", "-c", "echo marker-in-log > /proc/1/fd/1"])
    assert False, "failing on purpose"
"""


def processes_under(root) -> list[str]:
    """Command lines of live processes that name the state root (shims, DNS servers)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    argv = fh.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # gone meanwhile
            if str(root) in argv:
                found.append(argv)
    return found


@pytest.fixture
def composer_root(tmp_path, monkeypatch):
    root = tmp_path / "composer-root"
    monkeypatch.setenv("COMPOSER_ROOT", str(root))
    from runtime.images.store import ImageStore

    busybox_image(ImageStore(root))
    return root


def test_a_suite_uses_the_project_and_its_teardown_leaves_nothing(
    pytester, composer_root, in_netns
):
    pytester.makefile(".yaml", compose=COMPOSE)
    pytester.makeini("[pytest]\ncomposer_file = compose.yaml\n")
    pytester.makepyfile(test_suite=SUITE)
    # A process of its own, as a user's `pytest` would be; it inherits this netns.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=2, failed=1)
    output = result.stdout.str()
    assert "composer logs: echo" in output and "marker-in-log" in output
    assert "failing on purpose" in output
    assert_nothing_left(composer_root)
    assert list((composer_root / "volumes").glob("pytest-*")) == []
    assert processes_under(composer_root) == []


def test_a_project_that_does_not_come_up_fails_setup_and_is_removed(
    pytester, composer_root, in_netns
):
    pytester.makefile(
        ".yaml",
        compose="""
services:
  broken:
    image: busybox:latest
    command: ["sh", "-c", "echo about-to-fail; exec sleep 600"]
    healthcheck:
      test: ["CMD", "false"]
      interval: 1s
      retries: 1
""",
    )
    pytester.makepyfile(test_suite="def test_never_runs(composer_project):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "--composer-file", "compose.yaml", "--composer-wait-timeout", "30", timeout=300
    )
    result.assert_outcomes(errors=1)
    output = result.stdout.str()
    assert "is unhealthy" in output and "about-to-fail" in output
    assert_nothing_left(composer_root)
    assert processes_under(composer_root) == []
