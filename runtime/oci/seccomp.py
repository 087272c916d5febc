"""Seccomp: Docker's default profile in OCI form, and loading an OCI linux.seccomp object.

The binding is a few ctypes declarations over the system's libseccomp.so.2 (Debian
libseccomp2), loaded only when a filter is compiled, so importing this module stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from runtime.oci import capabilities

# -- Docker's default profile -------------------------------------------------------------------
# Same effect as moby's profiles/seccomp/default.json: deny with EPERM by default, allow the
# ordinary syscalls, and open the dangerous ones only to containers holding the capability that
# already guards them in the kernel.

_FILES = """
    access faccessat faccessat2 open openat openat2 creat close close_range read readv pread64
    preadv preadv2 write writev pwrite64 pwritev pwritev2 lseek _llseek readahead
    stat stat64 lstat lstat64 fstat fstat64 fstatat64 newfstatat statx statfs statfs64 fstatfs
    fstatfs64 truncate truncate64 ftruncate ftruncate64 fallocate fadvise64 fadvise64_64
    fsync fdatasync sync syncfs sync_file_range copy_file_range sendfile sendfile64 splice tee
    vmsplice chdir fchdir getcwd mkdir mkdirat rmdir mknod mknodat link linkat symlink symlinkat
    unlink unlinkat rename renameat renameat2 readlink readlinkat getdents getdents64
    chmod fchmod fchmodat chown chown32 fchown fchown32 fchownat lchown lchown32 umask
    utime utimes utimensat utimensat_time64 futimesat
    getxattr lgetxattr fgetxattr setxattr lsetxattr fsetxattr listxattr llistxattr flistxattr
    removexattr lremovexattr fremovexattr name_to_handle_at
    fcntl fcntl64 flock dup dup2 dup3 ioctl pipe pipe2
    inotify_init inotify_init1 inotify_add_watch inotify_rm_watch fanotify_mark
    io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents io_pgetevents_time64
    io_uring_setup io_uring_enter io_uring_register
    epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_wait epoll_wait_old epoll_pwait
    epoll_pwait2 poll ppoll ppoll_time64 select _newselect pselect6 pselect6_time64
    eventfd eventfd2 signalfd signalfd4 timerfd_create timerfd_settime timerfd_settime64
    timerfd_gettime timerfd_gettime64 memfd_create memfd_secret
"""

_PROCESS = """
    execve execveat exit exit_group fork vfork wait4 waitid waitpid kill tkill tgkill
    pidfd_open pidfd_send_signal process_mrelease restart_syscall
    getpid getppid gettid getpgid setpgid getpgrp getsid setsid
    getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32
    getresuid getresuid32 getresgid getresgid32 getgroups getgroups32
    setuid setuid32 setgid setgid32 setreuid setreuid32 setregid setregid32 setresuid
    setresuid32 setresgid setresgid32 setfsuid setfsuid32 setfsgid setfsgid32 setgroups
    setgroups32 capget capset prctl seccomp
    getrlimit ugetrlimit setrlimit prlimit64 getrusage getpriority setpriority
    ioprio_get ioprio_set sched_yield sched_getaffinity sched_setaffinity sched_getattr
    sched_setattr sched_getparam sched_setparam sched_getscheduler sched_setscheduler
    sched_get_priority_max sched_get_priority_min sched_rr_get_interval
    sched_rr_get_interval_time64 getcpu set_tid_address set_robust_list get_robust_list
    get_thread_area set_thread_area rseq futex futex_time64 futex_waitv membarrier
    landlock_create_ruleset landlock_add_rule landlock_restrict_self
    uname sysinfo getrandom
"""

_MEMORY = """
    brk mmap mmap2 munmap mremap mprotect madvise mincore msync remap_file_pages
    mlock mlock2 mlockall munlock munlockall pkey_alloc pkey_free pkey_mprotect
"""

_SIGNALS_AND_TIME = """
    rt_sigaction rt_sigprocmask rt_sigpending rt_sigsuspend rt_sigtimedwait
    rt_sigtimedwait_time64 rt_sigqueueinfo rt_tgsigqueueinfo rt_sigreturn sigreturn
    sigprocmask sigaltstack pause alarm nanosleep clock_nanosleep clock_nanosleep_time64
    clock_gettime clock_gettime64 clock_getres clock_getres_time64 clock_adjtime
    clock_adjtime64 adjtimex gettimeofday time times getitimer setitimer
    timer_create timer_delete timer_settime timer_settime64 timer_gettime timer_gettime64
    timer_getoverrun
