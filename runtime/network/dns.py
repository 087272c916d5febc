"""The embedded DNS server: one process per project, on every project network's gateway.

    python -m runtime.network.dns --project NAME --root COMPOSER_ROOT [--socket ADDR=FD,FD]

It answers UDP and TCP on port 53 of each gateway address found in
COMPOSER_ROOT/networks/*.json for the project, from the records in
runtime.network.dns_records, scoped to the networks of the asking container. Every
other name goes to the host's resolvers (read from /etc/resolv.conf at start), which is
why the server runs on the host side: a loopback stub such as 127.0.0.53 is out of a
container's reach but not of ours.

Files beside the records (COMPOSER_ROOT/networks/dns/): <project>.server.json (pid,
addresses listened on; the pid file), <project>.server.lock (flock held for the server's
life: at most one server a project, and a dead server's pid file is recognisably stale),
<project>.log (its stderr). The server leaves when the project has no networks left.

The container side: resolv_conf() and hosts_file() give the files a container gets;
explain() shows which record answers a name, for `composer dns`.
dnspython is imported only where wire format is handled, so callers of the helpers
do not pay for it.

launch() binds the gateways' UDP and TCP sockets itself and hands them to the new server
(--socket ADDRESS=UDP_FD,TCP_FD), so a container's first query waits in the kernel's
socket buffers while the server boots (~0.1-0.25 s) and containers need not wait for it.
"""

from __future__ import annotations

import errno
import fcntl
import gc
import ipaddress
import os
import signal
import struct
import sys
import time
from collections import namedtuple

from runtime.network.dns_records import (
    DOMAIN,
    Resolver,
    Result,
    generation_path,
    load_records,
    project_networks,
    records_dir,
    records_path,
)
from runtime.state import Lock, LockBusy, atomic_write_json, pid_alive, read_json, state_root

DNS_PORT = 53
TTL = 0  # answers must not outlive the container; resolvers may not cache them
FORWARD_TIMEOUT = 2.0  # per upstream server
TCP_IDLE_TIMEOUT = 10.0
MAX_FORWARDING = 1024  # UDP queries waiting for an upstream; more get SERVFAIL at once
WORKERS = 8  # threads for TCP clients and TCP retries of truncated upstream answers
RESCAN_INTERVAL = 2.0  # networks are also watched with inotify; this is the safety net
UDP_BURST = 256  # UDP queries answered from one socket before the loop looks at the others


# ---------------------------------------------------------------- container files


def resolv_conf(
    gateway: str,
    dns: list[str] | None = None,
    dns_search: list[str] | None = None,
    dns_opt: list[str] | None = None,
) -> str:
    """/etc/resolv.conf for a container whose first network has `gateway`.

    The nameserver is always our server, so service names resolve; the compose `dns:`
    servers are not listed here but recorded with the container (add_container(dns=...))
    and our server forwards that container's other queries to them.
    """
    del dns  # forwarded by the server, see above
    if not gateway:  # an internal network's attachment has no gateway route, the network has one
        raise ValueError("resolv_conf needs the network's gateway address (our DNS listens there)")
    search = [DOMAIN, *(d for d in dns_search or () if d != DOMAIN)]
    lines = [f"nameserver {gateway}", f"search {' '.join(search)}"]
    if dns_opt:
        lines.append(f"options {' '.join(dns_opt)}")
    return "\n".join(lines) + "\n"


def hosts_file(
    hostname: str | None,
    ips: list[str],
    extra_hosts: dict[str, str] | list[str] | None = None,
    gateway: str | None = None,
) -> str:
    """/etc/hosts for a container: loopback, its own addresses, then `extra_hosts`.

    extra_hosts: {"name": "ip"} or ["name:ip", "name=ip"]; the address `host-gateway`
    means the network's `gateway` (the host as seen from the container).
    """
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if hostname:
        lines += [f"{ip}\t{hostname}" for ip in ips]
    for name, address in _extra_host_pairs(extra_hosts):
        if address == "host-gateway":
            if not gateway:
                raise ValueError(f"extra_hosts {name}: host-gateway needs the network gateway")
            address = gateway
        lines.append(f"{ipaddress.ip_address(address.strip('[]'))}\t{name}")
    return "\n".join(lines) + "\n"


def _extra_host_pairs(extra_hosts) -> list[tuple[str, str]]:
    if not extra_hosts:
        return []
    if isinstance(extra_hosts, dict):
        return list(extra_hosts.items())
    pairs = []
    for entry in extra_hosts:
        # "name=ip" is the newer form; "name:ip" splits at the first colon (IPv6 has more).
        separator = "=" if "=" in entry else ":"
        name, _, address = entry.partition(separator)
        pairs.append((name.strip(), address.strip()))
    return pairs


# ---------------------------------------------------------------- debugging


def explain(
    project: str, service_or_container: str, name: str, root: str | os.PathLike | None = None
) -> tuple[list[str], str]:
    """What `name` resolves to when asked from `service_or_container`, and which record says so.

    The asker is a container name, id (or its prefix), or a service (its first replica).
    Nothing is sent anywhere: a name that is not ours is reported as forwarded.
    """
    records = load_records(project, root)
    resolver = Resolver(records, project_networks(project, root))
    asker = _find_container(records["containers"], service_or_container)
    if asker is None:
        raise LookupError(f"no container or service {service_or_container!r} in {project}")
    scope = resolver.scope_of_container(asker)
    if _is_address(name):
        name = ipaddress.ip_address(name).reverse_pointer
    if name.endswith(".arpa") or name.endswith(".arpa."):
        result = resolver.reverse(name, scope)
    else:
        v4, v6 = resolver.lookup(name, 4, scope), resolver.lookup(name, 6, scope)
        result = v4 if v4.kind != "answer" else Result("answer", v4.values + v6.values, v4.why)
    if result.kind == "forward":
        upstream = records["containers"][asker].get("dns") or ["the host's resolvers"]
        return [], f"not ours: forwarded to {', '.join(upstream)}"
    if result.kind == "nxdomain":
        return [], result.why or f"NXDOMAIN: no such name in {project} (scope {', '.join(scope)})"
    return result.values, result.why


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _find_container(containers: dict, wanted: str) -> str | None:
    for container_id, entry in containers.items():
        if wanted in (container_id, entry["name"]):
            return container_id
    replicas = sorted((e["name"], c) for c, e in containers.items() if e.get("service") == wanted)
    if replicas:
        return replicas[0][1]
    prefixed = [c for c in containers if c.startswith(wanted)]
    return prefixed[0] if len(prefixed) == 1 else None


