"""The embedded DNS server's records, and how a query is resolved against them.

One records file per project, COMPOSER_ROOT/networks/dns/<project>.json, written
atomically under a lock by whoever attaches a container to a network:

    {"version": 1, "project": "shop",
     "containers": {"<id>": {"name": "shop-web-1", "service": "web", "hostname": "a1b2",
                             "dns": [],                       # the container's own upstreams
                             "networks": {"shop_default": {"ips": ["10.89.0.2"],
                                                           "aliases": ["web", "www"]}}}}}

The records live in a subfolder so that networks/*.json stays the networks' own files.
Beside them, <project>.generation counts the changes (8 bytes, little-endian), bumped
after each write, for the server to notice a change without a syscall a query.
Resolution is plain data in, plain data out (no sockets, no wire format): the server in
runtime.network.dns feeds it queries, unit tests feed it directly.
"""

from __future__ import annotations

import ipaddress
import os
from collections import namedtuple

from runtime.state import Lock, atomic_write_json, make_durable, networks_dir, read_json

# Names under this domain are ours alone: never forwarded, unknown ones are NXDOMAIN.
DOMAIN = "composer.internal"
RECORDS_VERSION = 1


def records_dir(root: str | os.PathLike | None = None):
    return networks_dir(root) / "dns"


def records_path(project: str, root: str | os.PathLike | None = None):
    if not project or "/" in project or project.startswith("."):
        raise ValueError(f"invalid project name: {project!r}")
    return records_dir(root) / f"{project}.json"


def generation_path(project: str, root: str | os.PathLike | None = None):
    """8 bytes counting the records' changes: the server maps it and compares it per query
    (a memory read where a stat of the records would be a syscall)."""
    return records_path(project, root).with_suffix(".generation")


def load_records(project: str, root: str | os.PathLike | None = None) -> dict:
    records = read_json(records_path(project, root), None)
    if not records:
        return {"version": RECORDS_VERSION, "project": project, "containers": {}}
    return records


