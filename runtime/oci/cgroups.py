"""cgroups v1, v2 and hybrid behind one interface: OCI `linux.resources` -> cgroupfs files.

`open_cgroup()` finds how cgroups are mounted (from mountinfo, injectable), resolves the
container's directory in every hierarchy and returns a `Cgroup`. Everything that touches the
kernel goes through `KernelIO` so unit tests can run against a fake tree.

Stdlib only and cheap to import: `composer-runtime` and the shim load it on every create.
The limits of `linux.resources` (cpu, memory, pids...) are runtime.oci.cgroup_limits, which
`apply()` loads only for a config that sets one (a third of this code, ~0.25 ms of a `run`).

Device rules on pure cgroup v2 need an eBPF program (BPF_PROG_LOAD + BPF_PROG_ATTACH); that is
not implemented, so `apply()` refuses device rules there instead of silently allowing every
device.
"""

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
# linux.resources keys that runtime.oci.cgroup_limits applies (loaded only when one is set)
LIMIT_KEYS = ("cpu", "memory", "pids", "blockIO", "hugepageLimits", "network", "rdma", "unified")
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
) -> "Cgroup":
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
        if any(resources.get(key) for key in LIMIT_KEYS):
            from runtime.oci import cgroup_limits  # most configs set none: not loaded then

            cgroup_limits.apply(self, resources, warnings)
        if "devices" in resources:
            self._apply_devices(resources["devices"] or [], devices or [])
        self.warnings.extend(warnings)
        return warnings

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
