"""A cloned init mounts while its parent makes the v1 cgroups: it must enter its cgroup
(and cgroup namespace) right before the first cgroup mount, or at the end without one."""

from __future__ import annotations

from pathlib import Path

from runtime.oci import linux
from runtime.oci import syscalls as real


class FakeSyscalls:
    def __init__(self, events: list) -> None:
        self.events = events

    def __getattr__(self, name):
        if name.isupper():
            return getattr(real, name)

        def record(*args):
            self.events.append((name, *args))
            if name == "mknod":
                Path(args[0]).touch()

        return record


MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"},
    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
]


def _prepare(tmp_path: Path, mounts: list[dict], monkeypatch) -> list:
    (tmp_path / "bundle" / "rootfs").mkdir(parents=True)
    events: list = []
    monkeypatch.setattr(linux, "mount_cgroup_tree", lambda *args: events.append(("cgroup-tree",)))
    config = {"root": {"path": "rootfs"}, "mounts": mounts}
    linux.prepare_rootfs(
        config,
        str(tmp_path / "bundle"),
        real.CLONE_NEWNS,
        False,
        FakeSyscalls(events),
        enter_cgroup=lambda: events.append(("enter",)),
    )
    return [event[0] if event[0] != "mount" else event[2].rsplit("/", 1)[-1] for event in events]


def test_the_cgroup_is_entered_right_before_the_cgroup_mount(tmp_path, monkeypatch):
    order = _prepare(tmp_path, MOUNTS, monkeypatch)
    assert order.count("enter") == 1
    assert order.index("proc") < order.index("enter") < order.index("cgroup-tree")
    assert order.index("cgroup-tree") < order.index("tmp")


def test_without_a_cgroup_mount_it_is_entered_after_the_mounts(tmp_path, monkeypatch):
    order = _prepare(tmp_path, [MOUNTS[0], MOUNTS[2]], monkeypatch)
    assert order.count("enter") == 1
    assert order.index("tmp") < order.index("enter")
