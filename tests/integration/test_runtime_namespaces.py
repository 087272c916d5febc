"""Namespaces joined by path, user namespaces, rootfs propagation, cgroup settings, pause."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from rootfs import read_config, write_config


def _configure(bundle: Path, args: list[str], mutate=None) -> dict:
    config = read_config(bundle)
    config["process"]["args"] = args
    if mutate:
        mutate(config)
    write_config(bundle, config)
    return config


def _start_sleeper(runtime, bundle: Path, tmp_path: Path) -> tuple[str, int]:
    container_id = runtime.new_id("sleeper")
    with open(tmp_path / f"{container_id}.out", "w") as out:
        runtime("create", "--bundle", str(bundle), container_id, stdout=out, stderr=out)
    runtime("start", container_id)
    return container_id, json.loads(runtime("state", container_id).stdout)["pid"]


def test_join_network_and_ipc_namespaces_by_path(runtime, busybox_bundle, tmp_path):
    _configure(busybox_bundle, ["sleep", "60"])
    _sleeper, pid = _start_sleeper(runtime, busybox_bundle, tmp_path)
    theirs = {kind: os.readlink(f"/proc/{pid}/ns/{kind}") for kind in ("net", "ipc", "uts")}

    def join(config: dict) -> None:
        for entry in config["linux"]["namespaces"]:
            if entry["type"] in ("network", "ipc"):
                entry["path"] = f"/proc/{pid}/ns/{'net' if entry['type'] == 'network' else 'ipc'}"

    second = tmp_path / "second"
    second.mkdir()
    os.symlink(busybox_bundle / "rootfs", second / "rootfs")
    write_config(second, read_config(busybox_bundle))
    _configure(
        second, ["sh", "-c", "for n in net ipc uts; do readlink /proc/self/ns/$n; done"], join
    )
    out = runtime("run", "--bundle", str(second), runtime.new_id()).stdout.split()
    assert out[:2] == [theirs["net"], theirs["ipc"]]
    assert out[2] != theirs["uts"]  # not listed with a path: a new one


@pytest.fixture
def traversable_bundle(busybox_bundle):
    """The bundle moved below a directory the mapped root (host uid 100000) can traverse."""
    top = Path(tempfile.mkdtemp(prefix="composer-userns-", dir="/tmp"))
    os.chmod(top, 0o711)
    moved = top / "bundle"
    shutil.move(busybox_bundle, moved)
    yield moved
    shutil.rmtree(top)


def test_user_namespace_with_mappings(runtime, traversable_bundle):
    busybox_bundle = traversable_bundle

    def userns(config: dict) -> None:
        config["linux"]["namespaces"].append({"type": "user"})
        mapping = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        config["linux"]["uidMappings"] = mapping
        config["linux"]["gidMappings"] = mapping

    _configure(busybox_bundle, ["sh", "-c", "id -u; cat /proc/self/uid_map; hostname"], userns)
    lines = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id()).stdout.splitlines()
    assert lines[0] == "0"
    assert lines[1].split() == ["0", "100000", "65536"]
    assert lines[2] == read_config(busybox_bundle)["hostname"]


@pytest.mark.parametrize(
    ("propagation", "marker"),
    [("shared", "shared:"), ("private", ""), ("unbindable", "unbindable"), ("rslave", "")],
)
def test_rootfs_propagation(runtime, busybox_bundle, propagation, marker):
    def set_propagation(config: dict) -> None:
        config["linux"]["rootfsPropagation"] = propagation

    _configure(busybox_bundle, ["cat", "/proc/self/mountinfo"], set_propagation)
    out = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id()).stdout
    root_line = next(line for line in out.splitlines() if line.split()[4] == "/")
    optional = root_line.split(" - ")[0].split()[6:]
    if marker:
        assert any(field.startswith(marker) for field in optional), root_line
    else:
        assert optional == [], root_line


USERNS_MAPPING = [{"containerID": 0, "hostID": 100000, "size": 65536}]


@pytest.mark.parametrize("namespaces", ["cgroupns", "no-cgroupns", "userns+cgroupns"])
def test_cgroup_limits_are_visible_inside(runtime, traversable_bundle, namespaces):
    def limits(config: dict) -> None:
        linux = config["linux"]
        linux["resources"] = {"memory": {"limit": 64 * 1024 * 1024}, "pids": {"limit": 42}}
        linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "cgroup"]
        if "cgroupns" in namespaces.split("+"):
            linux["namespaces"].append({"type": "cgroup"})
        if namespaces.startswith("userns"):
            linux["namespaces"].append({"type": "user"})
            linux["uidMappings"] = linux["gidMappings"] = USERNS_MAPPING

    # The limits show that /sys/fs/cgroup/* are the container's cgroups, not the host's roots.
    probe = "cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes pids/pids.max"
    _configure(traversable_bundle, ["sh", "-c", probe], limits)
    out = runtime("run", "--bundle", str(traversable_bundle), runtime.new_id()).stdout.split()
    assert out == [str(64 * 1024 * 1024), "42"]


def test_pause_and_resume_freeze_the_container(runtime, busybox_bundle, tmp_path):
    _configure(busybox_bundle, ["sleep", "60"])
    container_id, pid = _start_sleeper(runtime, busybox_bundle, tmp_path)
    runtime("pause", container_id)
    assert json.loads(runtime("state", container_id).stdout)["status"] == "running"  # schema
    listed = json.loads(runtime("list", "--format", "json").stdout)
    assert [row["status"] for row in listed if row["id"] == container_id] == ["paused"]
    assert runtime("delete", container_id, check=False).returncode != 0
    assert runtime("resume", container_id).returncode == 0
    assert runtime("resume", container_id, check=False).returncode != 0
    assert json.loads(runtime("state", container_id).stdout)["status"] == "running"
    assert Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "S"


def test_process_attributes_personality_io_priority_scheduler_console(runtime, busybox_bundle):
    def attributes(config: dict) -> None:
        config["linux"]["personality"] = {"domain": "LINUX32"}
        config["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 6}
        config["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 7}
        last_cpu = str(max(os.sched_getaffinity(0)))
        config["process"]["execCPUAffinity"] = {"initial": "0", "final": last_cpu}

    # stat fields 19 (nice) and 41 (policy) of the shell itself
    probe = "uname -m; ionice -p $$; cut -d' ' -f19,41 /proc/$$/stat;"
    probe += " grep Cpus_allowed_list /proc/self/status"
    _configure(busybox_bundle, ["sh", "-c", probe], attributes)
    lines = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id()).stdout.splitlines()
    assert lines[0] in ("i686", "i386")
    assert lines[1].replace(" ", "") == "best-effort:prio6"
    assert lines[2].split() == ["7", "3"]
    assert lines[3].split() == ["Cpus_allowed_list:", str(max(os.sched_getaffinity(0)))]


def test_time_namespace_offsets(runtime, busybox_bundle):
    def time_ns(config: dict) -> None:
        config["linux"]["namespaces"].append({"type": "time"})
        config["linux"]["timeOffsets"] = {"boottime": {"secs": 86400 * 400, "nanosecs": 0}}

    _configure(busybox_bundle, ["cut", "-d.", "-f1", "/proc/uptime"], time_ns)
    inside = int(runtime("run", "--bundle", str(busybox_bundle), runtime.new_id()).stdout)
    host = int(float(Path("/proc/uptime").read_text().split()[0]))
    assert inside - host >= 86400 * 400 - 60


@pytest.mark.parametrize("clone3", ["clone3", "fork"])
def test_init_is_in_every_hierarchy_of_its_cgroup(busybox_bundle, tmp_path, monkeypatch, clone3):
    from runtime.oci import container, syscalls

    if clone3 == "fork":  # an older kernel: the child moves itself everywhere

        def no_clone3(_fd):
            raise OSError(38, "Function not implemented")

        monkeypatch.setattr(syscalls, "clone_into_cgroup", no_clone3)
    _configure(busybox_bundle, ["sleep", "60"])
    root = str(tmp_path / "in-process-root")
    container_id = f"cg-{os.getpid()}-{clone3}"
    with open(tmp_path / "out", "w") as out:
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            pid = container.create(root, container_id, str(busybox_bundle))
        finally:
            for fd, saved_fd in zip((1, 2), saved, strict=True):
                os.dup2(saved_fd, fd)
                os.close(saved_fd)
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        assert lines and all(line.endswith(f":/{container_id}") for line in lines)
        cgroup = container._cgroup({}, container_id)
        assert pid in cgroup.pids()
    finally:
        container.delete(root, container_id, force=True)
    assert not Path(root, container_id).exists()


def test_join_a_mount_namespace_by_path(runtime, busybox_bundle, tmp_path):
    # a mount namespace of our own making, kept alive by a sleeping process in it
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "60"])
    try:
        path = f"/proc/{holder.pid}/ns/mnt"
        for _ in range(500):  # until unshare has exec'd sleep in the new namespace
            if os.readlink(path) != os.readlink("/proc/self/ns/mnt"):
                break
            time.sleep(0.01)

        def join(config: dict) -> None:
            for entry in config["linux"]["namespaces"]:
                if entry["type"] == "mount":
                    entry["path"] = path

        _configure(busybox_bundle, ["sh", "-c", "readlink /proc/self/ns/mnt"], join)
        out = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id()).stdout.strip()
        assert out == os.readlink(path)
        assert str(busybox_bundle) not in Path("/proc/self/mountinfo").read_text()
    finally:
        holder.kill()
        holder.wait()


def test_join_pid_and_uts_namespaces_by_path(runtime, busybox_bundle, tmp_path):
    _configure(busybox_bundle, ["sleep", "60"])
    _sleeper, pid = _start_sleeper(runtime, busybox_bundle, tmp_path)
    hostname = read_config(busybox_bundle)["hostname"]

    def join(config: dict) -> None:
        del config["hostname"]  # the joined uts namespace has its name already
        for entry in config["linux"]["namespaces"]:
            if entry["type"] in ("pid", "uts"):
                entry["path"] = f"/proc/{pid}/ns/{entry['type']}"

    second = tmp_path / "second"
    second.mkdir()
    os.symlink(busybox_bundle / "rootfs", second / "rootfs")
    write_config(second, read_config(busybox_bundle))
    probe = "tr '\\0' ' ' < /proc/1/cmdline; echo; hostname; echo $$"
    _configure(second, ["sh", "-c", probe], join)
    lines = runtime("run", "--bundle", str(second), runtime.new_id()).stdout.splitlines()
    assert lines[0].strip() == "sleep 60"
    assert lines[1] == hostname
    assert lines[2] != "1"


def test_hostname_is_set_in_a_uts_namespace_joined_by_path(runtime, busybox_bundle, tmp_path):
    # runtime-spec: a namespace given by path is the container's; its hostname is set there.
    holder = subprocess.Popen(["unshare", "--uts", "sleep", "60"])
    try:
        time.sleep(0.2)

        def join(config: dict) -> None:
            config["hostname"] = "joined-uts"
            for entry in config["linux"]["namespaces"]:
                if entry["type"] == "uts":
                    entry["path"] = f"/proc/{holder.pid}/ns/uts"

        _configure(busybox_bundle, ["hostname"], join)
        out = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id()).stdout
        assert out.strip() == "joined-uts"
        assert os.uname().nodename != "joined-uts"  # the host's stays as it was
    finally:
        holder.kill()
        holder.wait()
