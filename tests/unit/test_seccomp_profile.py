"""Docker's default profile in OCI form, Docker-format resolution, and compiling with
libseccomp (compiling needs no root; loading is in tests/integration/test_seccomp_real.py)."""

from __future__ import annotations

import re

import pytest

from runtime.oci import capabilities, seccomp
from runtime.oci.spec import validate_config


def _allowed(profile: dict) -> set[str]:
    """Names allowed without argument conditions."""
    return {
        name
        for rule in profile["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args")
        for name in rule["names"]
    }


def _rules_for(profile: dict, name: str) -> list[dict]:
    return [rule for rule in profile["syscalls"] if name in rule["names"]]


def test_profile_shape_is_valid_oci():
    profile = seccomp.docker_default_profile(arch="x86_64", kernel=(6, 1))
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["defaultErrnoRet"] == 1
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    config = {"ociVersion": "1.3.0", "linux": {"seccomp": profile}}
    assert validate_config(config) == []


def test_ordinary_syscalls_are_allowed():
    allowed = _allowed(seccomp.docker_default_profile(arch="x86_64", kernel=(6, 1)))
    for name in ("read", "write", "openat", "execve", "mmap", "futex", "exit_group", "fork"):
        assert name in allowed
    assert {"arch_prctl", "modify_ldt"} <= allowed  # amd64 extras
    assert "riscv_flush_icache" not in allowed


def test_dangerous_syscalls_are_denied_without_capabilities():
    profile = seccomp.docker_default_profile(arch="x86_64", kernel=(6, 1))
    allowed = _allowed(profile)
    for name in (
        "mount",
        "umount2",
        "unshare",
        "setns",
        "pivot_root",
        "keyctl",
        "add_key",
        "request_key",
        "bpf",
        "reboot",
        "init_module",
        "kexec_load",
        "open_by_handle_at",
        "clock_settime",
        "userfaultfd",
    ):
        assert name not in allowed, name
    assert "chroot" in allowed  # CAP_SYS_CHROOT is one of Docker's 14
    # keyctl and friends never appear at all: the default action refuses them.
    for name in ("keyctl", "add_key", "pivot_root", "kexec_load"):
        assert _rules_for(profile, name) == []


def test_clone_allowed_only_without_namespace_flags():
    profile = seccomp.docker_default_profile(arch="x86_64", kernel=(6, 1))
    (clone,) = _rules_for(profile, "clone")
    (cond,) = clone["args"]
    assert cond["op"] == "SCMP_CMP_MASKED_EQ" and cond["index"] == 0
    assert cond["value"] == 0x7E020000 and cond.get("valueTwo", 0) == 0
    (clone3,) = _rules_for(profile, "clone3")
    assert clone3["action"] == "SCMP_ACT_ERRNO" and clone3["errnoRet"] == 38


def test_clone_flags_are_the_second_argument_on_s390x():
    profile = seccomp.docker_default_profile(arch="s390x", kernel=(6, 1))
    (clone,) = _rules_for(profile, "clone")
    assert clone["args"][0]["index"] == 1
    assert profile["architectures"] == ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"]


def test_sys_admin_opens_mount_unshare_and_plain_clone():
    profile = seccomp.docker_default_profile(
        arch="x86_64", caps=[*capabilities.DOCKER_DEFAULT, "CAP_SYS_ADMIN"], kernel=(6, 1)
    )
    allowed = _allowed(profile)
    assert {"mount", "umount2", "unshare", "setns", "clone", "clone3", "sethostname"} <= allowed
    assert all(rule.get("args") is None for rule in _rules_for(profile, "clone"))
    assert not [r for r in _rules_for(profile, "clone3") if r["action"] != "SCMP_ACT_ALLOW"]
    assert "pivot_root" not in allowed  # Docker never allows it, even with SYS_ADMIN


@pytest.mark.parametrize(
    ("cap", "names"),
    [
        ("CAP_SYS_PTRACE", {"kcmp", "pidfd_getfd", "process_madvise"}),
        ("CAP_SYS_CHROOT", {"chroot"}),
        ("CAP_SYS_TIME", {"settimeofday", "clock_settime"}),
        ("CAP_SYS_MODULE", {"init_module", "finit_module", "delete_module"}),
        ("CAP_SYS_BOOT", {"reboot"}),
        ("CAP_BPF", {"bpf"}),
        ("CAP_SYSLOG", {"syslog"}),
    ],
)
def test_capability_groups(cap, names):
    without = _allowed(seccomp.docker_default_profile(arch="x86_64", caps=[], kernel=(6, 1)))
    with_cap = _allowed(seccomp.docker_default_profile(arch="x86_64", caps=[cap], kernel=(6, 1)))
    assert names <= with_cap
    assert not names & without


def test_ptrace_only_on_kernels_from_4_8():
    assert "ptrace" in _allowed(seccomp.docker_default_profile(arch="x86_64", kernel=(4, 8)))
    assert "ptrace" not in _allowed(seccomp.docker_default_profile(arch="x86_64", kernel=(4, 4)))


def test_personality_only_harmless_values():
    rules = _rules_for(seccomp.docker_default_profile(arch="x86_64"), "personality")
    values = sorted(rule["args"][0]["value"] for rule in rules)
    assert values == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert all(rule["args"][0]["op"] == "SCMP_CMP_EQ" for rule in rules)