"""

_IPC_AND_NET = """
    ipc msgget msgsnd msgrcv msgctl semget semop semtimedop semtimedop_time64 semctl
    shmget shmat shmdt shmctl mq_open mq_unlink mq_timedsend mq_timedsend_time64
    mq_timedreceive mq_timedreceive_time64 mq_notify mq_getsetattr
    socketcall socketpair bind listen accept accept4 connect shutdown getsockname
    getpeername getsockopt setsockopt send sendto sendmsg sendmmsg recv recvfrom recvmsg
    recvmmsg recvmmsg_time64
"""


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


ALWAYS_ALLOWED: frozenset[str] = frozenset(
    _words(" ".join((_FILES, _PROCESS, _MEMORY, _SIGNALS_AND_TIME, _IPC_AND_NET)))
)

# Allowed only to containers holding the capability (the kernel checks it too, but these
# syscalls have a history of bugs reachable before that check).
ALLOWED_WITH_CAPABILITY: dict[str, tuple[str, ...]] = {
    "CAP_SYS_ADMIN": _words(
        "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount"
        " mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname"
        " sethostname setns syslog umount umount2 unshare"
    ),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("delete_module", "init_module", "finit_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": (
        _words("kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace")
    ),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
}

# ptrace could escape seccomp before Linux 4.8, so it is only opened on newer kernels.
ALLOWED_SINCE_4_8 = ("process_vm_readv", "process_vm_writev", "ptrace")

# Keyed by Go's GOARCH names, which is how the profile spells host architectures.
ALLOWED_ON_ARCH: dict[str, tuple[str, ...]] = {
    "amd64": ("arch_prctl", "modify_ldt"),
    "x32": ("arch_prctl", "modify_ldt"),
    "x86": ("modify_ldt",),
    "arm": _words(
        "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls"
    ),
    "arm64": _words(
        "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls"
    ),
    "ppc64le": ("sync_file_range2", "swapcontext"),
    "s390": ("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"),
    "s390x": ("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"),
    "riscv64": ("riscv_flush_icache",),
}

# personality(2) values that only change the uname or 32-bit view: PER_LINUX, UNAME26,
# PER_LINUX32, PER_LINUX32|UNAME26, and 0xffffffff which queries without changing.
PERSONALITY_ALLOWED = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

AF_VSOCK = 40

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NAMESPACE_FLAGS = (
    CLONE_NEWNS
    | CLONE_NEWCGROUP
    | CLONE_NEWUTS
    | CLONE_NEWIPC
    | CLONE_NEWUSER
    | CLONE_NEWPID
    | CLONE_NEWNET
)

EPERM = 1
ENOSYS = 38

# machine (uname -m or GOARCH) -> (GOARCH name, native arch first, then the compat ones)
_ARCHES: dict[str, tuple[str, tuple[str, ...]]] = {
    "x86_64": ("amd64", ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")),
    "amd64": ("amd64", ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")),
    "i386": ("x86", ("SCMP_ARCH_X86",)),
    "i686": ("x86", ("SCMP_ARCH_X86",)),
    "x86": ("x86", ("SCMP_ARCH_X86",)),
    "aarch64": ("arm64", ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM")),
    "arm64": ("arm64", ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM")),
    "armv7l": ("arm", ("SCMP_ARCH_ARM",)),
    "arm": ("arm", ("SCMP_ARCH_ARM",)),
    "s390x": ("s390x", ("SCMP_ARCH_S390X", "SCMP_ARCH_S390")),
    "ppc64le": ("ppc64le", ("SCMP_ARCH_PPC64LE",)),
    "riscv64": ("riscv64", ("SCMP_ARCH_RISCV64",)),
}


def _kernel_version(release: str | None = None) -> tuple[int, int]:
    release = release or os.uname().release
    major, _, rest = release.partition(".")
    minor = "".join(ch for ch in rest.split(".")[0] if ch.isdigit())
    try:
        return int(major), int(minor or 0)
    except ValueError:
        return (0, 0)


def docker_default_profile(
    arch: str | None = None,
    caps: Iterable[str] | None = None,
    kernel: tuple[int, int] | None = None,
) -> dict:
    """Docker's default seccomp profile as an OCI linux.seccomp object.

    `caps` is the container's capability set (default: Docker's 14): syscalls guarded by a
    capability the container lacks stay denied, as Docker resolves the profile per container.
    `arch` is a `uname -m` or GOARCH name (default: this machine); `kernel` (major, minor)
    defaults to the running kernel.
    """
    goarch, scmp_arches = _goarch_and_arches(arch)
    held = set(capabilities.DOCKER_DEFAULT if caps is None else caps)
    capabilities.to_mask(held)
    kernel = kernel or _kernel_version()

    allowed = set(ALWAYS_ALLOWED) | set(ALLOWED_ON_ARCH.get(goarch, ()))
    if kernel >= (4, 8):
        allowed |= set(ALLOWED_SINCE_4_8)
    for cap, names in ALLOWED_WITH_CAPABILITY.items():
        if cap in held:
            allowed |= set(names)

    syscalls: list[dict] = [{"names": sorted(allowed), "action": "SCMP_ACT_ALLOW"}]
    syscalls.append(
        {
            "names": ["socket"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}],
        }
    )
    # One rule per value: conditions in one rule would all have to hold.
    for value in PERSONALITY_ALLOWED:
        syscalls.append(
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}],
            }
        )
    if "CAP_SYS_ADMIN" not in held:
        # clone without namespace flags is plain fork/thread creation; s390 swaps the first
        # two arguments of clone.
        flags_index = 1 if goarch in ("s390", "s390x") else 0
        syscalls.append(
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ALLOW",
                "args": [
                    {
                        "index": flags_index,
                        "value": CLONE_NAMESPACE_FLAGS,
                        "valueTwo": 0,
                        "op": "SCMP_CMP_MASKED_EQ",
                    }
                ],
            }
        )
        # clone3 passes flags in memory that seccomp cannot read: ENOSYS makes libc fall
        # back to clone, which the rule above can check.
        syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})

    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": list(scmp_arches),
        "syscalls": syscalls,
    }


def _goarch_and_arches(arch: str | None) -> tuple[str, tuple[str, ...]]:
    machine = arch or os.uname().machine
    return _ARCHES.get(machine, (machine, ()))


def _kernel_at_least(kernel: tuple[int, int], wanted: str) -> bool:
    return kernel >= _kernel_version(wanted)


def _applies(entry: dict, goarch: str, held: set[str], kernel: tuple[int, int]) -> bool:
    """Docker's includes/excludes: arches (GOARCH names), caps (all needed), minKernel."""
    excludes = entry.get("excludes") or {}
    includes = entry.get("includes") or {}
    if goarch in (excludes.get("arches") or ()):
        return False
    if any(cap in held for cap in excludes.get("caps") or ()):
        return False
    if excludes.get("minKernel") and _kernel_at_least(kernel, excludes["minKernel"]):
        return False
    if includes.get("arches") and goarch not in includes["arches"]:
        return False
    if not all(cap in held for cap in includes.get("caps") or ()):
        return False
    return not (includes.get("minKernel") and not _kernel_at_least(kernel, includes["minKernel"]))


