"""cgroups on this machine's real kernel (as root): limits hold, OOM kills are counted, the
freezer stops processes, and kill_all + destroy leave nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest

from runtime.oci.cgroups import CgroupError, open_cgroup


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _stat_fields(pid: int) -> list[str]:
    text = _read(f"/proc/{pid}/stat")
    return text[text.rindex(")") + 2 :].split()  # fields after "(comm)": state is first


def _state(pid: int) -> str:
    return _stat_fields(pid)[0]


def _cpu_ticks(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[11]) + int(fields[12])  # utime + stime


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    """Poll until `predicate()` holds; the timeout only bounds a hang, it is not measured."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class Harness:
    """A uniquely named cgroup plus the processes started in it; cleans both up."""

    def __init__(self, cgroups_path: str, root: str = "/sys/fs/cgroup"):
        self.cgroup = open_cgroup(cgroups_path, "unused", root)
        self.procs: list[subprocess.Popen] = []

    def spawn(self, script: str, argv: list[str] | None = None) -> subprocess.Popen:
        """Start a process that waits on stdin until it has been moved into the cgroup."""
        argv = argv or ["sh", "-c", f"read go; {script}"]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        self.cgroup.add(proc.pid)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        return proc

    def cleanup(self) -> None:
        self.cgroup.kill_all()
        for proc in self.procs:
            proc.communicate(timeout=10)
        self.cgroup.destroy()


@pytest.fixture
def cgroup_harness():
    path = f"/composer-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    harness = Harness(path)
    harness.cgroup.create()
    yield harness
    harness.cleanup()
    leftovers = [d for d in harness.cgroup.dirs() if os.path.exists(d)]
    assert leftovers == []


def test_this_machine_is_hybrid_with_v1_controllers(cgroup_harness):
    cg = cgroup_harness.cgroup
    assert cg.mode == "hybrid"
    for controller in ("memory", "pids", "cpu", "cpuset", "freezer", "devices"):
        assert cg.paths[controller] == f"/sys/fs/cgroup/{controller}{cg.path}"
        assert os.path.isdir(cg.paths[controller])


def test_limits_are_written_and_a_child_lands_in_every_hierarchy(cgroup_harness):
    cg = cgroup_harness.cgroup
    cg.apply(
        {
            "memory": {"limit": 64 << 20, "swap": 64 << 20},
            "pids": {"limit": 20},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        }
    )
    mem, pids, cpu = cg.paths["memory"], cg.paths["pids"], cg.paths["cpu"]
    assert _read(f"{mem}/memory.limit_in_bytes").strip() == str(64 << 20)
    assert _read(f"{mem}/memory.memsw.limit_in_bytes").strip() == str(64 << 20)
    assert _read(f"{pids}/pids.max").strip() == "20"
    assert _read(f"{cpu}/cpu.shares").strip() == "512"
    assert _read(f"{cpu}/cpu.cfs_quota_us").strip() == "50000"

    proc = cgroup_harness.spawn("exec sleep 30")
    assert cg.pids() == [proc.pid]
    membership = _read(f"/proc/{proc.pid}/cgroup").splitlines()
    joined = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in membership}
    assert joined["memory"] == joined["pids"] == joined["name=systemd"] == cg.path
    assert joined[""] == cg.path  # the unified hierarchy too, in hybrid mode
    stats = cg.stats()
    assert stats["pids"] == {"current": 1, "limit": 20}
    assert stats["memory"]["limit"] == 64 << 20


FORKER = """
import os, sys, time
sys.stdin.readline()
forked = refused = 0
for _ in range(6):
    try:
        pid = os.fork()
    except BlockingIOError:
        refused += 1
        continue
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    forked += 1
print(forked, refused, flush=True)
time.sleep(30)
"""


def test_pids_limit_stops_forks(cgroup_harness):
    cg = cgroup_harness.cgroup
    cg.apply({"pids": {"limit": 3}})
    proc = cgroup_harness.spawn("", [sys.executable, "-c", FORKER])
    assert proc.stdout.readline().split() == ["2", "4"]  # itself and two children fit
    assert len(cg.pids()) == 3
    assert cg.stats()["pids"] == {"current": 3, "limit": 3}
    events = _read(os.path.join(cg.paths["pids"], "pids.events"))
    assert events.split() == ["max", "4"]


def test_memory_hog_is_oom_killed_and_counted(cgroup_harness):
    cg = cgroup_harness.cgroup
    cg.apply({"memory": {"limit": 32 << 20, "swap": 32 << 20}})
    assert cg.oom_kills() == 0
    hog = cgroup_harness.spawn(
        "",
        [sys.executable, "-c", "import sys; sys.stdin.readline(); x = b'a' * (256 << 20)"],
    )
    assert hog.wait(timeout=30) == -9
    assert cg.oom_kills() == 1
    assert cg.stats()["memory"]["oom_kills"] == 1
    assert cg.stats()["memory"]["max_usage"] >= 30 << 20


