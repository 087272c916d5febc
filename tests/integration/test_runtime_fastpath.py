"""The short way to a running container: the init cloned straight into its namespaces,
the long way (two stages) where clone3 cannot, and `run` without the heavy modules."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rootfs import read_config, unique_id, write_config

from runtime.oci import container, seccomp_cache, spawn, syscalls
from runtime.state import process_start_time


def _configure(bundle: Path, args: list[str]) -> None:
    config = read_config(bundle)
    config["process"]["args"] = args
    write_config(bundle, config)


def _create_quietly(root: str, container_id: str, bundle: Path, out: Path) -> dict:
    """create in this process; the init's stdio goes to `out`, not pytest's."""
    with open(out, "w") as sink:
        saved = os.dup(1), os.dup(2)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            return spawn.create_container(root, container_id, str(bundle))
        finally:
            for fd, saved_fd in zip((1, 2), saved, strict=True):
                os.dup2(saved_fd, fd)
                os.close(saved_fd)


def _ns_pid(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return line.split()[-1]
    raise AssertionError("no NSpid line")


def _is_our_child(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return False


def test_init_cloned_directly_is_our_child_pid_1_in_its_cgroups(busybox_bundle, tmp_path):
    _configure(busybox_bundle, ["sleep", "60"])
    root, container_id = str(tmp_path / "root"), unique_id("direct")
    record = _create_quietly(root, container_id, busybox_bundle, tmp_path / "out")
    pid = record["pid"]
    try:
        assert _is_our_child(pid)  # one clone: no stage 1 between us and the init
        assert _ns_pid(pid) == "1"
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        assert lines and all(line.endswith(f":/{container_id}") for line in lines)
        container.start(root, container_id, record)
        assert container.state(root, container_id)["status"] == "running"
    finally:
        container.delete(root, container_id, force=True)
    with pytest.raises(ChildProcessError):  # delete reaped it: no zombie of ours is left
        os.waitpid(pid, os.WNOHANG)
    assert not Path(root, container_id).exists()


def test_without_clone3_two_stages_make_the_same_container(busybox_bundle, tmp_path, monkeypatch):
    def no_clone3(flags=0, cgroup_fd=-1):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(syscalls, "clone3", no_clone3)
    _configure(busybox_bundle, ["sleep", "60"])
    root, container_id = str(tmp_path / "root"), unique_id("staged")
    record = _create_quietly(root, container_id, busybox_bundle, tmp_path / "out")
    pid = record["pid"]
    try:
        assert not _is_our_child(pid)  # stage 1 forked it and exited
        assert _ns_pid(pid) == "1"
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        assert lines and all(line.endswith(f":/{container_id}") for line in lines)
    finally:
        container.delete(root, container_id, force=True)
    assert process_start_time(pid) is None  # gone, or a zombie of the host's init


def test_cloned_init_gets_a_cgroup_namespace_rooted_at_its_cgroup(busybox_bundle, tmp_path):
    config = read_config(busybox_bundle)
    namespaces = config["linux"]["namespaces"]
    if {"type": "cgroup"} not in namespaces:
        namespaces.append({"type": "cgroup"})
    config["process"]["args"] = ["cat", "/proc/self/cgroup"]
    write_config(busybox_bundle, config)
    root = tmp_path / "root"
    argv = [sys.executable, "-m", "runtime.cli", "--root", str(root), "run", "--bundle"]
    out = subprocess.run(
        [*argv, str(busybox_bundle), unique_id("cgns")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert out and all(line.endswith(":/") for line in out)


def test_run_loads_no_heavy_module(busybox_bundle, tmp_path):
    code = (
        "import sys; from runtime.cli import main;"
        f"code = main(['--root', {str(tmp_path / 'root')!r}, 'run', '--bundle',"
        f" {str(busybox_bundle)!r}, {unique_id('light')!r}]);"
        "heavy = {'ctypes', 'signal', 'select', 'enum', 'json', 're', 'subprocess'};"
        "print(code, sorted(heavy & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"import sys; sys.path[:0] = {sys.path!r}; {code}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "0 []", result.stderr


DENY_MKDIR = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
}


def test_seccomp_program_is_compiled_once_and_enforced_from_the_cache(runtime, busybox_bundle):
    config = read_config(busybox_bundle)
    config["linux"]["seccomp"] = DENY_MKDIR
    config["process"]["args"] = ["sh", "-c", "mkdir /dev/shm/x; grep Seccomp: /proc/self/status"]
    write_config(busybox_bundle, config)
    entry = Path(seccomp_cache.entry_path(DENY_MKDIR))
    entry.unlink(missing_ok=True)

    def run() -> str:
        done = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id(), check=False)
        return done.stdout + done.stderr

    try:
        outputs = [run()]
        compiled = entry.stat().st_mtime_ns
        outputs.append(run())
        assert entry.stat().st_mtime_ns == compiled  # a hit: not compiled again
    finally:
        entry.unlink(missing_ok=True)  # this profile is ours alone
    for output in outputs:
        assert "Operation not permitted" in output and "Seccomp:\t2" in output
