"""The container's side of `create`: namespaces, root filesystem, devices, process setup.

Everything here takes plain data (the parsed config.json) and a `sys_` object with the
functions of runtime.oci.syscalls, so unit tests can check order and flags with a fake.

The order container.py calls these in, and why:
  namespace_plan, join_namespaces (user first)   before any unshare
  prepare_rootfs: "/" rslave, rootfs bound on itself, config mounts in order, devices
  (createContainer hooks run here, still able to see the host's paths)
  pivot_into (chroot_into without a mount namespace of its own), setup_terminal
                                                  the pty comes from the container's devpts
  set_identity, then finish_rootfs                sysctls before /proc/sys turns read-only
  set_process_attributes                          rlimits, affinity, ...: before caps drop
  set_exec_labels                                 AppArmor/SELinux: before no_new_privs
  set_user_and_capabilities, no_new_privs, seccomp last (or before caps without NNP)
  exec_process                                    after `start`
"""

import errno
import os
import stat
import sys

from runtime.oci import syscalls
from runtime.paths import resolve_in_root
from runtime.state import read_bytes

# OCI namespace type -> (clone flag, name under /proc/PID/ns)
NAMESPACES = {
    "user": (syscalls.CLONE_NEWUSER, "user"),
    "pid": (syscalls.CLONE_NEWPID, "pid"),
    "network": (syscalls.CLONE_NEWNET, "net"),
    "ipc": (syscalls.CLONE_NEWIPC, "ipc"),
    "uts": (syscalls.CLONE_NEWUTS, "uts"),
    "mount": (syscalls.CLONE_NEWNS, "mnt"),
    "cgroup": (syscalls.CLONE_NEWCGROUP, "cgroup"),
    "time": (syscalls.CLONE_NEWTIME, "time"),
}

# option -> (clear?, flag); "clear" options switch a flag off.
MOUNT_FLAGS = {
    "ro": (False, syscalls.MS_RDONLY),
    "rw": (True, syscalls.MS_RDONLY),
    "nosuid": (False, syscalls.MS_NOSUID),
    "suid": (True, syscalls.MS_NOSUID),
    "nodev": (False, syscalls.MS_NODEV),
    "dev": (True, syscalls.MS_NODEV),
    "noexec": (False, syscalls.MS_NOEXEC),
    "exec": (True, syscalls.MS_NOEXEC),
    "sync": (False, syscalls.MS_SYNCHRONOUS),
    "async": (True, syscalls.MS_SYNCHRONOUS),
    "dirsync": (False, syscalls.MS_DIRSYNC),
    "remount": (False, syscalls.MS_REMOUNT),
    "mand": (False, syscalls.MS_MANDLOCK),
    "nomand": (True, syscalls.MS_MANDLOCK),
    "atime": (True, syscalls.MS_NOATIME),
    "noatime": (False, syscalls.MS_NOATIME),
    "diratime": (True, syscalls.MS_NODIRATIME),
    "nodiratime": (False, syscalls.MS_NODIRATIME),
    "relatime": (False, syscalls.MS_RELATIME),
    "norelatime": (True, syscalls.MS_RELATIME),
    "strictatime": (False, syscalls.MS_STRICTATIME),
    "nostrictatime": (True, syscalls.MS_STRICTATIME),
    "lazytime": (False, syscalls.MS_LAZYTIME),
    "nolazytime": (True, syscalls.MS_LAZYTIME),
    "silent": (False, syscalls.MS_SILENT),
    "loud": (True, syscalls.MS_SILENT),
    "nosymfollow": (False, syscalls.MS_NOSYMFOLLOW),
    "symfollow": (True, syscalls.MS_NOSYMFOLLOW),
    "bind": (False, syscalls.MS_BIND),
    "rbind": (False, syscalls.MS_BIND | syscalls.MS_REC),
}

PROPAGATION = {
    "private": syscalls.MS_PRIVATE,
    "rprivate": syscalls.MS_PRIVATE | syscalls.MS_REC,
    "shared": syscalls.MS_SHARED,
    "rshared": syscalls.MS_SHARED | syscalls.MS_REC,
    "slave": syscalls.MS_SLAVE,
    "rslave": syscalls.MS_SLAVE | syscalls.MS_REC,
    "unbindable": syscalls.MS_UNBINDABLE,
    "runbindable": syscalls.MS_UNBINDABLE | syscalls.MS_REC,
}

# Options runtimes understand but that are not mount(2) flags or fs data.
_IGNORED_OPTIONS = {"defaults", "tmpcopyup", "rro", "rrw", "idmap", "ridmap", "copy-symlink"}