# ---------------------------------------------------------------- wire format


def local_response(resolver: Resolver, query, source: str, arrived_on: str | None):
    """Our answer to a parsed query (a dns.message.Message), or None to forward it."""
    import dns.flags
    import dns.message
    import dns.rcode
    import dns.rdataclass
    import dns.rdatatype
    import dns.rrset

    if len(query.question) != 1:
        response = dns.message.make_response(
            query, recursion_available=True, our_payload=EDNS_PAYLOAD
        )
        response.set_rcode(dns.rcode.FORMERR)
        return response
    question = query.question[0]
    if question.rdclass != dns.rdataclass.IN:
        return None
    scope = resolver.scope(source, arrived_on)
    qtype = question.rdtype
    name = question.name.to_text()
    answers = []
    if qtype == dns.rdatatype.PTR:
        result = resolver.reverse(name, scope)
        answers.append((dns.rdatatype.PTR, [value + "." for value in result.values]))
    elif qtype in (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.ANY):
        families = {dns.rdatatype.A: (4,), dns.rdatatype.AAAA: (6,)}.get(qtype, (4, 6))
        for family in families:
            result = resolver.lookup(name, family, scope)
            answers.append((dns.rdatatype.A if family == 4 else dns.rdatatype.AAAA, result.values))
    else:  # a name of ours has no other record types: NODATA, or NXDOMAIN if it is not a name
        result = resolver.lookup(name, 4, scope, rotate=False)
    if result.kind == "forward":
        return None
    response = dns.message.make_response(query, recursion_available=True, our_payload=EDNS_PAYLOAD)
    response.flags |= dns.flags.AA
    if result.kind == "nxdomain":
        response.set_rcode(dns.rcode.NXDOMAIN)
        return response
    for rdtype, values in answers:
        if values:
            response.answer.append(
                dns.rrset.from_text_list(question.name, TTL, dns.rdataclass.IN, rdtype, values)
            )
    return response


_A, _PTR, _AAAA, _OPT = 1, 12, 28, 41
_HEADER = struct.Struct("!6H")
_COUNTS = struct.Struct("!5H")  # the header after the id
_ANSWER = struct.Struct("!HHHIH")  # name pointer, type, class, ttl, rdlength
EDNS_PAYLOAD = 1232  # what we accept over UDP: fits an unfragmented IPv6 packet


FORWARD = b"forward"  # quick_response: not ours, send it upstream as it is


def quick_response(
    resolver: Resolver, wire: bytes, source: str, arrived_on: str | None, udp: bool
) -> bytes | None:
    """Our answer, built by hand, to the usual query: one IN question for A, AAAA or PTR,
    no records but an optional EDNS0 OPT; FORWARD if such a query is not ours. None for
    anything else, which takes the dnspython path (about ten times the cost a query).
    The UDP loop asks UdpAnswers, which remembers these answers.
    """
    usual = _parse_usual(wire)
    if usual is None:
        return None
    result, rdatas = _resolve_usual(resolver, usual, resolver.scope(source, arrived_on), True)
    if result.kind == "forward":
        return FORWARD
    if rdatas is None:
        return None
    return _usual_reply(wire, usual, result.kind, rdatas, udp)


# What quick_response needs from the query: its flags, the name as text, the type, where the
# question ends, whether it has an OPT record and the largest UDP answer it accepts.
_Usual = namedtuple("_Usual", "flags name qtype question_end edns limit")


def _parse_usual(wire: bytes) -> _Usual | None:
    if len(wire) < 17:
        return None
    flags, questions, answers, authorities, additionals = _COUNTS.unpack_from(wire, 2)
    # QR and opcode bits clear: a standard query.
    if flags & 0xF800 or questions != 1 or answers or authorities or additionals > 1:
        return None
    labels, pos = [], 12
    while True:
        if pos >= len(wire) or wire[pos] > 63:  # truncated, or compressed: the full path copes
            return None
        length = wire[pos]
        if length == 0:
            break
        labels.append(wire[pos + 1 : pos + 1 + length])
        pos += 1 + length
    question_end = pos + 5
    if question_end > len(wire):
        return None
    qtype, qclass = struct.unpack_from("!HH", wire, pos + 1)
    if qclass != 1 or qtype not in (_A, _AAAA, _PTR):
        return None
    limit = 512
    if additionals:
        opt = wire[question_end:]
        # An OPT record: root name, type 41, payload size, rcode/version/flags, rdata.
        if len(opt) < 11 or opt[0] != 0 or struct.unpack_from("!H", opt, 1)[0] != _OPT:
            return None
        if opt[6] != 0:  # EDNS version other than 0: BADVERS is the full path's business
            return None
        limit = max(512, struct.unpack_from("!H", opt, 3)[0])
    elif question_end != len(wire):
        return None
    try:
        name = b".".join(labels).decode("ascii")
    except UnicodeDecodeError:
        return None
    return _Usual(flags, name, qtype, question_end, bool(additionals), limit)


