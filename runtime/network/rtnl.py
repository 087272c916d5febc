"""rtnetlink with pyroute2's messages: the few link, address and route requests bridge.py makes.

pyroute2 encodes and decodes every message (ifinfmsg, ifaddrmsg, rtmsg); the socket and the
request/acknowledge exchange are ours. pyroute2's IPRoute runs on asyncio and takes ~90 ms to
import, its message classes ~30 ms: the import is the longest wait of a first `up`, when
containers are ready before their bridge. Nothing is imported at module import: the shim, the
runtime and commands without networks never pay for it.

A netlink socket belongs to the network namespace it was made in: `Rtnl(netns=path)` makes
it from the calling thread (setns acts on one thread only, and goes back at once).
"""

from __future__ import annotations

import errno
import os
import socket
import struct

IFF_UP = 0x1
LOOPBACK_INDEX = 1  # the kernel gives lo index 1 in every namespace
NETLINK_ROUTE = 0
BRIDGE_PORT_HAIRPIN = 1  # IFLA_BRPORT_MODE
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: length, type, flags, sequence, port id
_RECEIVE_BUFFER = 1 << 16


def preload() -> None:
    """Import the message classes now instead of on the first request."""
    from pyroute2.netlink.rtnl import ifaddrmsg, ifinfmsg, rtmsg  # noqa: F401


class NetlinkError(OSError):
    """The kernel refused a request; errno says why (EEXIST, ENODEV ...)."""


