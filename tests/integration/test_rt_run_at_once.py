"""`run` starts the container from inside create (the init execs while its record is
written): what it looks like from outside must not change. Limits are written before the
init joins its cgroup (v1 device rules pass through "deny all", which would refuse its
mknod); it is born in the cgroup2 directory only and told when to join."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from rootfs import read_config, unique_id, write_config

from runtime.oci import container, spawn, syscalls
from runtime.oci.cgroups import Cgroup

# a detached container keeps its stdio: pipes of ours would hold `run` open until it ends
QUIET = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def _configure(bundle: Path, args: list[str], **process) -> dict:
    config = read_config(bundle)
    config["process"]["args"] = args
    config["process"].update(process)
    write_config(bundle, config)
    return config


def _cgroup_dirs(container_id: str) -> list[str]:
    return [
        path
        for name in os.listdir("/sys/fs/cgroup")
        if os.path.isdir(path := f"/sys/fs/cgroup/{name}/{container_id}")
    ]


def test_a_program_that_cannot_be_executed_fails_run_and_leaves_nothing(runtime, busybox_bundle):
    program = busybox_bundle / "rootfs" / "bin" / "not-a-program"
    program.write_text("neither ELF nor #!\n")
    program.chmod(0o755)  # found on PATH; only execve itself refuses it (ENOEXEC)
    _configure(busybox_bundle, ["not-a-program"])
    container_id = runtime.new_id("noexec")
    done = runtime("run", "--bundle", str(busybox_bundle), container_id, check=False)
    assert done.returncode == 1
    assert "failed to start" in done.stderr and "Exec format error" in done.stderr
    assert not (runtime.root / container_id).exists()
    assert _cgroup_dirs(container_id) == []


def test_a_detached_run_is_running_under_its_recorded_pid(runtime, busybox_bundle):
    _configure(busybox_bundle, ["sleep", "60"])
    container_id = runtime.new_id("detached")
    runtime("run", "--detach", "--bundle", str(busybox_bundle), container_id, **QUIET)
    record = json.loads(runtime("state", container_id).stdout)
    assert record["status"] == "running"
    assert Path(f"/proc/{record['pid']}/cmdline").read_bytes().startswith(b"sleep\0")
    assert os.listdir(runtime.root / container_id) == ["state.json"]  # pipes, no fifos
    runtime("delete", "--force", container_id)
    assert not (runtime.root / container_id).exists()
    assert _cgroup_dirs(container_id) == []


def test_device_rules_are_in_force_when_the_program_runs(runtime, busybox_bundle):
    # CAP_MKNOD so that only the devices cgroup can refuse the open (of /dev/kmsg, 1:11)
    caps = ["CAP_MKNOD", "CAP_KILL", "CAP_AUDIT_WRITE", "CAP_NET_BIND_SERVICE"]
    config = _configure(
        busybox_bundle,
        ["sh", "-c", "mknod /dev/k c 1 11 && head -c1 /dev/k >/dev/null; echo rc=$?"],
        capabilities={kind: caps for kind in ("bounding", "effective", "permitted")},
    )
    config["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    write_config(busybox_bundle, config)
    done = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id("devices"))
    assert "Operation not permitted" in done.stderr
    assert done.stdout.strip() == "rc=1"


def test_run_with_a_pid_file_writes_the_pid_of_the_running_container(runtime, busybox_bundle):
    _configure(busybox_bundle, ["sleep", "60"])
    container_id = runtime.new_id("pidfile")
    pid_file = runtime.root.parent / "pid"
    argv = ["run", "-d", "--pid-file", str(pid_file), "--bundle", str(busybox_bundle)]
    runtime(*argv, container_id, **QUIET)
    state = json.loads(runtime("state", container_id).stdout)
    assert int(pid_file.read_text()) == state["pid"] and state["status"] == "running"
    runtime("delete", "--force", container_id)


def test_limits_are_written_before_the_init_is_told_to_join(busybox_bundle, tmp_path, monkeypatch):
    events: list[str] = []
    real_apply, real_clone3, real_send = Cgroup.apply, syscalls.clone3, spawn._Channel.send

    def apply(self, *args, **kwargs):
        events.append("apply")
        return real_apply(self, *args, **kwargs)

    def clone3(*args, **kwargs):
        pid = real_clone3(*args, **kwargs)
        if pid:  # the parent's side; the child goes on to set up
            events.append("clone")
        return pid

    def send(self, message):
        events.append(message["type"])
        return real_send(self, message)

    monkeypatch.setattr(Cgroup, "apply", apply)
    monkeypatch.setattr(syscalls, "clone3", clone3)
    monkeypatch.setattr(spawn._Channel, "send", send)
    root, container_id = str(tmp_path / "root"), unique_id("order")
    with open(tmp_path / "out", "w") as sink:  # the init's stdio, not pytest's
        saved = os.dup(1)
        os.dup2(sink.fileno(), 1)
        try:
            spawn.create_container(root, container_id, str(busybox_bundle), start=True)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
    try:
        assert events == ["clone", "apply", "cgroup"]
    finally:
        container.delete(root, container_id, force=True)
    assert not Path(root, container_id).exists()


@pytest.mark.parametrize("start", [True, False], ids=["run", "create"])
def test_a_create_failing_before_the_init_is_born_leaves_no_fd_open(
    busybox_bundle, tmp_path, start
):
    root, container_id = str(tmp_path / "root"), unique_id("nofd")
    before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(container.ContainerError, match="console socket"):
        spawn.create_container(
            root,
            container_id,
            str(busybox_bundle),
            console_socket=str(tmp_path / "none"),
            start=start,
        )
    assert sorted(os.listdir("/proc/self/fd")) == before
    assert not Path(root, container_id).exists()
    assert _cgroup_dirs(container_id) == []
