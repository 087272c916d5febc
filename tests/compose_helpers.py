"""Driving `composer` as a user would, for integration tests: a project folder, a
private COMPOSER_ROOT with a busybox image, the session's own network namespace, and a
check that nothing is left behind. Test modules use it with:

    from tests.compose_helpers import in_netns, netns_sandbox, project  # fixtures
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests import netns
from tests.images import busybox_image

netns_sandbox = netns.netns_sandbox
in_netns = netns.in_netns

COMPOSER = [sys.executable, "-m", "composer.cli.main"]


class Project:
    def __init__(self, directory: Path, root: Path) -> None:
        self.directory = directory
        self.root = root
        self.name = f"t{uuid.uuid4().hex[:8]}"
        self.env = {**os.environ, "COMPOSER_ROOT": str(root), "COMPOSE_PROJECT_NAME": self.name}

    def write(self, text: str) -> None:
        (self.directory / "compose.yaml").write_text(text)

    def run(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*COMPOSER, *args],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"composer {' '.join(args)} failed:\n{result.stderr}")
        return result

    def ps(self) -> list[dict]:
        return json.loads(self.run("ps", "-a", "--format", "json").stdout)

    def logs(self, service: str) -> str:
        return self.run("logs", "--no-log-prefix", service).stdout

    def follow_events(self, since: str) -> subprocess.Popen:
        """`composer events --json --since since`, running: its stdout a line per event."""
        return subprocess.Popen(
            [*COMPOSER, "events", "--json", "--since", since],
            cwd=self.directory,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_for_log(self, service: str, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.logs(service)
            if text in out:
                return out
            time.sleep(0.1)
        raise AssertionError(f"{service} never printed {text!r}; it printed:\n{out}")


@pytest.fixture
def project(tmp_path, in_netns):
    root = tmp_path / "root"
    directory = tmp_path / "project"
    directory.mkdir()
    previous = os.environ.get("COMPOSER_ROOT")
    os.environ["COMPOSER_ROOT"] = str(root)
    try:
        from runtime.images.store import ImageStore

        busybox_image(ImageStore(root))
    finally:
        if previous is None:
            os.environ.pop("COMPOSER_ROOT")
        else:
            os.environ["COMPOSER_ROOT"] = previous
    p = Project(directory, root)
    yield p
    p.run("down", "-v", "-t", "0", check=False)
    assert_nothing_left(root)


def assert_nothing_left(root: Path) -> None:
    containers = root / "containers"
    assert not containers.exists() or not [
        p for p in containers.iterdir() if not p.name.startswith(".")
    ]
    with open("/proc/self/mountinfo") as fh:
        assert str(root) not in fh.read()
    networks = (
        [p for p in (root / "networks").glob("*.json")] if (root / "networks").exists() else []
    )
    assert networks == []
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert "cbr-" not in links and "veth" not in links
