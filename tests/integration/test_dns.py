"""The embedded DNS server on the real kernel, inside the test session's own network namespace.

Two networks (a bridge each, gateway on it) live in the sandbox netns; stand-in containers
(ProcessNetns) hang off them by veth. The server runs in the sandbox and forwards to a stub
upstream on the sandbox's loopback, never to the machine's resolver.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import socket
import subprocess
import threading
import time
import uuid

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest

from runtime.network import dns as dnsserver
from runtime.network.dns_records import DOMAIN, add_container, remove_container
from runtime.state import atomic_write_json, pid_alive
from tests import netns
from tests.netns import ProcessNetns, assert_local_route

in_netns = netns.in_netns


@pytest.fixture(scope="module")
def netns_sandbox():
    """This module's own sandbox netns: tests.netns names its session sandbox after the pid,
    so a second module taking that fixture in the same run would collide with the first."""
    if os.geteuid() != 0:
        pytest.fail("DNS integration tests need root (they create a network namespace)")
    sandbox = netns.NetnsSandbox.create(f"composer-test-{os.getpid()}-dns")
    try:
        yield sandbox
    finally:
        sandbox.remove()
    assert not sandbox.exists(), f"netns {sandbox.name} left behind"


FRONT_GW, BACK_GW = "10.89.50.1", "10.89.50.65"
_names = itertools.count()


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=20).stdout


inside = netns.inside


class StubUpstream:
    """A tiny authoritative server on the sandbox's loopback, UDP and TCP.

    example.test → 192.0.2.10; big.test → 40 addresses, truncated over UDP (TC) so the
    asker must retry over TCP; everything else NXDOMAIN. It counts what it was asked.
    """

    def __init__(self) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(8)
        self.asked: list[tuple[str, str]] = []  # (transport, name)
        self.stopping = False
        self.threads = [
            threading.Thread(target=self._serve_udp, daemon=True),
            threading.Thread(target=self._serve_tcp, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def answer(self, query, transport: str):
        name = query.question[0].name.to_text().rstrip(".").lower()
        self.asked.append((transport, name))
        response = dns.message.make_response(query)
        if name == "example.test":
            response.answer.append(
                dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "192.0.2.10")
            )
        elif name == "big.test":
            if transport == "udp":
                response.flags |= dns.flags.TC
            else:
                addresses = [f"192.0.2.{n}" for n in range(100, 140)]
                response.answer.append(
                    dns.rrset.from_text_list(query.question[0].name, 60, "IN", "A", addresses)
                )
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response

    def _serve_udp(self) -> None:
        self.udp.settimeout(0.2)
        while not self.stopping:
            try:
                wire, client = self.udp.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            self.udp.sendto(self.answer(dns.message.from_wire(wire), "udp").to_wire(), client)

    def _serve_tcp(self) -> None:
        self.tcp.settimeout(0.2)
        while not self.stopping:
            try:
                conn, _ = self.tcp.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(5)
                query, _ = dns.query.receive_tcp(conn, time.time() + 5)
                dns.query.send_tcp(conn, self.answer(query, "tcp"), time.time() + 5)

    def close(self) -> None:
        self.stopping = True
        for thread in self.threads:
            thread.join(timeout=5)
        self.udp.close()
        self.tcp.close()


class Net:
    """A bridge with the gateway address, recorded as networks/<name>.json for the server."""

    def __init__(self, root, project: str, name: str, gateway: str, prefix: int = 26) -> None:
        self.name = name
        self.gateway = gateway
        self.bridge = f"cdns{os.getpid() % 10000}x{next(_names)}"
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{gateway}/{prefix}", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        self.file = root / "networks" / f"{name}.json"
        self.file.parent.mkdir(parents=True, exist_ok=True)
        subnet = str(ipaddress.ip_interface(f"{gateway}/{prefix}").network)
        atomic_write_json(
            self.file, {"name": name, "project": project, "subnet": subnet, "gateway": gateway}
        )

    def plug(self, container: ProcessNetns, address: str, prefix: int = 26) -> None:
        """A veth from the bridge into `container`, with `address` and a route to the gateway."""
        host_end = f"{self.bridge}v{next(_names)}"[-15:]
        run(
            "ip",
            "link",
            "add",
            host_end,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            str(container.pid),
        )
        run("ip", "link", "set", host_end, "master", self.bridge, "up")
        container.run("ip", "addr", "add", f"{address}/{prefix}", "dev", "eth0")
        container.run("ip", "link", "set", "eth0", "up")
        container.run("ip", "link", "set", "lo", "up")
        assert_local_route(self.gateway, {"eth0"}, netns=container)

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        self.file.unlink(missing_ok=True)


@pytest.fixture
def project(in_netns, tmp_path):
    """Two networks: web and proxy on front, two api replicas on back."""
    root = tmp_path / "composer-root"
    name = f"dnst{uuid.uuid4().hex[:8]}"
    upstream = StubUpstream()
    nets, containers = [], {}
    try:
        front = Net(root, name, f"{name}_front", FRONT_GW)
        nets.append(front)
        back = Net(root, name, f"{name}_back", BACK_GW)
        nets.append(back)
        # key, network, address, service, aliases, hostname
        for key, net, address, service, aliases, hostname in (
            ("web", front, "10.89.50.2", "web", ["www"], "webhost"),
            ("proxy", front, "10.89.50.3", "proxy", [], None),
            ("api1", back, "10.89.50.67", "api", [], None),
            ("api2", back, "10.89.50.68", "api", [], None),
        ):
            containers[key] = ProcessNetns()
            net.plug(containers[key], address)
            replica = key[-1] if key[-1].isdigit() else "1"
            add_container(
                name, net.name, f"c-{key}", f"{name}-{service}-{replica}", service, [address],
                aliases, hostname, root=root,
            )  # fmt: skip
        pid = dnsserver.ensure_running(
            name, root, extra_args=["--upstream", f"127.0.0.1:{upstream.port}"]
        )
        assert pid is not None
        yield {
            "name": name,
            "root": root,
            "front": front,
            "back": back,
            **containers,
            "upstream": upstream,
            "pid": pid,
        }
    finally:
        dnsserver.stop_server(name, root)
        assert dnsserver.forget_project(name, root)
        for container in containers.values():
            container.stop()
        for net in nets:
            net.remove()
        upstream.close()
    assert not _alive(pid), "DNS server left running"
    assert list((root / "networks" / "dns").iterdir()) == []
    leftover = run("ip", "-o", "link").splitlines()
    assert all("cdns" not in line for line in leftover), leftover


def _alive(pid: int) -> bool:
    return pid_alive(pid)  # a zombie waiting for init to reap it is gone


def query(container: ProcessNetns, name: str, rdtype: str = "A", server: str = FRONT_GW, tcp=False):
    message = dns.message.make_query(name, rdtype)
    with inside(container.path):
        if tcp:
            return dns.query.tcp(message, server, timeout=5)
        return dns.query.udp(message, server, timeout=5)


def addresses(response) -> list[str]:
    return [r.address for rrset in response.answer for r in rrset if hasattr(r, "address")]


# ---------------------------------------------------------------- tests


def test_answers_names_on_udp_and_tcp(project):
    web, name = project["web"], project["name"]
    for tcp in (False, True):
        assert addresses(query(web, "www", tcp=tcp)) == ["10.89.50.2"]
        assert addresses(query(web, f"{name}-web-1", tcp=tcp)) == ["10.89.50.2"]
        assert addresses(query(web, "WebHost.", tcp=tcp)) == ["10.89.50.2"]
        assert addresses(query(web, f"web.{DOMAIN}", tcp=tcp)) == ["10.89.50.2"]


def test_service_replicas_rotate_and_scope_follows_the_askers_networks(project):
    api1, proxy = project["api1"], project["proxy"]
    first = addresses(query(api1, "api", server=BACK_GW))
    second = addresses(query(api1, "api", server=BACK_GW))
    assert sorted(first) == ["10.89.50.67", "10.89.50.68"]
    assert second == first[::-1]
    # proxy is on front only: api is not its name, so it goes upstream and does not exist there
    response = query(proxy, "api")
    assert response.rcode() == dns.rcode.NXDOMAIN and not response.answer
    assert ("udp", "api") in project["upstream"].asked
    # and back's containers do not see front-only names
    assert query(api1, f"proxy.{DOMAIN}", server=BACK_GW).rcode() == dns.rcode.NXDOMAIN


def test_ptr_for_container_addresses(project):
    response = query(project["web"], dns.reversename.from_address("10.89.50.3").to_text(), "PTR")
    assert [r.target.to_text() for r in response.answer[0]] == [
        f"{project['name']}-proxy-1.{project['front'].name}."
    ]


def test_removed_container_is_nxdomain_at_the_next_query(project):
    web, name, root = project["web"], project["name"], project["root"]
    assert addresses(query(web, f"proxy.{DOMAIN}")) == ["10.89.50.3"]
    remove_container(name, "c-proxy", root=root)
    assert query(web, f"proxy.{DOMAIN}").rcode() == dns.rcode.NXDOMAIN
    add_container(
        name,
        project["front"].name,
        "c-proxy",
        f"{name}-proxy-1",
        "proxy",
        ["10.89.50.3"],
        root=root,
    )
    assert addresses(query(web, f"proxy.{DOMAIN}")) == ["10.89.50.3"]


def test_a_burst_of_queries_is_answered_each_under_its_own_id(project):
    """Many queries waiting at once: the server drains them in bursts from remembered
    answers; each reply carries its own query's id and answer, replicas still rotate."""
    name = project["name"]
    expected = {
        "www": ["10.89.50.2"],
        f"{name}-proxy-1": ["10.89.50.3"],
        f"WebHost.{DOMAIN}": ["10.89.50.2"],
        f"nothing.{DOMAIN}": [],
    }
    asked = {}
    for n in range(100):
        query_name = list(expected)[n % len(expected)]
        message = dns.message.make_query(query_name, "A", use_edns=0 if n % 3 else False)
        message.id = 1000 + n
        asked[message.id] = (query_name, message.to_wire())
    with inside(project["web"].path):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.settimeout(5)
            sock.connect((FRONT_GW, 53))
            for _, wire in asked.values():
                sock.send(wire)
            replies = [dns.message.from_wire(sock.recv(4096)) for _ in asked]
        finally:
            sock.close()
    assert sorted(r.id for r in replies) == sorted(asked)
    for reply in replies:
        query_name, wire = asked[reply.id]
        assert reply.question[0].name.to_text() == f"{query_name}."
        assert addresses(reply) == expected[query_name]
        assert reply.rcode() == (dns.rcode.NXDOMAIN if not expected[query_name] else 0)
        assert (reply.edns >= 0) == (dns.message.from_wire(wire).edns >= 0)
    firsts = [addresses(query(project["api1"], "api", server=BACK_GW))[0] for _ in range(4)]
    assert firsts[0::2] == [firsts[0]] * 2 and firsts[1::2] == [firsts[1]] * 2
    assert firsts[0] != firsts[1]


