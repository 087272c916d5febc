"""cgroups on v1 and hybrid fake trees: detection, paths, create, every resource mapping,
stats, freezer, kill and destroy."""

from __future__ import annotations

import os

import pytest

from runtime.oci.cgroups import (
    DEFAULT_DEVICE_RULES,
    CgroupError,
    detect_layout,
    parse_mountinfo,
    parse_self_cgroup,
)
from tests.fakecgroupfs import FakeCgroupTree

CTR = "composer/ctr"
ENGINE_PATH = "/composer/ctr"  # the cgroupsPath runtime.engine gives its containers


@pytest.fixture
def tree(tmp_path):
    return FakeCgroupTree(tmp_path / "cg", "v1")


@pytest.fixture
def cg(tree):
    cgroup = tree.open(ENGINE_PATH)
    cgroup.create()
    return cgroup


def at(controller: str, name: str = "") -> str:
    return f"{controller}/{CTR}/{name}" if name else f"{controller}/{CTR}"


# ------------------------------------------------------------------- detection
def test_mountinfo_parsing_unescapes_and_reads_super_options():
    text = (
        "35 31 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
        "41 31 0:38 /sub /sys/fs/cgroup/my\\040dir rw - cgroup2 cgroup2 rw,nsdelegate\n"
        "garbage line\n"
    )
    assert parse_mountinfo(text) == [
        ("/sys/fs/cgroup/cpu,cpuacct", "/", "cgroup", "rw,cpu,cpuacct"),
        ("/sys/fs/cgroup/my dir", "/sub", "cgroup2", "rw,nsdelegate"),
    ]


def test_detects_v1_with_comounted_and_named_hierarchies(tmp_path):
    root = tmp_path / "cg"
    for d in ("cpu,cpuacct", "memory", "systemd", "elsewhere"):
        (root / d).mkdir(parents=True)
    text = (
        f"1 0 0:1 / {root} rw - tmpfs tmpfs rw\n"
        f"2 1 0:2 / {root}/cpu,cpuacct rw - cgroup cgroup rw,nosuid,cpu,cpuacct\n"
        f"3 1 0:3 / {root}/memory rw - cgroup cgroup rw,memory\n"
        f"4 1 0:4 / {root}/systemd rw - cgroup cgroup rw,xattr,release_agent=/x,name=systemd\n"
        f"5 1 0:3 / {tmp_path}/other rw - cgroup cgroup rw,memory\n"
        f"6 1 0:5 / {root}/elsewhere rw - cgroup cgroup rw,pids\n"
        f"7 1 0:6 / {root}/elsewhere rw - tmpfs tmpfs rw\n"
    )
    layout = detect_layout(str(root), text)
    assert layout.mode == "v1"
    assert sorted(sorted(h.controllers) for h in layout.v1) == [
        ["cpu", "cpuacct"],
        ["memory"],
        ["name=systemd"],
    ]
    assert "pids" not in layout.serving  # over-mounted by a tmpfs
    assert layout.serving["cpuacct"].mountpoint == f"{root}/cpu,cpuacct"


def test_no_cgroup_mounts_is_an_error(tmp_path):
    with pytest.raises(CgroupError, match="no cgroup filesystem"):
        detect_layout(str(tmp_path), f"1 0 0:1 / {tmp_path} rw - tmpfs tmpfs rw\n")


def test_parse_self_cgroup():
    own = parse_self_cgroup("4:memory:/a/b\n2:cpu,cpuacct:/c\n1:name=systemd:/d\n0::/e\n")
    assert own[frozenset({"memory"})] == "/a/b"
    assert own[frozenset({"cpu", "cpuacct"})] == "/c"
    assert own[frozenset({"name=systemd"})] == "/d"
    assert own[frozenset()] == "/e"


def test_v1_paths_per_controller(tree):
    cg = tree.open(None, "abc")
    assert cg.mode == "v1"
    paths = cg.paths
    assert paths["memory"] == os.path.join(tree.root, "memory/abc")
    assert paths["name=systemd"] == os.path.join(tree.root, "systemd/abc")
    assert "unified" not in paths
    assert set(paths) == {*tree.v1_controllers, "name=systemd"}


def test_relative_path_follows_own_cgroup_per_hierarchy(tree):
    cg = tree.open("nested", "x")
    assert cg.paths["pids"] == os.path.join(tree.root, "pids/user.slice/session-1.scope/nested")


