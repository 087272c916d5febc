"""IP address management: subnets for networks, addresses for containers.

Pure functions over plain data; the manager keeps the records (networks/<name>.json) and
calls these under its lock, so two processes never pick the same subnet or address.

Subnets come from a pool (default 10.89.0.0/16 in /26 blocks, or $COMPOSER_SUBNET_POOL as
"CIDR[:PREFIX][,CIDR[:PREFIX]...]") and skip every range that is routed in the current
network namespace or held by another network of ours.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping

from runtime.record import field, record

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

POOL_ENV = "COMPOSER_SUBNET_POOL"
DEFAULT_POOL = "10.89.0.0/16:26"
DEFAULT_POOL_V6 = "fd89:c0::/48:64"


class IpamError(Exception):
    """A subnet or address request that cannot be met; the message says why."""


class PoolExhausted(IpamError):
    pass


class AddressInUse(IpamError):
    pass


@record
class Pool:
    base: IPNetwork
    prefix: int  # size of each subnet carved from base

    def __str__(self) -> str:
        return f"{self.base} (in /{self.prefix} blocks)"


def parse_pools(text: str) -> list[Pool]:
    """ "10.89.0.0/16:26,10.90.0.0/16" → pools; the block size defaults to /26 (IPv6 /64)."""
    pools = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        # IPv6 has colons of its own: the block size is the part after the last "/N:".
        cidr, prefix = item, None
        slash = item.rfind("/")
        if ":" in item[slash:]:
            cidr, _, size = item.rpartition(":")
            prefix = int(size)
        try:
            base = ipaddress.ip_network(cidr, strict=True)
        except ValueError as e:
            raise IpamError(f"bad subnet pool {item!r}: {e}") from None
        if prefix is None:
            prefix = max(base.prefixlen, 26 if base.version == 4 else 64)
        if not base.prefixlen <= prefix <= base.max_prefixlen - 2:
            raise IpamError(f"bad subnet pool {item!r}: block /{prefix} does not fit {base}")
        pools.append(Pool(base, prefix))
    if not pools:
        raise IpamError(f"empty subnet pool {text!r}")
    return pools


def default_pools(version: int = 4, environ: Mapping[str, str] = os.environ) -> list[Pool]:
    if version == 6:
        return parse_pools(DEFAULT_POOL_V6)
    return parse_pools(environ.get(POOL_ENV) or DEFAULT_POOL)


def routed_networks(proc_net: str = "/proc/thread-self/net") -> list[IPNetwork]:
    """Destinations routed in the calling thread's network namespace, default routes aside."""
    routes: list[IPNetwork] = []
    try:
        with open(os.path.join(proc_net, "route")) as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest = int(fields[1], 16).to_bytes(4, "little")
        mask = int(fields[7], 16).to_bytes(4, "little")
        prefix = bin(int.from_bytes(mask, "big")).count("1")
        if prefix:
            routes.append(ipaddress.ip_network((dest, prefix), strict=False))
    try:
        with open(os.path.join(proc_net, "ipv6_route")) as f:
            lines6 = f.read().splitlines()
    except OSError:
        lines6 = []
    for line in lines6:
        fields = line.split()
        if len(fields) < 10:
            continue
        prefix = int(fields[1], 16)
        if not prefix or fields[9] == "lo":
            continue
        routes.append(ipaddress.ip_network((bytes.fromhex(fields[0]), prefix), strict=False))
    return routes


def pick_subnet(
    pools: Iterable[Pool],
    taken: Iterable[IPNetwork],
    holders: Mapping[str, str] | None = None,
    prefix: int | None = None,
) -> IPNetwork:
    """The first block of the pools that overlaps nothing in `taken`.

    `holders` maps a subnet (as text) to who holds it, so the exhaustion error can name them.
    """
    pools = list(pools)
    taken = list(taken)
    for pool in pools:
        size = prefix or pool.prefix
        if size < pool.base.prefixlen:
            continue
        for candidate in pool.base.subnets(new_prefix=size):
            if not any(_overlap(candidate, other) for other in taken):
                return candidate
    held = sorted(set((holders or {}).values()))
    who = f"; held by {', '.join(held)}" if held else ""
    routed = [str(n) for n in taken if str(n) not in (holders or {})]
    also = f"; routed here: {', '.join(routed[:8])}" if routed else ""
    raise PoolExhausted(
        f"no free subnet left in {', '.join(map(str, pools))}{who}{also}; "
        f"remove unused networks or set {POOL_ENV}"
    )