def resolve_profile(
    profile: dict,
    arch: str | None = None,
    caps: Iterable[str] | None = None,
    kernel: tuple[int, int] | None = None,
) -> dict:
    """An OCI linux.seccomp object from a profile in OCI or Docker form (`security_opt:
    seccomp=file.json`): archMap, includes/excludes and "name" are resolved for this container
    the way Docker does; OCI input comes back unchanged in meaning."""
    goarch, scmp_arches = _goarch_and_arches(arch)
    held = set(capabilities.DOCKER_DEFAULT if caps is None else caps)
    kernel = kernel or _kernel_version()
    out: dict = {"defaultAction": profile["defaultAction"]}
    for key in ("defaultErrnoRet", "flags", "listenerPath", "listenerMetadata"):
        if key in profile:
            out[key] = profile[key]
    if profile.get("architectures"):
        out["architectures"] = list(profile["architectures"])
    elif profile.get("archMap"):
        for entry in profile["archMap"]:
            if scmp_arches and entry.get("architecture") == scmp_arches[0]:
                out["architectures"] = [scmp_arches[0], *(entry.get("subArchitectures") or ())]
    syscalls = []
    for entry in profile.get("syscalls") or ():
        if not _applies(entry, goarch, held, kernel):
            continue
        names = list(entry.get("names") or ())
        if entry.get("name"):
            names.append(entry["name"])
        if not names:
            raise ValueError(f"seccomp syscall entry without names: {entry}")
        rule = {"names": names, "action": entry["action"]}
        for key in ("errnoRet", "args"):
            if entry.get(key) is not None:
                rule[key] = entry[key]
        syscalls.append(rule)
    out["syscalls"] = syscalls
    return out