def test_freeze_really_stops_a_process_and_thaw_resumes_it(cgroup_harness):
    cg = cgroup_harness.cgroup
    spinner = cgroup_harness.spawn("while :; do :; done")
    assert _wait_for(lambda: _cpu_ticks(spinner.pid) > 0)
    cg.freeze()
    assert cg.is_frozen()
    assert _read(os.path.join(cg.paths["freezer"], "freezer.state")).strip() == "FROZEN"
    assert _state(spinner.pid) == "D"  # v1 frozen tasks sleep uninterruptibly
    ticks = _cpu_ticks(spinner.pid)
    time.sleep(0.2)
    assert _cpu_ticks(spinner.pid) == ticks  # not one tick of CPU while frozen
    cg.thaw()
    assert not cg.is_frozen()
    assert _wait_for(lambda: _cpu_ticks(spinner.pid) > ticks)
    assert _state(spinner.pid) in ("R", "S")


def test_kill_all_kills_a_frozen_cgroup(cgroup_harness):
    cg = cgroup_harness.cgroup
    procs = [cgroup_harness.spawn("exec sleep 30") for _ in range(3)]
    cg.freeze()
    cg.kill_all()
    assert [p.wait(timeout=10) for p in procs] == [-9, -9, -9]
    assert cg.pids() == []
    assert not cg.is_frozen()


def test_kill_all_with_sigterm_signals_each_process(cgroup_harness):
    cg = cgroup_harness.cgroup
    proc = cgroup_harness.spawn(
        "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 1; done"
    )
    assert proc.stdout.readline().strip() == "ready"
    cg.kill_all(15)
    out, _err = proc.communicate(timeout=10)
    assert "got-term" in out
    assert proc.returncode == 7


def test_devices_deny_all_keeps_the_default_devices():
    path = f"/composer-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    harness = Harness(path)
    harness.cgroup.create()
    try:
        harness.cgroup.apply({"devices": [{"allow": False, "access": "rwm"}]})
        listed = _read(os.path.join(harness.cgroup.paths["devices"], "devices.list"))
        assert "a *:* rwm" not in listed
        assert "c 1:3 rwm" in listed
        proc = harness.spawn(
            "echo ok > /dev/null && echo null-ok; true < /dev/kmsg || echo kmsg-denied"
        )
        out, err = proc.communicate(timeout=10)
        assert "null-ok" in out
        assert "kmsg-denied" in out
        assert "not permitted" in err
    finally:
        harness.cleanup()
    assert not any(os.path.exists(d) for d in harness.cgroup.dirs())


def test_cpuset_parents_are_populated_before_the_child():
    parent = f"/composer-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    harness = Harness(f"{parent}/ctr")
    try:
        harness.cgroup.create()
        harness.cgroup.apply({"cpu": {"cpus": "0", "mems": "0"}})
        root_cpus = _read("/sys/fs/cgroup/cpuset/cpuset.cpus").strip()
        assert _read(f"/sys/fs/cgroup/cpuset{parent}/cpuset.cpus").strip() == root_cpus
        assert _read(f"{harness.cgroup.paths['cpuset']}/cpuset.cpus").strip() == "0"
        proc = harness.spawn("grep Cpus_allowed_list /proc/self/status")
        out, _err = proc.communicate(timeout=10)
        assert out.split() == ["Cpus_allowed_list:", "0"]
    finally:
        harness.cleanup()
        open_cgroup(parent, "unused").destroy()
    assert not os.path.exists(f"/sys/fs/cgroup/cpuset{parent}")
    assert not os.path.exists(f"/sys/fs/cgroup/memory{parent}")


def test_realtime_runtime_gets_a_budget_from_new_parents():
    parent = f"/composer-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    harness = Harness(f"{parent}/ctr")
    try:
        harness.cgroup.create()
        harness.cgroup.apply({"cpu": {"realtimeRuntime": 10000, "realtimePeriod": 1000000}})
        assert _read(f"/sys/fs/cgroup/cpu{parent}/cpu.rt_runtime_us").strip() == "10000"
        assert _read(f"{harness.cgroup.paths['cpu']}/cpu.rt_runtime_us").strip() == "10000"
    finally:
        harness.cleanup()
        open_cgroup(parent, "unused").destroy()
    assert not os.path.exists(f"/sys/fs/cgroup/cpu{parent}")


def test_destroy_refuses_while_processes_live_and_leaves_them_alone(cgroup_harness):
    cg = cgroup_harness.cgroup
    proc = cgroup_harness.spawn("exec sleep 30")
    with pytest.raises(CgroupError, match="busy"):
        cg.destroy(timeout=0.05)
    assert proc.poll() is None
    assert os.path.isdir(cg.paths["memory"])


def test_unsupported_hugepage_size_is_refused(cgroup_harness):
    with pytest.raises(CgroupError, match="hugepage size"):
        cgroup_harness.cgroup.apply({"hugepageLimits": [{"pageSize": "3MB", "limit": 0}]})


# The unified mount on this host has no controllers, but its core files (cgroup.freeze,
# cgroup.kill, cgroup.events, cpu.stat) are real: opened as the root, it is a pure v2 tree.
UNIFIED_ROOT = "/sys/fs/cgroup/unified"


