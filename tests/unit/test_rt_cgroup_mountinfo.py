"""The init mounts the container's /sys/fs/cgroup from the mountinfo the runtime read as it
found the cgroup (the kernel makes that text anew at each read), not from a second read."""

from __future__ import annotations

from runtime.oci import linux
from runtime.oci import syscalls as real
from runtime.oci.cgroups import detect_layout

MOUNTINFO = (
    "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
    "31 25 0:27 / /sys/fs/cgroup/elsewhere rw - cgroup cgroup rw,xattr,name=elsewhere\n"
    "32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    "33 25 0:29 / /tmp rw - tmpfs tmpfs rw\n"
)


class RecordingMounts:
    def __init__(self) -> None:
        self.mounts: list[tuple] = []

    def mount(self, *args) -> None:
        self.mounts.append(args)


def test_the_given_mountinfo_is_what_gets_mounted(tmp_path, monkeypatch):
    def no_second_read(path):
        raise AssertionError(f"read {path} again")

    monkeypatch.setattr(linux, "read_bytes", no_second_read)
    fake = RecordingMounts()
    dest = str(tmp_path / "cgroup")
    (tmp_path / "cgroup").mkdir()
    linux.mount_cgroup_tree(dest, real.MS_RDONLY, True, [], fake, MOUNTINFO)
    flags = real.MS_NOSUID | real.MS_NODEV | real.MS_NOEXEC | real.MS_RDONLY
    assert fake.mounts == [
        ("tmpfs", dest, "tmpfs", flags & ~real.MS_RDONLY, "mode=755"),
        ("cgroup", f"{dest}/cpu,cpuacct", "cgroup", flags, "cpu,cpuacct"),
        ("cgroup", f"{dest}/elsewhere", "cgroup", flags, "name=elsewhere"),
        ("cgroup", f"{dest}/unified", "cgroup2", flags, None),
        (None, dest, None, real.MS_REMOUNT | flags, "mode=755"),
    ]


def test_the_layout_keeps_the_text_it_was_found_in(tmp_path):
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("")
    text = f"32 25 0:28 / {tmp_path}/unified rw - cgroup2 cgroup2 rw\n"
    assert detect_layout(str(tmp_path), text).mountinfo == text
