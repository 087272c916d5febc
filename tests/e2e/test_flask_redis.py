"""The flask-redis sample, with real Flask and Redis, built from a bootstrapped Debian.

Images are built on the host's network (RUN installs packages from the machine's
apt mirror); the project then runs inside the test session's own network
namespace, so its bridge, NAT rules and published port never touch the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests import netns
from tests.netns import assert_local_route

netns_sandbox = netns.netns_sandbox
in_netns = netns.in_netns

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "flask-redis"
PORT = 15000


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    env = {**os.environ, "COMPOSER_ROOT": str(root), "WEB_PORT": str(PORT)}
    name = f"fr{uuid.uuid4().hex[:8]}"

    def composer(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "composer.cli.main", "-p", name, *args],
            cwd=SAMPLE,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"composer {' '.join(args)}:\n{result.stdout}\n{result.stderr}")
        return result

    build = composer("build")  # host network: RUN apt-get reaches the package mirror
    assert "web:" in build.stdout and "redis:" in build.stdout
    composer.name = name
    composer.root = root
    yield composer
    composer("down", "-v", "-t", "0", check=False)
    containers = root / "containers"
    assert not containers.exists() or not any(
        p for p in containers.iterdir() if not p.name.startswith(".")
    )
    with open("/proc/self/mountinfo") as fh:
        assert str(root) not in fh.read()


def visit() -> str:
    assert_local_route("127.0.0.1", {"lo"})
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/", timeout=10) as response:
        return response.read().decode()


def count(page: str) -> int:
    return int(page.split("visited ")[1].split(" ")[0])


def test_counter_survives_down_and_up_and_resets_with_volumes(sample, in_netns):
    sample("up", "-d", "--wait")
    first, second = count(visit()), count(visit())
    assert second == first + 1

    rows = json.loads(sample("ps", "--format", "json").stdout)
    by_service = {row["Service"]: row for row in rows}
    assert set(by_service) == {"web", "redis"}
    assert by_service["web"]["State"] == by_service["redis"]["State"] == "running"
    assert by_service["redis"]["Health"] == "healthy"
    assert by_service["web"]["Ports"] == f"127.0.0.1:{PORT}->5000/tcp"
    assert by_service["web"]["Name"] == f"{sample.name}-web-1"

    logs = sample("logs").stdout
    assert f"{sample.name}-web-1" in logs and f"{sample.name}-redis-1" in logs
    assert "Ready to accept connections" in logs

    down = sample("down")
    assert "Removed" in down.stderr
    sample("up", "-d", "--wait")
    assert count(visit()) == second + 1  # the named volume kept the counter

    sample("down", "-v")
    sample("up", "-d", "--wait")
    assert count(visit()) == 1  # a fresh volume starts again
