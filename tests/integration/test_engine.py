"""The Engine API on the real kernel, under every OCI runtime we support.

Each test gets its own COMPOSER_ROOT and busybox rootfs; the engine fixture removes
every container it made and checks nothing is left (processes, cgroups, state).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rootfs import make_busybox_rootfs

from runtime import shim
from runtime.engine import ContainerError, Engine, NoSuchContainer
from runtime.oci.spec import ContainerSpec, Resources
from runtime.state import pid_alive

RUNTIMES = ["composer-runtime", "crun", "runc"]
NANO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
CGROUP_ROOT = Path("/sys/fs/cgroup")


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    return make_busybox_rootfs(tmp_path / "rootfs")


def _cgroup_dirs(cgroups_path: str) -> list[Path]:
    return [
        d / cgroups_path.lstrip("/")
        for d in CGROUP_ROOT.iterdir()
        if (d / cgroups_path.lstrip("/")).exists()
    ]


def assert_no_trace(engine: Engine, info: dict) -> None:
    assert not pid_alive(info.get("pid"), info.get("pid_start_time"))
    assert not pid_alive(info.get("shim_pid"), info.get("shim_start_time"))
    assert not Path(info["dir"]).exists()
    assert not (Path(info["runtime_root"]) / info["id"]).exists()
    assert _cgroup_dirs(info["cgroups_path"]) == []


@pytest.fixture(params=RUNTIMES)
def engine(request, composer_root: Path):
    eng = Engine(composer_root, runtime=request.param)
    yield eng
    for info in eng.list():
        eng.remove(info["id"], force=True)
        assert_no_trace(eng, info)


def run(engine: Engine, rootfs: Path, *args: str, **spec) -> str:
    container_id = engine.create(ContainerSpec(rootfs=str(rootfs), args=list(args), **spec))
    engine.start(container_id)
    return container_id


def texts(engine: Engine, container_id: str, **kw) -> list[tuple[str, str]]:
    return [(r["stream"], r["log"]) for r in engine.logs(container_id, **kw)]


def test_logs_have_stream_and_nanosecond_time(engine, rootfs):
    cid = run(engine, rootfs, "sh", "-c", "echo out; echo err >&2; printf 'no newline'")
    assert engine.wait(cid, timeout=60) == 0
    records = list(engine.logs(cid))
    assert sorted((r["stream"], r["log"]) for r in records) == [
        ("stderr", "err\n"),
        ("stdout", "no newline"),
        ("stdout", "out\n"),
    ]
    assert all(NANO_TIME.match(r["time"]) for r in records)
    stamped = list(engine.logs(cid, timestamps=True, tail=1))
    assert stamped[0]["text"] == f"{stamped[0]['time']} {stamped[0]['log']}"


def test_long_line_is_split_and_whole_again(engine, rootfs):
    cid = run(engine, rootfs, "sh", "-c", "head -c 40000 /dev/zero | tr '\\0' x; echo; echo end")
    assert engine.wait(cid, timeout=60) == 0
    pieces = [r["log"] for r in engine.logs(cid)]
    assert len(pieces) == 4  # 16 KiB + 16 KiB + the rest with its newline + "end"
    assert "".join(pieces) == "x" * 40000 + "\nend\n"


def test_exit_code_recorded(engine, rootfs):
    cid = run(engine, rootfs, "sh", "-c", "exit 7")
    assert engine.wait(cid, timeout=60) == 7
    info = engine.inspect(cid)
    assert info["status"] == "exited"
    assert info["exit_code"] == 7
    assert info["signal"] is None
    assert info["oom_killed"] is False
    assert NANO_TIME.match(info["finished_at"])


def test_kill_records_signal(engine, rootfs):
    cid = run(engine, rootfs, "sleep", "1000")
    engine.kill(cid, "KILL")
    assert engine.wait(cid, timeout=60) == 128 + signal.SIGKILL
    info = engine.inspect(cid)
    assert info["signal"] == signal.SIGKILL
    with pytest.raises(ContainerError, match="not running"):
        engine.kill(cid, "TERM")


def test_stop_kills_at_once_a_pid1_that_ignores_sigterm(engine, rootfs):
    cid = run(engine, rootfs, "sleep", "1000")
    reply = engine.stop(cid, timeout=600)  # waiting the grace period would hang the test
    assert reply["killed"] is True
    assert "does not catch SIGTERM" in reply["stop_reason"]
    assert reply["signal"] == signal.SIGKILL
    notes = [r["log"] for r in engine.logs(cid) if r["log"].startswith("[composer-shim]")]
    assert len(notes) == 1 and "does not catch SIGTERM" in notes[0]
    assert engine.inspect(cid)["stop_reason"] == reply["stop_reason"]


def test_stop_delivers_sigterm_to_a_pid1_that_traps_it(engine, rootfs):
    script = "trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.1; done"
    cid = run(engine, rootfs, "sh", "-c", script)
    wait_for_log(engine, cid, "ready\n")
    reply = engine.stop(cid, timeout=600)
    assert reply["killed"] is False
    assert reply["exit_code"] == 0
    assert reply["stop_reason"] is None
    assert ("stdout", "got TERM\n") in texts(engine, cid)


def test_stop_escalates_to_sigkill_after_the_grace_period(engine, rootfs):
    # PID 1 catches TERM but does not exit: the grace period runs out.
    script = "trap 'echo ignoring TERM' TERM; echo ready; while :; do sleep 0.1; done"
    cid = run(engine, rootfs, "sh", "-c", script)
    wait_for_log(engine, cid, "ready\n")
    reply = engine.stop(cid, timeout=0.5)
    assert reply["killed"] is True
    assert reply["signal"] == signal.SIGKILL
    assert "still running 0.5s after SIGTERM" in reply["stop_reason"]


def wait_for_log(engine: Engine, cid: str, text: str, tries: int = 3000) -> None:
    """Poll the log until `text` is a line of it (bounded, so a broken shim fails, not hangs)."""
    for _ in range(tries):
        if any(r["log"] == text for r in engine.logs(cid)):
            return
        time.sleep(0.01)
    raise AssertionError(f"{text!r} never logged; log: {texts(engine, cid)}")


_START_AND_EXIT = """
import sys
from runtime.engine import Engine
print(Engine(sys.argv[1], runtime=sys.argv[2]).start(sys.argv[3])["shim_pid"])
"""


def test_shim_survives_the_process_that_started_it(engine, rootfs, composer_root):
    cid = engine.create(ContainerSpec(rootfs=str(rootfs), args=["sleep", "1000"]))
    starter = subprocess.run(
        [sys.executable, "-c", _START_AND_EXIT, str(composer_root), engine.runtime, cid],
        capture_output=True,
        text=True,
        check=True,
    )
    info = engine.inspect(cid)
    assert info["shim_pid"] == int(starter.stdout)
    assert info["status"] == "running" and info["shim_alive"] is True
    assert _parent(info["shim_pid"]) not in (os.getpid(), 0)
    assert engine.stop(cid, timeout=600)["killed"] is True
    assert engine.inspect(cid)["status"] == "exited"


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return int(stat[stat.rindex(b")") + 2 :].split()[1])


def test_remove_cleans_everything(engine, rootfs):
    cid = run(engine, rootfs, "sleep", "1000")
    info = engine.inspect(cid)
    assert _cgroup_dirs(info["cgroups_path"])  # the runtime made them
    with pytest.raises(ContainerError, match="is running"):
        engine.remove(cid)
    engine.remove(cid, force=True)
    assert_no_trace(engine, info)
    with pytest.raises(NoSuchContainer):
        engine.inspect(cid)


def test_dead_shim_leaves_a_container_that_can_still_be_removed(engine, rootfs):
    cid = run(engine, rootfs, "sleep", "1000")
    info = engine.inspect(cid)
    _kill_shim(info)
    orphan = engine.inspect(cid)
    assert orphan["status"] == "running"
    assert orphan["shim_alive"] is False
    assert [c["id"] for c in engine.list()] == [cid]
    engine.remove(cid, force=True)
    assert_no_trace(engine, info)


def test_exec_runs_in_the_container(engine, rootfs, tmp_path):
    cid = run(engine, rootfs, "sleep", "1000")
    out = tmp_path / "out"
    with open(out, "wb") as f:
        code = engine.exec(
            cid,
            ["sh", "-c", "echo $GREETING; id -u; pwd; exit 3"],
            env={"GREETING": "hello"},
            user="nobody",
            cwd="/tmp",
            stdout=f,
        )
    assert code == 3
    assert out.read_text().split() == ["hello", "65534", "/tmp"]
    assert engine.exec(cid, ["true"], detach=True) == 0


def test_wait_times_out_on_a_running_container(engine, rootfs):
    cid = run(engine, rootfs, "sleep", "1000")
    with pytest.raises(TimeoutError):
        engine.wait(cid, timeout=0.2)
    assert engine.inspect(cid)["status"] == "running"


def test_follow_streams_until_the_container_ends(engine, rootfs):
    cid = run(engine, rootfs, "sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done")
    followed = [r["log"] for r in engine.logs(cid, follow=True)]
    assert followed == ["1\n", "2\n", "3\n"]
    assert engine.inspect(cid)["status"] == "exited"


def test_terminal_output_is_logged(engine, rootfs):
    cid = run(engine, rootfs, "sh", "-c", "tty; echo done", terminal=True)
    assert engine.wait(cid, timeout=60) == 0
    lines = [r["log"] for r in engine.logs(cid)]
    assert lines[0].startswith("/dev/") and lines[0].endswith("\r\n")  # a tty: CR LF
    assert lines[1:] == ["done\r\n"]
    assert all(r["stream"] == "stdout" for r in engine.logs(cid))


def test_oom_kill_recorded(engine, rootfs):
    grow = "x=a; while :; do x=$x$x; done"  # doubles a shell string until the OOM killer
    cid = run(engine, rootfs, "sh", "-c", grow, resources=Resources(memory=16 * 1024 * 1024))
    code = engine.wait(cid, timeout=120)
    info = engine.inspect(cid)
    assert (code, info["signal"]) == (137, signal.SIGKILL)
    assert info["oom_killed"] is True


def test_restart_after_exit_keeps_logs(engine, rootfs):
    cid = run(engine, rootfs, "echo", "again")
    assert engine.wait(cid, timeout=60) == 0
    engine.start(cid)
    assert engine.wait(cid, timeout=60) == 0
    assert texts(engine, cid) == [("stdout", "again\n"), ("stdout", "again\n")]


def test_names_labels_and_lookup(engine, rootfs):
    spec = ContainerSpec(rootfs=str(rootfs), args=["true"])
    web = engine.create(spec, name="web", labels={"project": "p1", "service": "web"})
    db = engine.create(spec, name="db", labels={"project": "p1", "service": "db"})
    other = engine.create(spec, labels={"project": "p2"})
    with pytest.raises(ContainerError, match="already used"):
        engine.create(spec, name="web")
    assert engine.resolve("web") == web
    assert engine.resolve(db[:12]) == db
    with pytest.raises(NoSuchContainer):
        engine.resolve("nope")
    assert {c["id"] for c in engine.list({"project": "p1"})} == {web, db}
    assert [c["id"] for c in engine.list({"service": "db"})] == [db]
    assert {c["id"] for c in engine.list({"project": None, "service": None})} == {web, db}
    assert engine.inspect("web")["status"] == "created"
    config = json.loads((Path(engine.inspect(web)["bundle"]) / "config.json").read_text())
    assert config["process"]["args"] == ["true"]
    assert config["linux"]["cgroupsPath"] == f"/composer/{web}"
    engine.remove("db")
    assert {c["id"] for c in engine.list()} == {web, other}


def _kill_shim(info: dict) -> None:
    os.kill(info["shim_pid"], signal.SIGKILL)  # the shim this test started
    while pid_alive(info["shim_pid"], info["shim_start_time"]):
        os.sched_yield()


def test_stop_after_the_shim_died_follows_the_same_rules(engine, rootfs):
    ignoring = run(engine, rootfs, "sleep", "1000")
    trapping = run(engine, rootfs, "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    for cid in (ignoring, trapping):
        _kill_shim(engine.inspect(cid))
    reply = engine.stop(ignoring, timeout=600)
    assert reply["killed"] is True and "does not catch SIGTERM" in reply["stop_reason"]
    reply = engine.stop(trapping, timeout=600)
    assert reply["killed"] is False and reply["stop_reason"] is None
    for cid in (ignoring, trapping):
        info = engine.inspect(cid)
        assert (info["status"], info["exit_code"]) == ("exited", None)  # nobody reaped it
        assert not pid_alive(info["pid"], info["pid_start_time"])


def test_remove_ends_a_container_the_runtime_lost(engine, rootfs):
    cid = run(engine, rootfs, "sleep", "1000")
    info = engine.inspect(cid)
    _kill_shim(info)
    shutil.rmtree(Path(info["runtime_root"]) / cid)  # as if the runtime's state were lost
    engine.remove(cid, force=True)
    assert_no_trace(engine, info)


def test_exec_with_a_terminal_without_one_of_our_own(engine, rootfs, tmp_path):
    cid = run(engine, rootfs, "sleep", "1000")
    out = tmp_path / "out"
    with open(out, "wb") as f:
        code = engine.exec(
            cid, ["sh", "-c", "tty; exit 4"], tty=True, stdin=subprocess.DEVNULL, stdout=f
        )
    assert code == 4
    assert re.fullmatch(rb"/dev/pts/\d+\r\n", out.read_bytes())
    with pytest.raises(ContainerError, match="detached"):
        engine.exec(cid, ["true"], tty=True, detach=True)


def _processes_with(marker: bytes) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    if marker in f.read():
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_start_that_hangs_in_create_is_abandoned_cleanly(engine, rootfs):
    # A createRuntime hook that never returns keeps the runtime's create waiting.
    marker = f"9{os.getpid()}{time.monotonic_ns() % 100000}"  # seconds, and unique
    hook = {"path": "/bin/busybox", "args": ["sleep", marker]}
    cid = engine.create(
        ContainerSpec(rootfs=str(rootfs), args=["true"], hooks={"createRuntime": [hook]})
    )
    assert _processes_with(marker.encode()) == []
    engine.start_timeout = 1
    with pytest.raises(ContainerError, match="did not report"):
        engine.start(cid)
    info = engine.inspect(cid)
    assert _processes_with(marker.encode()) == []
    assert not (Path(info["runtime_root"]) / cid).exists()
    assert not pid_alive(int((Path(info["dir"]) / shim.PID_NAME).read_text()), None)


def test_stop_sends_the_configured_stop_signal(engine, rootfs):
    script = "trap 'echo got USR1; exit 5' USR1; echo ready; while :; do sleep 0.1; done"
    spec = ContainerSpec(rootfs=str(rootfs), args=["sh", "-c", script])
    cid = engine.create(spec, stop_signal="SIGUSR1")
    engine.start(cid)
    wait_for_log(engine, cid, "ready\n")
    reply = engine.stop(cid, timeout=600)
    assert (reply["exit_code"], reply["killed"]) == (5, False)
    assert ("stdout", "got USR1\n") in texts(engine, cid)


def test_bundle_written_by_the_engine_is_valid(engine, rootfs):
    from runtime.oci.spec import validate_config

    cid = engine.create(ContainerSpec(rootfs=str(rootfs), args=["true"], terminal=True))
    config = json.loads((Path(engine.inspect(cid)["bundle"]) / "config.json").read_text())
    assert validate_config(config) == []
    assert engine.inspect(cid)["terminal"] is True