def _resolve_usual(resolver: Resolver, usual: _Usual, scope: list[str], rotate: bool):
    """(Result, its values in wire form or None if one cannot be written by hand)."""
    import socket

    if usual.qtype == _PTR:
        result = resolver.reverse(usual.name, scope)
        rdatas = [_wire_name(value) for value in result.values]
        return result, None if None in rdatas else rdatas
    family = socket.AF_INET if usual.qtype == _A else socket.AF_INET6
    result = resolver.lookup(usual.name, 4 if usual.qtype == _A else 6, scope, rotate)
    return result, [socket.inet_pton(family, value) for value in result.values]


def _usual_reply(wire: bytes, usual: _Usual, kind: str, rdatas: list[bytes], udp: bool) -> bytes:
    """The response to `wire`: its id, question and EDNS presence; `rdatas` as answers."""
    qtype, question_end = usual.qtype, usual.question_end
    records = b"".join(_ANSWER.pack(0xC00C, qtype, 1, TTL, len(r)) + r for r in rdatas)
    opt_record = b"\x00" + struct.pack("!HHIH", _OPT, EDNS_PAYLOAD, 0, 0) if usual.edns else b""
    # QR, AA, RA, the client's RD; NXDOMAIN or NOERROR.
    flags = 0x8000 | 0x0400 | 0x0080 | (usual.flags & 0x0100) | (3 if kind == "nxdomain" else 0)
    count = len(rdatas)
    if udp and question_end + len(records) + len(opt_record) > usual.limit:
        flags |= 0x0200  # TC: the client asks again over TCP
        records, count = b"", 0
    header = _HEADER.pack(wire[0] << 8 | wire[1], flags, 1, count, 0, int(usual.edns))
    return header + wire[12:question_end] + records + opt_record


def _wire_name(text: str) -> bytes | None:
    try:
        labels = [label.encode("ascii") for label in text.rstrip(".").split(".")]
    except UnicodeEncodeError:
        return None
    if any(not 0 < len(label) <= 63 for label in labels):
        return None
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


_NOT_USUAL = False  # a remembered query that takes the full path


class UdpAnswers:
    """quick_response's UDP answers, remembered for one Resolver snapshot.

    Keyed on the asker's address, the network asked on and the query's bytes after its id:
    the same bytes from the same asker get the same answer, under the new query's id, the
    addresses turned by the resolver's wheel (Resolver.next_turn, shared with lookup). The
    server makes a new UdpAnswers with each new Resolver, so a change to the records or
    networks is seen at the next query.
    """

    # Then start over: a stream of unique names (or of 0x20-randomised case) must not grow
    # the server without end.
    LIMIT = 8192  # remembered queries
    BUDGET = 8 << 20  # bytes of remembered queries and answers

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self._known: dict[tuple, object] = {}
        self._size = 0

    def answer(self, wire: bytes, source: str, arrived_on: str | None) -> bytes | None:
        """What quick_response(…, udp=True) says to `wire`, mostly without working it out."""
        key = (source, arrived_on, wire[2:])
        entry = self._known.get(key)
        if entry is None:
            entry = self._learn(wire, source, arrived_on)
            self._remember(len(wire) + (len(entry) if entry.__class__ is bytes else 0))
            self._known[key] = entry
        if entry.__class__ is bytes:
            return entry if entry is FORWARD else wire[:2] + entry
        if entry is _NOT_USUAL:
            return None
        return wire[:2] + self._next_tail(entry)

    def _remember(self, size: int) -> None:
        self._size += size
        if len(self._known) >= self.LIMIT or self._size > self.BUDGET:
            self._known.clear()
            self._size = size

    def _learn(self, wire: bytes, source: str, arrived_on: str | None):
        usual = _parse_usual(wire)
        if usual is None:
            return _NOT_USUAL
        scope = self.resolver.scope(source, arrived_on)
        result, rdatas = _resolve_usual(self.resolver, usual, scope, rotate=False)
        if result.kind == "forward":
            return FORWARD
        if rdatas is None:
            return _NOT_USUAL
        if result.rotation is None:
            return _usual_reply(wire, usual, result.kind, rdatas, udp=True)[2:]
        return _Rotation(result.rotation, wire, usual, rdatas)

    def _next_tail(self, rotation: _Rotation) -> bytes:
        shift = self.resolver.next_turn(rotation.key, len(rotation.tails))
        tail = rotation.tails[shift]
        if tail is None:
            tail = rotation.tails[shift] = rotation.build(shift)
            self._remember(len(tail))
        return tail


class _Rotation:
    """An answer with addresses in turn: a response tail a turn, each built when first due."""

    __slots__ = ("_rdatas", "_usual", "_wire", "key", "tails")

    def __init__(self, key, wire: bytes, usual: _Usual, rdatas: list[bytes]) -> None:
        self.key, self._wire, self._usual, self._rdatas = key, wire, usual, rdatas
        self.tails: list[bytes | None] = [None] * len(rdatas)

    def build(self, shift: int) -> bytes:
        turned = self._rdatas[shift:] + self._rdatas[:shift]
        return _usual_reply(self._wire, self._usual, "answer", turned, udp=True)[2:]


def failure(query, rcode_name: str = "SERVFAIL"):
    import dns.message
    import dns.rcode

    response = dns.message.make_response(query, recursion_available=True, our_payload=EDNS_PAYLOAD)
    response.set_rcode(dns.rcode.from_text(rcode_name))
    return response