def test_relative_path_when_the_mount_shows_a_subtree(tmp_path):
    # Inside a cgroup namespace: the mount's root is /user.slice, our cgroup /user.slice/s.
    (tmp_path / "pids").mkdir()
    text = f"2 1 0:2 /user.slice {tmp_path}/pids rw - cgroup cgroup rw,pids\n"
    from runtime.oci.cgroups import open_cgroup

    cg = open_cgroup("c", "x", str(tmp_path), mountinfo=text, self_cgroup="3:pids:/user.slice/s")
    assert cg.paths["pids"] == f"{tmp_path}/pids/s/c"


# ------------------------------------------------------------------- create and join
def test_create_makes_a_directory_in_every_hierarchy(tree, cg):
    for mountpoint in tree.mountpoints():
        assert os.path.isdir(os.path.join(mountpoint, CTR))
    assert os.path.isdir(os.path.join(tree.root, "systemd", CTR))


def test_create_populates_cpusets_of_new_parents(tree, cg):
    assert tree.read("cpuset/composer/cpuset.cpus") == "0-3"
    assert tree.read("cpuset/composer/cpuset.mems") == "0"
    assert tree.read(at("cpuset", "cpuset.cpus")) == "0-3"
    assert tree.read(at("cpuset", "cpuset.mems")) == "0"


def test_create_fills_an_existing_parent_with_empty_cpuset(tree):
    os.makedirs(os.path.join(tree.root, "cpuset/composer"))
    tree.populate(os.path.join(tree.root, "cpuset/composer"))
    tree.open(ENGINE_PATH).create()
    assert tree.read("cpuset/composer/cpuset.cpus") == "0-3"


def test_add_joins_every_hierarchy(tree, cg):
    cg.add(321)
    for mountpoint in tree.mountpoints():
        assert tree.procs(os.path.join(mountpoint, CTR)) == [321]
    assert cg.pids() == [321]


# ------------------------------------------------------------------- memory
def test_memory_grows_swap_first(tree, cg):
    tree.set(at("memory", "memory.limit_in_bytes"), "1000")
    cg.apply({"memory": {"limit": 2000, "swap": 3000}})
    assert tree.writes_to(at("memory"))[-2:] == [
        ("memory.memsw.limit_in_bytes", "3000"),
        ("memory.limit_in_bytes", "2000"),
    ]


def test_memory_shrinks_limit_first(tree, cg):
    tree.set(at("memory", "memory.limit_in_bytes"), "5000")
    cg.apply({"memory": {"limit": 2000, "swap": 3000}})
    assert tree.writes_to(at("memory"))[-2:] == [
        ("memory.limit_in_bytes", "2000"),
        ("memory.memsw.limit_in_bytes", "3000"),
    ]


def test_memory_unlimited_makes_swap_unlimited_too(tree, cg):
    cg.apply({"memory": {"limit": -1}})
    assert tree.read(at("memory", "memory.limit_in_bytes")) == "-1"
    assert tree.read(at("memory", "memory.memsw.limit_in_bytes")) == "-1"


def test_memory_swap_below_limit_is_refused(cg):
    with pytest.raises(CgroupError, match="must be >="):
        cg.apply({"memory": {"limit": 2000, "swap": 1000}})


def test_memory_swap_without_swap_accounting(tmp_path):
    tree = FakeCgroupTree(tmp_path, "v1", missing_files=("memory.memsw.limit_in_bytes",))
    cg = tree.open(ENGINE_PATH)
    cg.create()
    with pytest.raises(CgroupError, match="swap accounting"):
        cg.apply({"memory": {"limit": 100, "swap": 200}})
    cg.apply({"memory": {"limit": -1}})
    assert tree.read(at("memory", "memory.limit_in_bytes")) == "-1"


def test_memory_other_settings(tree, cg):
    warnings = cg.apply(
        {
            "memory": {
                "limit": 1 << 20,
                "reservation": 1 << 19,
                "kernel": 1 << 22,
                "kernelTCP": 1 << 21,
                "swappiness": 0,
                "disableOOMKiller": True,
                "useHierarchy": True,
            }
        }
    )
    assert warnings == []
    assert tree.read(at("memory", "memory.soft_limit_in_bytes")) == str(1 << 19)
    assert tree.read(at("memory", "memory.kmem.limit_in_bytes")) == str(1 << 22)
    assert tree.read(at("memory", "memory.kmem.tcp.limit_in_bytes")) == str(1 << 21)
    assert tree.read(at("memory", "memory.swappiness")) == "0"
    assert tree.read(at("memory", "memory.oom_control")) == "1"
    assert tree.read(at("memory", "memory.use_hierarchy")) == "1"