def _update(project: str, root, change) -> dict:
    path = records_path(project, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with Lock(f"{path}.lock", f"update DNS records of {project}", timeout=30):
        records = load_records(project, root)
        change(records["containers"])
        # Seen by the next writer and the server at once; made durable after the lock, so
        # containers being wired together do not queue behind each other's fsyncs.
        atomic_write_json(path, records, durable=False)
        _count_change(generation_path(project, root))
    make_durable(path)
    return records


def _count_change(path) -> None:
    # After the rename: a server that sees the new count finds the new records.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        count = int.from_bytes(os.pread(fd, 8, 0).ljust(8, b"\0"), "little")
        os.pwrite(fd, ((count + 1) % 2**64).to_bytes(8, "little"), 0)
    finally:
        os.close(fd)


def add_container(
    project: str,
    network: str,
    container_id: str,
    name: str,
    service: str | None,
    ips: list[str] | tuple[str, ...],
    aliases: list[str] | tuple[str, ...] = (),
    hostname: str | None = None,
    *,
    dns: list[str] | tuple[str, ...] = (),
    root: str | os.PathLike | None = None,
) -> None:
    """Record `container_id` on `network` (again: replaces that network's entry).

    `dns` are the container's own upstream servers (compose `dns:`): its queries for names
    that are not ours go there instead of to the host's resolvers.
    """
    addresses = [str(ipaddress.ip_address(ip)) for ip in ips]  # refuse junk before writing

    def change(containers: dict) -> None:
        entry = containers.setdefault(container_id, {"networks": {}})
        entry.update(name=name, service=service, hostname=hostname, dns=list(dns))
        entry["networks"][network] = {"ips": addresses, "aliases": list(aliases)}

    _update(project, root, change)


def remove_container(
    project: str,
    container_id: str,
    network: str | None = None,
    *,
    root: str | os.PathLike | None = None,
) -> bool:
    """Forget `container_id` on `network` (on every network if None); True if it was there."""
    found = False

    def change(containers: dict) -> None:
        nonlocal found
        entry = containers.get(container_id)
        if entry is None:
            return
        if network is None:
            found = True
            del containers[container_id]
            return
        found = entry["networks"].pop(network, None) is not None
        if not entry["networks"]:
            del containers[container_id]

    if not records_path(project, root).exists():
        return False
    _update(project, root, change)
    return found


# ---------------------------------------------------------------- networks


# namedtuples, not dataclasses: importing dataclasses costs ~15 ms (it loads inspect).
class NetworkInfo(namedtuple("NetworkInfo", "name subnets gateways internal", defaults=(False,))):
    """What the DNS server needs from a network's file: where to listen, whom it serves.

    subnets: ipaddress networks; gateways: addresses as text.
    """

    __slots__ = ()


def _network_info(name: str, data: dict) -> NetworkInfo:
    # NetworkManager writes {"ipv4": {"subnet", "gateway"}, "ipv6": {...} or null};
    # a flat subnet/gateway or a "subnets" list is read too.
    subnets, gateways = [], []
    entries = [data.get("ipv4"), data.get("ipv6"), data, *data.get("subnets", ())]
    for entry in entries:
        if isinstance(entry, dict) and entry.get("subnet"):
            subnets.append(ipaddress.ip_network(entry["subnet"], strict=False))
            if entry.get("gateway"):
                gateways.append(str(ipaddress.ip_interface(entry["gateway"]).ip))
    return NetworkInfo(
        name=name,
        subnets=tuple(dict.fromkeys(subnets)),
        gateways=tuple(dict.fromkeys(gateways)),
        internal=bool(data.get("internal")),
    )


def _project_of(data: dict) -> str | None:
    labels = data.get("labels") or {}
    return data.get("project") or labels.get("com.docker.compose.project")


def project_networks(
    project: str,
    root: str | os.PathLike | None = None,
    previous: dict[str, NetworkInfo] | None = None,
) -> dict[str, NetworkInfo]:
    """The project's networks, from COMPOSER_ROOT/networks/<name>.json.

    A file that cannot be read as JSON right now (a writer not using atomic_write_json)
    keeps its `previous` reading instead of making the network vanish for a moment.
    """
    found = {}
    try:
        names = sorted(os.listdir(networks_dir(root)))
    except FileNotFoundError:
        return found
    for filename in names:
        if not filename.endswith(".json") or filename.startswith("."):
            continue
        stem = filename[: -len(".json")]
        try:
            data = read_json(networks_dir(root) / filename, None)
        except (ValueError, OSError):
            if previous and stem in previous:
                found[stem] = previous[stem]
            continue
        if not isinstance(data, dict) or _project_of(data) != project:
            continue
        if data.get("state") == "removing":  # its bridge and gateway are going away
            continue
        name = data.get("name") or stem
        found[name] = _network_info(name, data)
    return found


# ---------------------------------------------------------------- resolution


class Result(namedtuple("Result", "kind values why rotation", defaults=((), "", None))):
    """What a query resolves to.

    kind: "answer" (values may be empty: the name is ours but has no record of that type),
          "nxdomain" (a name in our space that does not exist), "forward" (not ours).
    values: addresses for A/AAAA, names for PTR. why: which record answered, for people.
    rotation: the key for Resolver.next_turn when the answer has addresses to rotate.
    """

    __slots__ = ()


# kind: container, service, alias or hostname
_Holder = namedtuple("_Holder", "container_id name ips kind")


def normalize(name: str) -> str:
    return name.rstrip(".").lower()


def reverse_pointer_ip(qname: str) -> str | None:
    """The address a PTR query name (…in-addr.arpa / …ip6.arpa) asks about, None if not one."""
    name = normalize(qname)
    if name.endswith(".in-addr.arpa"):
        parts = name[: -len(".in-addr.arpa")].split(".")
        if len(parts) == 4:
            try:
                return str(ipaddress.IPv4Address(".".join(reversed(parts))))
            except ValueError:
                return None
    elif name.endswith(".ip6.arpa"):
        nibbles = name[: -len(".ip6.arpa")].split(".")
        if len(nibbles) == 32 and all(len(n) == 1 for n in nibbles):
            text = "".join(reversed(nibbles))
            try:
                return str(ipaddress.IPv6Address(int(text, 16)))
            except ValueError:
                return None
    return None


class Resolver:
    """Answers from one snapshot of a project's records and networks.

    The asker's scope is every network the asking container is on (found by its source
    address); a source we do not know sees only the network whose subnet holds it. The
    network the query arrived on is searched first, then the others by name.
    """

    def __init__(self, records: dict, networks: dict[str, NetworkInfo]) -> None:
        self.networks = networks
        self.containers: dict = records.get("containers", {})
        self._names: dict[str, dict[str, list[_Holder]]] = {n: {} for n in networks}
        self._by_ip: dict[str, dict[str, _Holder]] = {n: {} for n in networks}
        self._turn: dict[tuple, int] = {}
        self._answers: dict[tuple, tuple[list[str], str]] = {}
        self._scopes: dict[tuple, list[str]] = {}
        self._upstreams: dict[str, tuple[str, ...]] = {}
        for container_id, entry in sorted(self.containers.items(), key=lambda c: c[1]["name"]):
            for network, attachment in entry.get("networks", {}).items():
                if network not in networks:
                    continue  # a network removed before its containers were
                ips = tuple(attachment.get("ips", ()))
                named = [(entry["name"], "container")]
                if entry.get("service"):
                    named.append((entry["service"], "service"))
                named += [(alias, "alias") for alias in attachment.get("aliases", ())]
                if entry.get("hostname"):
                    named.append((entry["hostname"], "hostname"))
                for label, kind in named:
                    holders = self._names[network].setdefault(normalize(label), [])
                    if all(h.container_id != container_id for h in holders):
                        holders.append(_Holder(container_id, entry["name"], ips, kind))
                for ip in ips:
                    self._by_ip[network][ip] = _Holder(container_id, entry["name"], ips, "ptr")

    # -- who is asking

    def network_of(self, address: str) -> str | None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        for name, info in self.networks.items():
            if any(ip in subnet for subnet in info.subnets):
                return name
        return None

    def container_at(self, address: str) -> str | None:
        network = self.network_of(address)
        holder = self._by_ip.get(network, {}).get(str(ipaddress.ip_address(address)))
        return holder.container_id if holder else None

    def scope(self, source: str, arrived_on: str | None = None) -> list[str]:
        # Per query on the server's hot path: remembered per asker until the records change.
        key = (source, arrived_on)
        scope = self._scopes.get(key)
        if scope is None:
            scope = self._scope(source, arrived_on)
            if len(self._scopes) < 4096:
                self._scopes[key] = scope
        return scope

    def _scope(self, source: str, arrived_on: str | None) -> list[str]:
        first = self.network_of(source) or arrived_on
        if first is None:
            return []
        container_id = self.container_at(source)
        joined = self.containers.get(container_id, {}).get("networks", {}) if container_id else {}
        rest = sorted(n for n in joined if n in self.networks and n != first)
        return [first, *rest]

    def scope_of_container(self, container_id: str) -> list[str]:
        joined = self.containers.get(container_id, {}).get("networks", {})
        return sorted(n for n in joined if n in self.networks)

    def upstreams_for(self, source: str) -> list[str]:
        """The asking container's own upstream servers (compose `dns:`), [] for the host's."""
        # Per forwarded query: remembered per asker like scope().
        known = self._upstreams.get(source)
        if known is None:
            container_id = self.container_at(source) if self.network_of(source) else None
            known = tuple(self.containers.get(container_id, {}).get("dns") or ())
            if len(self._upstreams) < 4096:
                self._upstreams[source] = known
        return list(known)

    # -- answers

    def lookup(self, qname: str, family: int, scope: list[str], rotate: bool = True) -> Result:
        """A (family 4) or AAAA (family 6) for `qname`, seen from the networks in `scope`.

        rotate: start the next answer for this name at the next address (round robin).
        """
        name = normalize(qname)
        ours = name == DOMAIN or name.endswith("." + DOMAIN)
        candidates = [(name, scope)]
        if name.endswith("." + DOMAIN):
            candidates = [(name[: -len(DOMAIN) - 1], scope)]
        else:
            # name.<network>: that network only, if the asker is on it.
            base, _, suffix = name.rpartition(".")
            for network in scope:
                if base and suffix == network.lower():
                    candidates.append((base, [network]))
        for label, networks in candidates:
            for network in networks:
                holders = self._names.get(network, {}).get(label)
                if holders:
                    return self._answer(label, network, holders, family, rotate)
        return Result("nxdomain" if ours else "forward")

    def _answer(
        self, label: str, network: str, holders: list[_Holder], family: int, rotate: bool
    ) -> Result:
        key = (network, label, family)
        known = self._answers.get(key)
        if known is None:
            addresses = sorted(
                {ip for h in holders for ip in h.ips if ipaddress.ip_address(ip).version == family},
                key=ipaddress.ip_address,
            )
            kinds = "/".join(sorted({h.kind for h in holders}))
            owners = ", ".join(sorted(h.name for h in holders))
            known = self._answers[key] = (addresses, f"{kinds} {label} on {network}: {owners}")
        addresses, why = known
        if len(addresses) < 2:
            return Result("answer", list(addresses), why)
        if rotate:  # a different first address each query spreads the load
            shift = self.next_turn(key, len(addresses))
            addresses = addresses[shift:] + addresses[:shift]
        return Result("answer", list(addresses), why, key)

    def next_turn(self, rotation, count: int) -> int:
        """Where the next answer of `rotation` (Result.rotation) starts among `count` addresses;
        the server's prebuilt answers turn the same wheel as lookup()."""
        turn = self._turn.get(rotation, 0)
        self._turn[rotation] = turn + 1
        return turn % count

    def reverse(self, qname: str, scope: list[str]) -> Result:
        """PTR for one of our addresses: <container name>.<network>."""
        address = reverse_pointer_ip(qname)
        if address is None:
            return Result("forward")
        for network in scope:
            holder = self._by_ip.get(network, {}).get(address)
            if holder:
                return Result("answer", [f"{holder.name}.{network}"], f"address on {network}")
        if self.network_of(address):  # in one of our subnets: private, never asked upstream
            return Result("nxdomain", why=f"no container at {address} in scope")
        return Result("forward")