def forward(
    query, upstreams: list[tuple[str, int]], timeout: float = FORWARD_TIMEOUT, tcp: bool = False
):
    """Ask each upstream in turn (UDP, then TCP if the answer was truncated; TCP only if
    `tcp`); SERVFAIL if none answers. Blocking: for TCP clients, on a worker thread."""
    import dns.exception
    import dns.flags
    import dns.query

    for host, port in upstreams:
        try:
            if tcp:
                return dns.query.tcp(query, host, timeout=timeout, port=port)
            response = dns.query.udp(
                query, host, timeout=timeout, port=port, ignore_unexpected=True
            )
            if response.flags & dns.flags.TC:
                response = dns.query.tcp(query, host, timeout=timeout, port=port)
            return response
        except (dns.exception.DNSException, OSError, ValueError, EOFError):
            continue
    return failure(query)


def udp_payload_limit(query) -> int:
    """The largest UDP answer the client accepts: its EDNS payload size, else 512."""
    return max(512, query.payload) if query.edns >= 0 else 512


def parse_upstream(text: str) -> tuple[str, int]:
    """'1.2.3.4', '1.2.3.4:5353', '::1', '[::1]:5353' → (host, port)."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        return host, int(port.lstrip(":") or DNS_PORT)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, DNS_PORT


def host_upstreams(resolv_conf_path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    servers = []
    try:
        with open(resolv_conf_path) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "nameserver":
                    servers.append((fields[1], DNS_PORT))
    except FileNotFoundError:
        pass
    return servers


# ---------------------------------------------------------------- listening sockets


def bind_listeners(address: str, port: int = DNS_PORT) -> tuple:
    """(udp, tcp) sockets bound to address:port, the TCP one listening; OSError if taken.

    The launcher binds them before the server boots (queries wait in the kernel's buffers
    meanwhile) and the server binds those of networks that come later. UDP goes without
    SO_REUSEADDR, so a second socket on the same address fails (EADDRINUSE) instead of
    silently taking the other's queries.
    """
    import socket

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    udp = socket.socket(family, socket.SOCK_DGRAM)
    tcp = socket.socket(family, socket.SOCK_STREAM)
    try:
        # A killed server's TCP connections may linger in TIME_WAIT on the port.
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for sock in (udp, tcp):
            # The gateway may not be on the bridge yet: bind anyway, traffic follows.
            sock.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND
            sock.bind((address, port))
        tcp.listen(64)
    except OSError:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


def handoff_argument(address: str, udp_fd: int, tcp_fd: int) -> str:
    """The server's --socket argument for sockets it inherits: ADDRESS=UDP_FD,TCP_FD."""
    return f"{address}={udp_fd},{tcp_fd}"


def parse_handoff(text: str) -> tuple[str, int, int]:
    """handoff_argument's text → (address, udp fd, tcp fd); ValueError if malformed."""
    address, equals, fds = text.rpartition("=")
    if not equals:
        raise ValueError(f"not ADDRESS=UDP_FD,TCP_FD: {text!r}")
    udp_text, comma, tcp_text = fds.partition(",")
    if not comma or not udp_text.isdigit() or not tcp_text.isdigit():
        raise ValueError(f"not two descriptors: {fds!r}")
    udp_fd, tcp_fd = int(udp_text), int(tcp_text)
    if min(udp_fd, tcp_fd) < 3 or udp_fd == tcp_fd:  # 0-2 are stdio
        raise ValueError(f"descriptors must be two distinct ones above 2: {fds!r}")
    return str(ipaddress.ip_address(address)), udp_fd, tcp_fd


def adopt_sockets(handoffs: list[tuple[str, int, int]], port: int) -> dict[str, tuple]:
    """Sockets from parse_handoff's descriptors: address → (udp, tcp).

    Each pair is checked against what it claims to be (type, address, port); a pair that
    is not is closed, and the server binds that address itself as it would without one.
    """
    import socket

    adopted = {}
    for address, udp_fd, tcp_fd in handoffs:
        pair = []
        for fd, kind in ((udp_fd, socket.SOCK_DGRAM), (tcp_fd, socket.SOCK_STREAM)):
            try:
                sock = socket.socket(fileno=fd)
            except OSError as e:
                print(f"dns: inherited descriptor {fd} for {address}: {e}", file=sys.stderr)
                continue
            sock.set_inheritable(False)
            pair.append(sock)
            bound = sock.getsockname()
            if sock.type != kind or bound[1] != port or not _same_address(bound[0], address):
                print(f"dns: inherited descriptor {fd} is not {address}:{port}", file=sys.stderr)
                pair.append(None)  # spoils the pair
        if len(pair) == 2:
            adopted[address] = tuple(pair)
        else:
            for sock in pair:
                if sock is not None:
                    sock.close()
    return adopted


# ---------------------------------------------------------------- the server


class _Forwarding:
    """A client's UDP query on its way through the upstreams, one after another."""

    __slots__ = ("_query", "attempt", "client", "serial", "sock", "upstreams", "wire")

    def __init__(self, sock, client, wire: bytes, query, upstreams, serial: int) -> None:
        self.sock, self.client, self.wire, self._query = sock, client, wire, query
        self.upstreams = upstreams
        self.attempt = 0  # index of the upstream asked now
        self.serial = serial  # tells it from a later job under the same upstream id

    @property
    def query(self):
        """The parsed query, parsed only when needed (failures, oversized answers)."""
        if self._query is None:
            import dns.message

            self._query = dns.message.from_wire(self.wire)
        return self._query

    def answered_by(self, source) -> bool:
        host, port = self.upstreams[self.attempt]
        return source[1] == port and _same_address(source[0], host)