# statvfs f_flag bits -> mount flags, to keep flags the kernel locks on a remount.
_STATVFS_TO_MS = {
    os.ST_RDONLY: syscalls.MS_RDONLY,
    os.ST_NOSUID: syscalls.MS_NOSUID,
    os.ST_NODEV: syscalls.MS_NODEV,
    os.ST_NOEXEC: syscalls.MS_NOEXEC,
    os.ST_NOATIME: syscalls.MS_NOATIME,
    os.ST_NODIRATIME: syscalls.MS_NODIRATIME,
    os.ST_RELATIME: syscalls.MS_RELATIME,
}

DEFAULT_DEVICES = [
    {"path": "/dev/null", "type": "c", "major": 1, "minor": 3},
    {"path": "/dev/zero", "type": "c", "major": 1, "minor": 5},
    {"path": "/dev/full", "type": "c", "major": 1, "minor": 7},
    {"path": "/dev/random", "type": "c", "major": 1, "minor": 8},
    {"path": "/dev/urandom", "type": "c", "major": 1, "minor": 9},
    {"path": "/dev/tty", "type": "c", "major": 5, "minor": 0},
]

DEV_SYMLINKS = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
    ("/proc/kcore", "/dev/core"),
]

_DEVICE_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


class ConfigError(ValueError):
    """config.json asks for something this runtime must refuse."""


# ---------------------------------------------------------------- checks before anything runs

# Settings the runtime-spec says must take effect, which this runtime does not implement:
# refusing them is the honest answer.
_UNSUPPORTED_LINUX = ("intelRdt", "memoryPolicy", "netDevices")


def check_config(config: dict, sys_=syscalls) -> None:
    """Errors the runtime-spec requires, found before any process or mount exists."""
    process = config.get("process") or {}
    linux = config.get("linux") or {}
    check_lsm_labels(process, linux, sys_)
    for key in _UNSUPPORTED_LINUX:
        if linux.get(key):
            raise ConfigError(f"linux.{key} is not supported by this runtime")
    seen: set[str] = set()
    for entry in process.get("rlimits") or []:
        if entry.get("type") not in syscalls.RLIMITS:
            raise ConfigError(f"unknown rlimit {entry.get('type')!r}")
        if entry["type"] in seen:
            raise ConfigError(f"rlimit {entry['type']} given twice")
        seen.add(entry["type"])
    for stage, entries in (config.get("hooks") or {}).items():
        for hook in entries or []:
            if not str(hook.get("path", "")).startswith("/"):
                raise ConfigError(f"{stage} hook path must be absolute: {hook.get('path')!r}")
    for entry in config.get("mounts") or []:
        if entry.get("uidMappings") or entry.get("gidMappings"):
            raise ConfigError(f"idmapped mount {entry.get('destination')}: not supported")
    personality = linux.get("personality")
    if personality and personality.get("domain") not in _PERSONALITY_DOMAINS:
        raise ConfigError(f"unknown personality domain {personality.get('domain')!r}")


# config key -> the security module that applies it
_LSM_LABELS = (
    ("process", "apparmorProfile", "apparmor"),
    ("process", "selinuxLabel", "selinux"),
    ("linux", "mountLabel", "selinux"),
)


def check_lsm_labels(process: dict, linux_cfg: dict, sys_=syscalls) -> None:
    """A label for a security module this kernel does not run is refused: ignoring it
    would run the container less confined than asked."""
    where = {"process": process, "linux": linux_cfg}
    for section, key, lsm in _LSM_LABELS:
        if where[section].get(key) and not sys_.lsm_enabled(lsm):
            raise ConfigError(f"{section}.{key} is set but {lsm} is not enabled on this kernel")


def set_exec_labels(process: dict, sys_=syscalls) -> None:
    """AppArmor profile and SELinux label of the next execve. Before no_new_privs and the
    capability drop, which would forbid the transition; needs the container's /proc."""
    profile = process.get("apparmorProfile")
    if profile:
        sys_.set_exec_attr("apparmor", f"exec {profile}")
    label = process.get("selinuxLabel")
    if label:
        sys_.set_exec_attr("selinux", label)


def with_mount_label(data: str, fstype: str, label: str | None) -> str:
    """SELinux context= for a filesystem mounted fresh (binds keep their files' labels;
    proc, sysfs, cgroup and mqueue are labelled by the policy)."""
    if not label or fstype in ("", "bind", "proc", "sysfs", "cgroup", "cgroup2", "mqueue"):
        return data
    return ",".join(filter(None, [data, f'context="{label}"']))


