"""cgroups v1, v2 and hybrid behind one interface: OCI `linux.resources` -> cgroupfs files.

`open_cgroup()` finds how cgroups are mounted (from mountinfo, injectable), resolves the
container's directory in every hierarchy and returns a `Cgroup`. Everything that touches the
kernel goes through `KernelIO` so unit tests can run against a fake tree.

Stdlib only and cheap to import: `composer-runtime` and the shim load it on every create.

Device rules on pure cgroup v2 need an eBPF program (BPF_PROG_LOAD + BPF_PROG_ATTACH); that is
not implemented, so `apply()` refuses device rules there instead of silently allowing every
device.
"""

from __future__ import annotations

import errno
import os
import time

from runtime.state import read_bytes

DEFAULT_ROOT = "/sys/fs/cgroup"
SHARED_PARENT = "/composer"  # the engine's cgroupsPath parent; goes with its last container
UNIFIED = "unified"  # key of the v2 directory in Cgroup.paths

# v1 mount options that name a controller (anything else, like "rw" or "xattr", is not one).
V1_CONTROLLERS = frozenset(
    [
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "net_cls",
        "net_prio",
        "blkio",
        "perf_event",
        "hugetlb",
        "pids",
        "rdma",
        "misc",
        "debug",
    ]
)
# The kernel reports "no limit" on v1 as LONG_MAX rounded down to a page.
V1_UNLIMITED = 0x7FFFFFFFFFFFF000
SIGKILL = 9

# Allowed on top of the configured rules, as runc and crun do, so that the devices every OCI
# container gets (/dev/null, zero, full, random, urandom, tty, console, ptmx, pts) and mknod
# keep working after the usual "deny all" rule.
DEFAULT_DEVICE_RULES = (
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
)


class CgroupError(Exception):
    """A cgroup operation failed or a resource cannot be applied here."""

    def __init__(self, message: str, err: int | None = None):
        super().__init__(message)
        self.errno = err


class KernelIO:
    """The only place this module talks to the kernel; unit tests substitute a fake."""

    def read(self, path: str) -> str:
        return read_bytes(path).decode()

    def write(self, path: str, value: str) -> None:
        # One write() per value, as the kernel parses each write on its own; no O_CREAT so a
        # file the kernel does not offer is an error, not a new regular file.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        except OSError as e:
            raise CgroupError(f"cannot open {path}: {e.strerror}", e.errno) from e
        try:
            os.write(fd, value.encode())
        except OSError as e:
            raise CgroupError(f"writing {value!r} to {path}: {e.strerror}", e.errno) from e
        finally:
            os.close(fd)

    def mkdir(self, path: str) -> None:
        os.mkdir(path, 0o755)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def kill(self, pid: int, sig: int) -> None:
        os.kill(pid, sig)


class Hierarchy:
    """One mounted cgroup hierarchy: a v1 mount (its controllers) or the v2 mount."""

    __slots__ = ("controllers", "mount_root", "mountpoint", "version")

    def __init__(self, version: int, mountpoint: str, mount_root: str, controllers: frozenset):
        self.version = version
        self.mountpoint = mountpoint
        self.mount_root = mount_root
        self.controllers = controllers

    def __repr__(self) -> str:
        return f"Hierarchy(v{self.version}, {self.mountpoint!r}, {sorted(self.controllers)})"


class Layout:
    """How cgroups are mounted under a root: mode "v1", "v2" or "hybrid"."""

    def __init__(self, v1: list[Hierarchy], unified: Hierarchy | None, mountinfo: str = ""):
        self.v1 = v1
        self.unified = unified
        self.mountinfo = mountinfo  # the text it was found in
        if unified is None:
            self.mode = "v1"
        elif v1:
            self.mode = "hybrid"
        else:
            self.mode = "v2"
        # A controller is served by its v1 hierarchy; in hybrid mode the unified hierarchy
        # serves only the controllers no v1 hierarchy has.
        self.serving: dict[str, Hierarchy] = {}
        for h in v1:
            for c in h.controllers:
                self.serving.setdefault(c, h)
        if unified is not None:
            for c in unified.controllers:
                self.serving.setdefault(c, unified)

    @property
    def hierarchies(self) -> list[Hierarchy]:
        return self.v1 + ([self.unified] if self.unified else [])


_MOUNTINFO_ESCAPES = {" ": "\\040", "\t": "\\011", "\n": "\\012", "\\": "\\134"}


