"""Seccomp on the real kernel: Docker's default profile loaded in a forked child, probed from
inside; and our build_config output run by crun and runc on a busybox rootfs."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import signal
import socket
from pathlib import Path

import pytest
from rootfs import make_busybox_rootfs, write_config

from runtime.oci import capabilities, seccomp, syscalls
from runtime.oci.spec import ContainerSpec, build_config, validate_config

# Raw numbers for syscalls the runtime itself never makes, so they are not in its seam.
_NR = {
    "x86_64": {
        "personality": 135,
        "keyctl": 250,
        "add_key": 248,
        "bpf": 321,
        "clone": 56,
        "userfaultfd": 323,
        "getppid": 110,
        "getsid": 124,
    },
    "aarch64": {
        "personality": 92,
        "keyctl": 219,
        "add_key": 217,
        "bpf": 280,
        "clone": 220,
        "userfaultfd": 282,
        "getppid": 173,
        "getsid": 156,
    },
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

AF_VSOCK = 40
KEYCTL_GET_KEYRING_ID = 0
KEY_SPEC_SESSION_KEYRING = -3
KEY_SPEC_PROCESS_KEYRING = -2
ADDR_NO_RANDOMIZE = 0x0040000
CLONE_FS = 0x200


def _nr(name: str) -> int:
    machine = os.uname().machine
    if machine not in _NR:
        pytest.fail(f"no syscall numbers for {machine} in this test")
    return _NR[machine][name]


def _raw(name: str, *args: int | bytes | None) -> int:
    """errno of a raw syscall, 0 when it succeeded."""
    ctypes.set_errno(0)
    c_args = [ctypes.c_long(a) if isinstance(a, int) else ctypes.c_char_p(a) for a in args]
    result = _libc.syscall(ctypes.c_long(_nr(name)), *c_args)
    return ctypes.get_errno() if result == -1 else 0


def _errno_of(call, *args) -> int:
    try:
        call(*args)
    except OSError as exc:
        return exc.errno
    return 0


def _in_child(probe) -> tuple[dict | None, int]:
    """Run probe() in a forked child; its JSON result and wait status come back."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_end)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGSYS would dump core
            payload = json.dumps(probe())
        except BaseException as exc:
            payload, code = json.dumps({"error": repr(exc)}), 1
        try:
            os.write(write_end, payload.encode())
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    return (json.loads(data) if data else None), status


def _status_fields() -> dict:
    with open("/proc/self/status") as f:
        pairs = (line.split(":", 1) for line in f if ":" in line)
        return {k: v.strip() for k, v in pairs}


def _fork_and_reap() -> int:
    pid = os.fork()  # clone without namespace flags
    if pid == 0:
        os._exit(7)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _probe_everything(tmp_dir: str) -> dict:
    out = {
        "unshare_newns": _errno_of(syscalls.unshare, syscalls.CLONE_NEWNS),
        # Each call below fails with another errno if the filter lets it reach the kernel,
        # so nothing on the host changes even when the filter is missing.
        "mount": _errno_of(syscalls.mount, "none", tmp_dir, "composer-no-such-fs"),
        "umount2": _errno_of(syscalls.umount2, "/composer-no-such-mount-point"),
        "pivot_root": _errno_of(syscalls.pivot_root, "/composer-no-a", "/composer-no-b"),
        "setns": _errno_of(syscalls.setns, -1, 0),
        "sethostname": _errno_of(syscalls.sethostname, "x" * 100),
        "keyctl": _raw("keyctl", KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0),
        "add_key": _raw(
            "add_key", b"composer-no-such-type", b"d", None, 0, KEY_SPEC_PROCESS_KEYRING
        ),
        "bpf": _raw("bpf", 9999, 0, 0),
        "clone_newns": _raw("clone", syscalls.CLONE_NEWNS | CLONE_FS, 0, 0, 0, 0),
        "personality_no_randomize": _raw("personality", ADDR_NO_RANDOMIZE),
        "userfaultfd": _raw("userfaultfd", 0),
        "socket_vsock": _errno_of(socket.socket, AF_VSOCK, socket.SOCK_STREAM),
        # ordinary work
        "personality_query": _raw("personality", 0xFFFFFFFF),
        "fork_exit_code": _fork_and_reap(),
        "getpid_matches": os.getpid() == int(_status_fields()["Pid"]),
        "chroot_slash": _errno_of(os.chroot, "/"),  # CAP_SYS_CHROOT is a default cap
        "uname": os.uname().sysname,
    }
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        out["udp_port"] = udp.getsockname()[1]
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"ping")
        out["socketpair"] = right.recv(4).decode()
    status = _status_fields()
    out["Seccomp"] = status["Seccomp"]
    out["NoNewPrivs"] = status["NoNewPrivs"]
    return out


