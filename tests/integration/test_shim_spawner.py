"""Shims forked by the spawner (runtime/shim_spawner.py) on the real kernel: the container
runs as under a shim from a new interpreter, the shim is placed as that one is, and a spawner
that is gone leaves the old way.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import test_engine
import test_restart
import test_shim

from runtime import shim, shim_spawner
from runtime.engine import ContainerError, Engine, _is_shim
from runtime.oci.spec import ContainerSpec
from tests import netns

rootfs = test_engine.rootfs
netns_sandbox = netns.netns_sandbox
in_netns = netns.in_netns


@pytest.fixture
def engine(composer_root: Path):
    eng = Engine(composer_root)  # composer-runtime: test_engine.py covers crun and runc
    yield eng
    for info in eng.list():
        eng.remove(info["id"], force=True)
        test_engine.assert_no_trace(eng, info)


@pytest.fixture
def spawner(composer_root: Path):
    shim_spawner.prestart()
    started = shim_spawner.slot.current
    assert started is not None and started.root == str(composer_root)
    yield started
    shim_spawner.stop()
    assert shim_spawner.slot.current is None
    assert started.process.returncode is not None  # reaped: no zombie left
    assert not Path(f"/proc/{started.process.pid}").exists()


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def spawned(pid: int) -> bool:
    """Forked by the spawner (its command line) rather than a new interpreter."""
    return b"shim_spawner.serve" in cmdline(pid)


def parent(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return int(raw[raw.rindex(")") + 2 :].split()[1])


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if parent(int(entry)) == pid:
                    found.append(int(entry))
            except (OSError, ValueError):
                continue  # gone meanwhile
    return found


def descriptors(pid: int, directory: str) -> list[str]:
    """What the process holds open, by kind (the numbers follow the order of opening)."""
    kinds = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{name}").replace(directory, "<dir>")
        kinds.append(re.sub(r":\[\d+\]$", "", target))
    return sorted(kinds)


def start(engine: Engine, rootfs: Path, *args: str, **create) -> tuple[str, dict]:
    cid = engine.create(ContainerSpec(rootfs=str(rootfs), args=list(args)), **create)
    return cid, engine.start(cid)


def shims_under(root: Path) -> list[int]:
    """Live shims (and spawners) whose command line names the state root."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if _is_shim(int(entry)) and str(root).encode() in cmdline(int(entry)):
                    found.append(int(entry))
            except OSError:
                continue
    return found


def test_a_spawned_container_runs_logs_and_stops(engine, rootfs, spawner, composer_root):
    cid, ready = start(engine, rootfs, "sh", "-c", "echo hello; exec sleep 1000")
    shim_pid = ready["shim_pid"]
    assert spawned(shim_pid) and _is_shim(shim_pid)
    assert str(composer_root).encode() in cmdline(shim_pid)  # leftovers are found by root
    test_restart.until(engine, cid, lambda info: list(engine.logs(cid)))
    assert [(r["stream"], r["log"]) for r in engine.logs(cid)] == [("stdout", "hello\n")]
    reply = engine.stop(cid, timeout=600)
    assert reply["signal"] == signal.SIGKILL  # sleep as PID 1 ignores SIGTERM
    info = test_restart.assert_ended_for_good(engine, cid)
    assert info["exit_code"] == 128 + signal.SIGKILL


def test_a_spawned_shim_restarts_by_its_policy(engine, rootfs, spawner):
    script = test_restart._COUNT + "exit 1"
    cid, ready = start(engine, rootfs, "sh", "-c", script, restart="on-failure:2")
    assert spawned(ready["shim_pid"])
    assert engine.wait(cid, timeout=120) == 1
    info = test_restart.assert_ended_for_good(engine, cid)
    assert (info["restart_count"], info["exit_code"]) == (2, 1)
    assert test_restart.boundaries_and_lines(engine, cid) == [
        "run 1\n",
        ("restart", 1),
        "run 2\n",
        ("restart", 2),
        "run 3\n",
    ]


