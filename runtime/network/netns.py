"""Network namespaces kept as files (like `ip netns add`), one per container.

The namespace is made and wired (veths, addresses, routes, published ports)
before the container's process exists, and the container joins it by path:
so the service's first instruction already has its network. A bind mount of
the namespace file keeps it alive without any process in it.

The calling thread makes it: network namespaces belong to threads, so one thread
can step into a new one and back while the others carry on (a forked child
instead cost ~10-50 ms a container under parallel load).
"""

from __future__ import annotations

import contextlib
import errno
import os

from runtime.oci import syscalls


def create_netns(path: str | os.PathLike) -> str:
    """Make a new network namespace pinned at path (idempotent); return the path."""
    path = os.fspath(path)
    if os.path.exists(path) and is_netns(path):
        return path
    with open(path, "a"):
        pass
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.unshare(syscalls.CLONE_NEWNET)
        try:
            syscalls.mount("/proc/thread-self/ns/net", path, None, syscalls.MS_BIND)
            _loopback_up()  # a new namespace's loopback is down; containers expect it up
        finally:
            # Back where this thread was (not the process's: a caller may have moved it).
            syscalls.setns(home, syscalls.CLONE_NEWNET)
    except OSError as e:
        with contextlib.suppress(OSError):
            syscalls.umount2(path, syscalls.MNT_DETACH)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise OSError(e.errno, f"could not create a network namespace at {path}: {e}") from None
    finally:
        os.close(home)
    return path


@contextlib.contextmanager
def visiting(path: str | os.PathLike):
    """The calling thread in the namespace at `path` for the block, then back where it
    was (sockets made meanwhile stay in that namespace; /proc/thread-self/net shows it)."""
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            syscalls.setns(target, syscalls.CLONE_NEWNET)
            try:
                yield
            finally:
                syscalls.setns(home, syscalls.CLONE_NEWNET)
        finally:
            os.close(home)
    finally:
        os.close(target)


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
