"""Every raw Linux syscall the runtime needs, via ctypes on libc; nothing else touches libc.

Functions raise OSError (with errno) on failure and take plain Python values, so code
above this seam can be unit-tested with a fake object that has the same functions.
"""

import _ctypes
import os

# clone(2) / unshare(2) / setns(2) flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_POSIXACL = 0x10000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_I_VERSION = 0x800000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

# umount2(2) flags
MNT_FORCE = 0x1
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8

# prctl(2) options
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
_SYS_CLONE3 = 435  # the same number on every architecture (the generic table)
CLONE_INTO_CGROUP = 0x200000000
_SIGCHLD = 17
_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "riscv64": 277, "ppc64le": 358, "s390x": 348}
_SECCOMP_SET_MODE_FILTER = 1
_SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "riscv64": 30, "ppc64le": 273, "s390x": 282}
IOPRIO_WHO_PROCESS = 1


# The C layer of ctypes, not the ctypes package: its pure-Python half (struct, types, a
# class per C type) costs about 3 ms of every `composer-runtime` start. These few C types
# and the function-pointer class are all the seam needs.
class _Int(_ctypes._SimpleCData):
    _type_ = "i"


class _UInt32(_ctypes._SimpleCData):
    _type_ = "I"


class _Long(_ctypes._SimpleCData):
    _type_ = "l"


class _ULong(_ctypes._SimpleCData):  # also size_t: Linux is LP64 or ILP32 alike
    _type_ = "L"


class _UInt64(_ctypes._SimpleCData):
    _type_ = "Q"


class _CharP(_ctypes._SimpleCData):  # bytes or None (NULL)
    _type_ = "z"


class _CapHeader(_ctypes.Structure):
    _fields_ = [("version", _UInt32), ("pid", _Int)]


class _CapData(_ctypes.Structure):
    _fields_ = [("effective", _UInt32), ("permitted", _UInt32), ("inheritable", _UInt32)]


class _Library:
    """A loaded library's functions by name (ctypes' CDLL, without the ctypes package).

    A function's pointer (and its signature from `signatures`: name -> (argument types,
    result type) made on demand) comes on first use: a command pays for those it calls.
    """

    def __init__(self, flags: int, signatures: dict | None = None) -> None:
        self._handle = _ctypes.dlopen(None, 0)
        self._signatures = signatures or {}

        class Function(_ctypes.CFuncPtr):
            _flags_ = flags
            _restype_ = _Int

        self._function = Function

    def __getattr__(self, name: str):
        function = self._function((name, self))
        if name in self._signatures:
            argtypes, restype = self._signatures[name]()
            if argtypes is not None:
                function.argtypes = argtypes
            if restype is not None:
                function.restype = restype
        setattr(self, name, function)
        return function


def _cap_pointers():
    return [_ctypes.POINTER(_CapHeader), _ctypes.POINTER(_CapData)], None


_libc = _Library(
    _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO,
    {
        "mount": lambda: ([_CharP, _CharP, _CharP, _ULong, _CharP], None),
        "umount2": lambda: ([_CharP, _Int], None),
        "unshare": lambda: ([_Int], None),
        "setns": lambda: ([_Int, _Int], None),
        "sethostname": lambda: ([_CharP, _ULong], None),
        "setdomainname": lambda: ([_CharP, _ULong], None),
        "prctl": lambda: ([_Int, _ULong, _ULong, _ULong, _ULong], None),
        "capget": _cap_pointers,
        "capset": _cap_pointers,
        "personality": lambda: ([_ULong], None),
        "renameat2": lambda: ([_Int, _CharP, _Int, _CharP, _UInt32], None),
        "syscall": lambda: (None, _Long),
    },
)


class _CloneArgs(_ctypes.Structure):
    _fields_ = [
        (name, _UInt64)
        for name in (
            "flags",
            "pidfd",
            "child_tid",
            "parent_tid",
            "exit_signal",
            "stack",
            "stack_size",
            "tls",
            "set_tid",
            "set_tid_size",
            "cgroup",
        )
    ]


def _check(result: int, path: str | None, what: str, *args) -> int:
    """`result`, or OSError with errno; `what % args` is formatted on failure only (the
    init makes ~150 calls, a message each would cost ~0.2 ms)."""
    if result < 0:
        err = _ctypes.get_errno()
        raise OSError(err, f"{what % args}: {os.strerror(err)}", path)
    return result


def _b(value: str | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return os.fsencode(value)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    result = _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data))
    what = "mount %r on %r (%s, flags=%#x, data=%r)"
    _check(result, target, what, source, target, fstype, flags, data)


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), target, "umount %r", target)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), None, "unshare(%#x)", flags)


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), None, "setns(%d, %#x)", fd, nstype)


def pivot_root(new_root: str, put_old: str) -> None:
    number = _SYS_PIVOT_ROOT[os.uname().machine]
    result = _libc.syscall(number, _b(new_root), _b(put_old))
    _check(result, new_root, "pivot_root %r", new_root)


