"""A fake cgroupfs for unit tests: a tmp tree with the files a kernel would show, plus a
`KernelIO` that reacts to writes the way the kernel does where the tests depend on it
(mkdir fills in interface files, rmdir refuses busy cgroups, cgroup.procs moves a pid,
subtree_control takes +/- lists, freeze and kill take effect at once).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from runtime.oci.cgroups import Cgroup, CgroupError, KernelIO, open_cgroup

V1_UNLIMITED = "9223372036854771712"

_V1_COMMON = {
    "cgroup.procs": "",
    "tasks": "",
    "notify_on_release": "0",
    "cgroup.clone_children": "0",
}
_V1_FILES = {
    "memory": {
        "memory.limit_in_bytes": V1_UNLIMITED,
        "memory.soft_limit_in_bytes": V1_UNLIMITED,
        "memory.memsw.limit_in_bytes": V1_UNLIMITED,
        "memory.kmem.limit_in_bytes": V1_UNLIMITED,
        "memory.kmem.tcp.limit_in_bytes": V1_UNLIMITED,
        "memory.usage_in_bytes": "0",
        "memory.max_usage_in_bytes": "0",
        "memory.swappiness": "60",
        "memory.use_hierarchy": "1",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        "memory.stat": "cache 0\nrss 0\n",
    },
    "cpu": {
        "cpu.shares": "1024",
        "cpu.cfs_period_us": "100000",
        "cpu.cfs_quota_us": "-1",
        "cpu.cfs_burst_us": "0",
        "cpu.rt_period_us": "1000000",
        "cpu.rt_runtime_us": "0",
        "cpu.idle": "0",
        "cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
    },
    "cpuacct": {"cpuacct.usage": "0", "cpuacct.stat": "user 0\nsystem 0\n"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
    "freezer": {"freezer.state": "THAWED\n"},
    "blkio": {
        "blkio.bfq.weight": "100",
        "blkio.throttle.read_bps_device": "",
        "blkio.throttle.write_bps_device": "",
        "blkio.throttle.read_iops_device": "",
        "blkio.throttle.write_iops_device": "",
    },
    "pids": {"pids.max": "max", "pids.current": "0"},
    "hugetlb": {
        "hugetlb.2MB.limit_in_bytes": V1_UNLIMITED,
        "hugetlb.2MB.rsvd.limit_in_bytes": V1_UNLIMITED,
        "hugetlb.1GB.limit_in_bytes": V1_UNLIMITED,
    },
    "net_cls": {"net_cls.classid": "0"},
    "net_prio": {"net_prio.ifpriomap": ""},
}
_V2_CORE = {
    "cgroup.procs": "",
    "cgroup.subtree_control": "",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.freeze": "0",
    "cgroup.kill": "",
    "cgroup.type": "domain",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
}
_V2_FILES = {
    "memory": {
        "memory.max": "max",
        "memory.low": "0",
        "memory.high": "max",
        "memory.swap.max": "max",
        "memory.current": "0",
        "memory.peak": "0",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
        "memory.stat": "anon 0\nfile 0\n",
    },
    "cpu": {"cpu.weight": "100", "cpu.max": "max 100000", "cpu.max.burst": "0", "cpu.idle": "0"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "io": {"io.max": "", "io.weight": "default 100"},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "hugetlb": {"hugetlb.2MB.max": "max", "hugetlb.2MB.rsvd.max": "max"},
    "rdma": {"rdma.max": ""},
}
V1_DEFAULT = (
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
)
V2_DEFAULT = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma")


class FakeKernel(KernelIO):
    """Plain files, with the kernel's reactions to the writes the tests exercise."""

    def __init__(self, tree: FakeCgroupTree):
        self.tree = tree
        self.writes: list[tuple[str, str]] = []  # (path relative to the tree root, value)
        self.signals: list[tuple[int, int]] = []
        self.busy_rmdirs = 0  # how many rmdir calls answer EBUSY before one succeeds

    def write(self, path: str, value: str) -> None:
        rel = os.path.relpath(path, self.tree.root)
        self.writes.append((rel, value))
        name, d = os.path.basename(path), os.path.dirname(path)
        if not os.path.exists(path):
            raise CgroupError(f"cannot open {path}: No such file", errno.ENOENT)
        if name == "cgroup.procs":
            self.tree.move_pid(d, int(value))
        elif name == "cgroup.subtree_control":
            enabled = set(self.read(path).split())
            available = set(self.read(os.path.join(d, "cgroup.controllers")).split())
            for item in value.split():
                if item[1:] not in available:
                    raise CgroupError(f"writing {item} to {path}: No such file", errno.ENOENT)
                (enabled.add if item[0] == "+" else enabled.discard)(item[1:])
            Path(path).write_text(" ".join(sorted(enabled)))
        elif name == "cpu.rt_runtime_us":
            self.tree.check_rt_budget(d, int(value))
            Path(path).write_text(value)
        elif name == "cgroup.freeze":
            Path(path).write_text(value)
            Path(d, "cgroup.events").write_text(f"populated 0\nfrozen {int(value)}\n")
        elif name == "cgroup.kill":
            for pid in self.tree.procs(d):
                self.kill(pid, 9)
        elif name in ("devices.allow", "devices.deny", "io.max", "rdma.max") or name.endswith(
            "_device"
        ):
            with open(path, "a") as f:  # these files keep one line per key
                f.write(value + "\n")
        else:
            Path(path).write_text(value)

    def mkdir(self, path: str) -> None:
        os.mkdir(path)
        self.tree.populate(path)

    def rmdir(self, path: str) -> None:
        if self.busy_rmdirs > 0:
            self.busy_rmdirs -= 1
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        if any(os.path.isdir(os.path.join(path, e)) for e in os.listdir(path)):
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        if self.tree.procs(path):
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        for entry in os.listdir(path):  # interface files vanish with the cgroup
            os.unlink(os.path.join(path, entry))
        os.rmdir(path)

    def kill(self, pid: int, sig: int) -> None:
        self.signals.append((pid, sig))
        if pid not in self.tree.all_pids():
            raise ProcessLookupError(errno.ESRCH, "No such process")
        if sig == 9:
            self.tree.remove_pid(pid)


