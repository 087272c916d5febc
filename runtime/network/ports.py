"""Published ports: which host port each request gets, and whether it is free.

The kernel does the forwarding (DNAT rules in nft.py); nothing listens on the host port, so
"free" means: no process can bind it now (we try) and no network of ours has published it
(the manager's records, passed in as `taken`). Random ports come from outside the kernel's
ephemeral range, so they never collide with the source ports of outgoing connections. The
manager calls `assign` under its lock and records the result before releasing it, which is
what makes a reservation atomic between parallel runs.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from runtime.record import as_dict, record

if TYPE_CHECKING:
    import random

PROTOCOLS = ("tcp", "udp")


class PortError(Exception):
    pass


class PortInUse(PortError):
    pass


@record
class PortRequest:
    """What to publish; the same fields as Compose's long port syntax (composer's model.Port
    can be passed as is). `published` is "8080", a range "8000-8010" (one free port of it),
    or None for a random port."""

    target: int
    published: str | None = None
    host_ip: str | None = None
    protocol: str = "tcp"


@record
class PublishedPort:
    container_id: str
    network: str
    protocol: str
    host_ip: str  # "" for every local address
    host_port: int
    container_ip: str
    container_port: int
    project: str | None = None
    service: str | None = None

    def to_json(self) -> dict:
        return as_dict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> PublishedPort:
        return cls(**data)

    def __str__(self) -> str:
        host = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip or "0.0.0.0"
        return f"{host}:{self.host_port}->{self.container_port}/{self.protocol}"


def parse(spec: str) -> list[PortRequest]:
    """Short syntax "[HOST_IP:][HOST[-HOST]:]CONTAINER[-CONTAINER][/PROTO]" → requests.

    Ranges on both sides map one to one; a host range with one container port means "any free
    port of the range".
    """
    text, _, protocol = spec.partition("/")
    protocol = protocol or "tcp"
    host_ip = None
    if text.startswith("["):
        end = text.index("]")
        host_ip, text = text[1:end], text[end + 2 :]
    parts = text.split(":")
    if len(parts) == 3:
        host_ip, parts = parts[0], parts[1:]
    if len(parts) > 2 or not parts[-1]:
        raise PortError(f"bad port {spec!r}")
    first, last = _range(parts[-1], spec)
    published = parts[0] if len(parts) == 2 and parts[0] else None
    if published is not None:
        hfirst, hlast = _range(published, spec)
    if last == first:
        return [PortRequest(first, published, host_ip, protocol)]
    if published is None:
        return [PortRequest(p, None, host_ip, protocol) for p in range(first, last + 1)]
    if hlast - hfirst != last - first:
        raise PortError(f"bad port {spec!r}: the host and container ranges differ in size")
    return [
        PortRequest(first + i, str(hfirst + i), host_ip, protocol) for i in range(last - first + 1)
    ]


def _range(text: str, spec: str) -> tuple[int, int]:
    a, _, b = text.partition("-")
    try:
        first, last = int(a), int(b or a)
    except ValueError:
        raise PortError(f"bad port {spec!r}") from None
    if not 1 <= first <= last <= 65535:
        raise PortError(f"bad port {spec!r}: ports are 1-65535")
    return first, last


def ephemeral_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int]:
    with open(path) as f:
        low, high = f.read().split()
    return int(low), int(high)


def random_range(ephemeral: tuple[int, int] | None = None) -> tuple[int, int]:
    """Where random host ports come from: above the ephemeral range, else just below it."""
    low, high = ephemeral or ephemeral_range()
    if high < 65535 - 100:
        return high + 1, 65535
    if low > 1024 + 100:
        return max(1024, low - 5000), low - 1
    raise PortError(f"no room for random ports outside the ephemeral range {low}-{high}")


def bindable(protocol: str, host_ip: str, port: int) -> bool:
    """Whether a process could bind the port now (False: something holds it)."""
    address = host_ip or "0.0.0.0"
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(family, kind) as sock:
        # As a server would: connections in TIME_WAIT from an earlier holder do not make
        # the port busy, only a socket bound to it now does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def satisfies(port: PublishedPort, request) -> bool:
    """Whether an existing publication already answers `request`."""
    if (
        port.protocol != (request.protocol or "tcp").lower()
        or port.host_ip != normal_ip(request.host_ip)
        or port.container_port != int(request.target)
    ):
        return False
    if not request.published:
        return True
    first, last = _range(str(request.published), str(request.published))
    return first <= port.host_port <= last


def _clash(a_ip: str, b_ip: str) -> bool:
    """Two host IPs overlap when equal or when either means every address."""
    unspecified = {"", "0.0.0.0", "::"}
    return a_ip in unspecified or b_ip in unspecified or a_ip == b_ip


def normal_ip(host_ip: str | None) -> str:
    if not host_ip:
        return ""
    address = ipaddress.ip_address(host_ip.strip("[]"))
    return "" if address.is_unspecified else str(address)


def assign(
    requests: Iterable,
    taken: Iterable[PublishedPort],
    *,
    make: Callable[[PortRequest, str, int], PublishedPort],
    is_free: Callable[[str, str, int], bool] = bindable,
    random_ports: tuple[int, int] | None = None,
    rng: random.Random | None = None,
    elsewhere: Iterable[tuple[str, str, int]] = (),
) -> list[PublishedPort]:
    """A host port for each request; PortInUse names who holds a port asked for by number.

    `make(request, host_ip, host_port)` builds the record; `taken` are ours already;
    `elsewhere` are (protocol, host_ip, port) published by other state roots' rules.
    """
    taken = list(taken)
    elsewhere = list(elsewhere)

    def foreign(protocol: str, host_ip: str, port: int) -> bool:
        return any(p == protocol and n == port and _clash(ip, host_ip) for p, ip, n in elsewhere)

    result: list[PublishedPort] = []
    if rng is None:
        import random  # only where ports are assigned: every command imports this module

        rng = random.Random()

    def holder(protocol: str, host_ip: str, port: int) -> PublishedPort | None:
        for p in (*taken, *result):
            if p.protocol == protocol and p.host_port == port and _clash(p.host_ip, host_ip):
                return p
        return None

    for request in requests:
        protocol = (request.protocol or "tcp").lower()
        if protocol not in PROTOCOLS:
            raise PortError(f"unsupported protocol {protocol!r} for port {request.target}")
        host_ip = normal_ip(request.host_ip)
        if request.published:
            first, last = _range(str(request.published), str(request.published))
            candidates = list(range(first, last + 1))
        else:
            low, high = random_range() if random_ports is None else random_ports
            start = rng.randrange(low, high + 1)
            candidates = [*range(start, high + 1), *range(low, start)]
        chosen = None
        for port in candidates:
            if (
                holder(protocol, host_ip, port) is None
                and not foreign(protocol, host_ip, port)
                and is_free(protocol, host_ip, port)
            ):
                chosen = port
                break
        if chosen is None:
            raise _in_use(protocol, host_ip, candidates, holder, foreign)
        result.append(make(request, host_ip, chosen))
    return result


def _in_use(protocol, host_ip, candidates, holder, foreign) -> PortInUse:
    where = f"{host_ip or '0.0.0.0'}:"
    if len(candidates) > 1:
        return PortInUse(f"no free host port in {where}{candidates[0]}-{candidates[-1]}/{protocol}")
    port = candidates[0]
    ours = holder(protocol, host_ip, port)
    if ours is not None:
        service = f" service {ours.service}" if ours.service else ""
        return PortInUse(
            f"host port {where}{port}/{protocol} is already published by project "
            f"{ours.project or '?'}{service} (container {ours.container_id[:12]})"
        )
    if foreign(protocol, host_ip, port):
        return PortInUse(
            f"host port {where}{port}/{protocol} is already published by another composer"
            " state root in this network namespace"
        )
    return PortInUse(f"host port {where}{port}/{protocol} is in use by another process")