def test_memory_kernel_limit_refused_by_the_kernel_warns(tmp_path):
    tree = FakeCgroupTree(tmp_path, "v1", missing_files=("memory.kmem.limit_in_bytes",))
    cg = tree.open(ENGINE_PATH)
    cg.create()
    warnings = cg.apply({"memory": {"kernel": 1 << 22}})
    assert len(warnings) == 1 and "memory.kernel" in warnings[0]


def test_memory_swappiness_out_of_range(cg):
    with pytest.raises(CgroupError, match="swappiness"):
        cg.apply({"memory": {"swappiness": 101}})


def test_memory_check_before_update_reads_usage(tree, cg):
    tree.set(at("memory", "memory.usage_in_bytes"), "9000")
    with pytest.raises(CgroupError, match="below the current usage"):
        cg.apply({"memory": {"limit": 4096, "checkBeforeUpdate": True}})


# ------------------------------------------------------------------- cpu
def test_cpu_settings(tree, cg):
    cg.apply(
        {
            "cpu": {
                "shares": 512,
                "quota": 25000,
                "period": 50000,
                "burst": 1000,
                "realtimeRuntime": 950,
                "realtimePeriod": 1000,
                "idle": 1,
                "cpus": "1",
                "mems": "0",
            }
        }
    )
    assert tree.read(at("cpu", "cpu.shares")) == "512"
    assert tree.read(at("cpu", "cpu.cfs_quota_us")) == "25000"
    assert tree.read(at("cpu", "cpu.cfs_period_us")) == "50000"
    assert tree.read(at("cpu", "cpu.cfs_burst_us")) == "1000"
    assert tree.read(at("cpu", "cpu.idle")) == "1"
    assert tree.read(at("cpuset", "cpuset.cpus")) == "1"
    names = [name for name, _ in tree.writes_to(at("cpu"))]
    assert names.index("cpu.cfs_period_us") < names.index("cpu.cfs_quota_us")
    assert names.index("cpu.rt_period_us") < names.index("cpu.rt_runtime_us")
    assert tree.read(at("cpu", "cpu.rt_runtime_us")) == "950"


def test_cpu_realtime_budget_is_granted_to_the_parents(tree):
    os.makedirs(os.path.join(tree.root, "cpu/composer/other"))
    tree.populate(os.path.join(tree.root, "cpu/composer"))
    tree.populate(os.path.join(tree.root, "cpu/composer/other"))
    tree.set("cpu/composer/other/cpu.rt_runtime_us", "3000")
    tree.set("cpu/composer/cpu.rt_runtime_us", "3000")
    cg = tree.open(ENGINE_PATH)
    cg.create()
    cg.apply({"cpu": {"realtimeRuntime": 5000, "realtimePeriod": 100000}})
    assert tree.read("cpu/composer/cpu.rt_runtime_us") == "8000"  # ours plus the sibling's
    assert tree.read(at("cpu", "cpu.rt_runtime_us")) == "5000"
    assert tree.read("cpu/composer/other/cpu.rt_runtime_us") == "3000"


def test_cpu_period_refused_first_retries_after_quota(tree, cg, monkeypatch):
    import errno

    original = tree.kernel.write
    refused = []

    def picky(path, value):
        # like the kernel: a period that breaks the current quota's bounds is EINVAL
        if path.endswith("cfs_period_us") and not refused:
            refused.append(value)
            raise CgroupError("EINVAL", errno.EINVAL)
        original(path, value)

    monkeypatch.setattr(tree.kernel, "write", picky)
    cg.apply({"cpu": {"quota": 1000, "period": 2000}})
    assert refused == ["2000"]
    assert tree.read(at("cpu", "cpu.cfs_period_us")) == "2000"
    assert tree.read(at("cpu", "cpu.cfs_quota_us")) == "1000"


# ------------------------------------------------------------------- pids, blkio, hugetlb
def test_pids(tree, cg):
    cg.apply({"pids": {"limit": 3}})
    assert tree.read(at("pids", "pids.max")) == "3"


