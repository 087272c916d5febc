"""Engine.remove deletes a `composer-runtime` container in this process (crun and runc
through their command): nothing may be left (state dir, exec fifo, cgroups, mounts made
by create, processes), and errors read as the command's do.

The runtime's delete has work to do only when the shim could not do it: each test kills
its shim while the container is created (waiting on the exec fifo) or running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from rootfs import make_busybox_rootfs

from runtime.engine import DEFAULT_RUNTIME, Engine
from runtime.mounts import mount_points_under
from runtime.oci.spec import ContainerSpec, build_config
from runtime.state import pid_alive

RUNTIMES = [DEFAULT_RUNTIME, "crun", "runc"]
CGROUP_ROOT = Path("/sys/fs/cgroup")


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    return make_busybox_rootfs(tmp_path / "rootfs")


@pytest.fixture(params=RUNTIMES)
def engine(request, composer_root: Path):
    eng = Engine(composer_root, runtime=request.param)
    yield eng
    for info in eng.list():  # what a failed test left
        eng.remove(info["id"], force=True)


@pytest.fixture
def commands(monkeypatch) -> list[tuple[str, ...]]:
    """The runtime commands the engine runs as processes."""
    ran: list[tuple[str, ...]] = []
    real = Engine._run_runtime

    def spy(self, state, *args, **kw):
        ran.append(args)
        return real(self, state, *args, **kw)

    monkeypatch.setattr(Engine, "_run_runtime", spy)
    return ran


def _cgroup_dirs(cgroups_path: str) -> list[Path]:
    return [d / cgroups_path.lstrip("/") for d in CGROUP_ROOT.iterdir()]


def _orphan(engine: Engine, config: dict, *, created_only: bool) -> dict:
    """A container whose shim is gone: created (its init on the exec fifo) or running."""
    container_id = engine.create(config)
    engine.start(container_id, on_attach=created_only)
    info = engine.inspect(container_id)
    os.kill(info["shim_pid"], signal.SIGKILL)  # the shim this test started
    while pid_alive(info["shim_pid"], info["shim_start_time"]):
        os.sched_yield()
    return engine.inspect(container_id)


def _config(rootfs: Path, *args: str, mount_namespace: bool = True) -> dict:
    config = build_config(ContainerSpec(rootfs=str(rootfs), args=list(args)))
    if not mount_namespace:
        namespaces = config["linux"]["namespaces"]
        config["linux"]["namespaces"] = [n for n in namespaces if n["type"] != "mount"]
    return config


def _assert_nothing_left(info: dict, rootfs: Path) -> None:
    assert not pid_alive(info.get("pid"), info.get("pid_start_time"))
    assert not Path(info["dir"]).exists()
    assert not (Path(info["runtime_root"]) / info["id"]).exists()
    assert [d for d in _cgroup_dirs(info["cgroups_path"]) if d.exists()] == []
    assert mount_points_under(rootfs) == []


@pytest.mark.parametrize("created_only", [True, False], ids=["created", "running"])
def test_delete_leaves_nothing(engine, rootfs, commands, created_only):
    info = _orphan(engine, _config(rootfs, "sleep", "1000"), created_only=created_only)
    state_dir = Path(info["runtime_root"]) / info["id"]
    assert info["status"] == "running" and pid_alive(info["pid"], info["pid_start_time"])
    if engine.runtime == DEFAULT_RUNTIME:
        assert (state_dir / "exec.fifo").exists() == created_only
    assert [d for d in _cgroup_dirs(info["cgroups_path"]) if d.exists()]
    engine.remove(info["id"], force=True)
    _assert_nothing_left(info, rootfs)
    ours = engine.runtime == DEFAULT_RUNTIME
    assert [c[0] for c in commands] == ([] if ours else ["kill", "delete"])


def test_delete_undoes_the_mounts_create_made_without_a_mount_namespace(
    composer_root, rootfs, commands
):
    # Ours only: crun leaves such mounts behind on delete.
    engine = Engine(composer_root)
    config = _config(rootfs, "sleep", "1000", mount_namespace=False)
    info = _orphan(engine, config, created_only=False)
    assert str(rootfs) in mount_points_under(rootfs)  # the rootfs bind, made on the host
    engine.remove(info["id"], force=True)
    _assert_nothing_left(info, rootfs)
    assert commands == []


def test_delete_without_force_fails_as_the_command_does(composer_root, rootfs):
    engine = Engine(composer_root)
    info = _orphan(engine, _config(rootfs, "sleep", "1000"), created_only=False)
    state = engine._state(info["id"])
    in_process = engine._runtime_delete(state, info["id"], force=False)
    command = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "--root", info["runtime_root"], "delete", info["id"]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (in_process.returncode, in_process.stderr) == (command.returncode, command.stderr)
    assert command.returncode == 1 and "is running, not stopped" in command.stderr
    assert pid_alive(info["pid"], info["pid_start_time"])  # neither touched it
    assert (Path(info["runtime_root"]) / info["id"] / "state.json").exists()
    engine.remove(info["id"], force=True)
    _assert_nothing_left(info, rootfs)


def test_a_missing_container_fails_as_the_command_does(composer_root, rootfs):
    engine = Engine(composer_root)
    container_id = engine.create(_config(rootfs, "true"))
    state = engine._state(container_id)
    in_process = engine._runtime_delete(state, container_id)
    command = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime.cli",
            "--root",
            state["runtime_root"],
            "delete",
            "--force",
            container_id,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (in_process.returncode, in_process.stderr) == (command.returncode, command.stderr)
    assert "does not exist" in command.stderr
    engine.remove(container_id)
    assert not Path(state["bundle"]).parent.exists()


def test_poststop_hooks_run_by_the_command(composer_root, rootfs, tmp_path, commands):
    engine = Engine(composer_root)
    ran = tmp_path / "poststop"
    config = _config(rootfs, "sleep", "1000")
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f"echo ran >> {ran}"]}
    config["hooks"] = {"poststop": [hook]}
    info = _orphan(engine, config, created_only=False)
    engine.remove(info["id"], force=True)
    _assert_nothing_left(info, rootfs)
    assert ran.read_text() == "ran\n"
    assert [c[0] for c in commands] == ["delete"]  # its output is the command's own