def _overlap(a: IPNetwork, b: IPNetwork) -> bool:
    return a.version == b.version and a.overlaps(b)


@record(frozen=False)
class SubnetConfig:
    """One address family of a network: what Compose's ipam.config entry describes."""

    subnet: IPNetwork
    gateway: IPAddress
    ip_range: IPNetwork | None = None
    aux_addresses: dict[str, IPAddress] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "subnet": str(self.subnet),
            "gateway": str(self.gateway),
            "ip_range": str(self.ip_range) if self.ip_range else None,
            "aux_addresses": {k: str(v) for k, v in self.aux_addresses.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping) -> SubnetConfig:
        return cls(
            subnet=ipaddress.ip_network(data["subnet"]),
            gateway=ipaddress.ip_address(data["gateway"]),
            ip_range=ipaddress.ip_network(data["ip_range"]) if data.get("ip_range") else None,
            aux_addresses={
                k: ipaddress.ip_address(v) for k, v in (data.get("aux_addresses") or {}).items()
            },
        )


def subnet_config(
    requested: Mapping | None,
    *,
    version: int,
    pools: Iterable[Pool] | None = None,
    taken: Iterable[IPNetwork] = (),
    holders: Mapping[str, str] | None = None,
) -> SubnetConfig:
    """Validate a Compose ipam.config entry (subnet, ip_range, gateway, aux_addresses) or pick
    a free subnet when it names none; the gateway defaults to the first host address."""
    requested = dict(requested or {})
    taken = list(taken)
    if requested.get("subnet"):
        try:
            subnet = ipaddress.ip_network(requested["subnet"], strict=True)
        except ValueError as e:
            raise IpamError(f"bad subnet {requested['subnet']!r}: {e}") from None
        if subnet.version != version:
            raise IpamError(f"subnet {subnet} is not IPv{version}")
        clash = [str(t) for t in taken if _overlap(subnet, t)]
        if clash:
            names = [f"{c} ({holders[c]})" if holders and c in holders else c for c in clash]
            raise IpamError(f"subnet {subnet} overlaps {', '.join(names)}")
    else:
        subnet = pick_subnet(pools if pools is not None else default_pools(version), taken, holders)
    ip_range = None
    if requested.get("ip_range"):
        ip_range = ipaddress.ip_network(requested["ip_range"], strict=False)
        if not ip_range.subnet_of(subnet):  # type: ignore[arg-type]
            raise IpamError(f"ip_range {ip_range} is not inside subnet {subnet}")
    if requested.get("gateway"):
        gateway = ipaddress.ip_address(requested["gateway"])
        if not _usable(gateway, subnet):
            raise IpamError(f"gateway {gateway} is not a host address of {subnet}")
    else:
        gateway = next(subnet.hosts())
    aux = {}
    for name, text in (requested.get("aux_addresses") or {}).items():
        address = ipaddress.ip_address(text)
        if address not in subnet:
            raise IpamError(f"aux address {name}={address} is not in subnet {subnet}")
        aux[name] = address
    return SubnetConfig(subnet, gateway, ip_range, aux)


def _usable(address: IPAddress, subnet: IPNetwork) -> bool:
    if address not in subnet or address == subnet.network_address:
        return False
    return subnet.version == 6 or address != subnet.broadcast_address


def allocate_address(
    config: SubnetConfig, used: Iterable[str], wanted: str | None = None
) -> IPAddress:
    """`wanted` if free and valid, else the first free address of the ip_range (or subnet)."""
    reserved = {str(config.gateway), *map(str, config.aux_addresses.values()), *used}
    if wanted:
        address = ipaddress.ip_address(wanted)
        if not _usable(address, config.subnet):
            raise IpamError(f"address {address} is not a host address of {config.subnet}")
        if str(address) in reserved:
            raise AddressInUse(f"address {address} is already in use on {config.subnet}")
        return address
    span = config.ip_range or config.subnet
    for address in span.hosts() if span.num_addresses > 2 else span:
        if str(address) not in reserved and _usable(address, config.subnet):
            return address
    raise PoolExhausted(f"no free address left in {span}")
