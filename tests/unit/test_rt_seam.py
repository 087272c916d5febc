"""Seam functions the runtime added for its state files, on the real kernel."""

from __future__ import annotations

import errno

import pytest

from runtime.oci import syscalls


def test_rename_exchange_swaps_two_files(tmp_path):
    new, current = tmp_path / "state.json.tmp", tmp_path / "state.json"
    new.write_text("created")
    current.write_text("creating")
    syscalls.rename_exchange(str(new), str(current))
    assert current.read_text() == "created"
    assert new.read_text() == "creating"


def test_rename_exchange_needs_both_paths(tmp_path):
    (tmp_path / "a").write_text("a")
    with pytest.raises(OSError) as caught:
        syscalls.rename_exchange(str(tmp_path / "a"), str(tmp_path / "missing"))
    assert caught.value.errno == errno.ENOENT
    assert (tmp_path / "a").read_text() == "a"


def test_rlimit_table_agrees_with_the_resource_module():
    import resource

    known = {name: getattr(resource, name) for name in syscalls.RLIMITS if hasattr(resource, name)}
    assert len(known) >= 15  # Python lacks RLIMIT_LOCKS only
    assert all(syscalls.RLIMITS[name] == number for name, number in known.items())


def test_setrlimit_sets_what_getrlimit_reads():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    lowered = 0 if soft != 0 else hard
    try:
        syscalls.setrlimit(syscalls.RLIMITS["RLIMIT_CORE"], lowered, hard)
        assert resource.getrlimit(resource.RLIMIT_CORE) == (lowered, hard)
        with pytest.raises(OSError) as caught:  # soft above hard
            syscalls.setrlimit(syscalls.RLIMITS["RLIMIT_CORE"], 2, 1)
        assert caught.value.errno == errno.EINVAL
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))