def _same_address(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return ipaddress.ip_address(a.split("%")[0]) == ipaddress.ip_address(b.split("%")[0])
    except ValueError:
        return False


class Server:
    """Listens on the project's gateways; answers from the records or forwards upstream.

    One thread runs the loop (answers, UDP forwarding, rescans); TCP clients and TCP
    retries upstream run on a small pool of workers.
    """

    def __init__(
        self,
        project: str,
        root: str | os.PathLike,
        upstreams: list[tuple[str, int]],
        port: int = DNS_PORT,
        handed: dict[str, tuple] | None = None,
    ) -> None:
        """handed: address → (udp, tcp) sockets the launcher bound (adopt_sockets)."""
        import collections
        import itertools
        import selectors
        from concurrent.futures import ThreadPoolExecutor

        self.project = project
        self.root = str(root)
        self.upstreams = upstreams
        self.port = port
        self.selector = selectors.DefaultSelector()
        self.workers = ThreadPoolExecutor(WORKERS, thread_name_prefix="dns")
        # UDP forwarding runs on this loop, not on threads: a thread waiting for the GIL
        # behind a busy loop waits a switch interval (5 ms) each time.
        self.forwarding: dict[int, _Forwarding] = {}  # by the id we gave the upstream query
        # (deadline, id, job serial, attempt): no job in it, so an answered job is freed at
        # once instead of living on to its deadline for the collector to walk.
        self.deadlines: collections.deque = collections.deque()
        self._serials = itertools.count()
        self.upstream_sockets: dict[int, object] = {}  # by address family
        self.listeners: dict[str, tuple] = {}  # address → (udp socket, tcp socket, network)
        self.handed = dict(handed or {})  # used by the first rescan, the rest closed
        self.networks: dict = {}
        self._records_path = str(records_path(project, root))
        self._records_key = None  # the records file's identity when last read
        self._generation_path = str(generation_path(project, root))
        self._generation_map = None  # the writers' change count, mapped (see current_resolver)
        self._generation_ino = None
        self._generation = None  # the count when the records were last read
        self.resolver = Resolver({}, {})
        self.answers = UdpAnswers(self.resolver)
        self._written: dict | None = None  # the pid file's content
        self.running = True

    # -- what to serve

    def current_resolver(self) -> Resolver:
        """The resolver for the records on disk now, rebuilt when they change.

        Every query asks, so the check is a memory read: the writers count each change in a
        file (dns_records.generation_path) that we map, after the records are in place.
        """
        if self._generation_map is None or self._generation_map[:] != self._generation:
            self._reload()
        return self.resolver

    def _reload(self) -> None:
        """Read the records again; map the change count first if its file is new."""
        if self._generation_map is None or self._generation_replaced():
            self._map_generation()
        # The count before the records: a change in between shows at the next query.
        self._generation = self._generation_map[:]
        self._records_key = _file_key(self._records_path)
        self.resolver = Resolver(load_records(self.project, self.root), self.networks)
        self.answers = UdpAnswers(self.resolver)

    def _generation_replaced(self) -> bool:
        return _file_key(self._generation_path)[0] != self._generation_ino

    def _map_generation(self) -> None:
        import mmap

        fd = os.open(self._generation_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)  # a writer's pwrite of 8 bytes races harmlessly
            self._generation_map = mmap.mmap(fd, 8, access=mmap.ACCESS_READ)
            self._generation_ino = os.fstat(fd).st_ino
        finally:
            os.close(fd)

    def rescan(self) -> None:
        """Listen on exactly the gateways of the project's networks; stop when none are left."""
        networks = project_networks(self.project, self.root, previous=self.networks)
        wanted = {gw: name for name, info in networks.items() for gw in info.gateways}
        for address in set(self.listeners) - set(wanted):
            self._close(address)
        for address, name in wanted.items():
            if address not in self.listeners:
                self._listen(address, name)
            else:
                udp, tcp, _ = self.listeners[address]
                self.listeners[address] = (udp, tcp, name)
        for udp, tcp in self.handed.values():  # its network went before we came up
            udp.close()
            tcp.close()
        self.handed.clear()
        if networks != self.networks:
            self.networks = networks
            self._reload()  # scoping depends on the networks too
        elif _file_key(self._records_path) != self._records_key or self._generation_replaced():
            self._reload()  # the safety net: records written without counting, count file replaced
        self.write_pid_file()
        if not networks:
            self.running = False

    def _listen(self, address: str, network: str) -> None:
        import selectors

        sockets = self.handed.pop(address, None)
        if sockets is None:
            try:
                sockets = bind_listeners(address, self.port)
            except OSError as e:
                print(f"dns: cannot listen on {address}:{self.port}: {e}", file=sys.stderr)
                return
        udp, tcp = sockets
        udp.setblocking(False)
        tcp.setblocking(False)
        self.selector.register(udp, selectors.EVENT_READ, ("udp", address))
        self.selector.register(tcp, selectors.EVENT_READ, ("tcp", address))
        self.listeners[address] = (udp, tcp, network)

    def _close(self, address: str) -> None:
        udp, tcp, _ = self.listeners.pop(address)
        for sock in (udp, tcp):
            self.selector.unregister(sock)
            sock.close()

    def write_pid_file(self) -> None:
        info = {
            "pid": os.getpid(),
            "port": self.port,
            "listening": sorted(self.listeners),
            "upstreams": [f"{h}:{p}" for h, p in self.upstreams],
        }
        if info != self._written:  # each write fsyncs: only on change
            atomic_write_json(server_file(self.project, self.root), info)
            self._written = info

    # -- queries

    def prepare(self, wire: bytes, source: str, address: str):
        """(query, our response or None, upstreams to forward to); None if not a query."""
        import dns.exception
        import dns.flags
        import dns.message

        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None  # not DNS, or mangled: nothing sensible to answer
        if query.flags & dns.flags.QR:  # a response, not a query: never loop on it
            return None
        resolver = self.current_resolver()
        network = self.listeners.get(address, (None, None, None))[2]
        response = local_response(resolver, query, source, network)
        upstreams = self.upstreams_for(resolver, source, network)
        if response is None and upstreams is None:
            response = failure(query, "REFUSED")
        return query, response, upstreams or []

    def upstreams_for(self, resolver: Resolver, source: str, network: str | None):
        """Where a query from `source` that is not ours goes; None: nowhere (internal)."""
        if network is not None:
            scope = resolver.scope(source, network)
            if all(self.networks[n].internal for n in scope):
                return None  # internal networks have no way out
        own = [parse_upstream(s) for s in resolver.upstreams_for(source)]
        # Never forward to ourselves: a loop would end only in timeouts.
        return [
            u for u in own or self.upstreams if not (u[0] in self.listeners and u[1] == self.port)
        ]

    @staticmethod
    def _encode(response, query, udp: bool) -> bytes:
        # dnspython shuffles records by default; ours are already in rotation order.
        if udp:
            return response.to_wire(
                max_size=udp_payload_limit(query), prefer_truncation=True, want_shuffle=False
            )
        return response.to_wire(want_shuffle=False)

    def on_udp(self, sock, address: str) -> None:
        network = self.listeners[address][2]
        # Drain until EAGAIN (a select turn a query would cost more than the answer), up to
        # a burst, then let the other sockets have a turn.
        for _ in range(UDP_BURST):
            try:
                wire, client = sock.recvfrom(65535)
            except OSError:  # EAGAIN: drained
                return
            resolver = self.current_resolver()
            quick = self.answers.answer(wire, client[0], network)
            if quick is FORWARD:
                upstreams = self.upstreams_for(resolver, client[0], network)
                self.forward_udp(sock, client, wire, None, upstreams)
                continue
            if quick is not None:
                self._send(sock, quick, client)
                continue
            try:
                prepared = self.prepare(wire, client[0], address)
            except Exception as e:  # one bad query must not take the project's DNS down
                print(f"dns: query from {client[0]} failed: {e!r}", file=sys.stderr)
                continue
            if prepared is None:
                continue
            query, response, upstreams = prepared
            if response is not None:
                self._send(sock, self._encode(response, query, udp=True), client)
            else:
                self.forward_udp(sock, client, wire, query, upstreams)

    # -- forwarding UDP queries, on the loop

    def forward_udp(self, sock, client, wire: bytes, query, upstreams) -> None:
        """Send the client's query upstream under an id of ours; the answer comes to on_upstream."""
        job = _Forwarding(sock, client, wire, query, upstreams, next(self._serials))
        if upstreams is None or not upstreams or len(self.forwarding) >= MAX_FORWARDING:
            rcode = "REFUSED" if upstreams is None else "SERVFAIL"
            self._send(sock, self._encode(failure(job.query, rcode), job.query, True), client)
            return
        while True:
            upstream_id = int.from_bytes(os.urandom(2), "big")
            if upstream_id not in self.forwarding:
                break
        self.forwarding[upstream_id] = job
        self._ask_upstream(upstream_id, job)

    def _ask_upstream(self, upstream_id: int, job: _Forwarding) -> None:
        import socket

        while job.attempt < len(job.upstreams):
            host, port = job.upstreams[job.attempt]
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                self._upstream_socket(family).sendto(
                    upstream_id.to_bytes(2, "big") + job.wire[2:], (host, port)
                )
            except OSError:
                job.attempt += 1  # unreachable at once: the next one
                continue
            deadline = time.monotonic() + FORWARD_TIMEOUT
            self.deadlines.append((deadline, upstream_id, job.serial, job.attempt))
            return
        del self.forwarding[upstream_id]
        self._send(job.sock, self._encode(failure(job.query), job.query, udp=True), job.client)

    def _upstream_socket(self, family: int):
        import selectors
        import socket

        sock = self.upstream_sockets.get(family)
        if sock is None:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, ("upstream", None))
            self.upstream_sockets[family] = sock
        return sock

    def on_upstream(self, sock) -> None:
        for _ in range(64):
            try:
                data, source = sock.recvfrom(65535)
            except OSError:
                return
            if len(data) < 12:
                continue
            upstream_id = int.from_bytes(data[:2], "big")
            job = self.forwarding.get(upstream_id)
            if job is None or not job.answered_by(source):
                continue  # late, stray or spoofed
            del self.forwarding[upstream_id]
            if data[2] & 0x02:  # TC: ask the same upstream over TCP, on a worker
                self.workers.submit(self._retry_over_tcp, job)
                continue
            self._reply_udp(job, job.wire[:2] + data[2:])

    def _reply_udp(self, job: _Forwarding, reply: bytes) -> None:
        if len(reply) > 512 and len(reply) > udp_payload_limit(job.query):
            import dns.message

            response = dns.message.from_wire(reply, ignore_trailing=True)
            reply = self._encode(response, job.query, udp=True)
        self._send(job.sock, reply, job.client)

    def _retry_over_tcp(self, job: _Forwarding) -> None:
        response = forward(job.query, [job.upstreams[job.attempt]], tcp=True)
        self._send(job.sock, self._encode(response, job.query, udp=True), job.client)

    def expire_forwarding(self) -> float:
        """Move timed-out queries to their next upstream; seconds until the next deadline."""
        now = time.monotonic()
        while self.deadlines and self.deadlines[0][0] <= now:
            _, upstream_id, serial, attempt = self.deadlines.popleft()
            job = self.forwarding.get(upstream_id)
            if job is not None and job.serial == serial and job.attempt == attempt:
                job.attempt += 1
                self._ask_upstream(upstream_id, job)
        return self.deadlines[0][0] - now if self.deadlines else RESCAN_INTERVAL

    @staticmethod
    def _send(sock, data: bytes, client) -> None:
        try:
            sock.sendto(data, client)
        except OSError:
            pass  # the client went away; UDP has no one to tell

    def on_tcp(self, sock, address: str) -> None:
        try:
            conn, client = sock.accept()
        except OSError:
            return
        self.workers.submit(self.serve_tcp, conn, client[0], address)

    def serve_tcp(self, conn, source: str, address: str) -> None:
        """One TCP client, on a worker: length-prefixed queries until it hangs up or idles."""
        conn.settimeout(TCP_IDLE_TIMEOUT)
        try:
            with conn:
                while self.running:
                    length = _recv_exactly(conn, 2)
                    wire = length and _recv_exactly(conn, int.from_bytes(length, "big"))
                    if not wire:
                        return
                    network = self.listeners.get(address, (None, None, None))[2]
                    resolver = self.current_resolver()
                    data = quick_response(resolver, wire, source, network, udp=False)
                    if data is None or data is FORWARD:
                        prepared = self.prepare(wire, source, address)
                        if prepared is None:
                            return
                        query, response, upstreams = prepared
                        if response is None:
                            response = forward(query, upstreams)
                        data = self._encode(response, query, udp=False)
                    conn.sendall(len(data).to_bytes(2, "big") + data)
        except OSError:
            return
        except Exception as e:  # one bad query must not take the project's DNS down
            print(f"dns: query from {source} failed: {e!r}", file=sys.stderr)

    def serve(self) -> None:
        from runtime.inotify import DirectoryWatch

        watch = DirectoryWatch([str(state_root(self.root) / "networks")])
        if watch.watched:
            self.selector.register(watch, 1, ("inotify", None))  # 1: EVENT_READ
        # select() resumes after a signal; a byte on this pipe wakes it to see `running`.
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_write)
        self.selector.register(wake_read, 1, ("signal", None))
        self.rescan()
        last_rescan = time.monotonic()
        # What is loaded now lives as long as the server: the collector's full passes (ms,
        # in the middle of a query) need not walk it.
        gc.freeze()
        try:
            while self.running:
                wait = min(RESCAN_INTERVAL, max(0.0, self.expire_forwarding()))
                for key, _ in self.selector.select(wait):
                    kind, address = key.data
                    if kind == "udp":
                        self.on_udp(key.fileobj, address)
                    elif kind == "upstream":
                        self.on_upstream(key.fileobj)
                    elif kind == "tcp":
                        self.on_tcp(key.fileobj, address)
                    elif kind == "signal":
                        _drain(wake_read)
                    else:
                        watch.drain()
                        self.rescan()
                        last_rescan = time.monotonic()
                if time.monotonic() - last_rescan >= RESCAN_INTERVAL:
                    self.rescan()  # one listdir; catches what inotify could not watch
                    last_rescan = time.monotonic()
        finally:
            for address in list(self.listeners):
                self._close(address)
            self.workers.shutdown(wait=False, cancel_futures=True)
            for sock in self.upstream_sockets.values():
                sock.close()
            watch.close()
            signal.set_wakeup_fd(-1)
            os.close(wake_read)
            os.close(wake_write)


