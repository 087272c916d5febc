"""A config without cgroupsPath: the container's cgroup is /<id> in every hierarchy, one
level (as crun), made new by create; a directory of that name already there is someone
else's and is refused without touching it. A create failing half-way leaves nothing."""

from __future__ import annotations

import errno
import os

import pytest

from runtime.oci.cgroups import CgroupError
from tests.fakecgroupfs import FakeCgroupTree


@pytest.fixture(params=["v1", "v2", "hybrid"])
def tree(tmp_path, request):
    return FakeCgroupTree(tmp_path / "cg", request.param)


def _counting(tree: FakeCgroupTree) -> dict[str, list[str]]:
    calls: dict[str, list[str]] = {"mkdir": [], "rmdir": []}
    for name in calls:
        real = getattr(tree.kernel, name)

        def counted(path, real=real, name=name):
            calls[name].append(path)
            real(path)

        setattr(tree.kernel, name, counted)
    return calls


def _entries(tree: FakeCgroupTree) -> set[str]:
    found = set()
    for top, dirs, _files in os.walk(tree.root):
        found.update(os.path.join(top, d) for d in dirs)
    return found


def test_default_is_one_directory_per_hierarchy_at_its_root(tree):
    calls = _counting(tree)
    before = _entries(tree)
    cgroup = tree.open(None, "web-1")
    assert cgroup.create() == []
    mountpoints = tree.mountpoints()
    assert sorted(calls["mkdir"]) == sorted(os.path.join(m, "web-1") for m in mountpoints)
    assert _entries(tree) - before == set(calls["mkdir"])
    assert cgroup.remove_if_empty()
    assert sorted(calls["rmdir"]) == sorted(calls["mkdir"])
    assert _entries(tree) == before


def test_a_directory_of_that_name_is_refused_and_left_alone(tree):
    before = _entries(tree)
    theirs = os.path.join(tree.mountpoints()[-1], "docker")
    tree.kernel.mkdir(theirs)
    tree.move_pid(theirs, 4242)
    with pytest.raises(CgroupError, match="exists already") as caught:
        tree.open(None, "docker").create()
    assert caught.value.errno == errno.EEXIST
    assert _entries(tree) == before | {theirs}  # ours undone, theirs kept
    assert tree.procs(theirs) == [4242]
    assert tree.kernel.signals == []


def test_an_explicit_path_that_exists_is_joined(tree):
    for mountpoint in tree.mountpoints():
        tree.kernel.mkdir(os.path.join(mountpoint, "pod"))
    cgroup = tree.open("/pod", "ctr")
    cgroup.create()
    assert all(os.path.isdir(d) for d in cgroup.dirs())


def test_a_create_failing_half_way_removes_what_it_made(tree):
    before = _entries(tree)
    real_mkdir = tree.kernel.mkdir
    made: list[str] = []

    def mkdir(path: str) -> None:
        if len(made) == 2:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        real_mkdir(path)
        made.append(path)

    tree.kernel.mkdir = mkdir
    cgroup = tree.open("/composer/deep/ctr", "ctr")
    with pytest.raises(CgroupError, match="Permission denied"):
        cgroup.create()
    assert len(made) == 2
    assert _entries(tree) == before
    assert cgroup.made_parents == []


def test_the_cgroup2_directory_first_then_the_rest(tmp_path):
    tree = FakeCgroupTree(tmp_path / "cg", "hybrid")
    calls = _counting(tree)
    cgroup = tree.open(None, "web-1")
    cgroup.create(cgroup.layout.unified)  # what the init is born in
    assert calls["mkdir"] == [os.path.join(tree.unified, "web-1")]
    cgroup.create()
    assert len(calls["mkdir"]) == len(tree.mountpoints())  # the cgroup2 one is not made again
    assert all(os.path.isdir(d) for d in cgroup.dirs())


def test_a_refusal_after_the_cgroup2_directory_leaves_only_that_to_clean_up(tmp_path):
    from runtime.oci.container import _destroy_cgroup

    tree = FakeCgroupTree(tmp_path / "cg", "hybrid")
    theirs = os.path.join(tree.root, "pids", "web-1")
    tree.kernel.mkdir(theirs)
    tree.move_pid(theirs, 4242)
    cgroup = tree.open(None, "web-1")
    cgroup.create(cgroup.layout.unified)
    with pytest.raises(CgroupError, match="exists already"):
        cgroup.create()
    assert cgroup.dirs() == [os.path.join(tree.unified, "web-1")]  # all it may clean up
    _destroy_cgroup(cgroup)
    assert not os.path.exists(os.path.join(tree.unified, "web-1"))
    assert tree.procs(theirs) == [4242]
    assert tree.kernel.signals == []
