"""A minimal rtnetlink client: the few link, address and route requests bridge.py makes.

pyroute2 did this before; importing it cost ~120-190 ms of every `up` and `down`, and each
of its sockets ~5 ms of CPU more. These requests are plain structs, so the encoding lives
here in a few pure functions (unit-tested as bytes) around one socket class.

A socket belongs to the network namespace it was made in: `Rtnl(netns=path)` makes it in
another one by moving the calling thread there and back (setns acts on one thread only).
"""

from __future__ import annotations

import errno
import os
import socket
import struct

NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLM_F_DUMP = 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_NEWROUTE = 20, 24
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_PROTINFO, IFLA_LINKINFO, IFLA_NET_NS_FD = 12, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFLA_BRPORT_MODE = 4  # hairpin
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_OIF, RTA_GATEWAY, RTA_PRIORITY = 4, 5, 6
NLA_F_NESTED = 0x8000
IFF_UP = 0x1
LOOPBACK_INDEX = 1  # the kernel gives lo index 1 in every namespace
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1
CLONE_NEWNET = 0x40000000

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg
_ATTR = struct.Struct("=HH")


class NetlinkError(OSError):
    """The kernel refused a request; errno says why (EEXIST, ENODEV ...)."""


# ---------------------------------------------------------------- encoding (pure)


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    length = _ATTR.size + len(payload)
    return _ATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def string(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def ifinfo(index: int = 0, *, up: bool = False, family: int = 0) -> bytes:
    flags = IFF_UP if up else 0
    return _IFINFO.pack(family, 0, index, flags, flags)


def link_attrs(
    ifname: str | None = None,
    *,
    mtu: int | None = None,
    mac: str | None = None,
    master: int | None = None,
    netns_fd: int | None = None,
) -> bytes:
    parts = []
    if ifname is not None:
        parts.append(string(IFLA_IFNAME, ifname))
    if mtu:
        parts.append(u32(IFLA_MTU, mtu))
    if mac:
        parts.append(attr(IFLA_ADDRESS, mac_bytes(mac)))
    if master is not None:
        parts.append(u32(IFLA_MASTER, master))
    if netns_fd is not None:
        parts.append(u32(IFLA_NET_NS_FD, netns_fd))
    return b"".join(parts)


def veth_request(
    host: str, peer: str, netns_fd: int, *, master: int, mtu: int | None, mac: str | None
) -> bytes:
    """RTM_NEWLINK body for a veth pair made in one request: the host end up on the bridge,
    the peer in the namespace `netns_fd` with its final name and MAC (down: the kernel opens
    the peer before pairing the two, so it must be set up afterwards)."""
    peer_info = ifinfo() + link_attrs(peer, mtu=mtu, mac=mac, netns_fd=netns_fd)
    kind = attr(IFLA_INFO_KIND, b"veth")
    data = nested(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_info))
    return (
        ifinfo(up=True)
        + link_attrs(host, mtu=mtu, master=master)
        + nested(IFLA_LINKINFO, kind, data)
    )


def address_request(index: int, ip: str, prefixlen: int, flags: int = 0) -> bytes:
    """RTM_NEWADDR body: ip/prefixlen on link `index` (IPv4 with its broadcast)."""
    import ipaddress

    iface = ipaddress.ip_interface(f"{ip}/{prefixlen}")
    family = socket.AF_INET6 if iface.version == 6 else socket.AF_INET
    packed = iface.ip.packed
    body = _IFADDR.pack(family, prefixlen, flags, 0, index) + attr(IFA_ADDRESS, packed)
    if iface.version == 4:
        body += attr(IFA_LOCAL, packed)
        if prefixlen < 31:
            body += attr(IFA_BROADCAST, iface.network.broadcast_address.packed)
    return body


def default_route_request(gateway: str, oif: int, metric: int) -> bytes:
    import ipaddress

    address = ipaddress.ip_address(gateway)
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    header = _RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST, 0)
    return (
        header + attr(RTA_GATEWAY, address.packed) + u32(RTA_OIF, oif) + u32(RTA_PRIORITY, metric)
    )


def hairpin_request(index: int) -> bytes:
    """RTM_SETLINK body (AF_BRIDGE): the bridge port sends back out where it came in."""
    return ifinfo(index, family=socket.AF_BRIDGE) + nested(
        IFLA_PROTINFO, attr(IFLA_BRPORT_MODE, b"\1")
    )


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return _HEADER.pack(_HEADER.size + len(body), kind, flags, seq, 0) + body


