"""Linux bridges and veth pairs over rtnetlink (rtnl.py, pyroute2), and the sysctls they need.

Every function is idempotent (an existing link is reused or replaced), so the manager can
repeat any step after a crash. Each call opens its own netlink socket (~1.5 ms), so calls
share nothing. In a command, the netlink calls run in its helper (netlink_worker.py); the
checks that read procfs or the interface ioctls run where they are asked.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Sequence

from runtime.network.rtnl import IFF_UP, LOOPBACK_INDEX, NetlinkError, Rtnl
from runtime.record import record

BRIDGE_PREFIX = "cbr-"
VETH_PREFIX = "cvh-"  # host end; the container end is named eth0, eth1, ... at once
IFA_F_NODAD = 0x02  # IPv6 addresses usable at once, without duplicate address detection
IFNAMSIZ = 15


class BridgeError(Exception):
    pass


def short_name(prefix: str, *parts: str) -> str:
    """prefix + hash of parts, within the kernel's 15-character interface name limit."""
    import hashlib  # OpenSSL's: ~4 ms, for the commands that name links only

    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    return (prefix + digest)[:IFNAMSIZ]


def _add_address(rtnl: Rtnl, index: int, address: str) -> None:
    iface = ipaddress.ip_interface(address)
    flags = IFA_F_NODAD if iface.version == 6 else 0
    rtnl.add_address(index, str(iface.ip), iface.network.prefixlen, flags)


def link_names() -> set[str]:
    """Names of the links in the calling thread's network namespace.

    Read from procfs, which lists every device of the namespace, up or down: asking
    whether a link exists then needs no netlink socket, and a command that only checks
    (a no-op `up`, the stale-endpoint sweep) never imports pyroute2.
    """
    with open("/proc/thread-self/net/dev") as f:
        rows = f.read().splitlines()[2:]  # two header lines
    return {row.partition(":")[0].strip() for row in rows}


def link_exists(ifname: str) -> bool:
    return ifname in link_names()


def links_with_prefix(*prefixes: str) -> list[str]:
    """Names of the links in this netns that start with one of `prefixes`."""
    return sorted(n for n in link_names() if n.startswith(prefixes))


def remove_link(ifname: str) -> bool:
    """Delete a link (a veth takes its peer with it); False if it was already gone."""
    return link_exists(ifname) and delete_link(ifname)


def delete_link(ifname: str) -> bool:
    """remove_link's netlink half: False if there was no such link."""
    with Rtnl() as rtnl:
        return rtnl.delete_link(ifname)


def write_sysctl(path: str, value: str) -> None:
    """Write /proc/sys/<path> in the calling thread's network namespace, if it differs."""
    full = os.path.join("/proc/sys", path)
    with open(full) as f:
        if f.read().strip() == value:
            return
    with open(full, "w") as f:
        f.write(value)


def enable_forwarding(ipv6: bool = False) -> None:
    write_sysctl("net/ipv4/ip_forward", "1")
    if ipv6:
        write_sysctl("net/ipv6/conf/all/forwarding", "1")


def ensure_bridge(name: str, addresses: Sequence[str], mtu: int | None = None) -> None:
    """The bridge `name` exists, is up, carries the gateway `addresses` ("ip/prefix")."""
    with Rtnl() as rtnl:
        link = rtnl.link(name)
        if link is None:
            try:
                rtnl.add_bridge(name, mtu)
            except NetlinkError as e:
                if e.errno != errno.EEXIST:
                    raise
            link = rtnl.link(name)
        if not link["up"] or (mtu and link["mtu"] != mtu):
            rtnl.set_link(link["index"], up=True, mtu=mtu)
        for address in addresses:
            _add_address(rtnl, link["index"], address)
    # Published ports reached from 127.0.0.1 are routed out of this bridge with a loopback
    # source (masqueraded on the way): the kernel drops those unless this is set.
    write_sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")