# ---------------------------------------------------------------- namespaces


def namespace_plan(namespaces: list[dict]) -> tuple[list[tuple[str, str]], int]:
    """(namespaces to join by path, user first; clone flags of the new ones)."""
    joins: list[tuple[str, str]] = []
    new_flags = 0
    seen: set[str] = set()
    for entry in namespaces:
        kind = entry.get("type")
        if kind not in NAMESPACES:
            raise ConfigError(f"unknown namespace type {kind!r}")
        if kind in seen:
            raise ConfigError(f"namespace {kind!r} given twice")
        seen.add(kind)
        if entry.get("path"):
            joins.append((kind, entry["path"]))
        else:
            new_flags |= NAMESPACES[kind][0]
    joins.sort(key=lambda join: join[0] != "user")
    return joins, new_flags


def join_namespaces(joins: list[tuple[str, str]], sys_=syscalls) -> None:
    for kind, path in joins:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            sys_.setns(fd, NAMESPACES[kind][0])
        finally:
            os.close(fd)


def write_time_offsets(offsets: dict | None) -> None:
    """After unshare(CLONE_NEWTIME), before the first child: that child sees these clocks."""
    if not offsets:
        return
    lines = [
        f"{clock} {value.get('secs', 0)} {value.get('nanosecs', 0)}\n"
        for clock, value in offsets.items()
    ]
    with open("/proc/self/timens_offsets", "w") as f:
        f.write("".join(lines))


def id_map_text(mappings: list[dict]) -> str:
    return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings)


# ---------------------------------------------------------------- mounts


def parse_mount_options(options: list[str]) -> tuple[int, list[int], str]:
    """(mount flags, propagation flags in order, fs-specific data)."""
    flags = 0
    propagation: list[int] = []
    data: list[str] = []
    for option in options:
        if option in MOUNT_FLAGS:
            clear, flag = MOUNT_FLAGS[option]
            flags = flags & ~flag if clear else flags | flag
        elif option in PROPAGATION:
            propagation.append(PROPAGATION[option])
        elif option not in _IGNORED_OPTIONS:
            data.append(option)
    return flags, propagation, ",".join(data)


def remount_flags(path: str) -> int:
    """Flags the kernel would refuse to drop on a remount of `path` (locked in a user ns)."""
    current = os.statvfs(path).f_flag
    return sum(ms for st, ms in _STATVFS_TO_MS.items() if current & st and st != os.ST_RDONLY)


def _make_mount_point(dest: str, source_is_dir: bool) -> None:
    if source_is_dir:
        try:  # mostly there already: one syscall, where makedirs makes three
            os.mkdir(dest)
        except FileExistsError:
            if not os.path.isdir(dest):
                raise
        except FileNotFoundError:
            os.makedirs(dest, exist_ok=True)
        return
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if not os.path.lexists(dest):
        os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def mount_entry(
    rootfs: str,
    bundle: str,
    entry: dict,
    new_cgroupns: bool = True,
    sys_=syscalls,
    cgroup_dirs: list[str] | tuple[str, ...] = (),
    mount_label: str | None = None,
    mountinfo: str | None = None,
) -> None:
    """One entry of config.json "mounts", below `rootfs` (before pivot_root). `mountinfo`:
    this mount namespace's, when the caller has it (see mount_cgroup_tree)."""
    options = entry.get("options") or []
    flags, propagation, data = parse_mount_options(options)
    fstype = entry.get("type") or ""
    data = with_mount_label(data, fstype, mount_label)
    source = entry.get("source") or fstype or "none"
    dest = resolve_in_root(rootfs, entry["destination"], follow_last=True)
    is_bind = bool(flags & syscalls.MS_BIND) or fstype == "bind"
    if is_bind:
        if not os.path.isabs(source):
            source = os.path.join(bundle, source)
        _make_mount_point(dest, os.path.isdir(source))
        sys_.mount(source, dest, None, syscalls.MS_BIND | (flags & syscalls.MS_REC))
        extra = flags & ~(syscalls.MS_BIND | syscalls.MS_REC | syscalls.MS_REMOUNT)
        if extra:
            remount = syscalls.MS_BIND | syscalls.MS_REMOUNT | extra
            sys_.mount(None, dest, None, remount | remount_flags(dest))
    elif fstype == "cgroup":
        _make_mount_point(dest, True)
        mount_cgroup_tree(dest, flags, new_cgroupns, list(cgroup_dirs), sys_, mountinfo)
    else:
        _make_mount_point(dest, True)
        try:
            sys_.mount(source, dest, fstype, flags, data or None)
        except PermissionError:
            # In a user namespace sysfs and mqueue need a net/ipc namespace of their own;
            # without one, bind the host's instead (as runc does), with the mount's flags.
            if fstype not in ("sysfs", "mqueue"):
                raise
            host = "/sys" if fstype == "sysfs" else "/dev/mqueue"
            sys_.mount(host, dest, None, syscalls.MS_BIND | syscalls.MS_REC)
            sys_.mount(None, dest, None, syscalls.MS_BIND | syscalls.MS_REMOUNT | flags)
    for flag in propagation:
        sys_.mount(None, dest, None, flag)


