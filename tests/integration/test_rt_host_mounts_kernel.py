"""A config without a mount namespace (runtime-spec: the container inherits the runtime's):
the rootfs mounts are made in this namespace, the init chroots, and delete removes every
mount create made. Checked against this process's /proc/self/mountinfo."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from rootfs import read_config, write_config

from runtime.mounts import mount_points


def _without_mount_namespace(bundle: Path, args: list[str], **extra) -> None:
    config = read_config(bundle)
    namespaces = config["linux"]["namespaces"]
    config["linux"]["namespaces"] = [ns for ns in namespaces if ns["type"] != "mount"]
    config["process"]["args"] = args
    config.update(extra)
    write_config(bundle, config)


def _ours(bundle: Path) -> list[str]:
    """Mount points at or below the bundle (other tests may mount elsewhere meanwhile)."""
    top = str(bundle)
    return [p for p in mount_points() if p == top or p.startswith(top + "/")]


def _root_line() -> str:
    """The host's "/" with its propagation fields: a host namespace run must not touch it."""
    with open("/proc/self/mountinfo") as f:
        return next(line.split(" - ")[0] for line in f if line.split()[4] == "/")


def test_run_without_mount_namespace_leaves_no_mount(runtime, busybox_bundle):
    probe = "ls /; readlink /proc/self/ns/mnt; test -e /proc/self/attr && echo proc-mounted"
    _without_mount_namespace(busybox_bundle, ["sh", "-c", probe])
    root_before, ours_before = _root_line(), _ours(busybox_bundle)
    assert ours_before == []
    out = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id()).stdout.split()
    assert "bin" in out and "work" not in out  # its "/" is the rootfs, not ours
    assert os.readlink("/proc/self/ns/mnt") in out  # our own mount namespace
    assert "proc-mounted" in out  # config mounts were made for it
    assert _ours(busybox_bundle) == ours_before
    assert _root_line() == root_before


def test_create_exec_delete_without_mount_namespace(runtime, busybox_bundle, tmp_path):
    _without_mount_namespace(busybox_bundle, ["sleep", "60"])
    container_id = runtime.new_id()
    with open(tmp_path / "out", "w") as out:
        runtime("create", "--bundle", str(busybox_bundle), container_id, stdout=out, stderr=out)
    made = _ours(busybox_bundle)
    rootfs = str(busybox_bundle / "rootfs")
    assert made[0] == rootfs and rootfs + "/proc" in made  # the rootfs bind, then config's
    state = json.loads(Path(runtime.root, container_id, "state.json").read_text())
    assert state["mounts"] == made  # every one recorded for delete
    runtime("start", container_id)
    pid = json.loads(runtime("state", container_id).stdout)["pid"]
    assert os.readlink(f"/proc/{pid}/root") == rootfs
    # exec finds the container's root through the init's chroot
    out = runtime(
        "exec", container_id, "sh", "-c", "cat /etc/hostname; tr '\\0' ' ' < /proc/1/cmdline"
    )
    assert out.stdout.split() == ["busybox", "sleep", "60"]
    runtime("delete", "--force", container_id)
    assert _ours(busybox_bundle) == []


def test_a_failed_create_unmounts_what_it_made(runtime, busybox_bundle):
    config = read_config(busybox_bundle)
    bad = {"destination": "/bad", "type": "no-such-filesystem", "source": "none"}
    _without_mount_namespace(busybox_bundle, ["true"], mounts=[*config["mounts"], bad])
    container_id = runtime.new_id()
    result = runtime("create", "--bundle", str(busybox_bundle), container_id, check=False)
    assert result.returncode != 0 and "no-such-filesystem" in result.stderr
    assert _ours(busybox_bundle) == []
    assert not Path(runtime.root, container_id).exists()


def test_delete_after_a_create_that_never_finished_finds_its_mounts(
    runtime, busybox_bundle, tmp_path
):
    # A create killed midway leaves a "creating" record: what was below the rootfs before
    # it began is in there, so delete can tell the mounts it made.
    _without_mount_namespace(busybox_bundle, ["sleep", "60"])
    container_id = runtime.new_id()
    with open(tmp_path / "out", "w") as out:  # the init keeps its stdio: no pipe to wait on
        runtime("create", "--bundle", str(busybox_bundle), container_id, stdout=out, stderr=out)
    assert _ours(busybox_bundle)
    path = Path(runtime.root, container_id, "state.json")
    record = json.loads(path.read_text())
    os.kill(record["pid"], 9)
    gone = subprocess.Popen(["true"])  # its pid is surely free once reaped
    gone.wait()
    del record["mounts"]
    record.update(status="creating", creator=gone.pid)
    assert "mounts_before" in record
    path.write_text(json.dumps(record))
    assert json.loads(runtime("state", container_id).stdout)["status"] == "stopped"
    runtime("delete", container_id)
    assert _ours(busybox_bundle) == []
    assert not Path(runtime.root, container_id).exists()
