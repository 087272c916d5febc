"""A network namespace of the test session's own, so network tests never touch the host.

Everything a network test does (bridges, veths, routes, nftables tables, sysctls under
/proc/sys/net, sockets) happens inside a netns that this module creates and removes, so the
host's interfaces, routes and firewall rules stay untouched and no packet leaves the machine.

    from tests import netns

    netns_sandbox = netns.netns_sandbox   # pytest finds fixtures by module attribute
    in_netns = netns.in_netns

    def test_bridge(in_netns):            # the test's thread runs inside the sandbox netns
        ...                               # subprocesses started here inherit it

`netns_sandbox` (session) creates `composer-test-<pid>-<random>` with `ip netns add` and loopback up;
`in_netns` (per test) moves the calling thread into it and back. Threads a test starts while
inside inherit the namespace. `ProcessNetns` is a stand-in container: a sleeping process in a
fresh netns of its own, addressed like a container (/proc/PID/ns/net). Before connecting to a
container's address, call `assert_local_route` so traffic can only go through our bridges.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"


def _setns(fd: int) -> None:
    from runtime.oci import syscalls

    syscalls.setns(fd, CLONE_NEWNET)


def netns_inode(path: str = "/proc/thread-self/ns/net") -> int:
    return os.stat(path).st_ino


# The namespace this process started in: the host's, as far as the tests are concerned.
_ORIGIN_NETNS = netns_inode("/proc/self/ns/net")


def host_netns_inode() -> int:
    return _ORIGIN_NETNS


@contextlib.contextmanager
def inside(netns_path: str) -> Iterator[None]:
    """Run the calling thread in the netns at `netns_path`; back to where it was afterwards."""
    previous = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(previous)
    finally:
        os.close(target)
        os.close(previous)


class NetnsSandbox:
    """A named network namespace (/run/netns/<name>) the tests may change freely."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = os.path.join(NETNS_RUN_DIR, name)

    @classmethod
    def create(cls, name: str | None = None) -> NetnsSandbox:
        # Unique per sandbox: every module that names the session fixture gets its own.
        sandbox = cls(name or f"composer-test-{os.getpid()}-{os.urandom(3).hex()}")
        subprocess.run(["ip", "netns", "add", sandbox.name], check=True, capture_output=True)
        subprocess.run(
            ["ip", "-n", sandbox.name, "link", "set", "lo", "up"], check=True, capture_output=True
        )
        return sandbox

    @property
    def inode(self) -> int:
        return netns_inode(self.path)

    @contextlib.contextmanager
    def enter(self) -> Iterator[NetnsSandbox]:
        """Run the calling thread inside the sandbox; back to where it was afterwards."""
        with inside(self.path):
            # Refuse to run a network test in the host's namespace, whatever went wrong.
            if netns_inode() == host_netns_inode() or netns_inode() != self.inode:
                raise RuntimeError(f"could not enter netns {self.name}")
            yield self

    def remove(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def exists(self) -> bool:
        return os.path.exists(self.path)


class ProcessNetns:
    """A sleeping process in a fresh network namespace: the network side of a container."""

    def __init__(self, lifetime: int = 300) -> None:
        self.proc = subprocess.Popen(
            ["unshare", "--net", "sleep", str(lifetime)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pid = self.proc.pid
        self.path = f"/proc/{self.pid}/ns/net"
        parent = netns_inode()
        deadline = time.monotonic() + 10
        while netns_inode(self.path) == parent:  # unshare has not run yet
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("unshare --net did not start")
            time.sleep(0.005)

    def run(self, *argv: str, timeout: float = 20, check: bool = True, **kwargs):
        """Run argv inside this namespace (nsenter), captured as text."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        result = subprocess.run(["nsenter", f"--net={self.path}", *argv], timeout=timeout, **kwargs)
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} exited {result.returncode}: {result.stderr}")
        return result

    def popen(self, *argv: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(["nsenter", f"--net={self.path}", *argv], **kwargs)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def __enter__(self) -> ProcessNetns:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def route_of(address: str, netns: ProcessNetns | None = None) -> dict:
    """`ip route get ADDRESS` in the current netns (or in `netns`), as a dict."""
    argv = ["ip", "-j", "route", "get", address]
    if netns is not None:
        out = netns.run(*argv).stdout
    else:
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return json.loads(out)[0]


def assert_local_route(
    address: str, devices: set[str] | list[str], netns: ProcessNetns | None = None
) -> None:
    """Fail unless `address` is reached directly (no gateway) through one of `devices`."""
    route = route_of(address, netns)
    assert "gateway" not in route, f"{address} routes via gateway {route['gateway']}: {route}"
    assert route.get("dev") in set(devices), f"{address} routes via {route.get('dev')}: {route}"


@pytest.fixture(scope="session")
def netns_sandbox() -> Iterator[NetnsSandbox]:
    if os.geteuid() != 0:
        pytest.fail("network tests need root (they create a network namespace)")
    sandbox = NetnsSandbox.create()
    try:
        yield sandbox
    finally:
        sandbox.remove()
    assert not sandbox.exists(), f"netns {sandbox.name} left behind"


@pytest.fixture
def in_netns(netns_sandbox: NetnsSandbox) -> Iterator[NetnsSandbox]:
    with netns_sandbox.enter():
        yield netns_sandbox