def cgroup_hierarchies(mountinfo: str) -> list[tuple[str, str]]:
    """(mount point, superblock options; "" for cgroup2) of each cgroup mount."""
    found = []
    for line in mountinfo.splitlines():
        if " - cgroup" not in line:  # most lines: no split needed
            continue
        left, _, right = line.partition(" - ")
        fstype, _source, super_options = right.split(" ", 2)
        mount_point = left.split()[4]
        if fstype == "cgroup2":
            found.append((mount_point, ""))
        elif fstype == "cgroup":
            names = [o for o in super_options.split(",") if o not in ("rw", "ro")]
            key = ",".join(n for n in names if not n.startswith(("xattr", "release_agent")))
            found.append((mount_point, key))
    return found


def mount_cgroup_tree(
    dest: str,
    flags: int,
    new_cgroupns: bool,
    cgroup_dirs: list[str] | tuple[str, ...],
    sys_=syscalls,
    mountinfo: str | None = None,
) -> None:
    """/sys/fs/cgroup in the container: cgroup2 as is, or v1 as a tmpfs of hierarchies.

    Runs before pivot_root, after joining the container's cgroup. With its own cgroup
    namespace each hierarchy is mounted fresh (its root is the container's cgroup);
    otherwise, or where the kernel refuses (v1 in a user namespace), the container's
    own cgroup directories are bound, so the host's tree stays out of sight.

    `mountinfo`: the parent's, read as it found the cgroup (a new mount namespace is a
    copy of it); the kernel makes that text anew at each read (~0.15 ms), so not twice.
    """
    readonly = flags & syscalls.MS_RDONLY
    base = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC
    if mountinfo is None:
        mountinfo = read_bytes("/proc/self/mountinfo").decode()
    hierarchies = cgroup_hierarchies(mountinfo)
    mount = (new_cgroupns, cgroup_dirs, base | readonly, sys_)
    if ("/sys/fs/cgroup", "") in hierarchies:  # pure cgroup2 host
        _mount_hierarchy(dest, "/sys/fs/cgroup", "", *mount)
        return
    sys_.mount("tmpfs", dest, "tmpfs", base, "mode=755")
    for mount_point, options in hierarchies:
        if mount_point.startswith("/sys/fs/cgroup/"):
            target = os.path.join(dest, mount_point[len("/sys/fs/cgroup/") :])
            os.mkdir(target)  # in the tmpfs just mounted: nothing is there yet
            _mount_hierarchy(target, mount_point, options, *mount)
    if readonly:
        sys_.mount(None, dest, None, syscalls.MS_REMOUNT | syscalls.MS_RDONLY | base, "mode=755")


def _mount_hierarchy(target, mount_point, options, new_cgroupns, cgroup_dirs, flags, sys_):
    if new_cgroupns:
        try:
            fstype = "cgroup" if options else "cgroup2"
            sys_.mount("cgroup", target, fstype, flags, options or None)
            return
        except PermissionError:
            pass
    own = [d for d in cgroup_dirs if d == mount_point or d.startswith(mount_point + "/")]
    if own:
        sys_.mount(own[0], target, None, syscalls.MS_BIND)
        sys_.mount(None, target, None, syscalls.MS_BIND | syscalls.MS_REMOUNT | flags)