def test_socket_refuses_vsock_only():
    (socket,) = _rules_for(seccomp.docker_default_profile(arch="x86_64"), "socket")
    assert socket["args"] == [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]


def test_unknown_caps_in_profile_request_are_refused():
    with pytest.raises(ValueError):
        seccomp.docker_default_profile(caps=["CAP_MADE_UP"])


def test_kernel_version_parsing():
    assert seccomp._kernel_version("6.18.44-fc-v595") == (6, 18)
    assert seccomp._kernel_version("4.8") == (4, 8)
    assert seccomp._kernel_version("5.10.0-rc1+") == (5, 10)


# -- Docker-format profiles ----------------------------------------------------------------------


def _docker_format_profile() -> dict:
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [
            {
                "architecture": "SCMP_ARCH_X86_64",
                "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            },
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
        ],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"name": "getpid", "action": "SCMP_ACT_ALLOW", "comment": "old spelling"},
            {
                "names": ["mount"],
                "action": "SCMP_ACT_ALLOW",
                "includes": {"caps": ["CAP_SYS_ADMIN"]},
            },
            {
                "names": ["arch_prctl"],
                "action": "SCMP_ACT_ALLOW",
                "includes": {"arches": ["amd64"]},
            },
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ALLOW",
                "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390x"]},
            },
        ],
    }


def test_resolve_docker_format_for_a_default_container():
    out = seccomp.resolve_profile(_docker_format_profile(), arch="x86_64", kernel=(6, 1))
    assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    names = [n for rule in out["syscalls"] for n in rule["names"]]
    assert names == ["read", "write", "getpid", "arch_prctl", "ptrace", "clone"]
    assert all(set(rule) <= {"names", "action", "errnoRet", "args"} for rule in out["syscalls"])
    assert validate_config({"ociVersion": "1.3.0", "linux": {"seccomp": out}}) == []


def test_resolve_docker_format_with_sys_admin_old_kernel_other_arch():
    out = seccomp.resolve_profile(
        _docker_format_profile(), arch="aarch64", caps=["CAP_SYS_ADMIN"], kernel=(4, 4)
    )
    assert out["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    names = [n for rule in out["syscalls"] for n in rule["names"]]
    assert names == ["read", "write", "getpid", "mount"]


def test_resolve_keeps_oci_profiles():
    profile = seccomp.docker_default_profile(arch="x86_64")
    assert seccomp.resolve_profile(profile, arch="x86_64") == profile


# -- compiling with libseccomp (no load) ---------------------------------------------------------


def test_action_values():
    assert seccomp.action_value("SCMP_ACT_ALLOW") == 0x7FFF0000
    assert seccomp.action_value("SCMP_ACT_ERRNO") == 0x00050001
    assert seccomp.action_value("SCMP_ACT_ERRNO", 38) == 0x00050026
    assert seccomp.action_value("SCMP_ACT_KILL_PROCESS") == 0x80000000
    with pytest.raises(ValueError):
        seccomp.action_value("SCMP_ACT_MAYBE")
    with pytest.raises(ValueError):
        seccomp.action_value("SCMP_ACT_NOTIFY")


def test_compiled_default_profile_has_our_rules():
    with seccomp.compile_filter(seccomp.docker_default_profile()) as compiled:
        pfc = compiled.export_pfc()
    assert "filter for arch x86_64" in pfc
    assert "filter for arch x86 " in pfc or "filter for arch x86\n" in pfc
    assert re.search(r'syscall "read" \(0\)', pfc)
    assert 'syscall "mount"' not in pfc
    assert 'syscall "unshare"' not in pfc
    assert 'syscall "clone"' in pfc
    assert "action ERRNO(1)" in pfc  # the default
    assert "action ERRNO(38)" in pfc  # clone3


def test_same_index_conditions_become_separate_rules():
    rules = seccomp._conditions(
        [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
        ]
    )
    assert rules == [[(0, 4, 1, 0)], [(0, 4, 2, 0)]]
    anded = seccomp._conditions(
        [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 2, "value": 0xF0, "valueTwo": 0x10, "op": "SCMP_CMP_MASKED_EQ"},
        ]
    )
    assert anded == [[(0, 4, 1, 0), (2, 7, 0xF0, 0x10)]]


def test_unknown_syscalls_are_skipped_and_bad_input_refused():
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["no_such_syscall_anywhere", "getpid"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},  # same as default: skipped
        ],
    }
    with seccomp.compile_filter(profile) as compiled:
        pfc = compiled.export_pfc()
    assert 'syscall "getpid"' in pfc
    assert "no_such_syscall" not in pfc
    assert 'syscall "read"' not in pfc
    bad_op = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["read"],
                "action": "SCMP_ACT_KILL",
                "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}],
            }
        ],
    }
    with pytest.raises(ValueError, match="SCMP_CMP_XX"):
        seccomp.compile_filter(bad_op)
    with pytest.raises(ValueError, match="SCMP_ARCH_VAX"):
        seccomp.compile_filter(
            {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}
        )
    with pytest.raises(ValueError, match="FLAG_NOPE"):
        seccomp.compile_filter({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["FLAG_NOPE"]})


def test_import_is_cheap():
    import subprocess
    import sys

    code = "import sys, runtime.oci.seccomp; print(sorted(m for m in ('ctypes', 'jsonschema', 'platform') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
