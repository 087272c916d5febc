"""Linux bridges and veth pairs over netlink (pyroute2), plus the few sysctls they need.

Every function is idempotent (an existing link is reused or replaced), so the manager can
repeat any step after a crash. pyroute2 costs ~190 ms to import: it is imported inside the
functions, never at module import.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

BRIDGE_PREFIX = "cbr-"
VETH_PREFIX = "cvh-"  # host end; the container end is renamed eth0, eth1, ...
VETH_PEER_PREFIX = "cvp-"  # container end until it is renamed
IFA_F_NODAD = 0x02  # IPv6 addresses usable at once, without duplicate address detection
IFNAMSIZ = 15


class BridgeError(Exception):
    pass


def short_name(prefix: str, *parts: str) -> str:
    """prefix + hash of parts, within the kernel's 15-character interface name limit."""
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    return (prefix + digest)[:IFNAMSIZ]


@contextlib.contextmanager
def _iproute(netns: str | None = None) -> Iterator:
    from pyroute2 import IPRoute

    # flags=0: a netns path that does not exist is an error, never created
    ipr = IPRoute(netns=netns, flags=0) if netns else IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def _iface(address: str) -> tuple[str, int]:
    iface = ipaddress.ip_interface(address)
    return str(iface.ip), iface.network.prefixlen


def _add_address(ipr, index: int, address: str) -> None:
    ip, prefix = _iface(address)
    kwargs = {"flags": IFA_F_NODAD} if ":" in ip else {}
    try:
        ipr.addr("add", index=index, address=ip, prefixlen=prefix, **kwargs)
    except Exception as e:
        if getattr(e, "code", None) != errno.EEXIST:
            raise


def link_exists(ifname: str) -> bool:
    with _iproute() as ipr:
        return _index(ipr, ifname) is not None


def links_with_prefix(*prefixes: str) -> list[str]:
    """Names of the links in this netns that start with one of `prefixes`."""
    with _iproute() as ipr:
        names = [link.get("ifname") for link in ipr.get_links()]
    return sorted(n for n in names if n and n.startswith(prefixes))


def remove_link(ifname: str) -> bool:
    """Delete a link (a veth takes its peer with it); False if it was already gone."""
    with _iproute() as ipr:
        index = _index(ipr, ifname)
        if index is None:
            return False
        try:
            ipr.link("del", index=index)
        except Exception as e:
            if getattr(e, "code", None) != errno.ENODEV:
                raise
            return False
    return True


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
    with _iproute() as ipr:
        index = _index(ipr, name)
        if index is None:
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except Exception as e:
                if getattr(e, "code", None) != errno.EEXIST:
                    raise
            index = _index(ipr, name)
        if mtu:
            ipr.link("set", index=index, mtu=mtu)
        for address in addresses:
            _add_address(ipr, index, address)
        ipr.link("set", index=index, state="up")
    # Published ports reached from 127.0.0.1 are routed out of this bridge with a loopback
    # source (masqueraded on the way): the kernel drops those unless this is set.
    write_sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")


def mac_for(ipv4: str | None) -> str | None:
    """A locally administered MAC derived from the IPv4 address (stable across restarts)."""
    if not ipv4:
        return None
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ipv4).packed)


@dataclass(frozen=True)
class Endpoint:
    """What a container's interface on one network gets."""

    host_ifname: str  # the veth end on the bridge
    ifname: str  # inside the container; None picks the next free ethN
    addresses: tuple[str, ...]  # "ip/prefix", IPv4 and/or IPv6
    gateways: tuple[str, ...] = ()  # default routes (empty: internal network)
    mac: str | None = None
    mtu: int | None = None
    metric: int = 100  # default route metric: lower wins


def next_ifname(netns: str) -> str:
    """The first ethN not yet used inside the namespace at `netns`."""
    with _iproute(netns) as ipr:
        names = {link.get("ifname") for link in ipr.get_links()}
    n = 0
    while f"eth{n}" in names:
        n += 1
    return f"eth{n}"


def attach_veth(bridge: str, netns: str, endpoint: Endpoint) -> str:
    """Connect the namespace at `netns` to `bridge` with a veth pair; return the MAC inside.

    A host end left by an earlier attempt is removed first, so a retry starts clean.
    """
    peer = VETH_PEER_PREFIX + endpoint.host_ifname[len(VETH_PREFIX) :]
    remove_link(endpoint.host_ifname)
    ns_fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with _iproute() as ipr:
            bridge_index = _index(ipr, bridge)
            if bridge_index is None:
                raise BridgeError(f"bridge {bridge} does not exist")
            mtu = endpoint.mtu or ipr.get_links(bridge_index)[0].get("IFLA_MTU")
            ipr.link(
                "add",
                ifname=endpoint.host_ifname,
                kind="veth",
                peer={"ifname": peer, "net_ns_fd": ns_fd},
            )
            host_index = _index(ipr, endpoint.host_ifname)
            ipr.link("set", index=host_index, master=bridge_index, mtu=mtu)
            # Where br_netfilter is loaded, a container's packets to its own published port are
            # DNAT'ed on the bridge and must go back out the port they came in (hairpin).
            ipr.brport("set", index=host_index, mode=1)
            ipr.link("set", index=host_index, state="up")
    finally:
        os.close(ns_fd)
    with _iproute(netns) as ipr:
        index = _index(ipr, peer)
        if index is None:
            raise BridgeError(f"veth end {peer} did not arrive in {netns}")
        if _index(ipr, endpoint.ifname) is not None:
            remove_link(endpoint.host_ifname)
            raise BridgeError(f"{netns} already has an interface {endpoint.ifname}")
        changes = {"ifname": endpoint.ifname, "mtu": mtu}
        if endpoint.mac:
            changes["address"] = endpoint.mac
        ipr.link("set", index=index, **changes)
        for address in endpoint.addresses:
            _add_address(ipr, index, address)
        ipr.link("set", index=index, state="up")
        lo = _index(ipr, "lo")
        if lo is not None:
            ipr.link("set", index=lo, state="up")
        for gateway in endpoint.gateways:
            family = 10 if ":" in gateway else 2
            try:
                ipr.route(
                    "add",
                    dst="default",
                    gateway=gateway,
                    oif=index,
                    priority=endpoint.metric,
                    family=family,
                )
            except Exception as e:
                if getattr(e, "code", None) != errno.EEXIST:
                    raise
        return ipr.get_links(index)[0].get("IFLA_ADDRESS")