def create_devices(rootfs: str, devices: list[dict], in_user_ns: bool, sys_=syscalls) -> None:
    """mknod each device below rootfs; in a user namespace bind the host's node instead."""
    for device in devices:
        path = resolve_in_root(rootfs, device["path"], follow_last=True)
        kind = _DEVICE_TYPES.get(device.get("type", "c"))
        if kind is None:
            raise ConfigError(f"device {device['path']}: unknown type {device.get('type')!r}")
        mode = device.get("fileMode", 0o666) & 0o7777
        if in_user_ns:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if _existing_device(path, kind, device):
                continue
            _make_mount_point(path, False)
            sys_.mount(device["path"], path, None, syscalls.MS_BIND)
            continue
        # mknod first (the usual case: a fresh /dev); what is in the way is looked at then
        try:
            sys_.mknod(path, kind | mode, device.get("major", 0), device.get("minor", 0))
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            sys_.mknod(path, kind | mode, device.get("major", 0), device.get("minor", 0))
        except FileExistsError:
            if _existing_device(path, kind, device):
                continue
            raise
        sys_.chmod(path, mode)  # mknod's mode went through the umask
        sys_.chown(path, device.get("uid", 0), device.get("gid", 0))


def _existing_device(path: str, kind: int, device: dict) -> bool:
    """Whether `path` is this very device already; runtime-spec: an existing file that is
    not is an error."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not _is_device(st, kind, device):
        raise ConfigError(f"device {device['path']}: a different file is there")
    return True


def _is_device(st: os.stat_result, kind: int, device: dict) -> bool:
    if stat.S_IFMT(st.st_mode) != kind:
        return False
    if kind == stat.S_IFIFO:
        return True
    wanted = (device.get("major", 0), device.get("minor", 0))
    return (os.major(st.st_rdev), os.minor(st.st_rdev)) == wanted


def create_dev_symlinks(rootfs: str, sys_=syscalls) -> None:
    for target, link in DEV_SYMLINKS:
        try:  # no lexists first: one syscall, not two
            sys_.symlink(target, os.path.join(rootfs, link.lstrip("/")))
        except FileExistsError:
            pass


def dev_is_ours(mounts: list[dict]) -> bool:
    """True when config mounts a fresh /dev (not a bind of the host's), so we fill it."""
    for entry in mounts:
        if os.path.normpath(entry["destination"]) == "/dev":
            return entry.get("type") != "bind" and "bind" not in (entry.get("options") or [])
    return False


def prepare_rootfs(
    config: dict,
    bundle: str,
    new_flags: int,
    in_user_ns: bool,
    sys_=syscalls,
    cgroup_dirs: list[str] | tuple[str, ...] = (),
    own_mount_ns: bool = True,
    mountinfo: str | None = None,
    before_cgroup_mount=None,
) -> str:
    """Mounts, devices and symlinks below the rootfs, in the container's mount namespace
    or (`own_mount_ns` false) in the runtime's, where delete undoes them (unmount_all).
    `before_cgroup_mount()` runs before each cgroup mount (it joins the cgroup).

    Returns the absolute rootfs path; pivot_root comes after the createContainer hooks.
    """
    linux = config.get("linux") or {}
    rootfs = os.path.realpath(os.path.join(bundle, config["root"]["path"]))
    propagation = PROPAGATION.get(linux.get("rootfsPropagation", ""), 0)
    if own_mount_ns:
        # Recursively slave (or private) first: no mount we make reaches the host. Shared
        # (pivot_root refuses a shared parent) and unbindable (the rootfs bind would fail)
        # are set on the new root after pivot_root.
        first = syscalls.MS_PRIVATE if propagation & syscalls.MS_PRIVATE else syscalls.MS_SLAVE
        sys_.mount(None, "/", None, first | syscalls.MS_REC)
    sys_.mount(rootfs, rootfs, None, syscalls.MS_BIND | syscalls.MS_REC)
    if not own_mount_ns:
        # The host's "/" stays as it is; the rootfs bind alone is cut off, so what we mount
        # below it shows nowhere else (private, or slave when asked for).
        first = syscalls.MS_SLAVE if propagation & syscalls.MS_SLAVE else syscalls.MS_PRIVATE
        sys_.mount(None, rootfs, None, first | syscalls.MS_REC)
    mounts = config.get("mounts") or []
    mount_label = linux.get("mountLabel")
    for entry in mounts:
        if entry.get("type") == "cgroup" and before_cgroup_mount:
            before_cgroup_mount()
        new_cgroupns = bool(new_flags & syscalls.CLONE_NEWCGROUP)
        mount_entry(rootfs, bundle, entry, new_cgroupns, sys_, cgroup_dirs, mount_label, mountinfo)
    devices = list(linux.get("devices") or [])
    if dev_is_ours(mounts):
        configured = {d["path"] for d in devices}
        defaults = [d for d in DEFAULT_DEVICES if d["path"] not in configured]
        devices = defaults + devices
        create_dev_symlinks(rootfs, sys_)
    create_devices(rootfs, devices, in_user_ns, sys_)
    cwd = (config.get("process") or {}).get("cwd")
    if cwd:
        try:
            os.makedirs(resolve_in_root(rootfs, cwd, follow_last=True), exist_ok=True)
        except OSError:
            pass  # read-only image: exec reports a missing cwd clearly
    return rootfs


def pivot_into(rootfs: str, propagation: str | None, sys_=syscalls) -> None:
    """pivot_root into rootfs and detach the old root without touching the host's mounts."""
    sys_.chdir(rootfs)
    sys_.pivot_root(".", ".")
    # The old root now sits on top of "."; make it slave so the detach cannot propagate.
    sys_.mount(None, ".", None, syscalls.MS_SLAVE | syscalls.MS_REC)
    sys_.umount2(".", syscalls.MNT_DETACH)
    sys_.chdir("/")
    if propagation in PROPAGATION:
        sys_.mount(None, "/", None, PROPAGATION[propagation])


def chroot_into(rootfs: str, propagation: str | None, sys_=syscalls) -> None:
    """Without a mount namespace of its own pivot_root would move the host's root: chroot."""
    sys_.chdir(rootfs)
    sys_.chroot(".")
    sys_.chdir("/")
    if propagation in PROPAGATION:
        sys_.mount(None, "/", None, PROPAGATION[propagation])


def mounts_below(path: str) -> list[str]:
    """Mount points at or below `path` in this mount namespace, in mountinfo order."""
    from runtime.mounts import mount_points

    return [p for p in mount_points() if p == path or p.startswith(path + "/")]


def mounts_made(record: dict) -> list[str]:
    """The mounts a create without a mount namespace made: its list once it finished,
    else what is below the rootfs now and was not before it began."""
    if "mounts" in record:
        return record["mounts"]
    return new_mounts(record["mounts_before"], mounts_below(record["rootfs"]))


def new_mounts(before: list[str], after: list[str]) -> list[str]:
    """Mount points in `after` and not in `before`, in `after`'s order (a path mounted on
    twice counts twice: the rootfs bind sits on the rootfs's own mount)."""
    left = {}
    for path in before:
        left[path] = left.get(path, 0) + 1
    made = []
    for path in after:
        if left.get(path):
            left[path] -= 1
        else:
            made.append(path)
    return made


def unmount_all(paths: list[str], sys_=syscalls) -> list[str]:
    """Undo the mounts `new_mounts` found, newest first; returns warnings.

    A path whose directories changed into symlinks since (the container could do that) is
    left alone: it would lead outside the rootfs. Detaching the rootfs bind, last, takes
    whatever is still below it.
    """
    warnings = []
    for path in reversed(paths):
        if os.path.realpath(path) != path:
            warnings.append(f"not unmounting {path}: it leads elsewhere now")
            continue
        try:
            sys_.umount2(path, syscalls.MNT_DETACH | syscalls.UMOUNT_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as err:
            if err.errno != errno.EINVAL:  # no longer a mount point: gone with its parent
                warnings.append(f"unmounting {path}: {err.strerror}")
    return warnings


def mask_paths(paths: list[str], sys_=syscalls) -> None:
    for path in paths:
        try:
            if stat.S_ISDIR(os.lstat(path).st_mode):  # a directory, not a link to one
                sys_.mount("tmpfs", path, "tmpfs", syscalls.MS_RDONLY, None)
            else:
                sys_.mount("/dev/null", path, None, syscalls.MS_BIND)
        except FileNotFoundError:
            continue


def readonly_paths(paths: list[str], sys_=syscalls) -> None:
    for path in paths:
        try:
            sys_.mount(path, path, None, syscalls.MS_BIND | syscalls.MS_REC)
        except FileNotFoundError:
            continue
        flags = syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY
        sys_.mount(None, path, None, flags | remount_flags(path))


def make_root_readonly(sys_=syscalls) -> None:
    flags = syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY
    sys_.mount(None, "/", None, flags | remount_flags("/"))


def finish_rootfs(config: dict, sys_=syscalls) -> None:
    """After pivot_root: masked and read-only paths, then the read-only root."""
    linux = config.get("linux") or {}
    mask_paths(linux.get("maskedPaths") or [], sys_)
    readonly_paths(linux.get("readonlyPaths") or [], sys_)
    if config["root"].get("readonly"):
        make_root_readonly(sys_)


# ---------------------------------------------------------------- process


def set_identity(config: dict, own_uts: bool, sys_=syscalls) -> None:
    """hostname, domainname and sysctls: these belong to namespaces the container owns
    (own_uts: a uts namespace made for it or joined by path, not the runtime's)."""
    linux = config.get("linux") or {}
    for key, setter in (("hostname", sys_.sethostname), ("domainname", sys_.setdomainname)):
        value = config.get(key)
        if value is None:
            continue
        if not own_uts:
            raise ConfigError(f"{key} needs a uts namespace of the container's own")
        setter(value)
    for key, value in (linux.get("sysctl") or {}).items():
        path = "/proc/sys/" + key.replace(".", "/")
        with open(path, "w") as f:
            f.write(str(value))


_PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}
_IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
_SCHED_POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3}
_SCHED_POLICIES["SCHED_IDLE"] = 5
SCHED_RESET_ON_FORK = 0x40000000