def test_docker_default_profile_denies_namespace_mount_and_key_syscalls(tmp_path):
    profile = seccomp.docker_default_profile()

    def probe():
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
        seccomp.load(profile)
        return _probe_everything(str(tmp_path))

    result, status = _in_child(probe)
    assert os.waitstatus_to_exitcode(status) == 0, result
    for name in (
        "unshare_newns",
        "mount",
        "umount2",
        "pivot_root",
        "setns",
        "sethostname",
        "keyctl",
        "add_key",
        "bpf",
        "clone_newns",
        "personality_no_randomize",
        "userfaultfd",
        "socket_vsock",
    ):
        assert result[name] == errno.EPERM, (name, result[name])
    assert result["personality_query"] == 0
    assert result["fork_exit_code"] == 7
    assert result["getpid_matches"] is True
    assert result["chroot_slash"] == 0
    assert result["uname"] == "Linux"
    assert result["udp_port"] > 0
    assert result["socketpair"] == "ping"
    assert result["Seccomp"] == "2"
    assert result["NoNewPrivs"] == "1"


def test_without_the_filter_the_same_probes_reach_the_kernel(tmp_path):
    """The control: every EPERM above comes from the filter, not from the probes."""

    def probe():
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
        return _probe_everything(str(tmp_path))

    result, status = _in_child(probe)
    assert os.waitstatus_to_exitcode(status) == 0, result
    assert result["mount"] == errno.ENODEV
    assert result["umount2"] in (errno.ENOENT, errno.EINVAL)
    assert result["setns"] == errno.EBADF
    assert result["sethostname"] == errno.EINVAL
    assert result["bpf"] == errno.EINVAL
    assert result["clone_newns"] == errno.EINVAL
    assert result["unshare_newns"] == 0
    assert result["Seccomp"] == "0"


def test_sys_admin_opens_unshare_and_mount_to_the_kernel(tmp_path):
    profile = seccomp.docker_default_profile(caps=[*capabilities.DOCKER_DEFAULT, "CAP_SYS_ADMIN"])

    def probe():
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
        seccomp.load(profile)
        return _probe_everything(str(tmp_path))

    result, status = _in_child(probe)
    assert os.waitstatus_to_exitcode(status) == 0, result
    assert result["unshare_newns"] == 0
    assert result["mount"] == errno.ENODEV
    assert result["clone_newns"] == errno.EINVAL
    assert result["keyctl"] == errno.EPERM  # no capability opens the keyring syscalls
    assert result["Seccomp"] == "2"


def test_custom_profile_errno_args_and_unknown_names():
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES},
            {
                "names": ["socket"],
                "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": socket.AF_UNIX, "op": "SCMP_CMP_EQ"}],
            },
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EINVAL,
                # same argument twice: either value is refused
                "args": [
                    {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 0x20000, "op": "SCMP_CMP_EQ"},
                ],
            },
            {"names": ["composer_no_such_syscall", "getsid"], "action": "SCMP_ACT_ERRNO"},
        ],
    }

    def probe():
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
        seccomp.load(profile)
        return {
            "getppid": _raw("getppid"),
            "unix": _errno_of(socket.socket, socket.AF_UNIX, socket.SOCK_STREAM),
            "inet": _errno_of(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()),
            "personality_8": _raw("personality", 8),
            "personality_linux32": _raw("personality", 0x20000),
            "personality_query": _raw("personality", 0xFFFFFFFF),
            "getsid": _raw("getsid", 0),
        }

    result, status = _in_child(probe)
    assert os.waitstatus_to_exitcode(status) == 0, result
    assert result == {
        "getppid": errno.EACCES,
        "unix": errno.EPERM,
        "inet": 0,
        "personality_8": errno.EINVAL,
        "personality_linux32": errno.EINVAL,
        "personality_query": 0,
        "getsid": errno.EPERM,
    }


def test_kill_process_action_kills_with_sigsys():
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}],
    }

    def probe():
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
        seccomp.load(profile)
        _raw("getppid")
        return {"survived": True}

    result, status = _in_child(probe)
    assert result is None
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS


def test_load_leaves_no_new_privs_to_the_config():
    """As root with CAP_SYS_ADMIN the filter loads without no_new_privs, as runc does: the
    config's process.noNewPrivileges decides, not the seccomp loader."""

    def probe():
        seccomp.load({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []})
        return _status_fields()

    result, status = _in_child(probe)
    assert os.waitstatus_to_exitcode(status) == 0, result
    assert result["Seccomp"] == "2"
    assert result["NoNewPrivs"] == "0"


# -- the same bundle under crun and runc ---------------------------------------------------------

_SCRIPT = (
    "echo hostname=$(hostname); "
    "grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status | tr -d ' \\t' "
    "| sed 's/:/=/'; "
    "mount -t tmpfs none /mnt 2>/dev/null; echo mount=$?; "
    "unshare -m true 2>/dev/null; echo unshare=$?; "
    "touch /sys/composer-probe 2>/dev/null; echo sys_write=$?; "
    "echo id=$(id -u):$(id -g); echo cwd=$(pwd); echo env_A=$A"
)


