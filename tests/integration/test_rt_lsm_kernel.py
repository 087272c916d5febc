"""AppArmor and SELinux settings on this very kernel: applied where the module runs,
refused (before anything is made) where it does not."""

from __future__ import annotations

import os

from rootfs import read_config, write_config

from runtime.oci import syscalls


def test_apparmor_profile_is_applied_or_refused(runtime, busybox_bundle):
    config = read_config(busybox_bundle)
    config["process"]["apparmorProfile"] = "unconfined"
    config["process"]["args"] = ["cat", "/proc/self/attr/current"]
    write_config(busybox_bundle, config)
    container_id = runtime.new_id()
    result = runtime("run", "--bundle", str(busybox_bundle), container_id, check=False)
    if syscalls.lsm_enabled("apparmor"):
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "unconfined"
    else:
        assert result.returncode != 0
        assert "apparmorProfile is set but apparmor is not enabled" in result.stderr
        assert not os.path.exists(runtime.root / container_id)  # refused before create


def test_selinux_label_is_refused_without_selinux(runtime, busybox_bundle):
    config = read_config(busybox_bundle)
    config["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0"
    write_config(busybox_bundle, config)
    result = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id(), check=False)
    if syscalls.lsm_enabled("selinux"):
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert "mountLabel is set but selinux is not enabled" in result.stderr