def parse_cpu_list(text: str) -> set[int]:
    """ "0-2, 7" -> {0, 1, 2, 7} (the kernel's cpu list format)."""
    cpus: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def set_cpu_affinity(process: dict, when: str) -> None:
    """execCPUAffinity: "initial" before the cgroup is joined, "final" after it."""
    cpus = (process.get("execCPUAffinity") or {}).get(when)
    if cpus:
        os.sched_setaffinity(0, parse_cpu_list(cpus))


def set_process_attributes(process: dict, linux_cfg: dict | None, sys_=syscalls) -> None:
    """rlimits, I/O priority, scheduler, CPU affinity and (for the init) personality.

    Before capabilities are dropped: some of them need CAP_SYS_NICE or CAP_SYS_RESOURCE.
    """
    set_rlimits(process.get("rlimits") or [], sys_)
    set_cpu_affinity(process, "final")
    io = process.get("ioPriority")
    if io:
        if io.get("class") not in _IOPRIO_CLASSES:
            raise ConfigError(f"unknown ioPriority class {io.get('class')!r}")
        value = _IOPRIO_CLASSES[io["class"]] << 13 | io.get("priority", 0)
        sys_.ioprio_set(syscalls.IOPRIO_WHO_PROCESS, 0, value)
    scheduler = process.get("scheduler")
    if scheduler:
        set_scheduler(scheduler)
    personality = (linux_cfg or {}).get("personality")
    if personality:
        domain = personality.get("domain")
        if domain not in _PERSONALITY_DOMAINS:
            raise ConfigError(f"unknown personality domain {domain!r}")
        if personality.get("flags"):
            raise ConfigError("personality flags are not supported")
        sys_.personality(_PERSONALITY_DOMAINS[domain])