def parse_attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Top-level attributes of a message body from `offset` (the last of a kind wins)."""
    found = {}
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            break
        found[kind & ~NLA_F_NESTED] = data[offset + _ATTR.size : offset + length]
        offset += (length + 3) & ~3
    return found


def parse_messages(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, seq, body) of each message in one datagram."""
    out = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, flags, seq, _pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            break
        out.append((kind, flags, seq, data[offset + _HEADER.size : offset + length]))
        offset += (length + 3) & ~3
    return out


def error_code(body: bytes) -> int:
    """The errno of an NLMSG_ERROR body (0 for an acknowledgement)."""
    return -struct.unpack_from("=i", body)[0]


def link_from(body: bytes) -> dict:
    """index, flags, name, mtu, mac of an RTM_NEWLINK body."""
    _family, _type, index, flags, _change = _IFINFO.unpack_from(body)
    attrs = parse_attrs(body, _IFINFO.size)
    mac = attrs.get(IFLA_ADDRESS)
    return {
        "index": index,
        "up": bool(flags & IFF_UP),
        "name": attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(),
        "mtu": struct.unpack("=I", attrs[IFLA_MTU])[0] if IFLA_MTU in attrs else None,
        "mac": ":".join(f"{b:02x}" for b in mac) if mac else None,
    }


# ---------------------------------------------------------------- the socket


class Rtnl:
    """One NETLINK_ROUTE socket; requests are answered in order (one at a time)."""

    def __init__(self, netns: str | None = None) -> None:
        self.sock = _socket_in(netns) if netns else _socket()
        self.seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def request(self, kind: int, body: bytes, flags: int = 0) -> list[bytes]:
        """Send one request; the bodies of its replies. NetlinkError if refused."""
        self.seq += 1
        seq = self.seq
        dump = flags & NLM_F_DUMP == NLM_F_DUMP
        flags |= NLM_F_REQUEST | (0 if dump else NLM_F_ACK)
        self.sock.send(message(kind, flags, seq, body))
        replies = []
        while True:
            for reply_kind, _flags, reply_seq, reply in parse_messages(self.sock.recv(1 << 16)):
                if reply_seq != seq:
                    continue  # a late answer to an earlier request
                if reply_kind == NLMSG_ERROR:
                    code = error_code(reply)
                    if code:
                        raise NetlinkError(code, f"netlink: {os.strerror(code)}")
                    return replies
                if reply_kind == NLMSG_DONE:
                    return replies
                replies.append(reply)

    # -- links

    def link(self, name: str) -> dict | None:
        """The link called `name` (index, up, name, mtu, mac), or None."""
        try:
            (reply,) = self.request(RTM_GETLINK, ifinfo() + link_attrs(name))
        except NetlinkError as e:
            if e.errno == errno.ENODEV:
                return None
            raise
        return link_from(reply)

    def links(self) -> list[dict]:
        return [link_from(r) for r in self.request(RTM_GETLINK, ifinfo(), NLM_F_DUMP)]

    def add_link(self, body: bytes) -> None:
        self.request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL)

    def set_link(self, index: int, *, up: bool = False, **changes) -> None:
        self.request(RTM_NEWLINK, ifinfo(index, up=up) + link_attrs(**changes))

    def delete_link(self, name: str) -> bool:
        """False when there was no such link."""
        try:
            self.request(RTM_DELLINK, ifinfo() + link_attrs(name))
        except NetlinkError as e:
            if e.errno == errno.ENODEV:
                return False
            raise
        return True

    # -- addresses and routes (an existing one is left as it is)

    def add_address(self, index: int, ip: str, prefixlen: int, flags: int = 0) -> None:
        self._create(RTM_NEWADDR, address_request(index, ip, prefixlen, flags))

    def add_default_route(self, gateway: str, oif: int, metric: int) -> None:
        self._create(RTM_NEWROUTE, default_route_request(gateway, oif, metric))

    def set_hairpin(self, index: int) -> None:
        self.request(RTM_SETLINK, hairpin_request(index))

    def _create(self, kind: int, body: bytes) -> None:
        try:
            self.request(kind, body, NLM_F_CREATE | NLM_F_EXCL)
        except NetlinkError as e:
            if e.errno != errno.EEXIST:
                raise


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
    try:
        sock.bind((0, 0))
    except BaseException:
        sock.close()
        raise
    return sock


def _socket_in(netns: str) -> socket.socket:
    from runtime.oci import syscalls

    target = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            syscalls.setns(target, CLONE_NEWNET)
            try:
                return _socket()
            finally:
                syscalls.setns(home, CLONE_NEWNET)
        finally:
            os.close(home)
    finally:
        os.close(target)
