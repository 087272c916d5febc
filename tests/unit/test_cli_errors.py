"""Which failures a command reports as one plain message, and which as our bug."""

from __future__ import annotations

from composer.cli.app import _is_operational
from runtime.engine import ContainerError
from runtime.oci.cgroups import CgroupError


def test_the_machines_state_is_reported_plainly():
    assert _is_operational(CgroupError("no cgroup filesystem is mounted under /sys/fs/cgroup"))
    assert _is_operational(ContainerError("container 0123 is not running"))


def test_a_bug_of_ours_is_not():
    assert not _is_operational(KeyError("id"))
    assert not _is_operational(TypeError("bad argument"))