def test_forwards_other_names_with_tcp_fallback(project):
    web, upstream = project["web"], project["upstream"]
    assert addresses(query(web, "example.test")) == ["192.0.2.10"]
    # big.test comes back truncated over UDP: the server retries upstream over TCP,
    # then truncates again for a client without EDNS, who retries over TCP itself.
    small = query(web, "big.test")
    assert small.flags & dns.flags.TC
    assert ("tcp", "big.test") in upstream.asked
    assert len(addresses(query(web, "big.test", tcp=True))) == 40
    edns = dns.message.make_query("big.test", "A", use_edns=0, payload=4096)
    with inside(web.path):
        big = dns.query.udp(edns, FRONT_GW, timeout=5)
    assert len(addresses(big)) == 40 and not big.flags & dns.flags.TC


def test_busybox_nslookup_from_a_container(project):
    web, name = project["web"], project["name"]
    out = project["api1"].run("busybox", "nslookup", "api", BACK_GW, check=False)
    assert "10.89.50.67" in out.stdout and "10.89.50.68" in out.stdout, out
    out = web.run("busybox", "nslookup", "10.89.50.3", FRONT_GW, check=False)
    assert f"{name}-proxy-1.{project['front'].name}" in out.stdout, out
    out = web.run("busybox", "nslookup", f"nothing.{DOMAIN}", FRONT_GW, check=False)
    assert "NXDOMAIN" in out.stdout + out.stderr or out.returncode != 0


