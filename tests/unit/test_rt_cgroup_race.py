"""Another container's delete takes the shared default parent (/composer) away when it
is empty: a create between its mkdirs makes the parent again instead of failing."""

from __future__ import annotations

import os
import shutil

import pytest

from runtime.oci.cgroups import CgroupError
from tests.fakecgroupfs import FakeCgroupTree


def _vanishing_parent(tree: FakeCgroupTree, times: int) -> list[str]:
    """The first `times` leaf mkdirs find their parent just removed, as after a delete."""
    gone: list[str] = []
    real_mkdir = tree.kernel.mkdir

    def mkdir(path: str) -> None:
        parent = os.path.dirname(path)
        if os.path.basename(parent) == "composer" and len(gone) < times:
            shutil.rmtree(parent)
            gone.append(parent)
        real_mkdir(path)

    tree.kernel.mkdir = mkdir
    return gone


def test_a_parent_removed_between_the_mkdirs_is_made_again(tmp_path):
    tree = FakeCgroupTree(tmp_path / "cg", "v1")
    gone = _vanishing_parent(tree, 2)
    cgroup = tree.open()
    cgroup.create()
    assert len(gone) == 2
    for d in cgroup.dirs():
        assert os.path.isdir(d)
    cpuset = cgroup.paths["cpuset"]
    assert tree.read(os.path.relpath(f"{cpuset}/cpuset.cpus", tree.root)) == "0-3"


def test_a_parent_that_keeps_vanishing_is_reported(tmp_path):
    tree = FakeCgroupTree(tmp_path / "cg", "v1")
    _vanishing_parent(tree, 100)
    with pytest.raises(CgroupError, match="cannot create"):
        tree.open().create()
