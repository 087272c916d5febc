"""OCI `linux.resources` limits -> cgroupfs files, on v1 and v2: cpu, memory, pids, block
I/O, hugepages, network, rdma and raw unified keys. Device rules, which every container
gets, stay with the cgroup itself (runtime.oci.cgroups); this module is loaded only by a
config that sets one of these limits.

The functions work on a `Cgroup` through its file helpers (_need, _serving, _read,
_write, _has), so unit tests run them against the same fake trees.
"""

from __future__ import annotations

import errno
import os

from runtime.oci.cgroups import CgroupError


def apply(cg, resources: dict, warnings: list[str]) -> None:
    """Write the limits `resources` sets (cgroups.LIMIT_KEYS, in that order); what is
    ignored goes to `warnings`."""
    if resources.get("cpu"):
        _cpu(cg, resources["cpu"], warnings)
    if resources.get("memory"):
        _memory(cg, resources["memory"], warnings)
    if resources.get("pids"):
        _pids(cg, resources["pids"])
    if resources.get("blockIO"):
        _block_io(cg, resources["blockIO"], warnings)
    if resources.get("hugepageLimits"):
        _hugepages(cg, resources["hugepageLimits"])
    if resources.get("network"):
        _network(cg, resources["network"], warnings)
    if resources.get("rdma"):
        _rdma(cg, resources["rdma"])
    if resources.get("unified"):
        _unified(cg, resources["unified"])


