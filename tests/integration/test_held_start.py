"""A held start (Engine.start(hold=True)): everything but the start is done, the
container stays "created" until start() releases it, and it is undone (created again,
no shim, nothing of the runtime left) when its holder discards it or ends.

`up` holds a service's new containers while the services it depends on come up.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rootfs import make_busybox_rootfs

from runtime.engine import Engine
from runtime.oci.spec import ContainerSpec
from runtime.state import pid_alive


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    return make_busybox_rootfs(tmp_path / "rootfs")


@pytest.fixture(params=["composer-runtime", "crun"])
def engine(request, composer_root: Path):
    eng = Engine(composer_root, runtime=request.param)
    yield eng
    for info in eng.list():
        eng.remove(info["id"], force=True)
        assert not pid_alive(info.get("shim_pid"), info.get("shim_start_time"))
        assert not (Path(info["runtime_root"]) / info["id"]).exists()


def _marker_container(engine: Engine, rootfs: Path) -> str:
    return engine.create(ContainerSpec(rootfs=str(rootfs), args=["sh", "-c", "echo ran; sleep 60"]))


def _until(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _runtime_knows(info: dict) -> bool:
    return (Path(info["runtime_root"]) / info["id"]).exists()


def test_held_container_runs_nothing_until_released(engine, rootfs):
    cid = _marker_container(engine, rootfs)
    engine.start(cid, hold=True)
    held = engine.inspect(cid)
    assert held["status"] == "created" and held["held"] is True
    assert pid_alive(held["shim_pid"], held["shim_start_time"])
    assert pid_alive(held["pid"], held["pid_start_time"])  # the init, before its exec
    time.sleep(0.3)
    assert list(engine.logs(cid)) == []  # the command has not run
    engine.start(cid, hold=True)  # held already: it stays so, under the same shim
    assert engine.inspect(cid)["status"] == "created"
    assert engine.inspect(cid)["shim_pid"] == held["shim_pid"]

    released = engine.start(cid)
    assert released["pid"] == held["pid"] and released["shim_pid"] == held["shim_pid"]
    assert _until(lambda: [r["log"] for r in engine.logs(cid)] == ["ran\n"])
    running = engine.inspect(cid)
    assert running["status"] == "running" and running["held"] is False


def test_discard_leaves_it_created_and_startable(engine, rootfs):
    cid = _marker_container(engine, rootfs)
    engine.start(cid, hold=True)
    held = engine.inspect(cid)
    engine.discard(cid)
    after = engine.inspect(cid)
    assert after["status"] == "created" and not after["held"] and after["pid"] is None
    assert not pid_alive(held["shim_pid"], held["shim_start_time"])
    assert not pid_alive(held["pid"], held["pid_start_time"])
    assert not _runtime_knows(held)
    assert list(engine.logs(cid)) == []

    engine.start(cid)  # an ordinary start afterwards
    assert _until(lambda: [r["log"] for r in engine.logs(cid)] == ["ran\n"])


def test_a_held_container_is_discarded_when_its_holder_ends(engine, rootfs, composer_root):
    cid = _marker_container(engine, rootfs)
    holder = textwrap.dedent(
        f"""
        from runtime.engine import Engine
        Engine({str(composer_root)!r}, runtime={engine.runtime!r}).start({cid!r}, hold=True)
        """
    )
    subprocess.run([sys.executable, "-c", holder], check=True, timeout=60)
    # The shim sees its holder's pidfd end: the run is undone, nothing started.
    assert _until(lambda: engine.inspect(cid).get("shim_exited") is True)
    after = engine.inspect(cid)
    assert after["status"] == "created" and not after["held"]
    assert not _runtime_knows(after)
    assert list(engine.logs(cid)) == []


def test_removing_a_held_container_ends_its_shim(engine, rootfs):
    cid = _marker_container(engine, rootfs)
    engine.start(cid, hold=True)
    held = engine.inspect(cid)
    engine.remove(cid)  # created: no force needed
    assert not pid_alive(held["shim_pid"], held["shim_start_time"])
    assert not pid_alive(held["pid"], held["pid_start_time"])
    assert not _runtime_knows(held)


def test_up_leaves_a_dependent_created_when_its_dependency_fails(project):
    project.write(
        textwrap.dedent(
            """
            services:
              job:
                image: busybox:latest
                command: ["sh", "-c", "sleep 0.3; exit 3"]
              app:
                image: busybox:latest
                command: ["sh", "-c", "echo app ran; sleep 60"]
                depends_on:
                  job:
                    condition: service_completed_successfully
            """
        )
    )
    result = project.run("up", "-d", check=False)
    assert result.returncode != 0
    assert "dependency job failed: exited with code 3" in result.stderr
    app = next(c for c in project.ps() if c["Service"] == "app")
    assert app["State"] == "created"
    info = Engine(project.root).inspect(app["ID"])
    assert not pid_alive(info.get("shim_pid"), info.get("shim_start_time"))
    assert not _runtime_knows(info)
    assert "app ran" not in project.logs("app")