def test_blkio_bfq_weight_when_cfq_is_gone(tree, cg):
    warnings = cg.apply(
        {
            "blockIO": {
                "weight": 300,
                "leafWeight": 200,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 400, "leafWeight": 10}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1024}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2048}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 10}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 20}],
            }
        }
    )
    assert len(warnings) == 2  # leaf weights need CFQ
    writes = tree.writes_to(at("blkio"))
    assert ("blkio.bfq.weight", "300") in writes
    assert ("blkio.bfq.weight", "8:0 400") in writes
    assert tree.read(at("blkio", "blkio.throttle.read_bps_device")) == "8:0 1024\n"
    assert tree.read(at("blkio", "blkio.throttle.write_bps_device")) == "8:0 2048\n"
    assert tree.read(at("blkio", "blkio.throttle.read_iops_device")) == "8:0 10\n"
    assert tree.read(at("blkio", "blkio.throttle.write_iops_device")) == "8:0 20\n"


def test_blkio_cfq_weight_files(tmp_path):
    cfq = {
        "blkio.weight": "500",
        "blkio.weight_device": "",
        "blkio.leaf_weight": "500",
        "blkio.leaf_weight_device": "",
    }
    tree = FakeCgroupTree(tmp_path, "v1", extra_files={"blkio": cfq})
    cg = tree.open(ENGINE_PATH)
    cg.create()
    warnings = cg.apply(
        {
            "blockIO": {
                "weight": 300,
                "leafWeight": 200,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 400, "leafWeight": 10}],
            }
        }
    )
    assert warnings == []
    assert tree.read(at("blkio", "blkio.weight")) == "300"
    assert tree.read(at("blkio", "blkio.leaf_weight")) == "200"
    assert tree.read(at("blkio", "blkio.weight_device")) == "8:0 400\n"
    assert tree.read(at("blkio", "blkio.leaf_weight_device")) == "8:0 10\n"
    assert tree.read(at("blkio", "blkio.bfq.weight")) == "100"


def test_blkio_weight_without_any_weight_file(tmp_path):
    tree = FakeCgroupTree(tmp_path, "v1", missing_files=("blkio.bfq.weight",))
    cg = tree.open(ENGINE_PATH)
    cg.create()
    with pytest.raises(CgroupError, match="weight"):
        cg.apply({"blockIO": {"weight": 300}})


def test_hugetlb_v1(tree, cg):
    cg.apply(
        {
            "hugepageLimits": [
                {"pageSize": "2MB", "limit": 2 << 20},
                {"pageSize": "1GB", "limit": 1 << 30},
            ]
        }
    )
    assert tree.read(at("hugetlb", "hugetlb.2MB.limit_in_bytes")) == str(2 << 20)
    assert tree.read(at("hugetlb", "hugetlb.2MB.rsvd.limit_in_bytes")) == str(2 << 20)
    assert tree.read(at("hugetlb", "hugetlb.1GB.limit_in_bytes")) == str(1 << 30)


# ------------------------------------------------------------------- devices
def test_devices_deny_all_first_then_rules_nodes_and_defaults(tree, cg):
    cg.apply(
        {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
                {"allow": False, "type": "b", "major": 8, "access": "w"},
            ]
        },
        devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
    )
    writes = tree.writes_to(at("devices"))
    assert writes[0] == ("devices.deny", "a")
    assert writes[1:5] == [
        ("devices.deny", "a"),
        ("devices.allow", "c 10:229 rw"),
        ("devices.deny", "b 8:* w"),
        ("devices.allow", "c 10:229 rwm"),
    ]
    defaults = writes[5:]
    assert len(defaults) == len(DEFAULT_DEVICE_RULES)
    assert ("devices.allow", "c 1:3 rwm") in defaults  # /dev/null
    assert ("devices.allow", "c 136:* rwm") in defaults  # /dev/pts/*
    assert ("devices.allow", "c *:* m") in defaults


def test_devices_untouched_unless_listed(tree, cg):
    cg.apply({"pids": {"limit": 10}})
    assert tree.writes_to(at("devices")) == []


@pytest.mark.parametrize(
    "rule", [{"allow": True, "type": "x"}, {"allow": True, "type": "c", "access": "rwx"}]
)
def test_bad_device_rules(cg, rule):
    with pytest.raises(CgroupError, match="invalid device"):
        cg.apply({"devices": [rule]})