def _output_fields(stdout: str) -> dict:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


def _remove_cgroup(name: str) -> None:
    for controller in Path("/sys/fs/cgroup").iterdir():
        leftover = controller / name.lstrip("/")
        if leftover.is_dir():
            leftover.rmdir()


@pytest.fixture
def busybox_config_bundle(tmp_path: Path):
    bundle = tmp_path / "spec-bundle"
    make_busybox_rootfs(bundle / "rootfs")
    name = f"composer-r3-{os.getpid()}-{tmp_path.name}"[:60]
    config = build_config(
        ContainerSpec(
            rootfs="rootfs",
            args=["sh", "-c", _SCRIPT],
            env=["A=from-spec"],
            cwd="/tmp",
            hostname="spec-host",
            readonly_rootfs=True,
            no_new_privileges=True,
            cgroups_path=f"/{name}",
        )
    )
    assert validate_config(config) == []
    write_config(bundle, config)
    yield bundle
    _remove_cgroup(name)


@pytest.mark.parametrize("runtime_name", ["runtime", "crun", "runc"])
def test_build_config_runs_under_each_runtime(runtime_name, busybox_config_bundle, request):
    cli = request.getfixturevalue(runtime_name)
    container_id = cli.new_id("r3")
    result = cli("run", "--bundle", str(busybox_config_bundle), container_id)
    fields = _output_fields(result.stdout)
    default_mask = f"{capabilities.to_mask(capabilities.DOCKER_DEFAULT):016x}"
    assert fields["hostname"] == "spec-host"
    assert fields["CapEff"] == default_mask
    assert fields["CapBnd"] == default_mask
    assert fields["Seccomp"] == "2"
    assert fields["NoNewPrivs"] == "1"
    assert fields["mount"] != "0"
    assert fields["unshare"] != "0"
    assert fields["sys_write"] != "0"
    assert fields["id"] == "0:0"
    assert fields["cwd"] == "/tmp"
    assert fields["env_A"] == "from-spec"


@pytest.mark.parametrize("runtime_name", ["runtime", "crun", "runc"])
def test_privileged_config_runs_under_each_runtime(runtime_name, tmp_path, request):
    cli = request.getfixturevalue(runtime_name)
    bundle = tmp_path / "privileged-bundle"
    make_busybox_rootfs(bundle / "rootfs")
    name = f"composer-r3p-{os.getpid()}-{tmp_path.name}"[:60]
    script = (
        "grep -E '^(CapEff|Seccomp):' /proc/self/status | tr -d ' \\t' | sed 's/:/=/'; "
        "echo devices=$(ls /dev | wc -l); "
        "grep -q ' /sys sysfs rw,' /proc/mounts; echo sys_rw=$?"
    )
    config = build_config(
        ContainerSpec(
            rootfs="rootfs", args=["sh", "-c", script], privileged=True, cgroups_path=f"/{name}"
        )
    )
    write_config(bundle, config)
    try:
        result = cli("run", "--bundle", str(bundle), cli.new_id("r3p"))
    finally:
        _remove_cgroup(name)
    fields = _output_fields(result.stdout)
    assert fields["CapEff"] == f"{capabilities.to_mask(capabilities.available()):016x}"
    assert fields["Seccomp"] == "0"
    assert int(fields["devices"]) > 20  # the host's devices, not the default dozen
    assert fields["sys_rw"] == "0"


@pytest.mark.parametrize("runtime_name", ["runtime", "crun", "runc"])
def test_non_root_user_keeps_no_effective_capabilities(runtime_name, tmp_path, request):
    """Inheritable and ambient stay empty, so execve as uid 65534 leaves nothing effective
    while the bounding set is still Docker's."""
    cli = request.getfixturevalue(runtime_name)
    bundle = tmp_path / "nobody-bundle"
    make_busybox_rootfs(bundle / "rootfs")
    name = f"composer-r3n-{os.getpid()}-{tmp_path.name}"[:60]
    script = (
        "grep -E '^Cap(Eff|Prm|Bnd|Amb):' /proc/self/status | tr -d ' \\t' | sed 's/:/=/'; "
        "echo id=$(id -u):$(id -g):$(id -G | tr ' ' ,)"
    )
    config = build_config(
        ContainerSpec(
            rootfs="rootfs",
            args=["sh", "-c", script],
            uid=65534,
            gid=65534,
            additional_gids=[1000],
            cgroups_path=f"/{name}",
        )
    )
    write_config(bundle, config)
    try:
        result = cli("run", "--bundle", str(bundle), cli.new_id("r3n"))
    finally:
        _remove_cgroup(name)
    fields = _output_fields(result.stdout)
    assert fields["CapEff"] == fields["CapPrm"] == fields["CapAmb"] == "0" * 16
    assert fields["CapBnd"] == f"{capabilities.to_mask(capabilities.DOCKER_DEFAULT):016x}"
    assert fields["id"] == "65534:65534:65534,1000"