class Rtnl:
    """A NETLINK_ROUTE socket in the namespace at `netns` (this one by default)."""

    def __init__(self, netns: str | None = None) -> None:
        self.sock = _route_socket(netns)
        self.sequence = 0
        try:
            self.sock.bind((0, 0))
        except BaseException:
            self.sock.close()
            raise

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # -- links

    def link(self, name: str) -> dict | None:
        """The link called `name` (index, up, name, mtu, mac), or None."""
        from pyroute2.netlink.rtnl import RTM_GETLINK

        try:
            (found,) = self._request(_link_message(attrs=[("IFLA_IFNAME", name)]), RTM_GETLINK)
        except NetlinkError as e:
            if e.errno == errno.ENODEV:
                return None
            raise
        return _link(found)

    def add_bridge(self, name: str, mtu: int | None = None) -> None:
        linkinfo = {"attrs": [("IFLA_INFO_KIND", "bridge")]}
        attrs = [("IFLA_IFNAME", name), *_mtu(mtu), ("IFLA_LINKINFO", linkinfo)]
        self._new_link(_link_message(up=True, attrs=attrs), create=True)

    def add_veth(
        self, host: str, peer: str, netns_fd: int, *, master: int, mtu: int | None, mac: str | None
    ) -> None:
        """A veth pair in one request: the host end up on bridge `master`, the peer in the
        namespace `netns_fd` with its final name and MAC (down: the kernel opens the peer
        before pairing the two, so it is set up afterwards)."""
        peer_attrs = [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", netns_fd), *_mtu(mtu)]
        if mac:
            peer_attrs.append(("IFLA_ADDRESS", mac))
        peer_data = {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]}
        linkinfo = {"attrs": [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", peer_data)]}
        attrs = [("IFLA_IFNAME", host), ("IFLA_MASTER", master), *_mtu(mtu)]
        attrs.append(("IFLA_LINKINFO", linkinfo))
        self._new_link(_link_message(up=True, attrs=attrs), create=True)

    def set_link(self, index: int, *, up: bool = False, mtu: int | None = None) -> None:
        self._new_link(_link_message(index, up=up, attrs=_mtu(mtu)))

    def delete_link(self, name: str) -> bool:
        """False when there was no such link."""
        from pyroute2.netlink.rtnl import RTM_DELLINK

        try:
            self._request(_link_message(attrs=[("IFLA_IFNAME", name)]), RTM_DELLINK)
        except NetlinkError as e:
            if e.errno == errno.ENODEV:
                return False
            raise
        return True

    def set_hairpin(self, index: int) -> None:
        """The bridge port sends back out where a packet came in."""
        port = {"attrs": [("IFLA_BRPORT_MODE", BRIDGE_PORT_HAIRPIN)]}
        linkinfo = {"attrs": [("IFLA_INFO_SLAVE_KIND", "bridge"), ("IFLA_INFO_SLAVE_DATA", port)]}
        self._new_link(_link_message(index, attrs=[("IFLA_LINKINFO", linkinfo)]))

    # -- addresses and routes (an existing one is left as it is)

    def add_address(self, index: int, ip: str, prefixlen: int, flags: int = 0) -> None:
        from pyroute2.netlink.rtnl import RTM_NEWADDR
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

        message = ifaddrmsg()
        message["family"] = socket.AF_INET6 if ":" in ip else socket.AF_INET
        message["prefixlen"] = prefixlen
        message["index"] = index
        attrs = [("IFA_ADDRESS", ip)]
        if message["family"] == socket.AF_INET:
            attrs.append(("IFA_LOCAL", ip))  # the address itself; IFA_ADDRESS is the peer's
        if flags:
            attrs.append(("IFA_FLAGS", flags))
        message["attrs"] = attrs
        self._create(message, RTM_NEWADDR)

    def add_default_route(self, gateway: str, oif: int, metric: int) -> None:
        from pyroute2.netlink.rtnl import RTM_NEWROUTE, rt_proto, rt_scope, rt_type
        from pyroute2.netlink.rtnl.rtmsg import rtmsg

        message = rtmsg()
        message["family"] = socket.AF_INET6 if ":" in gateway else socket.AF_INET
        message["table"] = 254  # RT_TABLE_MAIN
        message["proto"] = rt_proto["static"]
        message["scope"] = rt_scope["universe"]
        message["type"] = rt_type["unicast"]
        message["attrs"] = [("RTA_GATEWAY", gateway), ("RTA_OIF", oif), ("RTA_PRIORITY", metric)]
        self._create(message, RTM_NEWROUTE)

    # -- the exchange

    def _new_link(self, message, create: bool = False) -> None:
        from pyroute2.netlink.rtnl import RTM_NEWLINK

        self._request(message, RTM_NEWLINK, create=create)

    def _create(self, message, message_type: int) -> None:
        try:
            self._request(message, message_type, create=True)
        except NetlinkError as e:
            if e.errno != errno.EEXIST:
                raise

    def _request(self, message, message_type: int, *, create: bool = False) -> list:
        """Send `message`; return the messages the kernel answers with (decoded, of
        the same class) once it acknowledges, or raise the error it answers with."""
        from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR

        self.sequence += 1
        flags = NLM_F_REQUEST | NLM_F_ACK
        if create:
            flags |= NLM_F_CREATE | NLM_F_EXCL
        header = message["header"]
        header["type"], header["flags"] = message_type, flags
        header["sequence_number"] = self.sequence
        message.encode()
        self.sock.send(message.data)
        answers = []
        while True:
            data = self.sock.recv(_RECEIVE_BUFFER)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, _flags, sequence, _port = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    raise NetlinkError(errno.EBADMSG, "netlink: a truncated answer")
                part = data[offset : offset + length]
                offset += (length + 3) & ~3
                if sequence != self.sequence:
                    continue  # an answer to an earlier request that gave up
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", part, _HEADER.size)[0]
                    if code:
                        raise NetlinkError(code, f"netlink: {os.strerror(code)}")
                    return answers
                answer = type(message)(part)
                answer.decode()
                answers.append(answer)


def _link_message(index: int = 0, *, up: bool = False, attrs=()):
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    message = ifinfmsg()
    message["index"] = index
    if up:
        message["flags"] = message["change"] = IFF_UP
    message["attrs"] = list(attrs)
    return message


def _mtu(mtu: int | None) -> list:
    return [("IFLA_MTU", mtu)] if mtu else []


def _link(message) -> dict:
    return {
        "index": message["index"],
        "up": bool(message["flags"] & IFF_UP),
        "name": message.get_attr("IFLA_IFNAME"),
        "mtu": message.get_attr("IFLA_MTU"),
        "mac": message.get_attr("IFLA_ADDRESS"),
    }


def _route_socket(netns: str | None) -> socket.socket:
    """A NETLINK_ROUTE socket, made by this thread in the namespace at `netns` if given."""
    import contextlib

    from runtime.network.netns import visiting

    with visiting(netns) if netns else contextlib.nullcontext():
        return socket.socket(
            socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