# ------------------------------------------------------------------- network, unified
def test_network_without_net_cls_warns(cg):
    assert len(cg.apply({"network": {"classID": 1}})) == 1


def test_network_v1(tmp_path):
    tree = FakeCgroupTree(tmp_path, "v1", v1_controllers=("net_cls", "net_prio", "memory"))
    cg = tree.open(ENGINE_PATH)
    cg.create()
    warnings = cg.apply(
        {"network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]}}
    )
    assert warnings == []
    assert tree.read(at("net_cls", "net_cls.classid")) == "1048577"
    assert tree.read(at("net_prio", "net_prio.ifpriomap")) == "eth0 5"


def test_unified_on_pure_v1_is_refused(cg):
    with pytest.raises(CgroupError, match="cgroup v2"):
        cg.apply({"unified": {"memory.high": "1"}})


def test_missing_v1_controller_is_an_error(tmp_path):
    tree = FakeCgroupTree(tmp_path, "v1", v1_controllers=("memory",))
    cg = tree.open(ENGINE_PATH)
    cg.create()
    with pytest.raises(CgroupError, match="pids cgroup controller"):
        cg.apply({"pids": {"limit": 3}})


# ------------------------------------------------------------------- hybrid
@pytest.fixture
def hybrid(tmp_path):
    # like this machine: v1 controllers, cgroup2 at unified/ with at most a leftover controller
    return FakeCgroupTree(
        tmp_path, "hybrid", v1_controllers=V1_NO_HUGETLB, v2_controllers=("hugetlb",)
    )


V1_NO_HUGETLB = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")


def test_hybrid_uses_v1_and_the_unified_leftovers(hybrid):
    cg = hybrid.open(ENGINE_PATH)
    cg.create()
    assert cg.mode == "hybrid"
    assert cg.paths["unified"] == os.path.join(hybrid.root, "unified", CTR)
    assert cg.paths["memory"] == os.path.join(hybrid.root, "memory", CTR)
    cg.apply({"memory": {"limit": 4096}, "hugepageLimits": [{"pageSize": "2MB", "limit": 0}]})
    assert hybrid.read(at("memory", "memory.limit_in_bytes")) == "4096"
    assert hybrid.read(f"unified/{CTR}/hugetlb.2MB.max") == "0"
    assert hybrid.read("unified/composer/cgroup.subtree_control") == "hugetlb"


def test_hybrid_does_not_enable_v1_controllers_on_unified(tmp_path):
    tree = FakeCgroupTree(tmp_path, "hybrid", v2_controllers=("memory",))
    cg = tree.open(ENGINE_PATH)
    cg.create()
    assert not any(path.endswith("subtree_control") for path, _ in tree.kernel.writes)
    assert cg.layout.serving["memory"].version == 1


def test_hybrid_unified_resources_go_to_the_unified_dir(hybrid):
    cg = hybrid.open(ENGINE_PATH)
    cg.create()
    cg.apply({"unified": {"hugetlb.2MB.max": "0"}})
    assert hybrid.read(f"unified/{CTR}/hugetlb.2MB.max") == "0"


def test_hybrid_kill_all_uses_cgroup_kill_and_freezer_is_v1(hybrid):
    cg = hybrid.open(ENGINE_PATH)
    cg.create()
    cg.add(50)
    cg.freeze()
    assert hybrid.read(at("freezer", "freezer.state")) == "FROZEN"
    assert hybrid.read(f"unified/{CTR}/cgroup.freeze") == "0"
    cg.kill_all()
    assert (f"unified/{CTR}/cgroup.kill", "1") in hybrid.kernel.writes
    assert cg.pids() == []
    assert hybrid.read(at("freezer", "freezer.state")) == "THAWED"  # thawed so kills land


def test_freezer_falls_back_to_unified_in_hybrid(tmp_path):
    tree = FakeCgroupTree(tmp_path, "hybrid", v1_controllers=("memory",), v2_controllers=())
    cg = tree.open(ENGINE_PATH)
    cg.create()
    cg.freeze()
    assert tree.read(f"unified/{CTR}/cgroup.freeze") == "1"
    assert cg.is_frozen()


# ------------------------------------------------------------------- stats, freezer, kill
def test_stats_v1(tree, cg):
    tree.set(at("memory", "memory.usage_in_bytes"), "4096\n")
    tree.set(at("memory", "memory.max_usage_in_bytes"), "8192\n")
    tree.set(at("memory", "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n")
    tree.set(at("memory", "memory.stat"), "cache 10\nrss 20\nhierarchical_memory_limit 5\n")
    tree.set(at("cpuacct", "cpuacct.usage"), "2500000\n")
    hz = os.sysconf("SC_CLK_TCK")
    tree.set(at("cpuacct", "cpuacct.stat"), f"user {hz}\nsystem {2 * hz}\n")
    tree.set(at("cpu", "cpu.stat"), "nr_periods 7\nnr_throttled 2\nthrottled_time 5000\n")
    tree.set(at("pids", "pids.current"), "2\n")
    tree.set(at("pids", "pids.max"), "10\n")
    stats = cg.stats()
    assert stats["memory"]["usage"] == 4096
    assert stats["memory"]["max_usage"] == 8192
    assert stats["memory"]["limit"] is None  # the kernel's "unlimited"
    assert stats["memory"]["oom_kills"] == 4
    assert stats["memory"]["stat"]["rss"] == 20
    assert stats["cpu"] == {
        "usage_usec": 2500,
        "user_usec": 1_000_000,
        "system_usec": 2_000_000,
        "nr_periods": 7,
        "nr_throttled": 2,
        "throttled_usec": 5,
    }
    assert stats["pids"] == {"current": 2, "limit": 10}
    assert cg.oom_kills() == 4


def test_stats_limit_set(tree, cg):
    cg.apply({"memory": {"limit": 1 << 20}})
    assert cg.stats()["memory"]["limit"] == 1 << 20


def test_freeze_thaw_v1(tree, cg):
    cg.freeze()
    assert tree.read(at("freezer", "freezer.state")) == "FROZEN"
    assert cg.is_frozen()
    cg.thaw()
    assert tree.read(at("freezer", "freezer.state")) == "THAWED"
    assert not cg.is_frozen()


def test_freeze_v1_keeps_nudging_while_freezing(tree, cg, monkeypatch):
    original = tree.kernel.write
    attempts = []

    def slow(path, value):
        original(path, value)
        if path.endswith("freezer.state") and value == "FROZEN":
            attempts.append(value)
            if len(attempts) < 3:  # a task was busy: the kernel says FREEZING
                tree.set(at("freezer", "freezer.state"), "FREEZING\n")

    monkeypatch.setattr(tree.kernel, "write", slow)
    cg.freeze()
    assert len(attempts) == 3
    assert cg.is_frozen()


def test_freeze_v1_thaws_now_and_then_to_unstick_a_task(tree, cg, monkeypatch):
    original = tree.kernel.write
    states = []

    def stuck_until_thawed(path, value):
        original(path, value)
        if path.endswith("freezer.state"):
            states.append(value)
            if "THAWED" not in states:
                tree.set(at("freezer", "freezer.state"), "FREEZING\n")

    monkeypatch.setattr(tree.kernel, "write", stuck_until_thawed)
    cg.freeze()
    assert states[:9] == ["FROZEN"] * 9
    assert states[9:11] == ["THAWED", "FROZEN"]
    assert cg.is_frozen()


def test_kill_all_v1_signals_until_empty(tree, cg):
    cg.add(10)
    cg.add(11)
    cg.kill_all()
    assert sorted(tree.kernel.signals) == [(10, 9), (11, 9)]
    assert cg.pids() == []


def test_kill_all_ignores_processes_already_gone(tree, cg, monkeypatch):
    cg.add(10)
    cg.add(99)
    original = tree.kernel.kill

    def exited_first(pid, sig):
        if pid == 99:  # it exits between the listing and the signal
            tree.remove_pid(99)
            raise ProcessLookupError
        original(pid, sig)

    monkeypatch.setattr(tree.kernel, "kill", exited_first)
    cg.kill_all()
    assert cg.pids() == []


def test_destroy_v1_removes_only_the_container_dirs(tree, cg):
    cg.add(5)
    cg.kill_all()
    cg.destroy()
    for mountpoint in tree.mountpoints():
        assert not os.path.exists(os.path.join(mountpoint, CTR))
        # The default parent goes with its last container: nothing of ours is left.
        assert not os.path.exists(os.path.join(mountpoint, "composer"))
        assert os.path.isdir(mountpoint)
    assert not os.path.exists(os.path.join(tree.root, "systemd", CTR))
