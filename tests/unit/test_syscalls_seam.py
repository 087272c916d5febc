"""The ctypes seam itself: results agree with what the kernel reports in /proc."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from runtime.oci import syscalls


def _status_mask(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1], 16)
    raise AssertionError(field)


def test_capget_matches_proc_status():
    effective, permitted, inheritable = syscalls.capget()
    assert effective == _status_mask("CapEff")
    assert permitted == _status_mask("CapPrm")
    assert inheritable == _status_mask("CapInh")


def test_prctl_reads_no_new_privs_like_proc():
    assert syscalls.prctl(syscalls.PR_GET_NO_NEW_PRIVS) == _status_mask("NoNewPrivs")


def test_failed_mount_raises_oserror_with_errno(tmp_path):
    with pytest.raises(OSError) as caught:
        syscalls.mount(None, str(tmp_path / "missing"), None, syscalls.MS_REMOUNT)
    assert caught.value.errno in (errno.ENOENT, errno.EPERM, errno.EINVAL)
    assert "missing" in str(caught.value)


def test_capset_with_current_sets_is_accepted():
    effective, permitted, inheritable = syscalls.capget()
    syscalls.capset(effective, permitted, inheritable)
    assert syscalls.capget() == (effective, permitted, inheritable)


def test_bounding_set_read_agrees_with_proc():
    bounding = _status_mask("CapBnd")
    for cap in range(int(Path("/proc/sys/kernel/cap_last_cap").read_text()) + 1):
        assert syscalls.prctl(syscalls.PR_CAPBSET_READ, cap) == (bounding >> cap) & 1
