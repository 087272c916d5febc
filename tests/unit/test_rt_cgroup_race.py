"""Another container's delete takes the shared default parent (/composer) away when it
is empty: a create between its mkdirs makes the parent again instead of failing."""

from __future__ import annotations

import os
import shutil

import pytest

from runtime.oci.cgroups import CgroupError
from tests.fakecgroupfs import FakeCgroupTree

ENGINE_PATH = "/composer/ctr"  # the cgroupsPath runtime.engine gives its containers


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
    cgroup = tree.open(ENGINE_PATH)
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
        tree.open(ENGINE_PATH).create()


def test_a_parent_removed_before_the_cpuset_copy_is_made_again(tmp_path):
    tree = FakeCgroupTree(tmp_path / "cg", "v1")
    real_mkdir = tree.kernel.mkdir
    gone: list[str] = []

    def mkdir(path: str) -> None:  # the leaf is made, then its parent vanishes at once
        real_mkdir(path)
        if path.endswith("/cpuset/composer/ctr") and not gone:
            shutil.rmtree(os.path.dirname(path))
            gone.append(path)

    tree.kernel.mkdir = mkdir
    cgroup = tree.open(ENGINE_PATH)
    cgroup.create()
    assert gone
    cpuset = cgroup.paths["cpuset"]
    assert tree.read(os.path.relpath(f"{cpuset}/cpuset.mems", tree.root)) == "0"