def _file_key(path: str) -> tuple:
    """(inode, mtime, size): changes when the file is replaced or written."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (None, None, None)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _recv_exactly(conn, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except BlockingIOError:
        pass


# ---------------------------------------------------------------- process control


def server_file(project: str, root: str | os.PathLike | None = None):
    return records_dir(root) / f"{project}.server.json"


def _server_lock(project: str, root) -> Lock:
    return Lock(records_dir(root) / f"{project}.server.lock", f"serve DNS for {project}")


def server_pid(project: str, root: str | os.PathLike | None = None) -> int | None:
    """The pid of the project's running server, None if there is none.

    The server holds an flock on <project>.server.lock for its whole life and wrote its
    pid into it (runtime.state.Lock does), so a server killed with SIGKILL is never
    mistaken for a live one, and a new one is known before it writes server.json.
    """
    path = records_dir(root) / f"{project}.server.lock"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None  # nobody holds it (closing the fd drops our probe)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        text = os.pread(fd, 4096, 0).decode(errors="replace")
    finally:
        os.close(fd)
    for line in text.splitlines():
        if line.startswith("pid="):
            return int(line[4:])
    return None  # held, but the holder has not written its pid yet


class Launch:
    """A server being made sure of by launch(): ready() for containers, wait() for its pid."""

    def __init__(self, project: str, root: str, gateways: set[str], handed: set[str]) -> None:
        self.project, self.root, self.gateways = project, root, gateways
        self.handed = handed  # gateways whose sockets we bound and passed to a new server
        self.process = None  # the detaching first child, reaped in wait()
        self._pid: int | None = None

    def ready(self, timeout: float = 10.0) -> None:
        """Return once a query to any gateway will be answered (it may wait in the kernel's
        socket buffers while the server boots): at once if we handed over every gateway."""
        if self.gateways - self.handed:
            self.wait(timeout)

    def wait(self, timeout: float = 10.0) -> int:
        """The server's pid once it runs and listens on every gateway; RuntimeError if not."""
        if self._pid is not None:
            return self._pid
        deadline = time.monotonic() + timeout
        process = self.process
        if process is not None and process.wait(timeout) != 0:  # it only forks and leaves
            raise RuntimeError(f"DNS server for {self.project} failed: {self._log_tail()}")
        while time.monotonic() < deadline:
            pid = server_pid(self.project, self.root)
            info = read_json(server_file(self.project, self.root), None) or {}
            if (
                pid is not None
                and info.get("pid") == pid
                and self.gateways <= set(info["listening"])
            ):
                self._pid = pid
                return pid
            time.sleep(0.01)
        raise RuntimeError(
            f"DNS server for {self.project} did not start listening on {self.gateways}: "
            + self._log_tail()
        )

    def _log_tail(self) -> str:
        log = records_dir(self.root) / f"{self.project}.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""


