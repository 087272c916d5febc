"""Networks of the runtime: create, attach, publish, detach, remove, recover after a crash.

One JSON record per network (COMPOSER_ROOT/networks/<name>.json) holds its subnets, bridge,
endpoints (one per attached container) and published ports. Every change runs under one
lock (networks/.lock) and is written before the kernel is touched ("attaching", "removing")
and after ("attached"), so a killed command leaves a record that names everything the
next `remove` or `cleanup_stale` must undo. The kernel side is rebuilt from the records:
bridges and veths (bridge.py), the nftables table (nft.py).

Only a network's "ready" record is fsynced: endpoints, ports and half-made states describe
kernel objects (veths, rules, bridges) that a machine crash takes with it, so losing their
last write costs nothing, while fsyncs cost ~4 ms a write, several writes a container. A
record that a crash left unreadable counts as absent.
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from runtime import state
from runtime.network import bridge, ipam, netlink_worker, nft, ports
from runtime.record import field
from runtime.record import record as record_class

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MTU_OPTION = "com.docker.network.driver.mtu"


class NetworkError(Exception):
    pass


class NetworkNotFound(NetworkError):
    pass


@record_class
class Attachment:
    ifname: str
    ipv4: str | None
    ipv6: str | None
    gateway: str | None
    mac: str | None


@record_class
class Network:
    name: str
    id: str
    project: str | None
    bridge: str
    internal: bool
    subnet: str
    gateway: str
    ipv6_subnet: str | None
    ipv6_gateway: str | None
    mtu: int | None
    labels: dict = field(default_factory=dict)
    containers: dict = field(default_factory=dict)  # container id → endpoint record
    ports: tuple[ports.PublishedPort, ...] = ()
    state: str = "ready"

    @classmethod
    def from_record(cls, record: Mapping) -> Network:
        v4, v6 = record["ipv4"], record.get("ipv6")
        return cls(
            name=record["name"],
            id=record["id"],
            project=record.get("project"),
            bridge=record["bridge"],
            internal=record.get("internal", False),
            subnet=v4["subnet"],
            gateway=v4["gateway"],
            ipv6_subnet=v6["subnet"] if v6 else None,
            ipv6_gateway=v6["gateway"] if v6 else None,
            mtu=record.get("mtu"),
            labels=dict(record.get("labels") or {}),
            containers={k: dict(v) for k, v in record.get("endpoints", {}).items()},
            ports=tuple(
                ports.PublishedPort.from_json(p)
                for entries in record.get("ports", {}).values()
                for p in entries
            ),
            state=record.get("state", "ready"),
        )


def _metric(priority: int, ordinal: int) -> int:
    """Default route metric: higher priority → lower metric; ties go to the earlier network."""
    return (1000 - max(-999, min(999, priority))) * 16 + min(ordinal, 15)


class NetworkManager:
    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.dir = state.networks_dir(root)
        self.table = nft.table_for_root(str(state.state_root(root)), state.DEFAULT_ROOT)

    # ------------------------------------------------------------------ records

    def _lock(self, purpose: str) -> _Locked:
        self.dir.mkdir(parents=True, exist_ok=True)
        return _Locked(state.Lock(self.dir / ".lock", purpose, timeout=60))

    def _path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise NetworkError(f"invalid network name {name!r}")
        return self.dir / f"{name}.json"

    def _records(self) -> list[dict]:
        if not self.dir.is_dir():
            return []
        records = []
        for path in sorted(self.dir.glob("*.json")):
            record = _read_record(path)
            if record is not None:
                records.append(record)
        return records

    def _read(self, name: str) -> dict:
        record = _read_record(self._path(name))
        if record is None:
            raise NetworkNotFound(f"network {name} not found")
        return record

    def _write(self, record: dict, *, durable: bool = False) -> None:
        if durable:
            state.atomic_write_json(self._path(record["name"]), record)
        else:
            _replace_json(self._path(record["name"]), record)

    def _sync_rules(self) -> None:
        """Rebuild our nftables table from every record not being removed."""
        networks, rules = [], []
        for record in self._records():
            if record.get("state") == "removing":
                continue
            subnets = [record["ipv4"]["subnet"]]
            if record.get("ipv6"):
                subnets.append(record["ipv6"]["subnet"])
            networks.append(nft.NetworkRules(record["bridge"], tuple(subnets), record["internal"]))
            for entries in record.get("ports", {}).values():
                for p in entries:
                    rules.extend(_port_rules(record, ports.PublishedPort.from_json(p)))
        nft.apply(networks, rules, self.table)

    # ------------------------------------------------------------------ networks

    def create(
        self,
        name: str,
        *,
        project: str | None,
        subnet: str | None = None,
        internal: bool = False,
        ipv6: bool = False,
        labels: Mapping[str, str] | None = None,
        mtu: int | None = None,
        ipam: Mapping | None = None,
        driver_opts: Mapping[str, str] | None = None,
    ) -> Network:
        """Create the network (idempotent: an existing one of the same name is returned)."""
        path = self._path(name)
        if mtu is None and driver_opts and MTU_OPTION in driver_opts:
            mtu = int(driver_opts[MTU_OPTION])
        with self._lock(f"create network {name}"):
            record = _read_record(path)
            if record is not None and record.get("state") == "ready":
                if record.get("project") != project:
                    raise NetworkError(
                        f"network {name} already exists for project {record.get('project')}"
                    )
                self._realize(record)
                return Network.from_record(record)
            if record is not None:  # a crashed create or remove: start over
                self._teardown(record)
            record = self._plan(name, project, subnet, internal, ipv6, labels, mtu, ipam)
            self._write(record)  # "creating": names the bridge before it exists
            try:
                self._realize(record)
            except BaseException:
                self._teardown(record)
                raise
            record["state"] = "ready"
            self._write(record, durable=True)  # a network outlives a reboot, as docker's
            return Network.from_record(record)

    def _plan(self, name, project, subnet, internal, ipv6, labels, mtu, ipam_options) -> dict:
        taken, holders = list(ipam.routed_networks()), {}
        for other in self._records():
            for family in ("ipv4", "ipv6"):
                if other.get(family):
                    net = ipaddress.ip_network(other[family]["subnet"])
                    taken.append(net)
                    holders[str(net)] = (
                        f"project {other.get('project') or '-'} (network {other['name']})"
                    )
        entries = list((ipam_options or {}).get("config") or [])
        if subnet:
            entries.insert(0, {"subnet": subnet})
        v4_entry = next((e for e in entries if ":" not in str(e.get("subnet", ""))), None)
        v6_entry = next((e for e in entries if ":" in str(e.get("subnet", ""))), None)
        v4 = ipam.subnet_config(v4_entry, version=4, taken=taken, holders=holders)
        v6 = None
        if ipv6 or v6_entry:
            if not os.path.exists("/proc/sys/net/ipv6"):
                raise NetworkError(f"network {name}: this kernel has no IPv6")
            v6 = ipam.subnet_config(v6_entry, version=6, taken=taken, holders=holders)
        network_id = os.urandom(16).hex()
        return {
            "name": name,
            "id": network_id,
            "project": project,
            "driver": "bridge",
            "bridge": bridge.short_name(bridge.BRIDGE_PREFIX, network_id),
            "internal": bool(internal),
            "labels": dict(labels or {}),
            "mtu": mtu,
            "ipv4": v4.to_json(),
            "ipv6": v6.to_json() if v6 else None,
            "endpoints": {},
            "ports": {},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "state": "creating",
        }

    def _realize(self, record: dict) -> None:
        """Bring the kernel in line with a record: bridge, gateway addresses, rules."""
        addresses = [_gateway_interface(record["ipv4"])]
        if record.get("ipv6"):
            addresses.append(_gateway_interface(record["ipv6"]))
        if bridge.bridge_ready(record["bridge"], addresses, record.get("mtu")):
            self._sync_rules()
        else:
            # The rules (libnftables, here) and the bridge (the netlink helper) at once: the
            # rules name the bridge before it exists, and nothing is attached to it before
            # both are done.
            _at_once(
                self._sync_rules,
                lambda: netlink_worker.call(
                    "ensure_bridge", record["bridge"], addresses, record.get("mtu")
                ),
            )
        bridge.enable_forwarding(ipv6=bool(record.get("ipv6")))

    def _teardown(self, record: dict) -> None:
        """Undo everything a record names; the record is deleted last."""
        record["state"] = "removing"
        self._write(record)
        for endpoint in record.get("endpoints", {}).values():
            _remove_link(endpoint["host_ifname"])
        _remove_link(record["bridge"])
        self._sync_rules()
        self._path(record["name"]).unlink(missing_ok=True)

    def remove(self, name: str) -> None:
        """Remove the network with its veths, rules and allocation (idempotent)."""
        with self._lock(f"remove network {name}"):
            record = _read_record(self._path(name))
            if record is None:
                return
            self._teardown(record)

    def list(self) -> list[Network]:
        return [Network.from_record(r) for r in self._records()]

    def inspect(self, name: str) -> Network:
        return Network.from_record(self._read(name))

    # ------------------------------------------------------------------ containers

    def attach(
        self,
        container_id: str,
        netns_path: str,
        network: str,
        *,
        ipv4: str | None = None,
        ipv6: str | None = None,
        mac: str | None = None,
        ifname: str | None = None,
        aliases: Iterable[str] = (),
        priority: int = 0,
    ) -> Attachment:
        """Connect a container's network namespace to the network (idempotent)."""
        with self._lock(f"attach {container_id[:12]} to {network}"):
            record = self._read(network)
            if record.get("state") != "ready":
                raise NetworkError(f"network {network} is {record.get('state')}")
            if not os.path.exists(netns_path):
                raise NetworkError(f"cannot attach {container_id[:12]}: no netns at {netns_path}")
            endpoint = record["endpoints"].get(container_id)
            if (
                endpoint
                and endpoint["state"] == "attached"
                and endpoint["netns"] == netns_path
                and bridge.link_exists(endpoint["host_ifname"])
            ):
                return _attachment(endpoint)
            v4 = ipam.SubnetConfig.from_json(record["ipv4"])
            others = [e for c, e in record["endpoints"].items() if c != container_id]
            address = ipam.allocate_address(v4, [e["ipv4"] for e in others if e["ipv4"]], ipv4)
            address6 = None
            if record.get("ipv6"):
                v6 = ipam.SubnetConfig.from_json(record["ipv6"])
                used6 = [e["ipv6"] for e in others if e.get("ipv6")]
                address6 = ipam.allocate_address(v6, used6, ipv6)
            elif ipv6:
                raise NetworkError(f"network {network} has no IPv6 (enable_ipv6)")
            ordinal = sum(
                1
                for other in self._records()
                if other["name"] != network and container_id in other.get("endpoints", {})
            )
            endpoint = {
                "state": "attaching",
                "attaching_pid": os.getpid(),  # wiring runs unlocked; cleanup spares it
                "netns": netns_path,
                "host_ifname": bridge.short_name(bridge.VETH_PREFIX, container_id, record["id"]),
                "ifname": ifname or bridge.next_ifname(netns_path),
                "ipv4": str(address),
                "ipv6": str(address6) if address6 else None,
                "gateway": None if record["internal"] else record["ipv4"]["gateway"],
                "mac": mac or bridge.mac_for(str(address)),
                "aliases": list(aliases),
                "priority": priority,
                "metric": _metric(priority, ordinal),
            }
            record["endpoints"][container_id] = endpoint
            self._write(record)
            gateways = ()
            if not record["internal"]:
                gateways = (record["ipv4"]["gateway"],)
                if record.get("ipv6"):
                    gateways += (record["ipv6"]["gateway"],)
            addresses = [f"{address}/{v4.subnet.prefixlen}"]
            if address6:
                addresses.append(
                    f"{address6}/{ipaddress.ip_network(record['ipv6']['subnet']).prefixlen}"
                )
            bridge_name, mtu = record["bridge"], record.get("mtu")
        # The address is ours ("attaching" is recorded); wiring the veth needs no lock, so
        # containers starting together are wired in parallel.
        try:
            mac = netlink_worker.call(
                "attach_veth",
                bridge_name,
                netns_path,
                bridge.Endpoint(
                    host_ifname=endpoint["host_ifname"],
                    ifname=endpoint["ifname"],
                    addresses=tuple(addresses),
                    gateways=gateways,
                    mac=endpoint["mac"],
                    mtu=mtu,
                    metric=endpoint["metric"],
                ),
            )
        except BaseException:
            with self._lock(f"undo attaching {container_id[:12]} to {network}"):
                self._drop_endpoint(self._read(network), container_id)
            raise
        with self._lock(f"attach {container_id[:12]} to {network}"):
            record = self._read(network)
            endpoint = record["endpoints"][container_id]
            endpoint["mac"] = mac
            endpoint["state"] = "attached"
            self._write(record)
            return _attachment(endpoint)

    def detach(self, container_id: str, network: str, *, namespace_going: bool = False) -> None:
        """Disconnect the container from the network (idempotent).

        The veth goes outside the lock (the kernel takes ~10-50 ms to delete one): the
        endpoint is recorded as "detaching" first, so a crash meanwhile is cleaned up.
        namespace_going: the caller is about to end the container's network namespace,
        and the kernel deletes the veth with it (in the background, many at once), so it
        is left to that. Its address may go to a new container while the old veth lingers
        for a moment: the bridge learns the new one's port from its first packet."""
        with self._lock(f"detach {container_id[:12]} from {network}"):
            record = _read_record(self._path(network))
            if record is None or container_id not in record["endpoints"]:
                return
            endpoint = record["endpoints"][container_id]
            endpoint["state"] = "detaching"
            if namespace_going:
                del record["endpoints"][container_id]
            had_ports = record["ports"].pop(container_id, None) is not None
            self._write(record)
            if had_ports:
                self._sync_rules()  # the rules name ports, never endpoints
        if namespace_going:
            return
        _remove_link(endpoint["host_ifname"])
        with self._lock(f"detach {container_id[:12]} from {network}"):
            record = _read_record(self._path(network))
            current = (record or {}).get("endpoints", {}).get(container_id)
            if current is not None and current["state"] == "detaching":
                del record["endpoints"][container_id]
                self._write(record)

    def _drop_endpoint(self, record: dict, container_id: str) -> bool:
        """Remove the endpoint and its veth (under the lock); True if it had published
        ports, which then leave the rules."""
        endpoint = record["endpoints"][container_id]
        endpoint["state"] = "detaching"
        had_ports = record["ports"].pop(container_id, None) is not None
        self._write(record)
        _remove_link(endpoint["host_ifname"])
        del record["endpoints"][container_id]
        self._write(record)
        return had_ports

    # ------------------------------------------------------------------ ports

    def publish(
        self,
        container_id: str,
        network: str,
        requests: Iterable,
        *,
        service: str | None = None,
    ) -> list[ports.PublishedPort]:
        """Publish container ports on the host through `network` (DNAT in the kernel).

        `requests` are ports.PortRequest (or anything with target, published, host_ip,
        protocol, such as composer's model.Port) or short-syntax strings.
        """
        wanted = []
        for request in requests:
            wanted.extend(ports.parse(request) if isinstance(request, str) else [request])
        with self._lock(f"publish ports of {container_id[:12]}"):
            record = self._read(network)
            endpoint = record["endpoints"].get(container_id)
            if not endpoint or endpoint["state"] != "attached":
                raise NetworkError(f"container {container_id[:12]} is not attached to {network}")
            if record["internal"]:
                raise NetworkError(f"network {network} is internal: ports cannot be published")
            taken = [p for net in self.list() for p in net.ports]
            mine = [p for p in taken if p.container_id == container_id]
            owner = service or (endpoint["aliases"][0] if endpoint["aliases"] else None)

            def make(request, host_ip: str, host_port: int) -> ports.PublishedPort:
                container_ip = endpoint["ipv4"]
                if ":" in host_ip:
                    if not endpoint.get("ipv6"):
                        raise ports.PortError(f"{host_ip}: container has no IPv6 address")
                    container_ip = endpoint["ipv6"]
                return ports.PublishedPort(
                    container_id=container_id,
                    network=network,
                    protocol=(request.protocol or "tcp").lower(),
                    host_ip=host_ip,
                    host_port=host_port,
                    container_ip=container_ip,
                    container_port=int(request.target),
                    project=record.get("project"),
                    service=owner,
                )

            # Publishing again what is already published changes nothing.
            fresh = [r for r in wanted if not any(ports.satisfies(p, r) for p in mine)]
            elsewhere = nft.published_elsewhere(self.table) if fresh else ()
            published = ports.assign(fresh, taken, make=make, elsewhere=elsewhere)
            entries = record["ports"].setdefault(container_id, [])
            entries.extend(p.to_json() for p in published)
            self._write(record)
            try:
                self._sync_rules()
            except BaseException:
                record["ports"][container_id] = entries[: len(entries) - len(published)]
                self._write(record)
                raise
            return [ports.PublishedPort.from_json(p) for p in entries]

    def unpublish(self, container_id: str) -> None:
        """Withdraw every port the container published, on every network."""
        with self._lock(f"unpublish ports of {container_id[:12]}"):
            changed = False
            for record in self._records():
                if record.get("ports", {}).pop(container_id, None) is not None:
                    self._write(record)
                    changed = True
            if changed:
                self._sync_rules()

    # ------------------------------------------------------------------ recovery

    def cleanup_stale(self) -> list[str]:
        """Remove what a crashed command left: half-made networks and endpoints, and
        endpoints whose container is gone (its veth died with its namespace). Returns what
        was removed, as text. The rules are rebuilt only when a record changed; `create`
        repairs the bridge and rules of a network in use."""
        removed = []
        with self._lock("clean up stale networks"):
            rules_changed = False
            links = set(bridge.links_with_prefix(bridge.VETH_PREFIX))
            for record in self._records():
                if record.get("state") != "ready":
                    self._teardown(record)
                    removed.append(f"network {record['name']}")
                    continue
                for container_id, endpoint in list(record["endpoints"].items()):
                    alive = endpoint["host_ifname"] in links and os.path.exists(endpoint["netns"])
                    if endpoint["state"] == "attaching" and state.pid_alive(
                        endpoint.get("attaching_pid")
                    ):
                        continue  # another command is wiring it right now
                    if endpoint["state"] != "attached" or not alive:
                        rules_changed |= self._drop_endpoint(record, container_id)
                        removed.append(f"endpoint {container_id[:12]} on {record['name']}")
                for container_id in list(record.get("ports", {})):
                    if container_id not in record["endpoints"]:
                        del record["ports"][container_id]
                        self._write(record)
                        rules_changed = True
            if rules_changed:
                self._sync_rules()
        return removed


