"""The init is born in the cgroup2 directory and joins the rest of its cgroup while it sets
up (the runtime makes and configures that part meanwhile): before its program runs it is
in every hierarchy and under every limit, with or without a cgroup mount in the config."""

from __future__ import annotations

import glob

import pytest
from rootfs import read_config, write_config


def _configure(bundle, script: str, pids_limit: int, cgroup_mount: bool) -> None:
    config = read_config(bundle)
    config["process"]["args"] = ["sh", "-c", script]
    config["linux"].setdefault("resources", {})["pids"] = {"limit": pids_limit}
    if not cgroup_mount:
        config["mounts"] = [m for m in config["mounts"] if m.get("type") != "cgroup"]
    write_config(bundle, config)


@pytest.mark.parametrize("cgroup_mount", [True, False])
def test_the_pids_limit_holds_for_the_first_fork(runtime, busybox_bundle, cgroup_mount):
    _configure(busybox_bundle, "true & wait; echo forked", 1, cgroup_mount)  # the init is 1
    result = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id(), check=False)
    assert result.returncode != 0
    assert "can't fork" in result.stderr
    assert "forked" not in result.stdout


def test_the_cgroup_namespace_starts_at_the_containers_cgroup_everywhere(runtime, busybox_bundle):
    _configure(busybox_bundle, "true & wait; cat /proc/self/cgroup", 5, True)
    result = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id())
    lines = result.stdout.splitlines()
    assert len(lines) > 1
    assert all(line.endswith(":/") for line in lines)  # joined everywhere, then unshared


def test_a_mount_failing_before_the_join_is_reported_and_leaves_nothing(runtime, busybox_bundle):
    config = read_config(busybox_bundle)
    missing = {"destination": "/mnt", "type": "bind", "source": "/no/such/dir", "options": ["bind"]}
    config["mounts"].insert(1, missing)  # before /sys/fs/cgroup: the init has not joined yet
    write_config(busybox_bundle, config)
    container_id = runtime.new_id()
    result = runtime("run", "--bundle", str(busybox_bundle), container_id, check=False)
    assert result.returncode == 1
    assert "/no/such/dir" in result.stderr
    assert glob.glob(f"/sys/fs/cgroup/*/{container_id}") == []
    assert not (runtime.root / container_id).exists()