def test_unanswered_upstream_is_servfail(project, tmp_path):
    # A project whose one container has its own upstream: a socket that never answers.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        name, root = project["name"], project["root"]
        port = silent.getsockname()[1]
        add_container(
            name, project["front"].name, "c-proxy", f"{name}-proxy-1", "proxy",
            ["10.89.50.3"], dns=[f"127.0.0.1:{port}"], root=root,
        )  # fmt: skip
        message = dns.message.make_query("example.test", "A")
        with inside(project["proxy"].path):
            response = dns.query.udp(message, FRONT_GW, timeout=10)
        assert response.rcode() == dns.rcode.SERVFAIL
        assert len(silent.recv(4096)) > 0  # it was asked
        # With a second upstream that answers, the query moves on to it after the timeout.
        stub = f"127.0.0.1:{project['upstream'].port}"
        add_container(
            name, project["front"].name, "c-proxy", f"{name}-proxy-1", "proxy",
            ["10.89.50.3"], dns=[f"127.0.0.1:{port}", stub], root=root,
        )  # fmt: skip
        with inside(project["proxy"].path):
            response = dns.query.udp(message, FRONT_GW, timeout=10)
        assert addresses(response) == ["192.0.2.10"]
        assert response.id == message.id
        assert len(silent.recv(4096)) > 0
    finally:
        silent.close()