class FakeCgroupTree:
    """A cgroup tree under `root`, mounted as "v1", "v2" or "hybrid"."""

    def __init__(
        self,
        root: Path,
        mode: str = "v2",
        v1_controllers: tuple[str, ...] = V1_DEFAULT,
        v2_controllers: tuple[str, ...] = V2_DEFAULT,
        own_cgroup: str = "/user.slice/session-1.scope",
        extra_files: dict[str, dict[str, str]] | None = None,
        missing_files: tuple[str, ...] = (),
    ):
        self.root = str(root)
        self.mode = mode
        self.v1_controllers = v1_controllers if mode != "v2" else ()
        self.v2_controllers = v2_controllers if mode != "v1" else ()
        self.extra_files = extra_files or {}
        self.missing_files = set(missing_files)
        self.kernel = FakeKernel(self)
        lines, own = [], []
        mount_id = 30
        if mode == "v2":
            self.unified = self.root
        else:
            self.unified = os.path.join(self.root, "unified") if mode == "hybrid" else None
            for index, c in enumerate(self.v1_controllers, start=1):
                mountpoint = os.path.join(self.root, c)
                os.makedirs(mountpoint)
                self._root_files(mountpoint, c)
                lines.append(
                    f"{mount_id} 25 0:{mount_id} / {mountpoint} rw,nosuid - cgroup cgroup rw,{c}"
                )
                own.append(f"{index}:{c}:{own_cgroup}")
                mount_id += 1
            named = os.path.join(self.root, "systemd")
            os.makedirs(named)
            self._write_files(named, _V1_COMMON)
            lines.append(
                f"{mount_id} 25 0:{mount_id} / {named} rw - cgroup cgroup rw,xattr,name=systemd"
            )
            own.append(f"{len(own) + 1}:name=systemd:{own_cgroup}")
            mount_id += 1
        if self.unified:
            os.makedirs(self.unified, exist_ok=True)
            self._write_files(self.unified, {**_V2_CORE, "cgroup.events": ""})
            for name in ("cgroup.freeze", "cgroup.kill", "cgroup.events"):
                if os.path.exists(os.path.join(self.unified, name)):  # the root cgroup has none
                    os.unlink(os.path.join(self.unified, name))
            Path(self.unified, "cgroup.controllers").write_text(" ".join(self.v2_controllers))
            for name, content in (("cpuset.cpus.effective", "0-3"), ("cpuset.mems.effective", "0")):
                Path(self.unified, name).write_text(content)
            lines.append(
                f"{mount_id} 25 0:{mount_id} / {self.unified} rw,nosuid - cgroup2 cgroup2 rw"
            )
            own.append(f"0::{own_cgroup}")
        self.mountinfo = "\n".join(
            [f"24 1 0:22 / {self.root} rw - tmpfs tmpfs rw,mode=755", *lines]
        )
        self.self_cgroup = "\n".join(own)

    # ---------------------------------------------------------------- building
    def mountpoints(self) -> list[str]:
        points = [os.path.join(self.root, c) for c in self.v1_controllers]
        if self.mode != "v2":
            points.append(os.path.join(self.root, "systemd"))
        return points + ([self.unified] if self.unified else [])

    def _write_files(self, d: str, files: dict[str, str]) -> None:
        for name, content in files.items():
            if name not in self.missing_files:
                Path(d, name).write_text(content)

    def _root_files(self, mountpoint: str, controller: str) -> None:
        self._write_files(mountpoint, _V1_COMMON)
        if controller == "cpuset":
            self._write_files(mountpoint, {"cpuset.cpus": "0-3", "cpuset.mems": "0"})
        if controller == "memory":
            self._write_files(mountpoint, _V1_FILES["memory"])
        if controller == "cpuacct":
            self._write_files(mountpoint, _V1_FILES["cpuacct"])

    def _hierarchy_of(self, d: str) -> str:
        for mountpoint in self.mountpoints():
            if d == mountpoint or d.startswith(mountpoint + "/"):
                return mountpoint
        raise AssertionError(f"{d} is in no fake hierarchy")

    def populate(self, d: str) -> None:
        """The interface files a new cgroup directory gets from the kernel."""
        mountpoint = self._hierarchy_of(d)
        if mountpoint == self.unified:
            self._write_files(d, _V2_CORE)
            enabled = Path(os.path.dirname(d), "cgroup.subtree_control").read_text().split()
            Path(d, "cgroup.controllers").write_text(" ".join(enabled))
            for c in enabled:
                self._write_files(d, _V2_FILES.get(c, {}))
                self._write_files(d, self.extra_files.get(c, {}))
        else:
            c = os.path.basename(mountpoint)
            self._write_files(d, _V1_COMMON)
            self._write_files(d, _V1_FILES.get(c, {}))
            self._write_files(d, self.extra_files.get(c, {}))

    def check_rt_budget(self, d: str, runtime: int) -> None:
        """Like the kernel: the children's realtime runtimes must fit in the parent's."""
        parent = os.path.dirname(d)
        if parent == self._hierarchy_of(d):
            return  # the root's budget is the system's; the fake does not model it
        siblings = sum(
            int(Path(e.path, "cpu.rt_runtime_us").read_text())
            for e in os.scandir(parent)
            if e.is_dir() and e.path != d
        )
        if siblings + runtime > int(Path(parent, "cpu.rt_runtime_us").read_text()):
            raise CgroupError(f"writing {runtime} to {d}/cpu.rt_runtime_us: EINVAL", errno.EINVAL)

    # ---------------------------------------------------------------- processes
    def procs(self, d: str) -> list[int]:
        path = os.path.join(d, "cgroup.procs")
        return [int(x) for x in Path(path).read_text().split()] if os.path.exists(path) else []

    def move_pid(self, d: str, pid: int) -> None:
        mountpoint = self._hierarchy_of(d)
        for top, _dirs, _files in os.walk(mountpoint):
            if pid in self.procs(top):
                self._set_procs(top, [p for p in self.procs(top) if p != pid])
        self._set_procs(d, [*self.procs(d), pid])

    def remove_pid(self, pid: int) -> None:
        for mountpoint in self.mountpoints():
            for top, _dirs, _files in os.walk(mountpoint):
                if pid in self.procs(top):
                    self._set_procs(top, [p for p in self.procs(top) if p != pid])

    def all_pids(self) -> set[int]:
        found: set[int] = set()
        for mountpoint in self.mountpoints():
            for top, _dirs, _files in os.walk(mountpoint):
                found.update(self.procs(top))
        return found

    def _set_procs(self, d: str, pids: list[int]) -> None:
        Path(d, "cgroup.procs").write_text("".join(f"{p}\n" for p in pids))

    # ---------------------------------------------------------------- for tests
    def open(self, cgroups_path: str | None = None, container_id: str = "ctr") -> Cgroup:
        return open_cgroup(
            cgroups_path,
            container_id,
            self.root,
            mountinfo=self.mountinfo,
            self_cgroup=self.self_cgroup,
            kernel=self.kernel,
        )

    def read(self, rel: str) -> str:
        return Path(self.root, rel).read_text()

    def set(self, rel: str, content: str) -> None:
        Path(self.root, rel).write_text(content)

    def writes_to(self, rel_dir: str) -> list[tuple[str, str]]:
        """(file name, value) written below `rel_dir`, in order."""
        return [
            (os.path.basename(path), value)
            for path, value in self.kernel.writes
            if os.path.dirname(path) == rel_dir
        ]