class _Locked:
    """The networks' flock, queued behind a lock of this process first: threads of one
    command (containers wired in parallel) then wait in line instead of polling flock."""

    _local: dict[str, threading.Lock] = {}
    _guard = threading.Lock()

    def __init__(self, lock: state.Lock) -> None:
        self.lock = lock
        with self._guard:
            self.local = self._local.setdefault(lock.path, threading.Lock())

    def __enter__(self) -> state.Lock:
        self.local.acquire()
        try:
            return self.lock.acquire()
        except BaseException:
            self.local.release()
            raise

    def __exit__(self, *exc) -> None:
        try:
            self.lock.release()
        finally:
            self.local.release()


def _at_once(here, there) -> None:
    """Run `here` in this thread while `there` runs in another; here's error comes first."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="network-realize") as pool:
        elsewhere = pool.submit(there)
        here()
        elsewhere.result()


def _remove_link(ifname: str) -> bool:
    """bridge.remove_link, asking the netlink helper only when the link is there."""
    return bridge.link_exists(ifname) and netlink_worker.call("delete_link", ifname)


def _read_record(path: Path) -> dict | None:
    try:
        return state.read_json(path, None)
    except ValueError:  # cut short by a crash before its write reached the disk
        return None


def _replace_json(path: Path, data: dict) -> None:
    """Atomic for other processes (rename), without fsync: see the module's docstring."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes((state.dumps(data) + "\n").encode())
    try:
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _gateway_interface(family_record: Mapping) -> str:
    prefix = family_record["subnet"].split("/")[1]
    return f"{family_record['gateway']}/{prefix}"


def _attachment(endpoint: Mapping) -> Attachment:
    return Attachment(
        ifname=endpoint["ifname"],
        ipv4=endpoint["ipv4"],
        ipv6=endpoint.get("ipv6"),
        gateway=endpoint.get("gateway"),
        mac=endpoint.get("mac"),
    )


def _port_rules(record: Mapping, port: ports.PublishedPort) -> list[nft.PortRule]:
    rules = [
        nft.PortRule(
            port.protocol,
            port.host_port,
            port.container_ip,
            port.container_port,
            record["bridge"],
            port.host_ip,
        )
    ]
    # Unbound to a host IP, the port is published on IPv6 as well when the container has it.
    endpoint = record["endpoints"].get(port.container_id, {})
    if not port.host_ip and endpoint.get("ipv6"):
        rules.append(
            nft.PortRule(
                port.protocol,
                port.host_port,
                endpoint["ipv6"],
                port.container_port,
                record["bridge"],
                "",
            )
        )
    return rules