def launch(
    project: str,
    root: str | os.PathLike | None = None,
    *,
    port: int = DNS_PORT,
    extra_args: list[str] | tuple[str, ...] = (),
) -> Launch | None:
    """Start the project's server unless one runs, without waiting for it to boot.

    We bind port 53 on each gateway here and hand the sockets to the new server, so from
    our return on a query waits in the kernel instead of being refused. A running server
    is left alone: it listens on new networks' gateways itself (Launch.ready waits for
    that). None when the project has no networks (nothing to serve). The caller holds the
    project lock; a launcher racing without it finds the addresses taken (EADDRINUSE),
    and of two servers the one holding the server lock stays.
    extra_args go to the server's command line (tests: --upstream).
    """
    root = str(state_root(root))
    gateways = {gw for info in project_networks(project, root).values() for gw in info.gateways}
    if not gateways:
        return None
    if server_pid(project, root) is not None:
        return Launch(project, root, gateways, set())
    bound = {}
    try:
        for address in sorted(gateways):
            try:
                bound[address] = bind_listeners(address, port)
            except OSError as e:  # the server tries again itself and logs why
                print(f"dns: cannot bind {address}:{port} for {project}: {e}", file=sys.stderr)
        started = Launch(project, root, gateways, set(bound))
        started.process = _spawn(project, root, bound, port, extra_args)
    finally:
        for udp, tcp in bound.values():  # the server has its own copies now
            udp.close()
            tcp.close()
    return started