def set_scheduler(scheduler: dict) -> None:
    policy = scheduler.get("policy")
    if policy not in _SCHED_POLICIES:  # SCHED_DEADLINE needs sched_setattr(2)
        raise ConfigError(f"scheduler policy {policy!r} is not supported")
    flags = scheduler.get("flags") or []
    value = _SCHED_POLICIES[policy]
    if "SCHED_FLAG_RESET_ON_FORK" in flags:
        value |= SCHED_RESET_ON_FORK
    if "nice" in scheduler:
        os.setpriority(os.PRIO_PROCESS, 0, scheduler["nice"])
    os.sched_setscheduler(0, value, os.sched_param(scheduler.get("priority", 0)))


def set_rlimits(rlimits: list[dict], sys_=syscalls) -> None:
    for entry in rlimits:
        kind = syscalls.RLIMITS.get(entry["type"])
        if kind is None:
            raise ConfigError(f"unknown rlimit {entry['type']!r}")
        sys_.setrlimit(kind, entry["soft"], entry["hard"])


def capability_masks(caps: dict) -> dict[str, int]:
    """OCI capability names -> masks per set; unknown names raise ValueError."""
    from runtime.oci import capabilities

    return {
        kind: capabilities.to_mask(caps.get(kind) or [])
        for kind in ("bounding", "effective", "permitted", "inheritable", "ambient")
    }


def last_cap() -> int:
    return int(read_bytes("/proc/sys/kernel/cap_last_cap"))


def drop_bounding(bounding: int, highest: int, sys_=syscalls) -> None:
    """Drop what config leaves out; refuse what it asks for but we cannot grant (a MUST)."""
    missing = bounding >> (highest + 1) << (highest + 1)  # unknown to this kernel
    for cap in range(highest + 1):
        if not bounding & (1 << cap):
            try:  # a no-op if not held: no read first
                sys_.prctl(syscalls.PR_CAPBSET_DROP, cap)
            except PermissionError:  # without CAP_SETPCAP: fine if it was not held
                if sys_.prctl(syscalls.PR_CAPBSET_READ, cap) == 1:
                    raise
        elif sys_.prctl(syscalls.PR_CAPBSET_READ, cap) != 1:
            missing |= 1 << cap
    if missing:
        from runtime.oci import capabilities

        raise ConfigError(f"capabilities cannot be granted here: {capabilities.names(missing)}")


