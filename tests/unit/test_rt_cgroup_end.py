"""The end of a container's cgroup: an empty cgroup goes with plain rmdirs (delete's usual
case, no tree walk, no signals); anything left in it takes the full kill and destroy."""

from __future__ import annotations

import os

import pytest

from runtime.oci.container import _destroy_cgroup
from tests.fakecgroupfs import FakeCgroupTree

ENGINE_PATH = "/composer/ctr"  # the cgroupsPath runtime.engine gives its containers


@pytest.fixture(params=["v1", "v2", "hybrid"])
def tree(tmp_path, request):
    return FakeCgroupTree(tmp_path / "cg", request.param)


def test_an_empty_cgroup_is_removed_without_signals(tree):
    cgroup = tree.open(ENGINE_PATH)
    cgroup.create()
    assert cgroup.remove_if_empty()
    assert not any(os.path.exists(d) for d in cgroup.dirs())
    assert not any(os.path.exists(os.path.dirname(d)) for d in cgroup.dirs())  # /composer
    assert tree.kernel.signals == []


def test_a_cgroup_with_a_process_is_left_to_kill_and_destroy(tree):
    cgroup = tree.open(ENGINE_PATH)
    cgroup.create()
    cgroup.add(4242)
    assert not cgroup.remove_if_empty()
    _destroy_cgroup(cgroup)
    assert (4242, 9) in tree.kernel.signals
    assert not any(os.path.exists(d) for d in cgroup.dirs())


def test_a_cgroup_with_a_child_cgroup_is_not_taken_by_rmdir(tree):
    cgroup = tree.open(ENGINE_PATH)
    cgroup.create()
    child = cgroup.dirs()[0] + "/nested"
    tree.kernel.mkdir(child)
    assert not cgroup.remove_if_empty()
    _destroy_cgroup(cgroup)
    assert not os.path.exists(child) and not os.path.exists(cgroup.dirs()[0])


def test_already_removed_directories_count_as_removed(tree):
    cgroup = tree.open(ENGINE_PATH)
    assert cgroup.remove_if_empty()  # never created


def test_parents_of_a_nested_path_that_create_made_go_with_it(tree):
    cgroup = tree.open("/outer/inner/ctr")
    made = cgroup.create()
    assert made and all(p.endswith(("/outer", "/outer/inner")) for p in made)
    _destroy_cgroup(cgroup)
    cgroup.remove_parents(made)
    assert not any(os.path.exists(p) for p in made)


def test_a_parent_that_existed_before_or_is_still_used_stays(tree):
    first = tree.open("/shared/a")
    first_made = first.create()
    second = tree.open("/shared/b")
    assert second.create() == []  # /shared was there already
    _destroy_cgroup(first)
    first.remove_parents(first_made)  # /shared still holds b
    assert all(os.path.isdir(p) for p in first_made)
    _destroy_cgroup(second)
    second.remove_parents([])
    assert all(os.path.isdir(p) for p in first_made)  # not second's to remove


def test_the_default_parent_is_not_listed(tree):
    cgroup = tree.open(ENGINE_PATH)
    assert cgroup.create() == []


def test_remove_parents_stays_inside_the_hierarchies(tree, tmp_path):
    outside = tmp_path / "not-a-cgroup"
    outside.mkdir()
    cgroup = tree.open("/x/ctr")
    cgroup.remove_parents([str(outside), cgroup.dirs()[0] + "/../../../not-a-cgroup"])
    assert outside.is_dir()
