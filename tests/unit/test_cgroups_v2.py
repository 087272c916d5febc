"""cgroups on a unified (v2) fake tree: paths, create, every resource mapping, stats, freezer,
kill and destroy."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.oci.cgroup_limits import (
    blkio_weight_to_io_weight,
    shares_to_weight,
    swap_to_v2,
    weight_to_shares,
)
from runtime.oci.cgroups import CgroupError, clean_cgroups_path
from tests.fakecgroupfs import FakeCgroupTree

CTR = "composer/ctr"
ENGINE_PATH = "/composer/ctr"  # the cgroupsPath runtime.engine gives its containers


@pytest.fixture
def tree(tmp_path):
    return FakeCgroupTree(tmp_path / "cg", "v2")


@pytest.fixture
def cg(tree):
    cgroup = tree.open(ENGINE_PATH)
    cgroup.create()
    return cgroup


def test_detects_unified_mode_and_default_path(tree):
    cg = tree.open(None, "abc")
    assert cg.mode == "v2"
    assert cg.path == "/abc"
    assert cg.paths == {"unified": os.path.join(tree.root, "abc")}


def test_absolute_path_is_taken_from_the_hierarchy_root(tree):
    cg = tree.open("/machine/web-1", "ignored")
    assert cg.paths["unified"] == os.path.join(tree.root, "machine/web-1")


def test_relative_path_is_below_the_callers_own_cgroup(tree):
    cg = tree.open("pods/web", "x")
    assert cg.path == "pods/web"
    assert cg.paths["unified"] == os.path.join(tree.root, "user.slice/session-1.scope/pods/web")


@pytest.mark.parametrize(
    ("given", "expected"),
    [("/../../etc", "etc"), ("/a/../../b", "b"), ("//x//y/", "x/y"), ("/a/./b", "a/b")],
)
def test_dot_dot_cannot_climb_out_of_the_hierarchy(tree, given, expected):
    cg = tree.open(given)
    assert cg.paths["unified"] == os.path.join(tree.root, expected)


def test_create_with_a_relative_path_nests_below_own_cgroup(tree):
    cg = tree.open("pods/web")
    cg.create()
    cg.apply({"pids": {"limit": 4}})
    assert tree.read("user.slice/session-1.scope/pods/web/pids.max") == "4"
    assert "pids" in tree.read("user.slice/session-1.scope/cgroup.subtree_control").split()


def test_relative_dot_dot_stays_below_own_cgroup(tree):
    cg = tree.open("../../../escape")
    assert cg.paths["unified"] == os.path.join(tree.root, "user.slice/session-1.scope/escape")


@pytest.mark.parametrize("path", ["/", "/..", "//"])
def test_root_cgroup_is_refused(tree, path):
    with pytest.raises(CgroupError, match="root cgroup"):
        tree.open(path)


@pytest.mark.parametrize("bad_id", ["", "a/b", "..", "."])
def test_default_path_needs_a_plain_container_id(tree, bad_id):
    with pytest.raises(CgroupError, match="container id"):
        tree.open(None, bad_id)


def test_clean_cgroups_path():
    assert clean_cgroups_path("a/b/../c") == "/a/c"
    assert clean_cgroups_path("") == "/"


def test_create_enables_controllers_in_every_parent(tree, cg):
    assert os.path.isdir(os.path.join(tree.root, CTR))
    root_enabled = set(tree.read("cgroup.subtree_control").split())
    parent_enabled = set(tree.read("composer/cgroup.subtree_control").split())
    assert root_enabled == parent_enabled == set(tree.v2_controllers)
    # so the leaf has the controllers' files
    assert os.path.exists(os.path.join(tree.root, CTR, "memory.max"))
    assert os.path.exists(os.path.join(tree.root, CTR, "pids.max"))


def test_create_is_idempotent(tree, cg):
    before = len(tree.kernel.writes)
    cg.create()
    assert tree.kernel.writes[before:] == []


def test_add_and_pids(tree, cg):
    cg.add(4242)
    cg.join(4343)
    assert tree.read(f"{CTR}/cgroup.procs").split() == ["4242", "4343"]
    assert cg.pids() == [4242, 4343]


def test_pids_include_nested_cgroups(tree, cg):
    os.mkdir(os.path.join(tree.root, CTR, "inner"))
    tree.set(f"{CTR}/inner/cgroup.procs", "77\n")
    cg.add(5)
    assert cg.pids() == [5, 77]


# ------------------------------------------------------------------- memory
def test_memory_limit_reservation_and_swap(tree, cg):
    warnings = cg.apply(
        {"memory": {"limit": 100 << 20, "reservation": 50 << 20, "swap": 300 << 20}}
    )
    assert warnings == []
    assert tree.read(f"{CTR}/memory.max") == str(100 << 20)
    assert tree.read(f"{CTR}/memory.low") == str(50 << 20)
    # OCI swap is memory+swap; memory.swap.max is the swap alone
    assert tree.read(f"{CTR}/memory.swap.max") == str(200 << 20)


def test_memory_unlimited(tree, cg):
    cg.apply({"memory": {"limit": 100}})
    cg.apply({"memory": {"limit": -1}})
    assert tree.read(f"{CTR}/memory.max") == "max"
    assert tree.read(f"{CTR}/memory.swap.max") == "max"


@pytest.mark.parametrize(
    ("swap", "limit", "expected"),
    [(0, 0, None), (-1, 100, -1), (0, -1, -1), (-1, -1, -1), (300, 100, 200), (100, 100, 0)],
)
def test_swap_conversion(swap, limit, expected):
    assert swap_to_v2(swap, limit) == expected


@pytest.mark.parametrize(("swap", "limit"), [(50, 100), (100, 0), (100, -1)])
def test_swap_conversion_refuses_impossible_values(swap, limit):
    with pytest.raises(CgroupError):
        swap_to_v2(swap, limit)


def test_swap_without_swap_accounting(tmp_path):
    tree = FakeCgroupTree(tmp_path, "v2", missing_files=("memory.swap.max",))
    cg = tree.open(ENGINE_PATH)
    cg.create()
    with pytest.raises(CgroupError, match="swap accounting"):
        cg.apply({"memory": {"limit": 100, "swap": 200}})
    cg.apply({"memory": {"limit": 100, "swap": -1}})  # "unlimited" needs no file
    assert tree.read(f"{CTR}/memory.max") == "100"


def test_memory_settings_without_v2_equivalent_warn(tree, cg):
    warnings = cg.apply(
        {
            "memory": {
                "limit": 1 << 20,
                "kernel": 1 << 20,
                "kernelTCP": 1 << 20,
                "swappiness": 10,
                "disableOOMKiller": True,
            }
        }
    )
    assert len(warnings) == 4
    assert any("kernelTCP" in w for w in warnings)
    assert any("swappiness" in w for w in warnings)
    assert any("disableOOMKiller" in w for w in warnings)
    assert cg.warnings == warnings
    assert tree.read(f"{CTR}/memory.max") == str(1 << 20)


def test_check_before_update_refuses_a_limit_below_usage(tree, cg):
    tree.set(f"{CTR}/memory.current", "5000")
    with pytest.raises(CgroupError, match="below the current usage"):
        cg.apply({"memory": {"limit": 4096, "checkBeforeUpdate": True}})
    cg.apply({"memory": {"limit": 8192, "checkBeforeUpdate": True}})
    assert tree.read(f"{CTR}/memory.max") == "8192"


# ------------------------------------------------------------------- cpu
@pytest.mark.parametrize(
    ("shares", "weight"), [(0, 0), (2, 1), (1024, 39), (262144, 10000), (1, 1), (10**7, 10000)]
)
def test_shares_to_weight(shares, weight):
    assert shares_to_weight(shares) == weight


def test_weight_to_shares_inverts_within_rounding():
    for shares in (2, 512, 1024, 4096, 262144):
        back = weight_to_shares(shares_to_weight(shares))
        assert abs(back - shares) <= 27  # one weight step is 262142/9999 shares
    assert weight_to_shares(0) == 0


def test_cpu_shares_quota_period_burst_idle(tree, cg):
    cg.apply({"cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000, "idle": 0}})
    assert tree.read(f"{CTR}/cpu.weight") == "39"
    assert tree.read(f"{CTR}/cpu.max") == "50000 100000"
    assert tree.read(f"{CTR}/cpu.max.burst") == "1000"
    assert tree.read(f"{CTR}/cpu.idle") == "0"


def test_cpu_period_alone_keeps_the_quota(tree, cg):
    cg.apply({"cpu": {"quota": 20000}})
    assert tree.read(f"{CTR}/cpu.max") == "20000 100000"
    cg.apply({"cpu": {"period": 50000}})
    assert tree.read(f"{CTR}/cpu.max") == "20000 50000"
    cg.apply({"cpu": {"quota": -1}})
    assert tree.read(f"{CTR}/cpu.max") == "max 50000"


def test_cpu_realtime_is_refused_on_v2(cg):
    with pytest.raises(CgroupError, match="realtime"):
        cg.apply({"cpu": {"realtimeRuntime": 1000, "realtimePeriod": 10000}})


def test_cpuset(tree, cg):
    cg.apply({"cpu": {"cpus": "0-1", "mems": "0"}})
    assert tree.read(f"{CTR}/cpuset.cpus") == "0-1"
    assert tree.read(f"{CTR}/cpuset.mems") == "0"
    names = [name for name, _ in tree.writes_to(CTR)]
    assert names.index("cpuset.mems") < names.index("cpuset.cpus")


# ------------------------------------------------------------------- pids
@pytest.mark.parametrize(("limit", "text"), [(10, "10"), (-1, "max"), (0, "max")])
def test_pids_limit(tree, cg, limit, text):
    cg.apply({"pids": {"limit": limit}})
    assert tree.read(f"{CTR}/pids.max") == text


# ------------------------------------------------------------------- io
@pytest.mark.parametrize(("blkio", "io"), [(10, 1), (1000, 10000), (500, 4950), (0, 0), (1, 1)])
def test_blkio_weight_conversion(blkio, io):
    assert blkio_weight_to_io_weight(blkio) == io


def test_io_weight_converted_when_no_bfq(tree, cg):
    cg.apply({"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 10}]}})
    assert ("io.weight", "4950") in tree.writes_to(CTR)
    assert ("io.weight", "8:0 1") in tree.writes_to(CTR)


def test_io_bfq_weight_takes_blkio_range(tmp_path):
    tree = FakeCgroupTree(tmp_path, "v2", extra_files={"io": {"io.bfq.weight": "default 100"}})
    cg = tree.open(ENGINE_PATH)
    cg.create()
    cg.apply({"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 20}]}})
    assert ("io.bfq.weight", "500") in tree.writes_to(CTR)
    assert ("io.bfq.weight", "8:0 20") in tree.writes_to(CTR)
    assert not any(name == "io.weight" for name, _ in tree.writes_to(CTR))


def test_io_throttle_devices(tree, cg):
    cg.apply(
        {
            "blockIO": {
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 0}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 200}],
            }
        }
    )
    assert tree.read(f"{CTR}/io.max").splitlines() == [
        "8:0 rbps=1048576",
        "8:0 wbps=max",
        "8:16 riops=100",
        "8:16 wiops=200",
    ]


def test_io_leaf_weight_warns(cg):
    warnings = cg.apply({"blockIO": {"leafWeight": 300}})
    assert warnings and "leafWeight" in warnings[0]


# ------------------------------------------------------------------- hugetlb, rdma, devices
def test_hugepage_limits(tree, cg):
    cg.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]})
    assert tree.read(f"{CTR}/hugetlb.2MB.max") == str(4 << 20)
    assert tree.read(f"{CTR}/hugetlb.2MB.rsvd.max") == str(4 << 20)


@pytest.mark.parametrize("size", ["64KB", "../2MB"])
def test_hugepage_size_the_kernel_lacks(cg, size):
    with pytest.raises(CgroupError, match="hugepage size"):
        cg.apply({"hugepageLimits": [{"pageSize": size, "limit": 1}]})


def test_rdma(tree, cg):
    cg.apply({"rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}}})
    assert tree.read(f"{CTR}/rdma.max") == "mlx5_1 hca_handle=3 hca_object=10000\n"


def test_device_rules_are_refused_on_v2(cg):
    with pytest.raises(CgroupError, match="eBPF"):
        cg.apply({"devices": [{"allow": False, "access": "rwm"}]})


def test_network_settings_warn_on_v2(cg):
    warnings = cg.apply(
        {"network": {"classID": 5, "priorities": [{"name": "eth0", "priority": 1}]}}
    )
    assert len(warnings) == 2


# ------------------------------------------------------------------- unified
def test_unified_writes_files(tree, cg):
    cg.apply({"unified": {"memory.high": "1000000", "pids.max": "7"}})
    assert tree.read(f"{CTR}/memory.high") == "1000000"
    assert tree.read(f"{CTR}/pids.max") == "7"


def test_unified_overrides_the_mapped_values(tree, cg):
    cg.apply({"pids": {"limit": 5}, "unified": {"pids.max": "9"}})
    assert tree.read(f"{CTR}/pids.max") == "9"


@pytest.mark.parametrize("key", ["../memory.max", "nodot", "..", "cgroup/procs"])
def test_unified_refuses_bad_names(cg, key):
    with pytest.raises(CgroupError, match="invalid"):
        cg.apply({"unified": {key: "1"}})


def test_unified_missing_file(cg):
    with pytest.raises(CgroupError, match="misc controller"):
        cg.apply({"unified": {"misc.max": "1"}})


def test_missing_controller_is_an_error(tmp_path):
    tree = FakeCgroupTree(tmp_path, "v2", v2_controllers=("memory", "pids"))
    cg = tree.open(ENGINE_PATH)
    cg.create()
    with pytest.raises(CgroupError, match="hugetlb cgroup controller"):
        cg.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]})


# ------------------------------------------------------------------- stats
def test_stats(tree, cg):
    tree.set(f"{CTR}/memory.current", "4096\n")
    tree.set(f"{CTR}/memory.max", "8192\n")
    tree.set(f"{CTR}/memory.peak", "6000\n")
    tree.set(f"{CTR}/memory.events", "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n")
    tree.set(f"{CTR}/memory.stat", "anon 100\nfile 200\n")
    tree.set(f"{CTR}/cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
    tree.set(f"{CTR}/pids.current", "3\n")
    tree.set(f"{CTR}/pids.max", "max\n")
    stats = cg.stats()
    assert stats["memory"] == {
        "usage": 4096,
        "max_usage": 6000,
        "limit": 8192,
        "oom_kills": 2,
        "stat": {"anon": 100, "file": 200},
    }
    assert stats["cpu"]["usage_usec"] == 1500
    assert stats["cpu"]["user_usec"] == 1000
    assert stats["cpu"]["system_usec"] == 500
    assert stats["pids"] == {"current": 3, "limit": None}
    assert cg.oom_kills() == 2


def test_stats_unlimited_memory(tree, cg):
    assert cg.stats()["memory"]["limit"] is None


# ------------------------------------------------------------------- freezer
def test_freeze_and_thaw(tree, cg):
    assert not cg.is_frozen()
    cg.freeze()
    assert tree.read(f"{CTR}/cgroup.freeze") == "1"
    assert cg.is_frozen()
    cg.thaw()
    assert tree.read(f"{CTR}/cgroup.freeze") == "0"
    assert not cg.is_frozen()


def test_freeze_that_never_settles_times_out_and_thaws(tree, cg, monkeypatch):
    original = tree.kernel.write

    def stuck(path, value):
        original(path, value)
        if path.endswith("cgroup.freeze"):
            tree.set(f"{CTR}/cgroup.events", "populated 1\nfrozen 0\n")

    monkeypatch.setattr(tree.kernel, "write", stuck)
    with pytest.raises(CgroupError, match="did not freeze"):
        cg.freeze(timeout=0.01)
    assert tree.read(f"{CTR}/cgroup.freeze") == "0"


# ------------------------------------------------------------------- kill and destroy
def test_kill_all_uses_cgroup_kill(tree, cg):
    cg.add(100)
    cg.add(101)
    cg.kill_all()
    assert (f"{CTR}/cgroup.kill", "1") in tree.kernel.writes
    assert cg.pids() == []


def test_kill_all_without_cgroup_kill_signals_each_process(tmp_path):
    tree = FakeCgroupTree(tmp_path, "v2", missing_files=("cgroup.kill",))
    cg = tree.open(ENGINE_PATH)
    cg.create()
    cg.add(100)
    cg.add(101)
    cg.kill_all()
    assert sorted(tree.kernel.signals) == [(100, 9), (101, 9)]
    assert cg.pids() == []


def test_kill_all_gives_up_on_unkillable_processes(tree, cg, monkeypatch):
    cg.add(100)
    monkeypatch.setattr(tree.kernel, "kill", lambda pid, sig: None)  # stuck in D state
    monkeypatch.setattr(tree.kernel, "write", lambda path, value: None)
    with pytest.raises(CgroupError, match="survived"):
        cg.kill_all(timeout=0.01)


def test_kill_all_other_signal_reaches_each_process_once(tree, cg):
    cg.add(100)
    cg.add(101)
    cg.kill_all(15)
    assert sorted(tree.kernel.signals) == [(100, 15), (101, 15)]
    assert (f"{CTR}/cgroup.kill", "1") not in tree.kernel.writes
    assert cg.pids() == [100, 101]


def test_destroy_removes_nested_cgroups_and_keeps_a_shared_parent(tree, cg):
    tree.kernel.mkdir(os.path.join(tree.root, CTR, "a"))
    tree.kernel.mkdir(os.path.join(tree.root, CTR, "a", "b"))
    tree.kernel.mkdir(os.path.join(tree.root, "composer", "other-container"))
    cg.destroy()
    assert not os.path.exists(os.path.join(tree.root, CTR))
    assert os.path.isdir(os.path.join(tree.root, "composer", "other-container"))


def test_destroy_of_the_last_container_removes_the_default_parent(tree, cg):
    cg.destroy()
    assert not os.path.exists(os.path.join(tree.root, "composer"))
    assert os.path.isdir(tree.root)


def test_destroy_retries_while_busy(tree, cg):
    tree.kernel.busy_rmdirs = 3
    cg.destroy()
    assert not os.path.exists(os.path.join(tree.root, CTR))


def test_destroy_gives_up_when_processes_stay(tree, cg):
    cg.add(100)
    with pytest.raises(CgroupError, match="cannot remove"):
        cg.destroy(timeout=0.01)
    assert os.path.isdir(os.path.join(tree.root, CTR))


def test_destroy_does_not_follow_links_out(tree, cg, tmp_path):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "child").mkdir()
    os.symlink(outside, os.path.join(tree.root, CTR, "link"))
    with pytest.raises(CgroupError):
        cg.destroy(timeout=0.01)  # the link itself keeps the directory non-empty
    assert (outside / "child").is_dir()


def test_destroy_of_a_missing_cgroup_is_a_no_op(tree):
    tree.open("/never-created").destroy()


# ------------------------------------------------------------------- path safety, any input
PATH_PARTS = st.sampled_from(["..", ".", "", "a", "b", "...", " ", "x..y"])


@settings(max_examples=300, deadline=None)
@given(st.lists(PATH_PARTS, max_size=8), st.booleans())
def test_no_cgroups_path_leaves_its_base(tmp_path_factory, parts, absolute):
    tree = _shared_tree(tmp_path_factory)
    given_path = ("/" if absolute else "") + "/".join(parts)
    relative = given_path and not given_path.startswith("/")  # "" means /composer/<id>
    base = os.path.join(tree.root, "user.slice/session-1.scope") if relative else tree.root
    try:
        cg = tree.open(given_path)
    except CgroupError:
        assert given_path and clean_cgroups_path(given_path) == "/"
        return
    resolved = os.path.normpath(cg.paths["unified"])
    assert resolved.startswith(base + "/")
    assert ".." not in resolved.split("/")


_TREES: dict[str, FakeCgroupTree] = {}


def _shared_tree(tmp_path_factory) -> FakeCgroupTree:
    # hypothesis runs many examples per test; one read-only tree serves them all
    if "v2" not in _TREES:
        _TREES["v2"] = FakeCgroupTree(tmp_path_factory.mktemp("paths") / "cg", "v2")
    return _TREES["v2"]
