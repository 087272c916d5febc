"""When `create` may clone the init straight into its namespaces, and the light syscall seam."""

from __future__ import annotations

import subprocess
import sys

import pytest

from runtime.oci import spawn, syscalls

PLAIN = syscalls.CLONE_NEWPID | syscalls.CLONE_NEWNS | syscalls.CLONE_NEWNET


def _config(**process) -> dict:
    return {"process": {"args": ["true"], **process}}


def test_new_namespaces_only_clone_directly():
    cgroupns = PLAIN | syscalls.CLONE_NEWCGROUP  # unshared by the init after its cgroups
    assert spawn._clones_directly(_config(), [], PLAIN)
    assert spawn._clones_directly(_config(), [], cgroupns)
    final_only = {"execCPUAffinity": {"final": "0"}}
    assert spawn._clones_directly(_config(**final_only), [], PLAIN)


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
    assert not spawn._clones_directly(_config(**process), joins, flags)


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


def test_commands_that_make_no_process_leave_the_spawning_side_unloaded(tmp_path):
    code = (
        "import sys; from runtime.cli import _main;"
        f"_main(['--root', {str(tmp_path)!r}, 'state', 'nope']);"
        f"_main(['--root', {str(tmp_path)!r}, 'list']);"
        "spawning = {'runtime.oci.spawn', 'runtime.oci.linux', 'runtime.oci.syscalls'};"
        "print(sorted(spawning & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