def bridge_ready(name: str, addresses: Sequence[str], mtu: int | None = None) -> bool:
    """Whether ensure_bridge would change nothing, asked without netlink: through the
    C library's interface ioctls and procfs, so a command that finds its network in place
    (a no-op `up`, `start`, `run`) never waits for pyroute2."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            flags = struct.unpack_from("H", _ifreq(sock, _SIOCGIFFLAGS, name), 16)[0]
            if not flags & IFF_UP:
                return False
            if mtu and struct.unpack_from("i", _ifreq(sock, _SIOCGIFMTU, name), 16)[0] != mtu:
                return False
            ipv4 = _ifreq(sock, _SIOCGIFADDR, name)[20:24]  # sockaddr_in's address
            netmask = _ifreq(sock, _SIOCGIFNETMASK, name)[20:24]
        with open("/proc/thread-self/net/if_inet6") as f:
            ipv6 = {
                (int(row[0], 16), int(row[2], 16)) for row in map(str.split, f) if row[5] == name
            }
        with open(f"/proc/sys/net/ipv4/conf/{name}/route_localnet") as f:
            if f.read().strip() != "1":
                return False
    except OSError:  # no such link (ENODEV), no IPv4 address on it (EADDRNOTAVAIL)
        return False
    for address in addresses:
        iface = ipaddress.ip_interface(address)
        if iface.version == 4:
            if (ipv4, netmask) != (iface.ip.packed, iface.network.netmask.packed):
                return False
        elif (int(iface.ip), iface.network.prefixlen) not in ipv6:
            return False
    return True


_SIOCGIFFLAGS, _SIOCGIFADDR, _SIOCGIFNETMASK, _SIOCGIFMTU = 0x8913, 0x8915, 0x891B, 0x8921
_SIOCGIFHWADDR = 0x8927


def _ifreq(sock: socket.socket, request: int, name: str) -> bytes:
    """A struct ifreq for `name` (16 bytes of name, a 24-byte union) as the kernel fills it."""
    import fcntl

    return fcntl.ioctl(sock.fileno(), request, struct.pack("16s24x", name.encode()))


def mac_for(ipv4: str | None) -> str | None:
    """A locally administered MAC derived from the IPv4 address (stable across restarts)."""
    if not ipv4:
        return None
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ipv4).packed)


@record
class Endpoint:
    """What a container's interface on one network gets."""

    host_ifname: str  # the veth end on the bridge
    ifname: str  # inside the container; None picks the next free ethN
    addresses: tuple[str, ...]  # "ip/prefix", IPv4 and/or IPv6
    gateways: tuple[str, ...] = ()  # default routes (empty: internal network)
    mac: str | None = None
    mtu: int | None = None
    metric: int = 100  # default route metric: lower wins


def _index_and_mac(netns: str, ifname: str) -> tuple[int, str]:
    """The interface's index and MAC inside `netns`, through the C library's ioctls made
    from there (a netlink link request would be decoded whole: ~0.5 ms of CPU)."""
    from runtime.network.netns import visiting

    try:
        with (
            visiting(netns),
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock,
        ):
            index = socket.if_nametoindex(ifname)
            hardware = _ifreq(sock, _SIOCGIFHWADDR, ifname)[18:24]  # sockaddr's sa_data
    except OSError:
        raise BridgeError(f"veth end {ifname} did not arrive in {netns}") from None
    return index, ":".join(f"{b:02x}" for b in hardware)


def next_ifname(netns: str) -> str:
    """The first ethN not yet used inside the namespace at `netns` (its procfs list)."""
    from runtime.network.netns import visiting

    with visiting(netns):
        names = link_names()
    n = 0
    while f"eth{n}" in names:
        n += 1
    return f"eth{n}"


def attach_veth(bridge: str, netns: str, endpoint: Endpoint) -> str:
    """Connect the namespace at `netns` to `bridge` with a veth pair; return the MAC inside.

    The pair is made in one request, its container end already named and addressed by MAC
    in the namespace; a host end left by an earlier attempt is removed first, so a retry
    starts clean.
    """
    remove_link(endpoint.host_ifname)
    # Indexes on this side come from the C library (an ioctl), not a netlink request and
    # the decoding of a whole link message: pyroute2 costs ~0.5 ms of CPU per request.
    try:
        master = socket.if_nametoindex(bridge)
    except OSError:
        raise BridgeError(f"bridge {bridge} does not exist") from None
    with Rtnl() as host:
        ns_fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                # No MTU given: the kernel's default, as the bridge's own when made
                # without one (ensure_bridge sets the network's MTU on both).
                host.add_veth(
                    endpoint.host_ifname,
                    endpoint.ifname,
                    ns_fd,
                    master=master,
                    mtu=endpoint.mtu,
                    mac=endpoint.mac,
                )
            except NetlinkError as e:
                if e.errno == errno.EEXIST:
                    raise BridgeError(
                        f"{netns} already has an interface {endpoint.ifname}"
                    ) from None
                raise
        finally:
            os.close(ns_fd)
        try:
            # Where br_netfilter is loaded, a container's packets to its own published port
            # are DNAT'ed on the bridge and must go back out the port they came in (hairpin).
            host.set_hairpin(socket.if_nametoindex(endpoint.host_ifname))
            index, mac = _index_and_mac(netns, endpoint.ifname)
            with Rtnl(netns) as inside:
                for address in endpoint.addresses:
                    _add_address(inside, index, address)
                inside.set_link(index, up=True)
                inside.set_link(LOOPBACK_INDEX, up=True)
                for gateway in endpoint.gateways:
                    inside.add_default_route(gateway, index, endpoint.metric)
                return mac
        except BaseException:
            host.delete_link(endpoint.host_ifname)
            raise
