"""Hybrid cgroup hosts (v1 controllers + a cgroup2 mount): crun and runc refuse
to run while the cgroup2 mount owns a controller. For the test session we bind
each such controller to a v1 hierarchy of its own, and undo it afterwards."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator

CGROUP_ROOT = "/sys/fs/cgroup"
UNIFIED = f"{CGROUP_ROOT}/unified"


def _fs_type(path: str) -> str:
    result = subprocess.run(["stat", "-fc", "%T", path], capture_output=True, text=True)
    return result.stdout.strip()


def controllers_held_by_unified() -> list[str]:
    if os.geteuid() != 0 or _fs_type(CGROUP_ROOT) != "tmpfs" or _fs_type(UNIFIED) != "cgroup2fs":
        return []
    with open(f"{UNIFIED}/cgroup.controllers") as fh:
        return fh.read().split()


@contextlib.contextmanager
def v1_for_unified_controllers() -> Iterator[list[str]]:
    """Mount every controller the unified hierarchy holds as v1; unmount on exit."""
    mounted: list[str] = []
    for controller in controllers_held_by_unified():
        target = f"{CGROUP_ROOT}/{controller}"
        os.makedirs(target, exist_ok=True)
        result = subprocess.run(["mount", "-t", "cgroup", "-o", controller, "cgroup", target])
        if result.returncode == 0:
            mounted.append(target)
    try:
        yield mounted
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", target], check=False)
            with contextlib.suppress(OSError):
                os.rmdir(target)