def test_a_spawned_start_failure_is_reported(engine, rootfs, spawner):
    cid = engine.create(ContainerSpec(rootfs=str(rootfs), args=["/no/such/program"]))
    with pytest.raises(ContainerError, match=r"create|start") as failure:
        engine.start(cid)
    assert "/no/such/program" in str(failure.value) or "No such file" in str(failure.value)
    info = engine.inspect(cid)
    assert (info["status"], bool(info["start_error"])) == ("created", True)
    shim_pid = int((Path(info["dir"]) / shim.PID_NAME).read_text())
    test_shim.assert_shim_ends(shim_pid)
    assert shim_spawner.slot.current is spawner  # a failed start is no failed spawner


def test_a_spawned_shim_runs_the_runtime_in_the_caller_s_environment_of_now(
    composer_root, rootfs, spawner, tmp_path, monkeypatch
):
    # crun behind a script that keeps the environment it was given by the shim.
    seen = tmp_path / "runtime-environment"
    wrapper = tmp_path / "crun-wrapper"
    wrapper.write_text(f'#!/bin/sh\nenv >> {seen}\nexec {shutil.which("crun")} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("SPAWNER_TEST_MARK", "set-after-prestart")
    monkeypatch.delenv("HOME", raising=False)
    engine = Engine(composer_root, runtime=str(wrapper))
    try:
        _, ready = start(engine, rootfs, "sleep", "1000")
        assert spawned(ready["shim_pid"])
        lines = seen.read_text().splitlines()
        assert "SPAWNER_TEST_MARK=set-after-prestart" in lines
        assert not [line for line in lines if line.startswith("HOME=")]
    finally:
        for info in engine.list():
            engine.remove(info["id"], force=True)
            test_engine.assert_no_trace(engine, info)


def test_a_spawned_shim_is_placed_as_one_from_a_new_interpreter(engine, rootfs, spawner):
    shim_spawner.slot.current = None  # this one the old way
    try:
        old_cid, old = start(engine, rootfs, "sleep", "1000")
    finally:
        shim_spawner.slot.current = spawner
    new_cid, new = start(engine, rootfs, "sleep", "1000")
    old_pid, new_pid = old["shim_pid"], new["shim_pid"]
    assert spawned(new_pid) and not spawned(old_pid)
    assert _is_shim(old_pid) and _is_shim(new_pid)

    # Neither the spawner's child nor ours: it went where the other shim went (init or
    # the subreaper above us).
    assert parent(new_pid) == parent(old_pid)
    assert parent(new_pid) not in (spawner.process.pid, os.getpid())
    # A session of its own, which it does not lead (so it gets no controlling terminal).
    assert os.getsid(new_pid) == os.getpgid(new_pid) != os.getsid(0)
    assert os.getsid(new_pid) != new_pid
    new_dir, old_dir = engine.inspect(new_cid)["dir"], engine.inspect(old_cid)["dir"]
    assert os.readlink(f"/proc/{new_pid}/cwd") == new_dir
    # Nothing of the spawner's or ours open: the same kinds of descriptors as the other.
    held = descriptors(new_pid, new_dir)
    assert held == descriptors(old_pid, old_dir)
    assert "socket" in held and "<dir>/shim.err" in held
    assert Path(f"/proc/{new_pid}/fd/2").resolve() == Path(new_dir, "shim.err")

    # The child that forked the shim has been reaped by the spawner.
    for _ in range(1000):
        if not children_of(spawner.process.pid):
            break
        time.sleep(0.01)
    assert children_of(spawner.process.pid) == []


def test_a_dead_spawner_leaves_the_old_way(engine, rootfs, spawner, composer_root):
    os.kill(spawner.process.pid, signal.SIGKILL)
    spawner.process.wait()
    _, ready = start(engine, rootfs, "sleep", "1000")
    assert not spawned(ready["shim_pid"]) and _is_shim(ready["shim_pid"])
    assert shim_spawner.slot.current is None  # forgotten: later shims do not try it
    assert shims_under(composer_root) == [ready["shim_pid"]]
    shim_spawner.slot.current = spawner  # for the fixture's stop


def test_a_spawner_that_dies_with_the_request_starts_one_shim(
    engine, rootfs, spawner, composer_root
):
    # Stopped, it takes the request but cannot fork; killed, it leaves the ready pipe
    # empty (or the send fails, if the kill comes first): either way, the old way once.
    os.kill(spawner.process.pid, signal.SIGSTOP)
    cid = engine.create(ContainerSpec(rootfs=str(rootfs), args=["sleep", "1000"]))
    result = {}
    starting = threading.Thread(target=lambda: result.update(engine.start(cid)))
    starting.start()
    time.sleep(0.3)  # most often the request is queued by now; the outcome is the same
    os.kill(spawner.process.pid, signal.SIGKILL)
    starting.join(60)
    assert not starting.is_alive()
    assert result and not spawned(result["shim_pid"])
    assert shims_under(composer_root) == [result["shim_pid"]]
    assert engine.inspect(cid)["status"] == "running"


def test_enabled_the_first_launch_starts_it_once(engine, rootfs, composer_root):
    shim_spawner.enable()
    try:
        assert shim_spawner.slot.current is None  # nothing runs for a command that starts nothing
        _, first = start(engine, rootfs, "sleep", "1000")
        started = shim_spawner.slot.current
        assert started is not None and started.alive()
        assert spawned(first["shim_pid"])
        _, second = start(engine, rootfs, "sleep", "1000")
        assert spawned(second["shim_pid"]) and shim_spawner.slot.current is started
        os.kill(started.process.pid, signal.SIGKILL)
        started.process.wait()
        _, third = start(engine, rootfs, "sleep", "1000")
        assert not spawned(third["shim_pid"])  # the old way: a dead one is not replaced
        assert shim_spawner.slot.current is None
    finally:
        shim_spawner.stop()
    shims = sorted(ready["shim_pid"] for ready in (first, second, third))
    assert sorted(shims_under(composer_root)) == shims  # and no spawner left


def test_expected_launches_start_an_enabled_spawner_before_the_first(composer_root):
    shim_spawner.expect_launches()
    assert shim_spawner.slot.current is None  # not enabled: the command starts none
    shim_spawner.enable()
    try:
        shim_spawner.expect_launches()
        started = shim_spawner.slot.current
        assert started is not None and started.alive()
        shim_spawner.expect_launches()
        assert shim_spawner.slot.current is started
    finally:
        shim_spawner.stop()
    assert started.process.returncode is not None


def test_a_caller_without_stderr_gets_its_shims_started(engine, composer_root, rootfs):
    # The spawner inherits the closed descriptor 2: a received one must not land there.
    # (The engine fixture, on the same root, removes what a failed run leaves.)
    script = f"""
import os, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
os.close(2)
from runtime import shim_spawner
from runtime.engine import Engine
from runtime.oci.spec import ContainerSpec
shim_spawner.prestart()
engine = Engine({str(composer_root)!r})
cid = engine.create(ContainerSpec(rootfs={str(rootfs)!r}, args=["echo", "no stderr"]))
ready = engine.start(cid)
code = engine.wait(cid, timeout=60)
with open(f"/proc/{{ready['shim_pid']}}/cmdline", "rb") as f:
    how = "spawned" if b"shim_spawner.serve" in f.read() else "new"
print(how, code, [r["log"] for r in engine.logs(cid)])
engine.remove(cid, force=True)
shim_spawner.stop()
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split(" ", 2)[:2] == ["spawned", "0"]
    assert "no stderr" in out.stdout


def test_a_container_elsewhere_is_not_the_spawner_s(spawner, composer_root):
    mine = str(composer_root / "containers" / "x")
    assert spawner.serves(mine)
    assert not spawner.serves(str(composer_root) + "-other/containers/x")
    assert not spawner.serves("/var/lib/composer/containers/x")
    child = os.fork()
    if child == 0:  # a fork of ours would share the socket with us
        os._exit(0 if not spawner.serves(mine) else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0


def test_a_caller_in_another_namespace_is_not_served(spawner, in_netns, composer_root):
    # The spawner started in the host's network namespace; this thread is now elsewhere.
    assert not spawner.serves(str(composer_root / "containers" / "x"))


def test_the_spawner_ends_at_eof(composer_root):
    shim_spawner.prestart()
    started = shim_spawner.slot.current
    try:
        for _ in range(1000):  # Popen returns once exec has begun, before argv is set up
            if cmdline(started.process.pid):
                break
            time.sleep(0.001)
        assert str(composer_root).encode() in cmdline(started.process.pid)
        started.sock.close()  # what this process's exit does
        assert started.process.wait(60) == 0
    finally:
        shim_spawner.stop()
