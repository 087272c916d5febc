"""This mount namespace's mount points, from /proc/self/mountinfo: one parser for all."""

from __future__ import annotations

import os
import re

MOUNTINFO = "/proc/self/mountinfo"
_ESCAPED = re.compile(rb"\\([0-7]{3})")  # mountinfo writes space, tab, \ and \n as \ooo


def mount_points() -> list[str]:
    with open(MOUNTINFO, "rb") as f:
        return [
            os.fsdecode(_ESCAPED.sub(lambda m: bytes([int(m[1], 8)]), line.split()[4]))
            for line in f
        ]


def is_mounted(path: str | os.PathLike) -> bool:
    """Whether something is mounted exactly on path."""
    return os.path.realpath(path) in mount_points()


def mount_points_under(path: str | os.PathLike) -> list[str]:
    """Mount points at or below path, deepest first."""
    prefix = os.path.realpath(path).rstrip("/")
    points = [p for p in mount_points() if p == prefix or p.startswith(prefix + "/")]
    return sorted(points, key=lambda p: -p.count("/"))


def unmount_under(path: str | os.PathLike) -> None:
    """Detach everything mounted at or below path, deepest first, so that removing the
    tree cannot reach into (and delete) what a mount shows."""
    from runtime.oci import syscalls

    for point in mount_points_under(path):
        try:
            syscalls.umount2(point, syscalls.MNT_DETACH)
        except OSError:
            pass  # already gone, or not ours to remove: the caller's check decides
