"""When `create` may clone the init straight into its namespaces, and the light syscall seam."""

from __future__ import annotations

import subprocess
import sys

import pytest

from runtime.oci import container, syscalls

PLAIN = syscalls.CLONE_NEWPID | syscalls.CLONE_NEWNS | syscalls.CLONE_NEWNET


def _config(**process) -> dict:
    return {"process": {"args": ["true"], **process}}


def test_new_namespaces_only_clone_directly():
    cgroupns = PLAIN | syscalls.CLONE_NEWCGROUP  # unshared by the init after its cgroups
    assert container._clones_directly(_config(), [], PLAIN)
    assert container._clones_directly(_config(), [], cgroupns)
    final_only = {"execCPUAffinity": {"final": "0"}}
    assert container._clones_directly(_config(**final_only), [], PLAIN)


@pytest.mark.parametrize(
    ("process", "joins", "flags"),
    [
        ({}, [("network", "/proc/1/ns/net")], PLAIN),  # setns comes before the new ones
        ({}, [], PLAIN | syscalls.CLONE_NEWUSER),  # the parent maps ids in between
        ({}, [], PLAIN | syscalls.CLONE_NEWTIME),  # offsets before the first process
        ({"execCPUAffinity": {"initial": "0"}}, [], PLAIN),  # before joining the cgroup
    ],
)
def test_what_needs_stage_one(process, joins, flags):
    assert not container._clones_directly(_config(**process), joins, flags)


def test_syscall_seam_loads_only_the_c_half_of_ctypes():
    code = "import sys, runtime.oci.syscalls; print('ctypes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_program_exits_early_with_its_output_and_status(tmp_path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "runtime.cli", "--root", str(tmp_path), *args]
        return subprocess.run(argv, capture_output=True, text=True)  # stdout is a pipe

    listed = cli("list", "--format", "json")
    assert (listed.returncode, listed.stdout.strip()) == (0, "[]")
    missing = cli("state", "nope")
    assert missing.returncode == 1 and "'nope' does not exist" in missing.stderr