def set_user_and_capabilities(
    user: dict, masks: dict[str, int] | None, highest: int, sys_=syscalls
) -> None:
    """Bounding drop, then uid/gid (keeping caps), then capset, then ambient."""
    if masks is not None:
        drop_bounding(masks["bounding"], highest, sys_)
    sys_.prctl(syscalls.PR_SET_KEEPCAPS, 1)
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    additional = user.get("additionalGids")
    if additional is not None or _setgroups_allowed():
        sys_.setgroups(list(additional or []))
    sys_.setresgid(gid, gid, gid)
    sys_.setresuid(uid, uid, uid)
    sys_.prctl(syscalls.PR_SET_KEEPCAPS, 0)
    if masks is None:
        return
    sys_.capset(masks["effective"], masks["permitted"], masks["inheritable"])
    sys_.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    for cap in range(highest + 1):
        if masks["ambient"] & (1 << cap):
            try:
                sys_.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_RAISE, cap)
            except PermissionError:
                pass  # ambient needs the cap in permitted and inheritable: as runc, go on


def _setgroups_allowed() -> bool:
    try:
        return read_bytes("/proc/self/setgroups").strip() != b"deny"
    except OSError:
        return True


def write_oom_score_adj(value: int | None) -> None:
    if value is None:
        return
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(value))


def reset_signals() -> None:
    """Python ignores SIGPIPE and SIGXFSZ; ignored signals survive exec, so restore them."""
    import _signal as signal  # built in: importable after pivot_root, no enum module

    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def exec_process(process: dict, keep_fds: int = 0, program: str | None = None) -> None:
    """Replace this process with the user program (`program`: its path, found already by
    `executable_of`); fds 3 .. 3+keep_fds-1 stay open."""
    _close_on_exec_from(3 + keep_fds)
    os.execve(program or executable_of(process), process["args"], _environment(process))


def _environment(process: dict) -> dict[str, str]:
    return dict(item.split("=", 1) for item in process.get("env") or [] if "=" in item)


def executable_of(process: dict) -> str:
    return find_executable(process["args"][0], _environment(process).get("PATH"))


def find_executable(name: str, path: str | None) -> str:
    """execvp's search, done here: os.execvpe imports modules the container cannot reach."""
    if "/" in name:
        return name
    found_denied = None
    for directory in (path if path is not None else "/usr/bin:/bin").split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            found_denied = candidate
    if found_denied:
        raise PermissionError(13, "Permission denied", found_denied)
    raise FileNotFoundError(2, "executable file not found in $PATH", name)


def preload_modules(process: dict, config: dict) -> None:
    """Import now what runs after pivot_root: the interpreter's library is out of reach then."""
    if process.get("terminal"):
        import fcntl  # noqa: F401
        import socket  # noqa: F401
        import termios  # noqa: F401
    if (config.get("hooks") or {}).get("startContainer"):
        import subprocess  # noqa: F401


def _close_on_exec_from(lowest: int) -> None:
    # Not closed now: a failing execve can still report through its channel.
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # a container without /proc
        fds = list(range(3, 1024))
    for fd in fds:
        if fd >= lowest:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the fd listdir itself used


def setup_terminal(
    console_socket: int, console: bool = False, size: dict | None = None, sys_=syscalls
) -> None:
    """A pty made in the container's devpts: slave becomes stdio, master goes out by SCM_RIGHTS.

    With `console` (the container's init, not exec) the slave is also bound on /dev/console.
    """
    import fcntl
    import socket
    import termios

    master, slave = os.openpty()
    if size:
        rows, cols = size.get("height", 0), size.get("width", 0)
        winsize = rows.to_bytes(2, sys.byteorder) + cols.to_bytes(2, sys.byteorder) + bytes(4)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, winsize)
    if console:
        _make_mount_point("/dev/console", False)
        sys_.mount(os.ttyname(slave), "/dev/console", None, syscalls.MS_BIND)
    try:
        sock = socket.socket(fileno=console_socket)
        socket.send_fds(sock, [b"/dev/ptmx"], [master])
        sock.detach()
    finally:
        os.close(master)
    sys_.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