def test_server_follows_networks_and_leaves_with_the_last(project):
    name, root, pid = project["name"], project["root"], project["pid"]
    third = Net(root, name, f"{name}_third", "10.89.50.129")
    try:
        _wait(lambda: "10.89.50.129" in _listening(name, root), "listen on a new network")
        with ProcessNetns() as db:
            third.plug(db, "10.89.50.130")
            add_container(
                name, third.name, "c-db", f"{name}-db-1", "db", ["10.89.50.130"], root=root
            )
            assert addresses(query(db, "db", server="10.89.50.129")) == ["10.89.50.130"]
    finally:
        third.remove()
    _wait(lambda: "10.89.50.129" not in _listening(name, root), "stop listening on it")
    project["front"].file.unlink()
    project["back"].file.unlink()
    _wait(lambda: not _alive(pid), "leave with the last network")
    assert dnsserver.server_pid(name, root) is None
    assert not dnsserver.server_file(name, root).exists()


def test_second_start_finds_the_running_server(project):
    assert dnsserver.ensure_running(project["name"], project["root"]) == project["pid"]


def _listening(project: str, root) -> list[str]:
    info = json.loads(dnsserver.server_file(project, root).read_text())
    return info["listening"]


def _wait(condition, what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"server did not {what} within {limit}s")
        time.sleep(0.02)


def test_with_the_network_manager_ipv4_and_ipv6(in_netns, tmp_path):
    """Networks made by NetworkManager (its record format, real bridges and veths)."""
    from runtime.network.manager import NetworkManager

    root = tmp_path / "manager-root"
    manager = NetworkManager(root)
    name = f"dnsm{uuid.uuid4().hex[:8]}"
    network = f"{name}_default"
    pid = None
    with ProcessNetns() as web, ProcessNetns() as db:
        try:
            net = manager.create(network, project=name, ipv6=True)
            att_web = manager.attach("c-web", web.path, network)
            att_db = manager.attach("c-db", db.path, network, aliases=["database"])
            for container_id, service, att in (("c-web", "web", att_web), ("c-db", "db", att_db)):
                ips = [att.ipv4, att.ipv6]
                add_container(name, network, container_id, f"{name}-{service}-1", service, ips, ["database"] if service == "db" else [], None, root=root)  # fmt: skip
            pid = dnsserver.ensure_running(name, root)
            assert_local_route(net.gateway, {att_web.ifname}, netns=web)
            v4 = query(web, "database", "A", server=net.gateway)
            v6 = query(web, "database", "AAAA", server=net.gateway)
            assert addresses(v4) == [att_db.ipv4]
            assert addresses(v6) == [str(ipaddress.ip_interface(att_db.ipv6).ip)]
            # the IPv6 gateway answers too, and scopes by the IPv6 source address
            assert addresses(query(web, "db", "A", server=net.ipv6_gateway)) == [att_db.ipv4]
        finally:
            for existing in manager.list():
                manager.remove(existing.name)
        if pid is not None:
            _wait(lambda: not _alive(pid), "leave when its networks are removed")
    assert dnsserver.server_pid(name, root) is None
    assert dnsserver.forget_project(name, root)
    assert list((root / "networks").glob("*.json")) == []
    assert list((root / "networks" / "dns").iterdir()) == []


def test_a_killed_server_is_replaced_and_an_idle_tcp_client_does_not_hold_up_stop(project):
    name, root, pid = project["name"], project["root"], project["pid"]
    os.kill(pid, 9)
    _wait(lambda: not _alive(pid), "die")
    assert dnsserver.server_pid(name, root) is None  # its lock died with it
    upstream = f"127.0.0.1:{project['upstream'].port}"
    new_pid = dnsserver.ensure_running(name, root, extra_args=["--upstream", upstream])
    assert new_pid not in (None, pid)
    project["pid"] = new_pid
    assert addresses(query(project["web"], "www")) == ["10.89.50.2"]
    with inside(project["web"].path):
        idle = socket.create_connection((FRONT_GW, 53), timeout=5)
    try:
        assert dnsserver.stop_server(name, root)  # returns only once the process is gone
        assert not _alive(new_pid)
    finally:
        idle.close()


def test_internal_network_resolves_names_but_refuses_the_outside(in_netns, tmp_path):
    from runtime.network.manager import NetworkManager

    root = tmp_path / "manager-root"
    manager = NetworkManager(root)
    name = f"dnsi{uuid.uuid4().hex[:8]}"
    network = f"{name}_back"
    pid = None
    with ProcessNetns() as db:
        try:
            net = manager.create(network, project=name, internal=True)
            att = manager.attach("c-db", db.path, network)
            add_container(name, network, "c-db", f"{name}-db-1", "db", [att.ipv4], root=root)
            pid = dnsserver.ensure_running(name, root)
            assert_local_route(net.gateway, {att.ifname}, netns=db)
            assert addresses(query(db, "db", server=net.gateway)) == [att.ipv4]
            assert query(db, "example.test", server=net.gateway).rcode() == dns.rcode.REFUSED
        finally:
            for existing in manager.list():
                manager.remove(existing.name)
    if pid is not None:
        _wait(lambda: not _alive(pid), "leave when its network is removed")
    assert dnsserver.forget_project(name, root)
