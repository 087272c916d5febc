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
