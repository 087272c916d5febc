"""Fixtures for tests on the real kernel: a busybox OCI bundle and a private runtime root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rootfs import make_busybox_rootfs, unique_id, write_config

from runtime.oci.spec import default_spec

RUNTIME = [sys.executable, "-m", "runtime.cli"]


@pytest.fixture
def busybox_bundle(tmp_path: Path) -> Path:
    """An OCI bundle (config.json + busybox rootfs) running `true`, no terminal."""
    bundle = tmp_path / "bundle"
    make_busybox_rootfs(bundle / "rootfs")
    config = default_spec()
    config["ociVersion"] = "1.0.2"  # crun 1.8 and runc 1.1 refuse newer versions
    config["process"]["terminal"] = False
    config["process"]["args"] = ["true"]
    config["root"] = {"path": "rootfs", "readonly": True}
    write_config(bundle, config)
    return bundle


@pytest.fixture
def composer_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "composer-root"
    root.mkdir()
    monkeypatch.setenv("COMPOSER_ROOT", str(root))
    return root


class RuntimeCLI:
    """Runs `composer-runtime` (or crun/runc) with a private --root; deletes what it made."""

    def __init__(self, root: Path, argv0: list[str] | None = None) -> None:
        self.root = root
        self.argv0 = argv0 or RUNTIME
        self.ids: list[str] = []

    def __call__(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        if "stdout" not in kwargs:
            kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 60)
        result = subprocess.run([*self.argv0, "--root", str(self.root), *args], **kwargs)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{args} exited {result.returncode}: {result.stdout} {result.stderr}"
            )
        return result

    def new_id(self, prefix: str = "t") -> str:
        container_id = unique_id(prefix)
        self.ids.append(container_id)
        return container_id

    def cleanup(self) -> None:
        for container_id in self.ids:
            subprocess.run(
                [*self.argv0, "--root", str(self.root), "delete", "--force", container_id],
                capture_output=True,
                timeout=60,
            )


@pytest.fixture
def runtime(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.fail("integration tests need root")
    cli = RuntimeCLI(tmp_path / "runtime-root")
    yield cli
    cli.cleanup()


@pytest.fixture
def crun(tmp_path: Path):
    cli = RuntimeCLI(tmp_path / "crun-root", ["crun"])
    yield cli
    cli.cleanup()


@pytest.fixture
def runc(tmp_path: Path):
    cli = RuntimeCLI(tmp_path / "runc-root", ["runc"])
    yield cli
    cli.cleanup()


# `project` (a composer project in the session's netns) for every test here.
from tests.compose_helpers import in_netns, netns_sandbox, project  # noqa: E402, F401