def shares_to_weight(shares: int) -> int:
    """cpu.shares [2, 262144] -> cpu.weight [1, 10000], linearly, as runc and crun map it."""
    if shares <= 0:
        return 0
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def weight_to_shares(weight: int) -> int:
    """cpu.weight -> cpu.shares, the inverse of `shares_to_weight`."""
    if weight <= 0:
        return 0
    weight = min(max(weight, 1), 10000)
    return 2 + ((weight - 1) * 262142) // 9999


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] -> io.weight [1, 10000]."""
    if weight <= 0:
        return 0
    return max(1, 1 + ((weight - 10) * 9999) // 990)


def swap_to_v2(swap: int, limit: int) -> int | None:
    """OCI swap (memory+swap, as v1 memsw) -> memory.swap.max (swap only); -1 = max."""
    if limit == -1 and not swap:
        return -1  # unlimited memory with swap unset means unlimited swap too, as on v1
    if swap == -1:
        return -1
    if not swap:
        return None
    if limit <= 0:
        raise CgroupError("memory.swap needs memory.limit to be set on cgroup v2")
    if swap < limit:
        raise CgroupError(f"memory.swap ({swap}) must be >= memory.limit ({limit})")
    return swap - limit


def _limit_text(value: int, v2: bool) -> str:
    if value == -1:
        return "max" if v2 else "-1"
    return str(value)


def _memory(cg, m: dict, warnings: list[str]) -> None:
    version, d = cg._need("memory", "linux.resources.memory")
    limit = m.get("limit") or 0
    swap = m.get("swap") or 0
    if limit > 0 and swap > 0 and swap < limit:
        raise CgroupError(f"memory.swap ({swap}) must be >= memory.limit ({limit})")
    if m.get("checkBeforeUpdate") and limit > 0:
        usage = int(cg._read(d, "memory.usage_in_bytes" if version == 1 else "memory.current"))
        if usage > limit:
            raise CgroupError(f"memory.limit {limit} is below the current usage {usage}")
    if m.get("kernelTCP") and version != 1:
        warnings.append("memory.kernelTCP has no cgroup v2 equivalent and was ignored")
    if version == 1:
        _memory_v1(cg, d, m, limit, swap, warnings)
    else:
        _memory_v2(cg, d, m, limit, swap, warnings)


def _memory_v1(cg, d: str, m: dict, limit: int, swap: int, warnings: list[str]) -> None:
    has_swap = cg._has(d, "memory.memsw.limit_in_bytes")
    if limit == -1 and not swap:
        swap = -1
    if swap and not has_swap:
        if swap != -1:
            raise CgroupError("memory.swap needs swap accounting, which this kernel lacks")
        swap = 0
    if limit and swap:
        # The kernel keeps memsw >= limit at every step, so which goes first depends on
        # whether the limits grow or shrink.
        current = int(cg._read(d, "memory.limit_in_bytes"))
        if swap == -1 or current < swap:
            cg._write(d, "memory.memsw.limit_in_bytes", _limit_text(swap, False))
            cg._write(d, "memory.limit_in_bytes", _limit_text(limit, False))
        else:
            cg._write(d, "memory.limit_in_bytes", _limit_text(limit, False))
            cg._write(d, "memory.memsw.limit_in_bytes", _limit_text(swap, False))
    elif limit:
        cg._write(d, "memory.limit_in_bytes", _limit_text(limit, False))
    elif swap:
        cg._write(d, "memory.memsw.limit_in_bytes", _limit_text(swap, False))
    if m.get("reservation"):
        cg._write(d, "memory.soft_limit_in_bytes", _limit_text(m["reservation"], False))
    if m.get("kernel"):
        # Kernel memory limits are deprecated and refused by kernels >= 5.16.
        try:
            cg._write(d, "memory.kmem.limit_in_bytes", _limit_text(m["kernel"], False))
        except CgroupError as e:
            warnings.append(f"memory.kernel was ignored: {e}")
    if m.get("kernelTCP"):
        try:
            cg._write(d, "memory.kmem.tcp.limit_in_bytes", _limit_text(m["kernelTCP"], False))
        except CgroupError as e:
            warnings.append(f"memory.kernelTCP was ignored: {e}")
    swappiness = m.get("swappiness")
    if swappiness is not None and swappiness != -1:
        if not 0 <= swappiness <= 100:
            raise CgroupError(f"memory.swappiness {swappiness} is not in [0, 100]")
        cg._write(d, "memory.swappiness", swappiness)
    if m.get("disableOOMKiller") is not None:
        cg._write(d, "memory.oom_control", 1 if m["disableOOMKiller"] else 0)
    if m.get("useHierarchy") is not None:
        try:
            cg._write(d, "memory.use_hierarchy", 1 if m["useHierarchy"] else 0)
        except CgroupError as e:
            warnings.append(f"memory.useHierarchy was ignored: {e}")


def _memory_v2(cg, d: str, m: dict, limit: int, swap: int, warnings: list[str]) -> None:
    if limit:
        cg._write(d, "memory.max", _limit_text(limit, True))
    swap_max = swap_to_v2(swap, limit)
    if swap_max is not None:
        if cg._has(d, "memory.swap.max"):
            cg._write(d, "memory.swap.max", _limit_text(swap_max, True))
        elif swap_max != -1:
            raise CgroupError("memory.swap needs swap accounting, which this kernel lacks")
    if m.get("reservation"):
        cg._write(d, "memory.low", _limit_text(m["reservation"], True))
    if m.get("kernel"):
        warnings.append("memory.kernel has no cgroup v2 equivalent and was ignored")
    swappiness = m.get("swappiness")
    if swappiness is not None and swappiness != -1:
        warnings.append("memory.swappiness has no cgroup v2 equivalent and was ignored")
    if m.get("disableOOMKiller"):
        warnings.append("memory.disableOOMKiller has no cgroup v2 equivalent and was ignored")


def _cpu(cg, cpu: dict, warnings: list[str]) -> None:
    if cpu.get("cpus") or cpu.get("mems"):
        _version, d = cg._need("cpuset", "linux.resources.cpu.cpus/mems")
        # mems first: a v1 cpuset with cpus but no mems would still refuse tasks.
        if cpu.get("mems"):
            cg._write(d, "cpuset.mems", cpu["mems"])
        if cpu.get("cpus"):
            cg._write(d, "cpuset.cpus", cpu["cpus"])
    keys = ("shares", "quota", "period", "burst", "realtimeRuntime", "realtimePeriod")
    if not any(cpu.get(k) for k in keys) and cpu.get("idle") is None:
        return
    version, d = cg._need("cpu", "linux.resources.cpu")
    if version == 1:
        _cpu_v1(cg, d, cpu)
    else:
        _cpu_v2(cg, d, cpu)


def _cpu_v1(cg, d: str, cpu: dict) -> None:
    if cpu.get("shares"):
        cg._write(d, "cpu.shares", cpu["shares"])
    quota, period = cpu.get("quota") or 0, cpu.get("period") or 0
    if period:
        try:
            cg._write(d, "cpu.cfs_period_us", period)
        except CgroupError as e:
            # A shorter period can break the current quota's bounds: quota first then.
            if e.errno != errno.EINVAL or not quota:
                raise
            cg._write(d, "cpu.cfs_quota_us", quota)
            cg._write(d, "cpu.cfs_period_us", period)
    if quota:
        cg._write(d, "cpu.cfs_quota_us", quota)
    if cpu.get("burst"):
        cg._write(d, "cpu.cfs_burst_us", cpu["burst"])
    # The runtime may not exceed the period, so the period goes first.
    if cpu.get("realtimePeriod"):
        cg._write(d, "cpu.rt_period_us", cpu["realtimePeriod"])
    if cpu.get("realtimeRuntime"):
        try:
            cg._write(d, "cpu.rt_runtime_us", cpu["realtimeRuntime"])
        except CgroupError as e:
            if e.errno != errno.EINVAL:
                raise
            _grant_rt_budget(cg, d, cpu["realtimeRuntime"])
            cg._write(d, "cpu.rt_runtime_us", cpu["realtimeRuntime"])
    if cpu.get("idle") is not None:
        cg._write(d, "cpu.idle", cpu["idle"])


def _grant_rt_budget(cg, d: str, runtime: int) -> None:
    # New cgroups get no realtime budget and a child may only take what its parent has,
    # so every parent between the mount and us must hold the sum of its children's.
    h = cg.layout.serving["cpu"]
    parents = cg._levels(h, d)[1:-1]
    need = {d: runtime}
    for parent in reversed(parents):
        total = 0
        for entry in os.scandir(parent):
            if entry.is_dir(follow_symlinks=False):
                child = entry.path
                total += need.get(child, int(cg._read(child, "cpu.rt_runtime_us")))
        need[parent] = max(total, int(cg._read(parent, "cpu.rt_runtime_us")))
    for parent in parents:
        if need[parent] > int(cg._read(parent, "cpu.rt_runtime_us")):
            cg._write(parent, "cpu.rt_runtime_us", need[parent])


def _cpu_v2(cg, d: str, cpu: dict) -> None:
    if cpu.get("realtimeRuntime") or cpu.get("realtimePeriod"):
        raise CgroupError("realtime CPU scheduling limits are not supported on cgroup v2")
    if cpu.get("shares"):
        cg._write(d, "cpu.weight", shares_to_weight(cpu["shares"]))
    quota, period = cpu.get("quota") or 0, cpu.get("period") or 0
    if quota or period:
        current = cg._read(d, "cpu.max").split()
        if quota == -1:
            quota_text = "max"
        elif quota > 0:
            quota_text = str(quota)
        else:
            quota_text = current[0]
        cg._write(d, "cpu.max", f"{quota_text} {period or current[1]}")
    if cpu.get("burst"):
        cg._write(d, "cpu.max.burst", cpu["burst"])
    if cpu.get("idle") is not None:
        cg._write(d, "cpu.idle", cpu["idle"])


def _pids(cg, pids: dict) -> None:
    _version, d = cg._need("pids", "linux.resources.pids")
    limit = pids.get("limit") or 0
    cg._write(d, "pids.max", limit if limit > 0 else "max")


def _block_io(cg, bio: dict, warnings: list[str]) -> None:
    throttles = {
        "throttleReadBpsDevice": ("blkio.throttle.read_bps_device", "rbps"),
        "throttleWriteBpsDevice": ("blkio.throttle.write_bps_device", "wbps"),
        "throttleReadIOPSDevice": ("blkio.throttle.read_iops_device", "riops"),
        "throttleWriteIOPSDevice": ("blkio.throttle.write_iops_device", "wiops"),
    }
    if cg._serving("blkio"):
        _version, d = cg._serving("blkio")
        v2 = False
    else:
        _version, d = cg._need("io", "linux.resources.blockIO")
        v2 = True
    if v2:
        weight_file = "io.bfq.weight" if cg._has(d, "io.bfq.weight") else "io.weight"
    elif cg._has(d, "blkio.weight"):
        weight_file = "blkio.weight"
    else:
        weight_file = "blkio.bfq.weight"

    def weight_value(w: int) -> int:
        # io.weight has a wider range; the bfq files take blkio's range as is.
        return blkio_weight_to_io_weight(w) if weight_file == "io.weight" else w

    needs_weight = bio.get("weight") or any(w.get("weight") for w in bio.get("weightDevice") or [])
    if needs_weight and not cg._has(d, weight_file):
        raise CgroupError("blockIO weights need a proportional I/O scheduler (no weight file)")
    if bio.get("weight"):
        cg._write(d, weight_file, weight_value(bio["weight"]))
    if bio.get("leafWeight"):
        if v2 or not cg._has(d, "blkio.leaf_weight"):
            warnings.append("blockIO.leafWeight is not supported here and was ignored")
        else:
            cg._write(d, "blkio.leaf_weight", bio["leafWeight"])
    for dev in bio.get("weightDevice") or []:
        node = f"{dev['major']}:{dev['minor']}"
        if dev.get("weight"):
            per_device = "blkio.weight_device" if weight_file == "blkio.weight" else weight_file
            cg._write(d, per_device, f"{node} {weight_value(dev['weight'])}")
        if dev.get("leafWeight"):
            if v2 or not cg._has(d, "blkio.leaf_weight_device"):
                warnings.append("blockIO leafWeight per device is not supported here; ignored")
            else:
                cg._write(d, "blkio.leaf_weight_device", f"{node} {dev['leafWeight']}")
    for key, (v1_file, v2_key) in throttles.items():
        for dev in bio.get(key) or []:
            node, rate = f"{dev['major']}:{dev['minor']}", dev.get("rate", 0)
            if v2:
                cg._write(d, "io.max", f"{node} {v2_key}={rate or 'max'}")
            else:
                cg._write(d, v1_file, f"{node} {rate}")


def _hugepages(cg, limits: list) -> None:
    version, d = cg._need("hugetlb", "linux.resources.hugepageLimits")
    for item in limits:
        size, limit = item["pageSize"], item["limit"]
        main, rsvd = (
            (f"hugetlb.{size}.limit_in_bytes", f"hugetlb.{size}.rsvd.limit_in_bytes")
            if version == 1
            else (f"hugetlb.{size}.max", f"hugetlb.{size}.rsvd.max")
        )
        if "/" in size or not cg._has(d, main):
            raise CgroupError(f"hugepage size {size!r} is not supported by this kernel")
        cg._write(d, main, limit)
        if cg._has(d, rsvd):  # reservations count too, or the limit can be dodged
            cg._write(d, rsvd, limit)


def _network(cg, net: dict, warnings: list[str]) -> None:
    if net.get("classID") is not None:
        found = cg._serving("net_cls")
        if found and found[0] == 1:
            cg._write(found[1], "net_cls.classid", net["classID"])
        else:
            warnings.append("network.classID needs the v1 net_cls controller; ignored")
    if net.get("priorities"):
        found = cg._serving("net_prio")
        if found and found[0] == 1:
            for p in net["priorities"]:
                cg._write(found[1], "net_prio.ifpriomap", f"{p['name']} {p['priority']}")
        else:
            warnings.append("network.priorities needs the v1 net_prio controller; ignored")


def _rdma(cg, rdma: dict) -> None:
    _version, d = cg._need("rdma", "linux.resources.rdma")
    for device, limit in rdma.items():
        parts = [device]
        if limit.get("hcaHandles") is not None:
            parts.append(f"hca_handle={limit['hcaHandles']}")
        if limit.get("hcaObjects") is not None:
            parts.append(f"hca_object={limit['hcaObjects']}")
        cg._write(d, "rdma.max", " ".join(parts))


def _unified(cg, unified: dict) -> None:
    d = cg._unified_dir()
    if d is None:
        raise CgroupError("linux.resources.unified needs the cgroup v2 hierarchy")
    for key, value in unified.items():
        if "/" in key or key in (".", "..") or "." not in key.strip("."):
            raise CgroupError(f"invalid cgroup v2 file name in unified: {key!r}")
        if not cg._has(d, key):
            controller = key.split(".", 1)[0]
            raise CgroupError(
                f"unified: {key} does not exist (is the {controller} controller enabled?)"
            )
        cg._write(d, key, value)