@pytest.fixture
def v2_harness():
    harness = Harness(f"/composer-test-{os.getpid()}-{uuid.uuid4().hex[:8]}", UNIFIED_ROOT)
    harness.cgroup.create()
    yield harness
    harness.cleanup()
    assert not os.path.exists(harness.cgroup.paths["unified"])


def test_v2_core_freeze_kill_and_destroy_on_the_real_kernel(v2_harness):
    cg = v2_harness.cgroup
    assert cg.mode == "v2"
    assert list(cg.paths) == ["unified"]
    spinner = v2_harness.spawn("while :; do :; done")
    sleeper = v2_harness.spawn("exec sleep 30")
    assert cg.pids() == sorted([spinner.pid, sleeper.pid])
    assert _wait_for(lambda: _cpu_ticks(spinner.pid) > 0)
    cg.freeze()
    assert cg.is_frozen()
    ticks = _cpu_ticks(spinner.pid)
    time.sleep(0.2)
    assert _cpu_ticks(spinner.pid) == ticks
    cg.thaw()
    assert _wait_for(lambda: _cpu_ticks(spinner.pid) > ticks)
    assert cg.stats()["cpu"]["usage_usec"] > 0
    cg.kill_all()
    assert spinner.wait(timeout=10) == -9
    assert sleeper.wait(timeout=10) == -9
    assert cg.pids() == []


def test_v2_missing_controller_is_refused_clearly(v2_harness):
    with pytest.raises(CgroupError, match="pids cgroup controller"):
        v2_harness.cgroup.apply({"pids": {"limit": 3}})
    with pytest.raises(CgroupError, match="eBPF"):
        v2_harness.cgroup.apply({"devices": [{"allow": False, "access": "rwm"}]})


# ------------------------------------------------------------------- differential with runc
RESOURCES = {
    "memory": {
        "limit": 64 << 20,
        "reservation": 32 << 20,
        "swap": 128 << 20,
        "swappiness": 10,
        "disableOOMKiller": True,
    },
    "cpu": {"shares": 512, "quota": 20000, "period": 50000, "cpus": "0", "mems": "0"},
    "pids": {"limit": 42},
    "blockIO": {"weight": 300},
    "devices": [{"allow": False, "access": "rwm"}],
}
COMPARED_FILES = (
    "memory/memory.limit_in_bytes",
    "memory/memory.memsw.limit_in_bytes",
    "memory/memory.soft_limit_in_bytes",
    "memory/memory.swappiness",
    "memory/memory.oom_control",
    "cpu/cpu.shares",
    "cpu/cpu.cfs_quota_us",
    "cpu/cpu.cfs_period_us",
    "cpuset/cpuset.cpus",
    "cpuset/cpuset.mems",
    "pids/pids.max",
)


def _cgroup_files(path: str, with_blkio: bool) -> dict[str, str]:
    out = {}
    for rel in COMPARED_FILES:
        controller, name = rel.split("/")
        out[rel] = _read(f"/sys/fs/cgroup/{controller}{path}/{name}")
    if with_blkio:
        cfq = os.path.exists(f"/sys/fs/cgroup/blkio{path}/blkio.weight")
        weight = "blkio.weight" if cfq else "blkio.bfq.weight"
        out["blkio"] = _read(f"/sys/fs/cgroup/blkio{path}/{weight}")
    out["devices"] = _read(f"/sys/fs/cgroup/devices{path}/devices.list")
    return out


@pytest.mark.parametrize("peer", ["runc", "crun"])
def test_same_files_as_runc_and_crun_for_the_same_resources(busybox_bundle, peer, request):
    from rootfs import read_config, write_config

    cli = request.getfixturevalue(peer)
    resources = dict(RESOURCES)
    if peer == "crun":
        del resources["blockIO"]  # crun 1.8 writes blkio.weight only, which BFQ kernels lack
    peer_path = f"/composer-test-{peer}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    config = read_config(busybox_bundle)
    config["process"]["args"] = ["sleep", "30"]
    config["linux"]["cgroupsPath"] = peer_path
    config["linux"]["resources"] = resources
    write_config(busybox_bundle, config)
    container_id = cli.new_id("r2")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}  # no pipe to hold open
    try:
        cli("create", "--bundle", str(busybox_bundle), container_id, **quiet)
        theirs = _cgroup_files(peer_path, "blockIO" in resources)
    finally:
        cli("delete", "--force", container_id, check=False)
        open_cgroup(peer_path, "unused").destroy()  # what a failed create leaves behind

    harness = Harness(f"/composer-test-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    harness.cgroup.create()
    try:
        harness.cgroup.apply(resources)
        ours = _cgroup_files(harness.cgroup.path, "blockIO" in resources)
    finally:
        harness.cleanup()
    their_devices = set(theirs.pop("devices").splitlines())
    our_devices = set(ours.pop("devices").splitlines())
    assert ours == theirs
    if peer == "crun":
        assert our_devices == their_devices
    else:  # runc 1.1 also allows /dev/net/tun (10:200) but not /dev/console (5:1)
        assert our_devices ^ their_devices == {"c 10:200 rwm", "c 5:1 rwm"}
