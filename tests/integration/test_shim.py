"""The shim on the real kernel: control protocol, output draining, start failures, memory.

These drive runtime.shim directly (launch + request) on a bundle built by the engine, so
they test the shim's own contract; test_engine.py covers the Engine API above it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_engine

from runtime import shim
from runtime.engine import ContainerError, Engine
from runtime.oci.spec import ContainerSpec
from runtime.state import pid_alive

# The same fixtures as test_engine: one engine per runtime, checked clean afterwards.
engine = test_engine.engine
rootfs = test_engine.rootfs


def started(engine: Engine, rootfs: Path, *args: str, **spec) -> tuple[str, Path, dict]:
    cid = engine.create(ContainerSpec(rootfs=str(rootfs), args=list(args), **spec))
    ready = engine.start(cid)
    return cid, Path(engine.inspect(cid)["dir"]), ready


def test_control_protocol(engine, rootfs):
    cid, directory, ready = started(engine, rootfs, "sleep", "1000")
    assert len(str(directory / shim.SOCKET_NAME)) > 108  # reached through /proc/self/fd
    assert (directory / shim.PID_NAME).read_text().strip() == str(ready["shim_pid"])
    status = shim.request(directory, {"cmd": "status"})
    assert status == {
        "ok": True,
        "pid": ready["pid"],
        "shim_pid": ready["shim_pid"],
        "status": "running",
    }
    assert shim.request(directory, {"cmd": "dance"}) == {
        "ok": False,
        "error": "unknown command 'dance'",
    }
    assert shim.request(directory, {"cmd": "kill", "signal": signal.SIGKILL}) == {"ok": True}
    reply = shim.request(directory, {"cmd": "wait"})
    assert (reply["exit_code"], reply["signal"]) == (137, signal.SIGKILL)
    assert not (directory / shim.SOCKET_NAME).exists()
    with pytest.raises(shim.ShimUnreachable):
        shim.request(directory, {"cmd": "status"})
    assert engine.inspect(cid)["shim_exited"] is True


def test_malformed_request_gets_an_error(engine, rootfs):
    _, directory, _ = started(engine, rootfs, "sleep", "1000")
    sock = shim._connect(str(directory), timeout=30)
    try:
        sock.sendall(b"{not json\n")
        reply = sock.recv(4096)
    finally:
        sock.close()
    assert reply.endswith(b"\n")
    answer = json.loads(reply)
    assert answer["ok"] is False and "JSONDecodeError" in answer["error"]
    assert shim.request(directory, {"cmd": "status"})["status"] == "running"


def test_container_stdin_is_empty(engine, rootfs):
    cid, directory, _ = started(engine, rootfs, "sh", "-c", "cat; echo cat-done")
    assert shim.request(directory, {"cmd": "wait"})["exit_code"] == 0
    assert [r["log"] for r in engine.logs(cid)] == ["cat-done\n"]


def test_leftover_processes_without_pid_namespace_are_ended(engine, rootfs):
    # Without a pid namespace, init's exit does not end its children; the background
    # sleep holds the output pipe until the shim's `delete --force` ends it.
    script = "sleep 1000 & echo $! > /tmp/bg; echo started"
    cid, directory, _ = started(engine, rootfs, "sh", "-c", script, namespaces={"pid": "host"})
    reply = shim.request(directory, {"cmd": "wait"})
    assert reply["exit_code"] == 0
    assert [r["log"] for r in engine.logs(cid)] == ["started\n"]
    background = int((rootfs / "tmp" / "bg").read_text())
    assert not pid_alive(background, None)


def test_stop_without_pid_namespace_sends_sigterm(engine, rootfs):
    # Not a namespace init, so SIGTERM's default action applies and nothing is forced.
    cid, _, _ = started(engine, rootfs, "sleep", "1000", namespaces={"pid": "host"})
    reply = engine.stop(cid, timeout=600)
    assert (reply["exit_code"], reply["signal"], reply["killed"]) == (143, 15, False)


def test_start_failure_is_reported_and_leaves_nothing(engine, rootfs):
    cid = engine.create(ContainerSpec(rootfs=str(rootfs), args=["/no/such/program"]))
    with pytest.raises(ContainerError, match=r"create|start") as failure:
        engine.start(cid)
    assert "/no/such/program" in str(failure.value) or "No such file" in str(failure.value)
    info = engine.inspect(cid)
    assert info["status"] == "created"
    assert info["start_error"]
    # It reports its failure as its last act, then exits.
    assert_shim_ends(int((Path(info["dir"]) / shim.PID_NAME).read_text()))
    assert not (Path(info["dir"]) / shim.SOCKET_NAME).exists()
    assert not (Path(info["runtime_root"]) / cid).exists()


def assert_shim_ends(pid: int) -> None:
    for _ in range(10_000):  # bounded: a shim that never ends fails the test
        if not pid_alive(pid, None):
            return
        time.sleep(0.001)
    raise AssertionError(f"shim {pid} still running")


def test_shim_imports_stay_small():
    repo = str(Path(__file__).resolve().parents[2])
    code = (
        f"import sys; sys.path.insert(0, {repo!r}); import runtime.shim; "
        "names = sorted(sys.modules); import json; print(json.dumps(names))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-E", "-s", "-c", code], capture_output=True, text=True, check=True
    )
    modules = set(json.loads(out.stdout))
    assert not modules & {"re", "enum", "socket", "signal", "json", "subprocess", "typing"}


def _memory(pid: int) -> dict[str, int]:
    status = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                status[key] = int(value.split()[0])
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                status["Pss"] = int(line.split()[1])
    return status


def test_shim_memory_is_measured(engine, rootfs, record_property, capsys):
    cid, _, ready = started(
        engine,
        rootfs,
        "sh",
        "-c",
        "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; sleep 1000",
    )
    test_engine.wait_for_log(engine, cid, "line 1999\n")  # measured after real work
    memory = _memory(ready["shim_pid"])
    record_property("shim_memory_kib", memory)
    with capsys.disabled():
        print(f"\nshim memory under {engine.runtime} (KiB): {memory}")
    assert len(list(engine.logs(cid))) == 2000
    assert memory["Pss"] <= memory["VmRSS"]  # reported, not judged: see the report
    engine.kill(cid, "KILL")


def test_no_line_lost_or_reordered_under_volume(engine, rootfs):
    cid, directory, _ = started(engine, rootfs, "sh", "-c", "seq 1 100000; seq 1 20000 >&2")
    assert shim.request(directory, {"cmd": "wait"})["exit_code"] == 0
    by_stream = {"stdout": [], "stderr": []}
    for record in engine.logs(cid):
        by_stream[record["stream"]].append(record["log"])
    assert by_stream["stdout"] == [f"{i}\n" for i in range(1, 100001)]
    assert by_stream["stderr"] == [f"{i}\n" for i in range(1, 20001)]


def test_a_shim_that_cannot_run_says_why(engine, rootfs, monkeypatch):
    # A broken install: the shim cannot even import. Its stderr is kept for the error.
    cid = engine.create(ContainerSpec(rootfs=str(rootfs), args=["true"]))
    monkeypatch.setattr(shim.sys, "executable", "/bin/false")
    with pytest.raises(ContainerError, match="exited before the container started: no detail"):
        engine.start(cid)
    monkeypatch.undo()
    fake_python = Path(engine.inspect(cid)["dir"]) / "python"
    fake_python.write_text("#!/bin/sh\necho 'ImportError: no runtime here' >&2\n")
    fake_python.chmod(0o755)
    monkeypatch.setattr(shim.sys, "executable", str(fake_python))
    with pytest.raises(ContainerError, match="ImportError: no runtime here"):
        engine.start(cid)


def test_a_clean_run_leaves_no_error_file(engine, rootfs):
    _, directory, ready = started(engine, rootfs, "true")
    shim.request(directory, {"cmd": "wait"})
    assert_shim_ends(ready["shim_pid"])
    assert not (directory / shim.ERROR_NAME).exists()
