"""Without a mount namespace of its own: the order and flags of the init's mounts and
chroot, and how delete finds and undoes them (a fake below the syscall seam)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from runtime.oci import linux
from runtime.oci import syscalls as real


class FakeSyscalls:
    def __init__(self, unmount_errors: dict[str, int] | None = None) -> None:
        self.calls: list[tuple] = []
        self.unmount_errors = unmount_errors or {}

    def __getattr__(self, name):
        if name.isupper():
            return getattr(real, name)

        def record(*args):
            self.calls.append((name, *args))
            if name == "umount2" and args[0] in self.unmount_errors:
                code = self.unmount_errors[args[0]]
                raise OSError(code, os.strerror(code), args[0])
            if name == "mknod":
                Path(args[0]).touch()

        return record

    def named(self, name: str) -> list[tuple]:
        return [call[1:] for call in self.calls if call[0] == name]


def _bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    return bundle


@pytest.mark.parametrize(
    ("propagation", "expected"),
    [(None, real.MS_PRIVATE), ("rprivate", real.MS_PRIVATE), ("rslave", real.MS_SLAVE)],
)
def test_host_namespace_cuts_off_the_rootfs_bind_and_leaves_the_hosts_root(
    tmp_path, propagation, expected
):
    bundle = _bundle(tmp_path)
    config = {
        "root": {"path": "rootfs"},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"rootfsPropagation": propagation} if propagation else {},
    }
    fake = FakeSyscalls()
    rootfs = linux.prepare_rootfs(config, str(bundle), 0, False, fake, own_mount_ns=False)
    assert fake.named("mount") == [
        (rootfs, rootfs, None, real.MS_BIND | real.MS_REC),
        (None, rootfs, None, expected | real.MS_REC),
        ("proc", rootfs + "/proc", "proc", 0, None),
    ]
    assert all(call[1] != "/" for call in fake.named("mount"))  # the host's "/" untouched


def test_chroot_replaces_pivot_root_and_applies_the_propagation_asked_for():
    fake = FakeSyscalls()
    linux.chroot_into("/b/rootfs", "shared", fake)
    assert fake.calls == [
        ("chdir", "/b/rootfs"),
        ("chroot", "."),
        ("chdir", "/"),
        ("mount", None, "/", None, real.MS_SHARED),
    ]
    fake = FakeSyscalls()
    linux.chroot_into("/b/rootfs", None, fake)
    assert fake.named("pivot_root") == [] and fake.named("mount") == []


def test_new_mounts_counts_a_path_mounted_twice():
    before = ["/r", "/other"]
    after = ["/r", "/other", "/r", "/r/proc", "/r/dev", "/r/proc"]
    assert linux.new_mounts(before, after) == ["/r", "/r/proc", "/r/dev", "/r/proc"]
    assert linux.new_mounts(after, after) == []


def test_unmount_all_goes_newest_first_without_following_links(tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "proc").mkdir(parents=True)
    (rootfs / "dev").mkdir()
    made = [str(rootfs), str(rootfs / "proc"), str(rootfs / "dev")]
    fake = FakeSyscalls()
    assert linux.unmount_all(made, fake) == []
    flags = real.MNT_DETACH | real.UMOUNT_NOFOLLOW
    assert fake.named("umount2") == [(path, flags) for path in reversed(made)]


def test_unmount_all_skips_a_path_that_now_leads_elsewhere(tmp_path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (rootfs / "data").symlink_to("/")  # swapped in by the container after create
    fake = FakeSyscalls()
    warnings = linux.unmount_all([str(rootfs), str(rootfs / "data/mnt")], fake)
    assert fake.named("umount2") == [(str(rootfs), real.MNT_DETACH | real.UMOUNT_NOFOLLOW)]
    assert len(warnings) == 1 and "data/mnt" in warnings[0]


def test_unmount_all_ignores_mounts_already_gone_and_reports_the_rest(tmp_path):
    a, b, c = (str(tmp_path / name) for name in "abc")
    for path in (a, b, c):
        Path(path).mkdir()
    fake = FakeSyscalls({a: errno.EINVAL, b: errno.EBUSY, c: errno.ENOENT})
    warnings = linux.unmount_all([a, b, c], fake)
    assert len(fake.named("umount2")) == 3
    assert len(warnings) == 1 and b in warnings[0]
