"""rtnetlink through pyroute2: the few link, address and route requests bridge.py makes.

pyroute2 costs ~190 ms to import, so it is imported on the first request, never at module
import: the shim, the runtime and commands without networks never pay for it.

A netlink socket belongs to the network namespace it was made in. pyroute2 forks a child to
make one in another namespace; `Rtnl(netns=path)` instead makes it from the calling thread
(setns acts on one thread only, and goes back at once) and hands pyroute2 the descriptor.
"""

from __future__ import annotations

import errno
import os
import socket

IFF_UP = 0x1
LOOPBACK_INDEX = 1  # the kernel gives lo index 1 in every namespace
NETLINK_ROUTE = 0
CLONE_NEWNET = 0x40000000


def preload() -> None:
    """Import pyroute2's IPRoute now instead of on the first request."""
    from pyroute2.iproute.linux import IPRoute  # noqa: F401


class NetlinkError(OSError):
    """The kernel refused a request; errno says why (EEXIST, ENODEV ...)."""


class Rtnl:
    """One pyroute2 IPRoute in the namespace at `netns` (this one by default)."""

    def __init__(self, netns: str | None = None) -> None:
        from pyroute2.iproute.linux import IPRoute

        if netns is None:
            self.ipr = IPRoute()
            return
        fd = _socket_in(netns).detach()
        try:
            self.ipr = IPRoute(fileno=fd)
        except BaseException:
            os.close(fd)
            raise

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.ipr.close()

    def _call(self, method: str, *args, **kwargs):
        from pyroute2.netlink.exceptions import NetlinkError as RequestRefused

        try:
            return getattr(self.ipr, method)(*args, **kwargs)
        except RequestRefused as e:
            raise NetlinkError(e.code, f"netlink: {os.strerror(e.code)}") from None

    # -- links

    def link(self, name: str) -> dict | None:
        """The link called `name` (index, up, name, mtu, mac), or None."""
        try:
            (found,) = self._call("link", "get", ifname=name)
        except NetlinkError as e:
            if e.errno == errno.ENODEV:
                return None
            raise
        return _link(found)

    def links(self) -> list[dict]:
        return [_link(found) for found in self._call("get_links")]

    def add_bridge(self, name: str, mtu: int | None = None) -> None:
        self._call("link", "add", ifname=name, kind="bridge", state="up", **_mtu(mtu))

    def add_veth(
        self, host: str, peer: str, netns_fd: int, *, master: int, mtu: int | None, mac: str | None
    ) -> None:
        """A veth pair in one request: the host end up on bridge `master`, the peer in the
        namespace `netns_fd` with its final name and MAC (down: the kernel opens the peer
        before pairing the two, so it is set up afterwards)."""
        peer_spec = {"ifname": peer, "net_ns_fd": netns_fd, **_mtu(mtu)}
        if mac:
            peer_spec["address"] = mac
        self._call(
            "link",
            "add",
            ifname=host,
            kind="veth",
            peer=peer_spec,
            master=master,
            state="up",
            **_mtu(mtu),
        )

    def set_link(self, index: int, *, up: bool = False, mtu: int | None = None) -> None:
        changes = {"state": "up"} if up else {}
        self._call("link", "set", index=index, **changes, **_mtu(mtu))

    def delete_link(self, name: str) -> bool:
        """False when there was no such link."""
        try:
            self._call("link", "del", ifname=name)
        except NetlinkError as e:
            if e.errno == errno.ENODEV:
                return False
            raise
        return True

    def set_hairpin(self, index: int) -> None:
        """The bridge port sends back out where a packet came in."""
        self._call("brport", "set", index=index, mode=1)

    # -- addresses and routes (an existing one is left as it is)

    def add_address(self, index: int, ip: str, prefixlen: int, flags: int = 0) -> None:
        extra = {"flags": flags} if flags else {}
        self._create("addr", "add", index=index, address=ip, prefixlen=prefixlen, **extra)

    def add_default_route(self, gateway: str, oif: int, metric: int) -> None:
        family = socket.AF_INET6 if ":" in gateway else socket.AF_INET
        self._create(
            "route", "add", dst="default", gateway=gateway, oif=oif, priority=metric, family=family
        )

    def _create(self, method: str, *args, **kwargs) -> None:
        try:
            self._call(method, *args, **kwargs)
        except NetlinkError as e:
            if e.errno != errno.EEXIST:
                raise


def _mtu(mtu: int | None) -> dict:
    return {"mtu": mtu} if mtu else {}


def _link(message) -> dict:
    return {
        "index": message["index"],
        "up": bool(message["flags"] & IFF_UP),
        "name": message.get_attr("IFLA_IFNAME"),
        "mtu": message.get_attr("IFLA_MTU"),
        "mac": message.get_attr("IFLA_ADDRESS"),
    }


def _socket_in(netns: str) -> socket.socket:
    """A NETLINK_ROUTE socket made in the namespace at `netns`, by this thread."""
    from runtime.oci import syscalls

    target = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            syscalls.setns(target, CLONE_NEWNET)
            try:
                return socket.socket(
                    socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_ROUTE
                )
            finally:
                syscalls.setns(home, CLONE_NEWNET)
        finally:
            os.close(home)
    finally:
        os.close(target)