def clone3(flags: int = 0, cgroup_fd: int = -1) -> int:
    """fork(2) with clone flags (new namespaces) and, given `cgroup_fd`, the child born in
    that cgroup2 directory (CLONE_INTO_CGROUP). Returns 0 in the child.

    Called through PyDLL so the GIL stays held: the child resumes Python exactly where the
    parent was. Unlike os.fork no at-fork handlers run, so callers must be single-threaded;
    the child's libc still holds its parent's thread id (raise(3) and fork(3) do not use it).
    """
    global _pylibc
    if _pylibc is None:
        _pylibc = _Library(_ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO | _PYTHONAPI)
        _pylibc.syscall.restype = _Long
    if cgroup_fd >= 0:
        flags |= CLONE_INTO_CGROUP
    args = _CloneArgs(flags=flags, exit_signal=_SIGCHLD, cgroup=max(cgroup_fd, 0))
    size = _ULong(_ctypes.sizeof(args))
    return _check(
        _pylibc.syscall(_SYS_CLONE3, _ctypes.byref(args), size), None, "clone3(%#x)", flags
    )


def clone_into_cgroup(cgroup_fd: int) -> int:
    """fork(2), the child born in the cgroup2 directory `cgroup_fd`: 0 in the child."""
    return clone3(0, cgroup_fd)


_pylibc = None
_PYTHONAPI = _ctypes.FUNCFLAG_PYTHONAPI  # the GIL stays held across the call


def seccomp_set_filter(bpf: bytes, flags: int = 0) -> None:
    """Install a classic BPF seccomp program (raw sock_filter entries) on this thread.

    Needs no_new_privs or CAP_SYS_ADMIN, as any seccomp filter does.
    """

    class _UShort(_ctypes._SimpleCData):
        _type_ = "H"

    class _SockFprog(_ctypes.Structure):  # struct sock_fprog: a BPF program
        _fields_ = [("len", _UShort), ("filter", _CharP)]

    program = _SockFprog(len(bpf) // 8, bpf)
    number = _SYS_SECCOMP[os.uname().machine]
    result = _libc.syscall(number, _SECCOMP_SET_MODE_FILTER, flags, _ctypes.byref(program))
    _check(result, None, "seccomp(SET_MODE_FILTER, %#x)", flags)


def ioprio_set(which: int, who: int, ioprio: int) -> None:
    number = _SYS_IOPRIO_SET[os.uname().machine]
    _check(_libc.syscall(number, which, who, ioprio), None, "ioprio_set(%#x)", ioprio)


def personality(persona: int) -> int:
    # personality(2) returns the previous persona, or -1 with errno
    return _check(_libc.personality(persona), None, "personality(%#x)", persona)


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), None, "sethostname %r", name)


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, len(raw)), None, "setdomainname %r", name)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), None, "prctl(%d, %d)", option, arg2)


def capget(pid: int = 0) -> tuple[int, int, int]:
    """Return (effective, permitted, inheritable) as 64-bit masks."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (_CapData * 2)()
    _check(_libc.capget(_ctypes.byref(header), data), None, "capget")
    return tuple(  # type: ignore[return-value]
        getattr(data[0], field) | (getattr(data[1], field) << 32)
        for field in ("effective", "permitted", "inheritable")
    )


def capset(effective: int, permitted: int, inheritable: int) -> None:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for index in range(2):
        shift = 32 * index
        data[index].effective = (effective >> shift) & 0xFFFFFFFF
        data[index].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[index].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.capset(_ctypes.byref(header), data), None, "capset")


def mknod(path: str, mode: int, major: int, minor: int) -> None:
    os.mknod(path, mode, os.makedev(major, minor))


# prlimit(2) resource numbers: the kernel's generic table, which every architecture above
# uses (Python's `resource` module would cost an extension module load at every start)
_RLIMIT_NAMES = (
    "CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE",
    "MEMLOCK", "AS", "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME",
)  # fmt: skip
RLIMITS = {f"RLIMIT_{name}": number for number, name in enumerate(_RLIMIT_NAMES)}


def setrlimit(resource: int, soft: int, hard: int) -> None:
    limits = (_UInt64 * 2)(soft, hard)  # struct rlimit: two 64-bit values on LP64
    _check(
        _libc.prlimit(0, resource, limits, None),
        None,
        "setrlimit(%d, %d, %d)",
        resource,
        soft,
        hard,
    )


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def rename_exchange(old: str, new: str) -> None:
    """Swap two existing paths atomically (renameat2 RENAME_EXCHANGE)."""
    result = _libc.renameat2(_AT_FDCWD, _b(old), _AT_FDCWD, _b(new), _RENAME_EXCHANGE)
    _check(result, new, "rename %r <-> %r", old, new)


def lsm_enabled(name: str) -> bool:
    """Whether this kernel runs the security module `name` ("apparmor" or "selinux")."""
    try:
        with open("/sys/kernel/security/lsm") as f:  # where securityfs is mounted
            return name in f.read().strip().split(",")
    except OSError:
        pass
    if name == "apparmor":
        try:
            with open("/sys/module/apparmor/parameters/enabled") as f:
                return f.read().strip() == "Y"
        except OSError:
            return False
    return name == "selinux" and os.path.exists("/sys/fs/selinux/enforce")


def set_exec_attr(name: str, text: str) -> None:
    """Write `text` to the LSM `name`'s exec attribute: the label of the next execve."""
    path = f"/proc/self/attr/{name}/exec"  # kernels with stacking give each LSM its own
    if not os.path.exists(path):
        path = "/proc/self/attr/exec"
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


# Thin aliases over os so the seam is complete: linux.py calls only this module.
chdir = os.chdir
chroot = os.chroot
chown = os.chown
chmod = os.chmod
symlink = os.symlink
setgroups = os.setgroups
setresuid = os.setresuid
setresgid = os.setresgid
umask = os.umask
setsid = os.setsid