def ensure_running(
    project: str,
    root: str | os.PathLike | None = None,
    *,
    timeout: float = 10.0,
    port: int = DNS_PORT,
    extra_args: list[str] | tuple[str, ...] = (),
) -> int | None:
    """Start the project's server unless it runs; wait until it listens on every gateway.

    Returns its pid, or None when the project has no networks (nothing to serve).
    """
    started = launch(project, root, port=port, extra_args=extra_args)
    return None if started is None else started.wait(timeout)


def _spawn(project: str, root: str, bound: dict[str, tuple], port: int, extra_args):
    """Start a server that outlives us, with `bound` sockets as inherited descriptors; it
    detaches (forks once more): the returned first child is to be reaped (Launch.wait)."""
    import subprocess

    records_dir(root).mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "runtime.network.dns", "--project", project, "--root", root]
    if port != DNS_PORT:
        argv += ["--port", str(port)]
    fds = []
    for address, (udp, tcp) in bound.items():
        argv += ["--socket", handoff_argument(address, udp.fileno(), tcp.fileno())]
        fds += [udp.fileno(), tcp.fileno()]
    with open(records_dir(root) / f"{project}.log", "ab") as log:
        return subprocess.Popen(
            [*argv, "--detach", *extra_args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            close_fds=True,
            pass_fds=fds,
        )


def stop_server(project: str, root: str | os.PathLike | None = None, timeout: float = 10.0) -> bool:
    """Stop the project's server (SIGTERM) and wait until it is gone; True if one was running."""
    pid = server_pid(project, root)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while server_pid(project, root) is not None or pid_alive(pid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"DNS server {pid} for {project} did not stop")
        time.sleep(0.01)
    return True


def forget_project(project: str, root: str | os.PathLike | None = None) -> bool:
    """Delete the project's DNS files (records, locks, log); False while its server runs.

    For `down` after the last container and network are gone: a record added meanwhile
    would be lost with the file, so nothing may still be attaching.
    """
    if server_pid(project, root) is not None:
        return False
    path = records_path(project, root)
    for leftover in (
        path,
        path.with_name(f"{path.name}.lock"),
        generation_path(project, root),
        server_file(project, root),
        records_dir(root) / f"{project}.server.lock",
        records_dir(root) / f"{project}.log",
    ):
        leftover.unlink(missing_ok=True)
    return True


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m runtime.network.dns")
    parser.add_argument("--project", required=True)
    parser.add_argument("--root", default=None)
    parser.add_argument("--port", type=int, default=DNS_PORT, help="tests only")
    parser.add_argument(
        "--upstream",
        action="append",
        default=[],
        help="tests only: forward here instead of the host's resolvers (HOST[:PORT])",
    )
    parser.add_argument(
        "--socket",
        action="append",
        default=[],
        type=parse_handoff,
        help="ADDRESS=UDP_FD,TCP_FD: inherited sockets bound to ADDRESS:PORT (from launch)",
    )
    parser.add_argument("--resolv-conf", default="/etc/resolv.conf")
    parser.add_argument("--detach", action="store_true", help="fork into a new session and return")
    args = parser.parse_args(argv)
    if args.detach:
        if os.fork() > 0:
            os._exit(0)  # the caller reaps us at once; init (or its subreaper) adopts the server
        os.setsid()
    root = str(state_root(args.root))
    records_dir(root).mkdir(parents=True, exist_ok=True)
    lock = _server_lock(args.project, root)
    try:
        lock.acquire()
    except LockBusy:
        return 0  # another server already serves this project (our sockets close with us)
    upstreams = [parse_upstream(u) for u in args.upstream] or host_upstreams(args.resolv_conf)
    handed = adopt_sockets(args.socket, args.port)
    server = Server(args.project, root, upstreams, args.port, handed)

    def stop(signum, frame) -> None:
        server.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve()
    finally:
        try:
            os.unlink(server_file(args.project, root))
        except FileNotFoundError:
            pass
        lock.release()
    return 0


if __name__ == "__main__":
    status = main()
    sys.stderr.flush()
    # Workers may sit in an idle TCP connection or a slow upstream: do not wait for them.
    os._exit(status)