# -- loading an OCI seccomp object with libseccomp ---------------------------------------------

_ACTIONS_FIXED = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
_ACTION_ERRNO = 0x00050000
_ACTION_TRACE = 0x7FF00000

_OPERATORS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# enum scmp_filter_attr in seccomp.h
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_CTL_OPTIMIZE = 8
_ATTR_CTL_WAITKILL = 10

_FLAG_ATTRS = {
    "SECCOMP_FILTER_FLAG_TSYNC": _ATTR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": _ATTR_CTL_WAITKILL,
}

_MAX_SYSCALL_ARGS = 6
_NR_SCMP_ERROR = -1

_lib = None


def _libseccomp():
    """The ctypes handle on libseccomp.so.2, declared once per process."""
    global _lib
    if _lib is not None:
        return _lib
    import ctypes

    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as exc:
        raise OSError(f"libseccomp.so.2 not found (Debian package libseccomp2): {exc}") from exc

    class ArgCmp(ctypes.Structure):
        _fields_ = [
            ("arg", ctypes.c_uint),
            ("op", ctypes.c_int),
            ("datum_a", ctypes.c_uint64),
            ("datum_b", ctypes.c_uint64),
        ]

    ctx = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_init.restype = ctx
    lib.seccomp_release.argtypes = [ctx]
    lib.seccomp_release.restype = None
    lib.seccomp_attr_set.argtypes = [ctx, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_attr_set.restype = ctypes.c_int
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_add.argtypes = [ctx, ctypes.c_uint32]
    lib.seccomp_arch_add.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [
        ctx,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(ArgCmp),
    ]
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    lib.seccomp_load.argtypes = [ctx]
    lib.seccomp_load.restype = ctypes.c_int
    lib.seccomp_export_pfc.argtypes = [ctx, ctypes.c_int]
    lib.seccomp_export_pfc.restype = ctypes.c_int
    lib.ArgCmp = ArgCmp
    _lib = lib
    return lib


def _check(rc: int, what: str) -> None:
    if rc < 0:
        raise OSError(-rc, f"libseccomp {what}: {os.strerror(-rc)}")


def action_value(action: str, errno_ret: int | None = None) -> int:
    """libseccomp's number for an OCI action; ERRNO and TRACE default to EPERM like runc."""
    if action in _ACTIONS_FIXED:
        return _ACTIONS_FIXED[action]
    if action == "SCMP_ACT_ERRNO":
        return _ACTION_ERRNO | ((EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if action == "SCMP_ACT_TRACE":
        return _ACTION_TRACE | ((EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if action == "SCMP_ACT_NOTIFY":
        raise ValueError("seccomp action SCMP_ACT_NOTIFY (listenerPath) is not supported")
    raise ValueError(f"unknown seccomp action {action!r}")


def _conditions(args: list[dict]) -> list[list[tuple[int, int, int, int]]]:
    """Rules (lists of (index, op, a, b)) for one syscall entry's args.

    Conditions on distinct arguments are ANDed in one rule; when an argument index repeats,
    each condition becomes its own rule (ORed), the way runc reads such profiles.
    """
    conditions = []
    for arg in args:
        index = int(arg["index"])
        if not 0 <= index < _MAX_SYSCALL_ARGS:
            raise ValueError(f"seccomp argument index {index} out of range 0..5")
        op = arg["op"]
        if op not in _OPERATORS:
            raise ValueError(f"unknown seccomp operator {op!r}")
        conditions.append((index, _OPERATORS[op], int(arg["value"]), int(arg.get("valueTwo", 0))))
    indexes = [c[0] for c in conditions]
    if len(set(indexes)) == len(indexes):
        return [conditions]
    return [[c] for c in conditions]


class Filter:
    """A compiled libseccomp filter context; load() installs it on the calling thread."""

    def __init__(self, seccomp: dict) -> None:
        self._lib = _libseccomp()
        self._ctx = None
        default = action_value(seccomp["defaultAction"], seccomp.get("defaultErrnoRet"))
        self._ctx = self._lib.seccomp_init(default)
        if not self._ctx:
            raise OSError("libseccomp: seccomp_init failed")
        try:
            self._configure(seccomp, default)
        except BaseException:
            self.release()
            raise

    def _configure(self, seccomp: dict, default: int) -> None:
        lib, ctx = self._lib, self._ctx
        # process.noNewPrivileges decides no_new_privs, not the filter: as root with
        # CAP_SYS_ADMIN the filter loads without it.
        _check(lib.seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0), "clear NNP attribute")
        # A binary tree keeps a 400-syscall allow-list from costing a linear scan per call;
        # older libseccomp lacks the attribute and still works.
        lib.seccomp_attr_set(ctx, _ATTR_CTL_OPTIMIZE, 2)
        for flag in seccomp.get("flags") or ():
            if flag not in _FLAG_ATTRS:
                raise ValueError(f"unknown seccomp flag {flag!r}")
            _check(lib.seccomp_attr_set(ctx, _FLAG_ATTRS[flag], 1), f"flag {flag}")
        for arch in seccomp.get("architectures") or ():
            if not arch.startswith("SCMP_ARCH_"):
                raise ValueError(f"unknown seccomp architecture {arch!r}")
            token = lib.seccomp_arch_resolve_name(arch[len("SCMP_ARCH_") :].lower().encode())
            if token == 0:
                raise ValueError(f"seccomp architecture {arch!r} unknown to libseccomp")
            rc = lib.seccomp_arch_add(ctx, token)
            if rc != -17:  # EEXIST: the native arch is always there
                _check(rc, f"add architecture {arch}")
        for entry in seccomp.get("syscalls") or ():
            self._add_entry(entry, default)

    def _add_entry(self, entry: dict, default: int) -> None:
        lib, ctx = self._lib, self._ctx
        action = action_value(entry["action"], entry.get("errnoRet"))
        if action == default:
            return  # libseccomp refuses rules that repeat the default action
        names = list(entry.get("names") or ())
        if entry.get("name"):  # the pre-1.0 spelling
            names.append(entry["name"])
        rules = _conditions(list(entry.get("args") or ()))
        for name in names:
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == _NR_SCMP_ERROR:
                continue  # not a syscall on these architectures (runc skips them too)
            for rule in rules:
                array = (lib.ArgCmp * max(len(rule), 1))(*(lib.ArgCmp(*c) for c in rule))
                rc = lib.seccomp_rule_add_array(ctx, action, nr, len(rule), array)
                _check(rc, f"rule for {name}")

    def load(self) -> None:
        _check(self._lib.seccomp_load(self._ctx), "load")

    def export_pfc(self) -> str:
        """The filter in libseccomp's readable pseudo-filter code (for tests and debugging)."""
        import tempfile

        with tempfile.TemporaryFile() as out:
            _check(self._lib.seccomp_export_pfc(self._ctx, out.fileno()), "export")
            out.seek(0)
            return out.read().decode()

    def release(self) -> None:
        if self._ctx:
            self._lib.seccomp_release(self._ctx)
            self._ctx = None

    def __enter__(self) -> Filter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def compile_filter(seccomp: dict) -> Filter:
    return Filter(seccomp)


def load(seccomp: dict) -> None:
    """Install the OCI linux.seccomp object on the calling process (needs no_new_privs set
    or CAP_SYS_ADMIN). Syscall names this libseccomp does not know are skipped."""
    with Filter(seccomp) as compiled:
        compiled.load()
