"""Network namespaces kept as files (like `ip netns add`), one per container.

The namespace is made and wired (veths, addresses, routes, published ports)
before the container's process exists, and the container joins it by path:
so the service's first instruction already has its network. A bind mount of
/proc/<pid>/ns/net keeps the namespace alive without any process in it.
"""

from __future__ import annotations

import contextlib
import errno
import os

from runtime.oci import syscalls


def create_netns(path: str | os.PathLike) -> str:
    """Make a new network namespace pinned at path (idempotent); return the path."""
    path = os.fspath(path)
    if is_netns(path):
        return path
    with open(path, "a"):
        pass
    pid = os.fork()
    if pid == 0:  # child: a new netns, bound onto the file; same mount namespace as ours
        code = 1
        try:
            syscalls.unshare(syscalls.CLONE_NEWNET)
            syscalls.mount("/proc/self/ns/net", path, None, syscalls.MS_BIND)
            _loopback_up()  # a new namespace's loopback is down; containers expect it up
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise OSError(errno.EPERM, f"could not create a network namespace at {path}")
    return path


def _loopback_up() -> None:
    import fcntl
    import socket
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


def is_netns(path: str | os.PathLike) -> bool:
    """True when path is a mounted namespace file (not just an empty file)."""
    from runtime.mounts import is_mounted

    return is_mounted(path)


def remove_netns(path: str | os.PathLike) -> None:
    """Unpin and delete; the namespace ends once nothing else holds it."""
    path = os.fspath(path)
    while is_netns(path):
        try:
            syscalls.umount2(path, syscalls.MNT_DETACH)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            break
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
