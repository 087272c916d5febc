"""AppArmor and SELinux settings: refused where the kernel lacks the module, applied where
it runs it. The kernel's answers come from a fake below the syscall seam."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.oci import linux, syscalls


class FakeLSM:
    """The seam's LSM functions: which modules run, and what was written where."""

    def __init__(self, *enabled: str) -> None:
        self.enabled = set(enabled)
        self.written: list[tuple[str, str]] = []

    def lsm_enabled(self, name: str) -> bool:
        return name in self.enabled

    def set_exec_attr(self, name: str, text: str) -> None:
        self.written.append((name, text))


def _config(**process) -> dict:
    return {"root": {"path": "rootfs"}, "process": {"args": ["true"], **process}, "linux": {}}


@pytest.mark.parametrize(
    ("section", "key", "value", "lsm"),
    [
        ("process", "apparmorProfile", "docker-default", "apparmor"),
        ("process", "selinuxLabel", "system_u:system_r:container_t:s0", "selinux"),
        ("linux", "mountLabel", "system_u:object_r:container_file_t:s0", "selinux"),
    ],
)
def test_a_label_is_refused_without_its_module_and_accepted_with_it(section, key, value, lsm):
    config = _config()
    config[section][key] = value
    with pytest.raises(linux.ConfigError, match=f"{section}.{key} is set but {lsm} is not"):
        linux.check_config(config, FakeLSM())
    other = "selinux" if lsm == "apparmor" else "apparmor"
    with pytest.raises(linux.ConfigError):
        linux.check_config(config, FakeLSM(other))
    linux.check_config(config, FakeLSM(lsm))  # no error


def test_no_label_needs_no_module():
    linux.check_config(_config(), FakeLSM())


def test_exec_labels_are_written_as_each_module_reads_them():
    fake = FakeLSM("apparmor", "selinux")
    process = {"apparmorProfile": "my-profile", "selinuxLabel": "u:r:t:s0:c1,c2"}
    linux.set_exec_labels(process, fake)
    assert fake.written == [("apparmor", "exec my-profile"), ("selinux", "u:r:t:s0:c1,c2")]


def test_no_label_writes_nothing():
    fake = FakeLSM("apparmor", "selinux")
    linux.set_exec_labels({"args": ["true"]}, fake)
    assert fake.written == []


def test_mount_label_goes_to_fresh_mounts_only():
    label = "system_u:object_r:container_file_t:s0:c1,c2"
    context = f'context="{label}"'
    assert linux.with_mount_label("mode=755", "tmpfs", label) == f"mode=755,{context}"
    assert linux.with_mount_label("", "devpts", label) == context
    for fstype in ("bind", "proc", "sysfs", "cgroup", "mqueue"):
        assert linux.with_mount_label("x=1", fstype, label) == "x=1"
    assert linux.with_mount_label("mode=755", "tmpfs", None) == "mode=755"


def test_this_kernels_answer_matches_its_files():
    # The real seam: AppArmor shows its module parameter, SELinux its filesystem.
    apparmor = Path("/sys/module/apparmor/parameters/enabled")
    expected = apparmor.exists() and apparmor.read_text().strip() == "Y"
    assert syscalls.lsm_enabled("apparmor") == expected
    assert syscalls.lsm_enabled("selinux") == Path("/sys/fs/selinux/enforce").exists()
    assert not syscalls.lsm_enabled("no-such-module")


class FakeMounts:
    def __init__(self) -> None:
        self.mounts: list[tuple] = []

    def mount(self, *args) -> None:
        self.mounts.append(args)


def test_mount_entry_passes_the_mount_label_to_the_kernel(tmp_path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    fake = FakeMounts()
    entry = {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["size=1m"]}
    linux.mount_entry(str(rootfs), str(tmp_path), entry, sys_=fake, mount_label="u:o:t:s0")
    assert fake.mounts == [
        ("shm", str(rootfs / "dev/shm"), "tmpfs", 0, 'size=1m,context="u:o:t:s0"')
    ]