def _unescape_mount_field(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and i + 4 <= len(field):
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[tuple[str, str, str, str]]:
    """(mountpoint, root within the filesystem, fstype, super options) per mountinfo line."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        root, mountpoint = _unescape_mount_field(fields[3]), _unescape_mount_field(fields[4])
        mounts.append((mountpoint, root, tail[0], tail[2]))
    return mounts


def detect_layout(
    root: str = DEFAULT_ROOT, mountinfo: str | None = None, kernel: KernelIO | None = None
) -> Layout:
    """Find the cgroup hierarchies mounted at or below `root`."""
    kernel = kernel or KernelIO()
    if mountinfo is None:
        mountinfo = kernel.read("/proc/self/mountinfo")
    root = os.path.normpath(root)
    # Only lines naming the root somewhere get parsed (a dozen of some 60 on a host).
    needle = " " + "".join(_MOUNTINFO_ESCAPES.get(c, c) for c in root)
    wanted = "\n".join(line for line in mountinfo.splitlines() if needle in line)
    by_mountpoint: dict[str, tuple[str, str, str]] = {}
    for mountpoint, fs_root, fstype, options in parse_mountinfo(wanted):
        mountpoint = os.path.normpath(mountpoint)
        if mountpoint != root and not mountpoint.startswith(root + "/"):
            continue
        if fstype in ("cgroup", "cgroup2"):
            by_mountpoint[mountpoint] = (fs_root, fstype, options)
        else:
            by_mountpoint.pop(mountpoint, None)  # over-mounted by something else
    v1: list[Hierarchy] = []
    unified = None
    seen: set[str] = set()
    for mountpoint, (fs_root, fstype, options) in sorted(by_mountpoint.items()):
        if fstype == "cgroup2":
            if unified is None:
                text = kernel.read(os.path.join(mountpoint, "cgroup.controllers"))
                unified = Hierarchy(2, mountpoint, fs_root, frozenset(text.split()))
            continue
        names = frozenset(
            o for o in options.split(",") if o in V1_CONTROLLERS or o.startswith("name=")
        )
        if not names or names & seen:  # the same hierarchy bind-mounted twice
            continue
        seen |= names
        v1.append(Hierarchy(1, mountpoint, fs_root, names))
    if not v1 and unified is None:
        raise CgroupError(f"no cgroup filesystem is mounted under {root}")
    return Layout(v1, unified, mountinfo)


def parse_self_cgroup(text: str) -> dict[frozenset, str]:
    """/proc/self/cgroup as {controllers: path}; the v2 line has the empty set."""
    own = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            own[frozenset(c for c in parts[1].split(",") if c)] = parts[2]
    return own


def clean_cgroups_path(path: str) -> str:
    """Normalise to an absolute path that cannot climb above "/" (".." stops at the top)."""
    return "/" + os.path.normpath("/" + path).lstrip("/")


def open_cgroup(
    cgroups_path: str | None,
    container_id: str,
    root: str = DEFAULT_ROOT,
    *,
    mountinfo: str | None = None,
    self_cgroup: str | None = None,
    kernel: KernelIO | None = None,
) -> Cgroup:
    """The container's cgroup (nothing is created until `create()`).

    `cgroups_path` as in config.json: absolute paths are taken from each hierarchy's root,
    relative ones from the caller's own cgroup in that hierarchy (/proc/self/cgroup), as runc
    does; None or "" means /<container_id>, as crun (runc: <own cgroup>/<container_id>):
    one level, so create and delete make and remove one directory per hierarchy. That
    directory must be new: one already there belongs to something else (docker/, a
    system.slice), which delete would empty.
    """
    kernel = kernel or KernelIO()
    layout = detect_layout(root, mountinfo, kernel)
    fresh = not cgroups_path
    if fresh:
        if not container_id or "/" in container_id or container_id in (".", ".."):
            raise CgroupError(f"invalid container id for a cgroup name: {container_id!r}")
        cgroups_path = f"/{container_id}"
    relative = not cgroups_path.startswith("/")
    path = clean_cgroups_path(cgroups_path)
    if path == "/":
        raise CgroupError(f"cgroupsPath {cgroups_path!r} names the root cgroup")
    own: dict[frozenset, str] = {}
    if relative:
        if self_cgroup is None:
            self_cgroup = kernel.read("/proc/self/cgroup")
        own = parse_self_cgroup(self_cgroup)
    dirs = {}
    for h in layout.hierarchies:
        base = "/"
        if relative:
            base = own.get(frozenset() if h.version == 2 else h.controllers, "/")
            # Inside a cgroup namespace or a bind mount the mount shows a subtree only.
            if h.mount_root != "/" and (base + "/").startswith(h.mount_root.rstrip("/") + "/"):
                base = base[len(h.mount_root.rstrip("/")) :] or "/"
        rel = clean_cgroups_path(base + path) if relative else path
        dirs[h] = h.mountpoint + rel
    cgroup = Cgroup(layout, path.lstrip("/") if relative else path, dirs, kernel)
    cgroup.fresh = fresh
    return cgroup


def shares_to_weight(shares: int) -> int:
    """cpu.shares [2, 262144] -> cpu.weight [1, 10000], linearly, as runc and crun map it."""
    if shares <= 0:
        return 0
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def weight_to_shares(weight: int) -> int:
    """cpu.weight -> cpu.shares, the inverse of `shares_to_weight`."""
    if weight <= 0:
        return 0
    weight = min(max(weight, 1), 10000)
    return 2 + ((weight - 1) * 262142) // 9999


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] -> io.weight [1, 10000]."""
    if weight <= 0:
        return 0
    return max(1, 1 + ((weight - 10) * 9999) // 990)


def swap_to_v2(swap: int, limit: int) -> int | None:
    """OCI swap (memory+swap, as v1 memsw) -> memory.swap.max (swap only); -1 = max."""
    if limit == -1 and not swap:
        return -1  # unlimited memory with swap unset means unlimited swap too, as on v1
    if swap == -1:
        return -1
    if not swap:
        return None
    if limit <= 0:
        raise CgroupError("memory.swap needs memory.limit to be set on cgroup v2")
    if swap < limit:
        raise CgroupError(f"memory.swap ({swap}) must be >= memory.limit ({limit})")
    return swap - limit


def _limit_text(value: int, v2: bool) -> str:
    if value == -1:
        return "max" if v2 else "-1"
    return str(value)


def _number_or_none(text: str) -> int | None:
    text = text.strip()
    if text in ("max", ""):
        return None
    value = int(text)
    return None if value >= V1_UNLIMITED else value


def _flat_keyed(text: str) -> dict[str, int]:
    """Parse "key value" lines (memory.stat, cpu.stat, memory.events, cgroup.events)."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def _device_rule(rule: dict) -> str:
    kind = rule.get("type") or "a"
    if kind not in ("a", "b", "c"):
        raise CgroupError(f"invalid device type {kind!r} in a device cgroup rule")
    access = rule.get("access") or "rwm"
    if not access or any(ch not in "rwm" for ch in access):
        raise CgroupError(f"invalid device access {access!r} in a device cgroup rule")
    if kind == "a":
        return "a"
    major, minor = rule.get("major"), rule.get("minor")
    major = "*" if major is None or major == -1 else str(major)
    minor = "*" if minor is None or minor == -1 else str(minor)
    return f"{kind} {major}:{minor} {access}"


class Cgroup:
    """A container's cgroup across every mounted hierarchy (see `open_cgroup`)."""

    def __init__(self, layout: Layout, path: str, dirs: dict[Hierarchy, str], kernel: KernelIO):
        self.layout = layout
        self.mode = layout.mode
        self.path = path
        self.warnings: list[str] = []
        self.made_parents: list[str] = []
        self.fresh = False  # create refuses a directory that is there already
        self._made: set[Hierarchy] = set()  # where create made (or found) the directory
        self._dirs = dirs
        self._kernel = kernel
        for h, d in dirs.items():
            if not d.startswith(h.mountpoint.rstrip("/") + "/"):
                raise CgroupError(f"cgroup directory {d} is outside {h.mountpoint}")

    # ----------------------------------------------------------------- where things are
    @property
    def paths(self) -> dict[str, str]:
        """controller (v1, "name=..." for named hierarchies) or "unified" -> directory."""
        out = {}
        for h, d in self._dirs.items():
            if h.version == 2:
                out[UNIFIED] = d
            else:
                for c in h.controllers:
                    out[c] = d
        return out

    def dirs(self) -> list[str]:
        """Every directory of this cgroup, one per hierarchy."""
        return list(self._dirs.values())

    def _serving(self, controller: str) -> tuple[int, str] | None:
        h = self.layout.serving.get(controller)
        if h is None:
            return None
        return h.version, self._dirs[h]

    def _need(self, controller: str, what: str) -> tuple[int, str]:
        found = self._serving(controller)
        if found is None:
            raise CgroupError(
                f"{what} needs the {controller} cgroup controller, which is not available here"
            )
        return found

    def _unified_dir(self) -> str | None:
        h = self.layout.unified
        return self._dirs[h] if h else None

    def _has(self, d: str, name: str) -> bool:
        return os.path.exists(os.path.join(d, name))

    def _read(self, d: str, name: str) -> str:
        return self._kernel.read(os.path.join(d, name))

    def _write(self, d: str, name: str, value) -> None:
        self._kernel.write(os.path.join(d, name), str(value))

    # ----------------------------------------------------------------- create and join
    def create(self, only: Hierarchy | None = None) -> list[str]:
        """Make the directories in every hierarchy (or in `only`), but not again where this
        object made them already; idempotent unless `fresh`. Returns the parents it made
        above the cgroup's own directories (also in `made_parents`), for remove_parents.

        All or nothing: a failure removes what this call made. A `fresh` cgroup then covers
        only the directories it made, so that cleaning up after it leaves another's alone.
        """
        todo = [(h, d) for h, d in self._dirs.items() if h not in self._made and only in (None, h)]
        made: list[str] = []
        parents_before = len(self.made_parents)
        try:
            for h, d in todo:
                # Another container's delete may take an empty parent (/composer) away
                # between our mkdirs: then the levels are made again, from the top.
                for attempt in range(3):
                    try:
                        self._create_levels(h, d, made)
                        break
                    except FileNotFoundError as e:
                        if attempt == 2:
                            raise CgroupError(f"cannot create {d}: {e.strerror}", e.errno) from e
        except BaseException:
            for path in reversed(made):
                try:
                    self._kernel.rmdir(path)
                except OSError:
                    pass
            del self.made_parents[parents_before:]
            if self.fresh:
                self._dirs = {h: d for h, d in self._dirs.items() if h in self._made}
            raise
        self._made.update(h for h, _d in todo)
        return self.made_parents

    def _create_levels(self, h: Hierarchy, d: str, made_here: list[str]) -> None:
        levels = self._levels(h, d)
        cpuset = h.version == 1 and "cpuset" in h.controllers
        above = None  # cpuset (cpus, mems) of the level above, once known
        for i, level in enumerate(levels):
            if i == 0:
                continue  # the mount point
            if h.version == 2:
                self._enable_controllers(levels[i - 1])
            try:  # no isdir first: one syscall, not two, at every level
                self._kernel.mkdir(level)
                made = True
                made_here.append(level)
                if level != d and level != h.mountpoint.rstrip("/") + SHARED_PARENT:
                    self.made_parents.append(level)  # (/composer goes by itself)
            except FileExistsError:
                if self.fresh and level == d:
                    raise CgroupError(
                        f"cgroup {d} exists already: not this container's", errno.EEXIST
                    ) from None
                made = False
            except FileNotFoundError:
                if i == 1:  # the mount point itself is gone: nothing to retry
                    raise CgroupError(f"cannot create {level}: no such directory") from None
                raise  # the level above went away just now
            except OSError as e:
                raise CgroupError(f"cannot create {level}: {e.strerror}", e.errno) from e
            if cpuset:
                try:
                    above = self._inherit_cpuset(level, made, above)
                except CgroupError as e:
                    if e.errno != errno.ENOENT:
                        raise
                    raise FileNotFoundError(e.errno, str(e)) from e  # as above: made again

    def remove_parents(self, made: list[str]) -> None:
        """Remove the parents `create` made (a nested cgroupsPath), deepest first: the
        runtime-spec has delete undo what create made. One still in use by another
        cgroup stays (rmdir refuses); nothing outside a hierarchy is touched."""
        mounts = tuple(h.mountpoint.rstrip("/") + "/" for h in self._dirs)
        for path in sorted(made, key=lambda p: -p.count("/")):
            if not path.startswith(mounts) or "/../" in path + "/":
                continue
            try:
                self._kernel.rmdir(path)
            except OSError:
                pass

    def _levels(self, h: Hierarchy, d: str) -> list[str]:
        """The mount point, then each directory down to `d`."""
        parts = d[len(h.mountpoint.rstrip("/")) :].strip("/").split("/")
        levels = [h.mountpoint]
        for p in parts:
            levels.append(os.path.join(levels[-1], p))
        return levels

    def _enable_controllers(self, parent: str) -> None:
        # The controllers the unified hierarchy serves must be enabled in every ancestor's
        # subtree_control before the child can use them; one write each so one refusal
        # (e.g. cpu with realtime tasks around) does not block the rest.
        wanted = {c for c, h in self.layout.serving.items() if h.version == 2}
        if not wanted:  # hybrid hosts: v1 serves every controller
            return
        available = set(self._read(parent, "cgroup.controllers").split())
        enabled = set(self._read(parent, "cgroup.subtree_control").split())
        for c in sorted((wanted & available) - enabled):
            try:
                self._write(parent, "cgroup.subtree_control", f"+{c}")
            except CgroupError as e:
                self.warnings.append(f"cannot enable the {c} controller in {parent}: {e}")

    def _inherit_cpuset(self, level: str, made: bool, above: tuple | None) -> tuple:
        """A new v1 cpuset starts with empty cpus/mems (or the parent's, with clone_children)
        and refuses tasks until they are set: give it the parent's. An existing level is
        only filled where empty (a create that died half-way). Returns (cpus, mems) here."""
        values = []
        for index, name in enumerate(("cpuset.cpus", "cpuset.mems")):
            value = "" if made else self._read(level, name).strip()
            if not value:
                if above is None:
                    value = self._read(os.path.dirname(level), name).strip()
                else:
                    value = above[index]
                self._write(level, name, value)
            values.append(value)
        return tuple(values)

    def add(self, pid: int) -> None:
        """Move `pid` into this cgroup in every hierarchy."""
        for d in self._dirs.values():
            self._write(d, "cgroup.procs", pid)

    join = add

    def pids(self) -> list[int]:
        """Every process in this cgroup or below it, in any hierarchy."""
        found: set[int] = set()
        for d in self._dirs.values():
            for top, _subdirs, _files in os.walk(d):
                try:
                    text = self._read(top, "cgroup.procs")
                except FileNotFoundError:
                    continue
                found.update(int(x) for x in text.split())
        return sorted(found)

    # ----------------------------------------------------------------- resources
    def apply(self, resources: dict | None, devices: list | None = None) -> list[str]:
        """Write OCI `linux.resources`; returns warnings about settings that were ignored.

        `devices` is config.json's `linux.devices`: those nodes get allow rules next to the
        configured device rules. Device rules are only touched when `resources` has "devices",
        so an update of, say, memory alone leaves them as they are.
        """
        resources = resources or {}
        warnings: list[str] = []
        if resources.get("cpu"):
            self._apply_cpu(resources["cpu"], warnings)
        if resources.get("memory"):
            self._apply_memory(resources["memory"], warnings)
        if resources.get("pids"):
            self._apply_pids(resources["pids"])
        if resources.get("blockIO"):
            self._apply_block_io(resources["blockIO"], warnings)
        if resources.get("hugepageLimits"):
            self._apply_hugepages(resources["hugepageLimits"])
        if resources.get("network"):
            self._apply_network(resources["network"], warnings)
        if resources.get("rdma"):
            self._apply_rdma(resources["rdma"])
        if "devices" in resources:
            self._apply_devices(resources["devices"] or [], devices or [])
        if resources.get("unified"):
            self._apply_unified(resources["unified"])
        self.warnings.extend(warnings)
        return warnings

    def _apply_memory(self, m: dict, warnings: list[str]) -> None:
        version, d = self._need("memory", "linux.resources.memory")
        limit = m.get("limit") or 0
        swap = m.get("swap") or 0
        if limit > 0 and swap > 0 and swap < limit:
            raise CgroupError(f"memory.swap ({swap}) must be >= memory.limit ({limit})")
        if m.get("checkBeforeUpdate") and limit > 0:
            usage = int(
                self._read(d, "memory.usage_in_bytes" if version == 1 else "memory.current")
            )
            if usage > limit:
                raise CgroupError(f"memory.limit {limit} is below the current usage {usage}")
        if m.get("kernelTCP") and version != 1:
            warnings.append("memory.kernelTCP has no cgroup v2 equivalent and was ignored")
        if version == 1:
            self._memory_v1(d, m, limit, swap, warnings)
        else:
            self._memory_v2(d, m, limit, swap, warnings)

    def _memory_v1(self, d: str, m: dict, limit: int, swap: int, warnings: list[str]) -> None:
        has_swap = self._has(d, "memory.memsw.limit_in_bytes")
        if limit == -1 and not swap:
            swap = -1
        if swap and not has_swap:
            if swap != -1:
                raise CgroupError("memory.swap needs swap accounting, which this kernel lacks")
            swap = 0
        if limit and swap:
            # The kernel keeps memsw >= limit at every step, so which goes first depends on
            # whether the limits grow or shrink.
            current = int(self._read(d, "memory.limit_in_bytes"))
            if swap == -1 or current < swap:
                self._write(d, "memory.memsw.limit_in_bytes", _limit_text(swap, False))
                self._write(d, "memory.limit_in_bytes", _limit_text(limit, False))
            else:
                self._write(d, "memory.limit_in_bytes", _limit_text(limit, False))
                self._write(d, "memory.memsw.limit_in_bytes", _limit_text(swap, False))
        elif limit:
            self._write(d, "memory.limit_in_bytes", _limit_text(limit, False))
        elif swap:
            self._write(d, "memory.memsw.limit_in_bytes", _limit_text(swap, False))
        if m.get("reservation"):
            self._write(d, "memory.soft_limit_in_bytes", _limit_text(m["reservation"], False))
        if m.get("kernel"):
            # Kernel memory limits are deprecated and refused by kernels >= 5.16.
            try:
                self._write(d, "memory.kmem.limit_in_bytes", _limit_text(m["kernel"], False))
            except CgroupError as e:
                warnings.append(f"memory.kernel was ignored: {e}")
        if m.get("kernelTCP"):
            try:
                self._write(d, "memory.kmem.tcp.limit_in_bytes", _limit_text(m["kernelTCP"], False))
            except CgroupError as e:
                warnings.append(f"memory.kernelTCP was ignored: {e}")
        swappiness = m.get("swappiness")
        if swappiness is not None and swappiness != -1:
            if not 0 <= swappiness <= 100:
                raise CgroupError(f"memory.swappiness {swappiness} is not in [0, 100]")
            self._write(d, "memory.swappiness", swappiness)
        if m.get("disableOOMKiller") is not None:
            self._write(d, "memory.oom_control", 1 if m["disableOOMKiller"] else 0)
        if m.get("useHierarchy") is not None:
            try:
                self._write(d, "memory.use_hierarchy", 1 if m["useHierarchy"] else 0)
            except CgroupError as e:
                warnings.append(f"memory.useHierarchy was ignored: {e}")

    def _memory_v2(self, d: str, m: dict, limit: int, swap: int, warnings: list[str]) -> None:
        if limit:
            self._write(d, "memory.max", _limit_text(limit, True))
        swap_max = swap_to_v2(swap, limit)
        if swap_max is not None:
            if self._has(d, "memory.swap.max"):
                self._write(d, "memory.swap.max", _limit_text(swap_max, True))
            elif swap_max != -1:
                raise CgroupError("memory.swap needs swap accounting, which this kernel lacks")
        if m.get("reservation"):
            self._write(d, "memory.low", _limit_text(m["reservation"], True))
        if m.get("kernel"):
            warnings.append("memory.kernel has no cgroup v2 equivalent and was ignored")
        swappiness = m.get("swappiness")
        if swappiness is not None and swappiness != -1:
            warnings.append("memory.swappiness has no cgroup v2 equivalent and was ignored")
        if m.get("disableOOMKiller"):
            warnings.append("memory.disableOOMKiller has no cgroup v2 equivalent and was ignored")

    def _apply_cpu(self, cpu: dict, warnings: list[str]) -> None:
        if cpu.get("cpus") or cpu.get("mems"):
            _version, d = self._need("cpuset", "linux.resources.cpu.cpus/mems")
            # mems first: a v1 cpuset with cpus but no mems would still refuse tasks.
            if cpu.get("mems"):
                self._write(d, "cpuset.mems", cpu["mems"])
            if cpu.get("cpus"):
                self._write(d, "cpuset.cpus", cpu["cpus"])
        keys = ("shares", "quota", "period", "burst", "realtimeRuntime", "realtimePeriod")
        if not any(cpu.get(k) for k in keys) and cpu.get("idle") is None:
            return
        version, d = self._need("cpu", "linux.resources.cpu")
        if version == 1:
            self._cpu_v1(d, cpu)
        else:
            self._cpu_v2(d, cpu)

    def _cpu_v1(self, d: str, cpu: dict) -> None:
        if cpu.get("shares"):
            self._write(d, "cpu.shares", cpu["shares"])
        quota, period = cpu.get("quota") or 0, cpu.get("period") or 0
        if period:
            try:
                self._write(d, "cpu.cfs_period_us", period)
            except CgroupError as e:
                # A shorter period can break the current quota's bounds: quota first then.
                if e.errno != errno.EINVAL or not quota:
                    raise
                self._write(d, "cpu.cfs_quota_us", quota)
                self._write(d, "cpu.cfs_period_us", period)
        if quota:
            self._write(d, "cpu.cfs_quota_us", quota)
        if cpu.get("burst"):
            self._write(d, "cpu.cfs_burst_us", cpu["burst"])
        # The runtime may not exceed the period, so the period goes first.
        if cpu.get("realtimePeriod"):
            self._write(d, "cpu.rt_period_us", cpu["realtimePeriod"])
        if cpu.get("realtimeRuntime"):
            try:
                self._write(d, "cpu.rt_runtime_us", cpu["realtimeRuntime"])
            except CgroupError as e:
                if e.errno != errno.EINVAL:
                    raise
                self._grant_rt_budget(d, cpu["realtimeRuntime"])
                self._write(d, "cpu.rt_runtime_us", cpu["realtimeRuntime"])
        if cpu.get("idle") is not None:
            self._write(d, "cpu.idle", cpu["idle"])

    def _grant_rt_budget(self, d: str, runtime: int) -> None:
        # New cgroups get no realtime budget and a child may only take what its parent has,
        # so every parent between the mount and us must hold the sum of its children's.
        h = self.layout.serving["cpu"]
        parents = self._levels(h, d)[1:-1]
        need = {d: runtime}
        for parent in reversed(parents):
            total = 0
            for entry in os.scandir(parent):
                if entry.is_dir(follow_symlinks=False):
                    child = entry.path
                    total += need.get(child, int(self._read(child, "cpu.rt_runtime_us")))
            need[parent] = max(total, int(self._read(parent, "cpu.rt_runtime_us")))
        for parent in parents:
            if need[parent] > int(self._read(parent, "cpu.rt_runtime_us")):
                self._write(parent, "cpu.rt_runtime_us", need[parent])

    def _cpu_v2(self, d: str, cpu: dict) -> None:
        if cpu.get("realtimeRuntime") or cpu.get("realtimePeriod"):
            raise CgroupError("realtime CPU scheduling limits are not supported on cgroup v2")
        if cpu.get("shares"):
            self._write(d, "cpu.weight", shares_to_weight(cpu["shares"]))
        quota, period = cpu.get("quota") or 0, cpu.get("period") or 0
        if quota or period:
            current = self._read(d, "cpu.max").split()
            if quota == -1:
                quota_text = "max"
            elif quota > 0:
                quota_text = str(quota)
            else:
                quota_text = current[0]
            self._write(d, "cpu.max", f"{quota_text} {period or current[1]}")
        if cpu.get("burst"):
            self._write(d, "cpu.max.burst", cpu["burst"])
        if cpu.get("idle") is not None:
            self._write(d, "cpu.idle", cpu["idle"])

    def _apply_pids(self, pids: dict) -> None:
        _version, d = self._need("pids", "linux.resources.pids")
        limit = pids.get("limit") or 0
        self._write(d, "pids.max", limit if limit > 0 else "max")

    def _apply_block_io(self, bio: dict, warnings: list[str]) -> None:
        throttles = {
            "throttleReadBpsDevice": ("blkio.throttle.read_bps_device", "rbps"),
            "throttleWriteBpsDevice": ("blkio.throttle.write_bps_device", "wbps"),
            "throttleReadIOPSDevice": ("blkio.throttle.read_iops_device", "riops"),
            "throttleWriteIOPSDevice": ("blkio.throttle.write_iops_device", "wiops"),
        }
        if self._serving("blkio"):
            _version, d = self._serving("blkio")
            v2 = False
        else:
            _version, d = self._need("io", "linux.resources.blockIO")
            v2 = True
        if v2:
            weight_file = "io.bfq.weight" if self._has(d, "io.bfq.weight") else "io.weight"
        elif self._has(d, "blkio.weight"):
            weight_file = "blkio.weight"
        else:
            weight_file = "blkio.bfq.weight"

        def weight_value(w: int) -> int:
            # io.weight has a wider range; the bfq files take blkio's range as is.
            return blkio_weight_to_io_weight(w) if weight_file == "io.weight" else w

        needs_weight = bio.get("weight") or any(
            w.get("weight") for w in bio.get("weightDevice") or []
        )
        if needs_weight and not self._has(d, weight_file):
            raise CgroupError("blockIO weights need a proportional I/O scheduler (no weight file)")
        if bio.get("weight"):
            self._write(d, weight_file, weight_value(bio["weight"]))
        if bio.get("leafWeight"):
            if v2 or not self._has(d, "blkio.leaf_weight"):
                warnings.append("blockIO.leafWeight is not supported here and was ignored")
            else:
                self._write(d, "blkio.leaf_weight", bio["leafWeight"])
        for dev in bio.get("weightDevice") or []:
            node = f"{dev['major']}:{dev['minor']}"
            if dev.get("weight"):
                per_device = "blkio.weight_device" if weight_file == "blkio.weight" else weight_file
                self._write(d, per_device, f"{node} {weight_value(dev['weight'])}")
            if dev.get("leafWeight"):
                if v2 or not self._has(d, "blkio.leaf_weight_device"):
                    warnings.append("blockIO leafWeight per device is not supported here; ignored")
                else:
                    self._write(d, "blkio.leaf_weight_device", f"{node} {dev['leafWeight']}")
        for key, (v1_file, v2_key) in throttles.items():
            for dev in bio.get(key) or []:
                node, rate = f"{dev['major']}:{dev['minor']}", dev.get("rate", 0)
                if v2:
                    self._write(d, "io.max", f"{node} {v2_key}={rate or 'max'}")
                else:
                    self._write(d, v1_file, f"{node} {rate}")

    def _apply_hugepages(self, limits: list) -> None:
        version, d = self._need("hugetlb", "linux.resources.hugepageLimits")
        for item in limits:
            size, limit = item["pageSize"], item["limit"]
            main, rsvd = (
                (f"hugetlb.{size}.limit_in_bytes", f"hugetlb.{size}.rsvd.limit_in_bytes")
                if version == 1
                else (f"hugetlb.{size}.max", f"hugetlb.{size}.rsvd.max")
            )
            if "/" in size or not self._has(d, main):
                raise CgroupError(f"hugepage size {size!r} is not supported by this kernel")
            self._write(d, main, limit)
            if self._has(d, rsvd):  # reservations count too, or the limit can be dodged
                self._write(d, rsvd, limit)

    def _apply_network(self, net: dict, warnings: list[str]) -> None:
        if net.get("classID") is not None:
            found = self._serving("net_cls")
            if found and found[0] == 1:
                self._write(found[1], "net_cls.classid", net["classID"])
            else:
                warnings.append("network.classID needs the v1 net_cls controller; ignored")
        if net.get("priorities"):
            found = self._serving("net_prio")
            if found and found[0] == 1:
                for p in net["priorities"]:
                    self._write(found[1], "net_prio.ifpriomap", f"{p['name']} {p['priority']}")
            else:
                warnings.append("network.priorities needs the v1 net_prio controller; ignored")

    def _apply_rdma(self, rdma: dict) -> None:
        _version, d = self._need("rdma", "linux.resources.rdma")
        for device, limit in rdma.items():
            parts = [device]
            if limit.get("hcaHandles") is not None:
                parts.append(f"hca_handle={limit['hcaHandles']}")
            if limit.get("hcaObjects") is not None:
                parts.append(f"hca_object={limit['hcaObjects']}")
            self._write(d, "rdma.max", " ".join(parts))

    def _apply_devices(self, rules: list, nodes: list) -> None:
        found = self._serving("devices")
        if found is None or found[0] != 1:
            if self.layout.unified is not None and not self.layout.v1:
                raise CgroupError(
                    "device cgroup rules on cgroup v2 need an eBPF program, which "
                    "composer-runtime does not implement; remove linux.resources.devices"
                )
            raise CgroupError("device rules need the devices cgroup controller")
        d = found[1]
        # Start from "deny all", then the rules in order: v1 applies them incrementally.
        self._write(d, "devices.deny", "a")
        node_rules = [
            {
                "allow": True,
                "type": n.get("type", "c"),
                "major": n.get("major"),
                "minor": n.get("minor"),
                "access": "rwm",
            }
            for n in nodes
            if n.get("type", "c") in ("b", "c", "u")
        ]
        for rule in [*rules, *node_rules, *DEFAULT_DEVICE_RULES]:
            if rule.get("type") == "u":
                rule = {**rule, "type": "c"}  # unbuffered char device: a char device
            text = _device_rule(rule)
            self._write(d, "devices.allow" if rule.get("allow") else "devices.deny", text)

    def _apply_unified(self, unified: dict) -> None:
        d = self._unified_dir()
        if d is None:
            raise CgroupError("linux.resources.unified needs the cgroup v2 hierarchy")
        for key, value in unified.items():
            if "/" in key or key in (".", "..") or "." not in key.strip("."):
                raise CgroupError(f"invalid cgroup v2 file name in unified: {key!r}")
            if not self._has(d, key):
                controller = key.split(".", 1)[0]
                raise CgroupError(
                    f"unified: {key} does not exist (is the {controller} controller enabled?)"
                )
            self._write(d, key, value)

    # ----------------------------------------------------------------- stats
    def stats(self) -> dict:
        """The same keys on v1 and v2 (a section is left out when its controller is missing):

        memory: usage, max_usage (None on v2 kernels without memory.peak), limit (None = no
        limit), oom_kills, stat (memory.stat as ints); cpu: usage_usec, user_usec,
        system_usec and, where known, nr_periods, nr_throttled, throttled_usec;
        pids: current, limit (None = no limit).
        """
        out: dict = {}
        found = self._serving("memory")
        if found:
            version, d = found
            if version == 1:
                limit = _number_or_none(self._read(d, "memory.limit_in_bytes"))
                out["memory"] = {
                    "usage": int(self._read(d, "memory.usage_in_bytes")),
                    "max_usage": int(self._read(d, "memory.max_usage_in_bytes")),
                    "limit": limit,
                    "oom_kills": self.oom_kills(),
                    "stat": _flat_keyed(self._read(d, "memory.stat")),
                }
            else:
                peak = self._read(d, "memory.peak") if self._has(d, "memory.peak") else None
                out["memory"] = {
                    "usage": int(self._read(d, "memory.current")),
                    "max_usage": int(peak) if peak else None,
                    "limit": _number_or_none(self._read(d, "memory.max")),
                    "oom_kills": self.oom_kills(),
                    "stat": _flat_keyed(self._read(d, "memory.stat")),
                }
        cpu = self._cpu_stats()
        if cpu:
            out["cpu"] = cpu
        found = self._serving("pids")
        if found:
            d = found[1]
            out["pids"] = {
                "current": int(self._read(d, "pids.current")),
                "limit": _number_or_none(self._read(d, "pids.max")),
            }
        return out

    def _cpu_stats(self) -> dict:
        cpu: dict = {}
        acct = self._serving("cpuacct")
        if acct and acct[0] == 1:
            d = acct[1]
            ticks = _flat_keyed(self._read(d, "cpuacct.stat"))
            hz = os.sysconf("SC_CLK_TCK")
            cpu["usage_usec"] = int(self._read(d, "cpuacct.usage")) // 1000
            cpu["user_usec"] = ticks.get("user", 0) * 1_000_000 // hz
            cpu["system_usec"] = ticks.get("system", 0) * 1_000_000 // hz
        found = self._serving("cpu")
        if found and found[0] == 1 and self._has(found[1], "cpu.stat"):
            stat = _flat_keyed(self._read(found[1], "cpu.stat"))
            cpu["nr_periods"] = stat.get("nr_periods", 0)
            cpu["nr_throttled"] = stat.get("nr_throttled", 0)
            cpu["throttled_usec"] = stat.get("throttled_time", 0) // 1000
        d = self._unified_dir()
        if "usage_usec" not in cpu and d and self._has(d, "cpu.stat"):
            # cpu.stat is a core v2 file: usage is there even without the cpu controller.
            stat = _flat_keyed(self._read(d, "cpu.stat"))
            for key in ("usage_usec", "user_usec", "system_usec"):
                cpu[key] = stat.get(key, 0)
            for key in ("nr_periods", "nr_throttled", "throttled_usec"):
                if key in stat:
                    cpu[key] = stat[key]
        return cpu

    def oom_kills(self) -> int:
        """How many processes the OOM killer killed in this cgroup."""
        version, d = self._need("memory", "oom_kills()")
        if version == 1:
            return _flat_keyed(self._read(d, "memory.oom_control")).get("oom_kill", 0)
        return _flat_keyed(self._read(d, "memory.events")).get("oom_kill", 0)

    # ----------------------------------------------------------------- freezer
    def _freezer(self) -> tuple[int, str]:
        found = self._serving("freezer")
        if found and found[0] == 1:
            return found
        d = self._unified_dir()  # cgroup.freeze is a core v2 file, no controller needed
        if d is not None:
            return 2, d
        raise CgroupError("freezing needs the freezer cgroup controller or cgroup v2")

    def freeze(self, timeout: float = 10.0) -> None:
        """Stop every process and wait until the kernel says they all are."""
        version, d = self._freezer()
        if version == 1:
            attempts = 0

            def nudge() -> None:
                # Re-writing FROZEN makes the kernel retry tasks that were busy on the last
                # pass; a task stuck mid-vfork only lets go after a thaw, so thaw now and then.
                nonlocal attempts
                attempts += 1
                if attempts % 10 == 0:
                    self._write(d, "freezer.state", "THAWED")
                self._write(d, "freezer.state", "FROZEN")

            self._wait(nudge, True, timeout)
        else:
            self._write(d, "cgroup.freeze", 1)
            self._wait(lambda: None, True, timeout)

    def thaw(self, timeout: float = 10.0) -> None:
        version, d = self._freezer()
        if version == 1:
            self._wait(lambda: self._write(d, "freezer.state", "THAWED"), False, timeout)
        else:
            self._write(d, "cgroup.freeze", 0)
            self._wait(lambda: None, False, timeout)

    def _wait(self, nudge, frozen: bool, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            nudge()
            if self._freezer_state() == ("frozen" if frozen else "thawed"):
                return
            if time.monotonic() > deadline:
                if frozen:  # never leave the container half frozen
                    self.thaw(timeout=timeout)
                raise CgroupError(f"cgroup {self.path} did not {'freeze' if frozen else 'thaw'}")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _freezer_state(self) -> str:
        """One of "frozen", "thawed", "freezing" or "thawing"."""
        version, d = self._freezer()
        if version == 1:
            return self._read(d, "freezer.state").strip().lower()
        events = _flat_keyed(self._read(d, "cgroup.events"))
        want = int(self._read(d, "cgroup.freeze").strip() or 0)
        if events.get("frozen", 0):
            return "frozen" if want else "thawing"
        return "freezing" if want else "thawed"

    def is_frozen(self) -> bool:
        return self._freezer_state() == "frozen"

    def _may_be_frozen(self) -> bool:
        try:
            return self._freezer_state() != "thawed"
        except (CgroupError, OSError):
            return False

    # ----------------------------------------------------------------- end of life
    def kill_all(self, sig: int = SIGKILL, timeout: float = 10.0) -> None:
        """Signal every process in the cgroup; with SIGKILL, wait until none is left."""
        d = self._unified_dir()
        if sig == SIGKILL and d is not None and self._has(d, "cgroup.kill"):
            self._write(d, "cgroup.kill", 1)
        deadline = time.monotonic() + timeout
        signalled: set[int] = set()
        delay = 0.0005
        while True:
            pids = self.pids()
            fresh = [p for p in pids if sig == SIGKILL or p not in signalled]
            if not fresh:
                if sig == SIGKILL and self._may_be_frozen():
                    self.thaw()  # an empty cgroup left frozen would surprise the next user
                return
            for pid in fresh:
                try:
                    self._kernel.kill(pid, sig)
                except ProcessLookupError:
                    pass
                signalled.add(pid)
            if sig == SIGKILL and self._may_be_frozen():
                self.thaw()  # v1 frozen tasks only die once thawed
            if time.monotonic() > deadline:
                raise CgroupError(f"processes {pids} in {self.path} survived signal {sig}")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def remove_if_empty(self) -> bool:
        """Remove the directories if no process and no child cgroup is left, which rmdir
        checks itself (EBUSY otherwise): a container's usual end, without walking trees.
        False leaves the rest to kill_all and destroy."""
        for h, d in self._dirs.items():
            try:
                self._kernel.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                return False
            # d is the mount point (a real path, from mountinfo) joined with ours: no
            # realpath needed to know the parent is the shared one
            if os.path.dirname(d) == h.mountpoint.rstrip("/") + SHARED_PARENT:
                try:
                    self._kernel.rmdir(os.path.dirname(d))
                except OSError:
                    pass  # another container is still there
        return True

    def destroy(self, timeout: float = 5.0) -> None:
        """Remove this cgroup's directories, deepest first; never anything above them."""
        for h, d in self._dirs.items():
            if not os.path.isdir(d) or os.path.islink(d):
                continue
            top = os.path.realpath(d)
            mount = os.path.realpath(h.mountpoint)
            if not top.startswith(mount + "/"):
                raise CgroupError(f"refusing to remove {d}: it is not below {h.mountpoint}")
            doomed = []
            for current, subdirs, _files in os.walk(d, topdown=True):
                # Do not follow links, and check every directory is really inside ours.
                subdirs[:] = [s for s in subdirs if not os.path.islink(os.path.join(current, s))]
                real = os.path.realpath(current)
                if real != top and not real.startswith(top + "/"):
                    raise CgroupError(f"refusing to remove {current}: it is outside {d}")
                doomed.append(current)
            for path in reversed(doomed):  # children before their parents
                self._rmdir_retrying(path, timeout)
            self._remove_shared_parent_if_empty(h, d)

    def _remove_shared_parent_if_empty(self, hierarchy: Hierarchy, directory: str) -> None:
        """The shared parent (/composer) goes with its last container, so nothing of
        ours outlives the containers; while another container is there it stays (EBUSY)."""
        parent = os.path.dirname(directory)
        mount = os.path.realpath(hierarchy.mountpoint)
        if os.path.realpath(parent) != mount + SHARED_PARENT:
            return
        try:
            self._kernel.rmdir(parent)
        except OSError:
            pass

    def _rmdir_retrying(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            try:
                self._kernel.rmdir(path)
                return
            except FileNotFoundError:
                return
            except OSError as e:
                # Exiting tasks leave the cgroup a moment after they die.
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise CgroupError(f"cannot remove {path}: {e.strerror}", e.errno) from e
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
