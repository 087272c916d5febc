"""Networks on the real kernel, inside a network namespace of the test session's own.

Stand-in containers are sleeping processes in fresh network namespaces (tests/netns.py);
servers in them are busybox nc (TCP) and a small Python echo (UDP: Debian's busybox nc has
no UDP). Every connection goes to an address first checked to route through our bridges or
loopback; every wait is bounded.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from runtime.network import bridge, ipam, nft, ports
from runtime.network.manager import NetworkError, NetworkManager
from tests import netns
from tests.netns import (
    ProcessNetns,
    assert_local_route,
    host_netns_inode,
    netns_inode,
    route_of,
)

netns_sandbox = netns.netns_sandbox
in_netns = netns.in_netns

UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(512)
    s.sendto(b"echo:" + data, peer)
"""


def test_sandbox_is_not_the_host_netns(in_netns):
    assert netns_inode() == in_netns.inode != host_netns_inode()
    assert_local_route("127.0.0.1", {"lo"})


@pytest.fixture
def manager(in_netns, tmp_path):
    root = tmp_path / "root"
    manager = NetworkManager(root)
    yield manager
    for network in manager.list():
        manager.remove(network.name)
    # Nothing of ours may be left: no bridge or veth, no nftables table, no record.
    assert bridge.links_with_prefix(bridge.BRIDGE_PREFIX, bridge.VETH_PREFIX) == []
    assert nft.list_table(manager.table) is None
    assert list((root / "networks").glob("*.json")) == []


@pytest.fixture
def containers():
    made: list[ProcessNetns] = []

    def make() -> ProcessNetns:
        made.append(ProcessNetns())
        return made[-1]

    yield make
    for container in made:
        container.stop()


@pytest.fixture
def servers():
    started: list[subprocess.Popen] = []

    def start(container: ProcessNetns, *argv: str) -> subprocess.Popen:
        proc = container.popen(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def addresses(container: ProcessNetns, ifname: str = "eth0") -> dict:
    (link,) = json.loads(container.run("ip", "-j", "addr", "show", ifname).stdout)
    return link


def our_gateways() -> set[str]:
    """The addresses on our bridges in the sandbox."""
    out = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout
    return {
        a["local"]
        for link in json.loads(out)
        if link["ifname"].startswith(bridge.BRIDGE_PREFIX)
        for a in link.get("addr_info", [])
    }


def check_route(address: str, container: ProcessNetns | None = None) -> None:
    """Refuse to send to `address` unless it stays on loopback or our bridges: from the
    sandbox directly; from a container directly or through one of our gateways."""
    if container is None:
        assert_local_route(address, {"lo", *bridge.links_with_prefix(bridge.BRIDGE_PREFIX)})
    else:
        route = route_of(address, container)
        assert route.get("gateway") in (None, *our_gateways()), route
        assert route["dev"] != "lo", route


def can_ping(container: ProcessNetns, address: str, *extra: str) -> bool:
    check_route(address, container)
    argv = ("busybox", "ping", *extra, "-c", "1", "-W", "2", address)
    return container.run(*argv, check=False).returncode == 0


def nc_from(container: ProcessNetns, address: str, port: int) -> str:
    check_route(address, container)
    return container.run("busybox", "nc", "-w", "5", address, str(port)).stdout


def tcp_read(address: str, port: int, attempts: int = 50) -> bytes:
    """Connect and read until EOF; retried while the server starts (bounded)."""
    check_route(address)
    for _ in range(attempts):
        try:
            with socket.create_connection((address, port), timeout=5) as sock:
                sock.settimeout(5)
                chunks = []
                while chunk := sock.recv(4096):
                    chunks.append(chunk)
                data = b"".join(chunks)
                if data:
                    return data
        except (ConnectionRefusedError, ConnectionResetError, TimeoutError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"no answer from {address}:{port}")


def udp_echo(address: str, port: int, payload: bytes, attempts: int = 30) -> bytes:
    check_route(address)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        for _ in range(attempts):
            sock.sendto(payload, (address, port))
            try:
                return sock.recv(512)
            except (TimeoutError, ConnectionRefusedError):
                continue
    raise AssertionError(f"no UDP answer from {address}:{port}")


# ---------------------------------------------------------------- networks and addresses


def test_containers_reach_their_network_and_not_another(manager, containers):
    front = manager.create("p1_front", project="p1")
    other = manager.create("p2_default", project="p2")
    assert front.subnet != other.subnet and front.bridge != other.bridge
    a, b, c = containers(), containers(), containers()
    att_a = manager.attach("ca", a.path, "p1_front", aliases=["web"])
    att_b = manager.attach("cb", b.path, "p1_front")
    att_c = manager.attach("cc", c.path, "p2_default")
    assert att_a.ifname == "eth0" and att_a.gateway == front.gateway
    assert att_a.ipv4 != att_b.ipv4
    inet = [i for i in addresses(a)["addr_info"] if i["family"] == "inet"]
    assert inet[0]["local"] == att_a.ipv4 and addresses(a)["address"] == att_a.mac

    for address, via in ((att_b.ipv4, front.bridge), (att_c.ipv4, other.bridge)):
        assert_local_route(address, {via})
    assert_local_route(att_b.ipv4, {"eth0"}, netns=a)
    assert can_ping(a, att_b.ipv4)
    assert can_ping(a, front.gateway)
    assert not can_ping(a, att_c.ipv4)  # isolation: another project's network
    assert not can_ping(c, att_a.ipv4)

    default = json.loads(a.run("ip", "-j", "route", "show", "default").stdout)
    assert default[0]["gateway"] == front.gateway


def test_internal_network_has_no_route_out(manager, containers):
    internal = manager.create("p1_back", project="p1", internal=True)
    manager.create("p1_front", project="p1")
    a, b = containers(), containers()
    att_a = manager.attach("ca", a.path, "p1_back")
    att_b = manager.attach("cb", b.path, "p1_front")
    assert att_a.gateway is None
    assert json.loads(a.run("ip", "-j", "route", "show", "default").stdout) == []
    assert a.run("ip", "route", "get", "203.0.113.1", check=False).returncode != 0
    assert can_ping(a, internal.gateway)
    # Even with a route added by hand, the rules keep it inside its bridge.
    a.run("ip", "route", "add", "default", "via", internal.gateway)
    assert_local_route(att_b.ipv4, {manager.inspect("p1_front").bridge})
    assert not can_ping(a, att_b.ipv4)
    text = json.dumps(nft.list_table(manager.table))
    assert internal.subnet.split("/")[0] in text


def test_ipam_config_fixed_address_mac_mtu_and_interface_name(manager, containers):
    manager.create(
        "p1_custom",
        project="p1",
        ipam={"config": [{"subnet": "10.99.0.0/24", "ip_range": "10.99.0.128/25"}]},
        driver_opts={"com.docker.network.driver.mtu": "1400"},
    )
    a, b = containers(), containers()
    att_a = manager.attach(
        "ca", a.path, "p1_custom", ipv4="10.99.0.7", mac="02:00:00:00:00:07", ifname="net7"
    )
    att_b = manager.attach("cb", b.path, "p1_custom")
    assert (att_a.ipv4, att_a.mac, att_a.ifname) == ("10.99.0.7", "02:00:00:00:00:07", "net7")
    assert att_b.ipv4 == "10.99.0.129"  # first of the ip_range
    link = addresses(a, "net7")
    assert link["mtu"] == 1400 and link["address"] == "02:00:00:00:00:07"
    with pytest.raises(ipam.AddressInUse, match="in use"):
        manager.attach("cc", containers().path, "p1_custom", ipv4="10.99.0.7")
    # attach is idempotent: the same answer, no second interface
    assert manager.attach("ca", a.path, "p1_custom", ipv4="10.99.0.7") == att_a


def test_subnets_skip_routes_of_this_namespace(manager):
    subprocess.run(["ip", "link", "add", "n1test0", "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.89.0.1/25", "dev", "n1test0"], check=True)
        subprocess.run(["ip", "link", "set", "n1test0", "up"], check=True)
        network = manager.create("p1_default", project="p1")
        assert network.subnet == "10.89.0.128/26"
    finally:
        subprocess.run(["ip", "link", "del", "n1test0"], check=True)


def test_priority_orders_the_default_routes(manager, containers):
    low = manager.create("p1_low", project="p1")
    high = manager.create("p1_high", project="p1")
    a = containers()
    manager.attach("ca", a.path, "p1_low")
    manager.attach("ca", a.path, "p1_high", priority=10)
    route = a.run("ip", "-j", "route", "get", "203.0.113.1").stdout
    assert json.loads(route)[0]["gateway"] == high.gateway != low.gateway


def test_ipv6_network(manager, containers):
    network = manager.create("p1_v6", project="p1", ipv6=True)
    a, b = containers(), containers()
    att_a = manager.attach("ca", a.path, "p1_v6")
    att_b = manager.attach("cb", b.path, "p1_v6")
    assert att_a.ipv6 and att_b.ipv6 and network.ipv6_subnet
    assert_local_route(att_b.ipv6, {"eth0"}, netns=a)
    assert can_ping(a, att_b.ipv6, "-6")


def test_ipv6_published_port(manager, containers, servers):
    network = manager.create("p1_v6", project="p1", ipv6=True)
    a = containers()
    manager.attach("ca", a.path, "p1_v6")
    servers(a, "busybox", "nc", "-ll", "-p", "80", "-e", "busybox", "echo", "over v6")
    manager.publish("ca", "p1_v6", ["18300:80"])
    assert_local_route(network.ipv6_gateway, {"lo"})
    assert tcp_read(network.ipv6_gateway, 18300) == b"over v6\n"
    assert tcp_read("127.0.0.1", 18300) == b"over v6\n"


# ---------------------------------------------------------------- published ports


def test_published_tcp_and_udp_ports(manager, containers, servers):
    network = manager.create("p1_default", project="p1")
    a, b = containers(), containers()
    att_a = manager.attach("ca", a.path, "p1_default")
    manager.attach("cb", b.path, "p1_default")
    servers(a, "busybox", "nc", "-ll", "-p", "80", "-e", "busybox", "echo", "hello from a")
    servers(a, sys.executable, "-c", UDP_ECHO, "53")
    published = manager.publish("ca", "p1_default", ["18080:80", "18053:53/udp"], service="web")
    assert {str(p) for p in published} == {"0.0.0.0:18080->80/tcp", "0.0.0.0:18053->53/udp"}

    # From the host (loopback and its own address), from another container, and hairpin.
    for address in ("127.0.0.1", network.gateway):
        assert_local_route(address, {"lo"})
        assert tcp_read(address, 18080) == b"hello from a\n"
        assert udp_echo(address, 18053, b"ping") == b"echo:ping"
    for container in (b, a):
        assert nc_from(container, network.gateway, 18080) == "hello from a\n"
    assert tcp_read(att_a.ipv4, 80) == b"hello from a\n"
    # Every port sends back out where a packet came in (needed where br_netfilter is loaded).
    ports = json.loads(
        subprocess.check_output(["ip", "-j", "-d", "link", "show", "master", network.bridge])
    )
    assert len(ports) == 2
    assert all(port["linkinfo"]["info_slave_data"]["hairpin"] for port in ports)

    manager.unpublish("ca")
    with pytest.raises(AssertionError):
        tcp_read("127.0.0.1", 18080, attempts=2)


def test_port_bound_to_one_host_ip(manager, containers, servers):
    network = manager.create("p1_default", project="p1")
    a = containers()
    manager.attach("ca", a.path, "p1_default")
    servers(a, "busybox", "nc", "-ll", "-p", "80", "-e", "busybox", "echo", "only loopback")
    (port,) = manager.publish("ca", "p1_default", ["127.0.0.1:18081:80"])
    assert port.host_ip == "127.0.0.1"
    assert tcp_read("127.0.0.1", 18081) == b"only loopback\n"
    with pytest.raises(AssertionError):
        tcp_read(network.gateway, 18081, attempts=2)


def test_published_port_from_another_network(manager, containers, servers):
    network = manager.create("p1_default", project="p1")
    manager.create("p2_default", project="p2")
    a, c = containers(), containers()
    manager.attach("ca", a.path, "p1_default")
    manager.attach("cc", c.path, "p2_default")
    servers(a, "busybox", "nc", "-ll", "-p", "80", "-e", "busybox", "echo", "public")
    manager.publish("ca", "p1_default", ["18082:80"])
    assert nc_from(c, network.gateway, 18082) == "public\n"


def test_port_conflicts_name_the_holder(manager, containers):
    manager.create("p1_default", project="p1")
    a, b = containers(), containers()
    manager.attach("ca", a.path, "p1_default")
    manager.attach("cb", b.path, "p1_default")
    manager.publish("ca", "p1_default", ["18090:80"], service="web")
    with pytest.raises(ports.PortInUse, match=r"18090/tcp .*project p1 service web"):
        manager.publish("cb", "p1_default", ["18090:80"])
    # The same number on UDP, or on another host IP that is not "all", is another port.
    manager.publish("cb", "p1_default", ["18090:80/udp"])

    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 18091))
        listener.listen()
        with pytest.raises(ports.PortInUse, match="18091/tcp is in use by another process"):
            manager.publish("cb", "p1_default", ["18091:80"])
    # publishing again what is already published is no change
    assert len(manager.publish("ca", "p1_default", ["18090:80"])) == 1


def test_random_ports_come_from_outside_the_ephemeral_range(manager, containers):
    manager.create("p1_default", project="p1")
    a = containers()
    manager.attach("ca", a.path, "p1_default")
    published = manager.publish("ca", "p1_default", [ports.PortRequest(80), ports.PortRequest(81)])
    low, high = ports.ephemeral_range()
    first, last = ports.random_range()
    assert len({p.host_port for p in published}) == 2
    for p in published:
        assert first <= p.host_port <= last and not low <= p.host_port <= high
    ranged = manager.publish("ca", "p1_default", [ports.PortRequest(82, "18100-18102")])
    assert 18100 <= ranged[-1].host_port <= 18102


def test_internal_network_cannot_publish(manager, containers):
    manager.create("p1_back", project="p1", internal=True)
    a = containers()
    manager.attach("ca", a.path, "p1_back")
    with pytest.raises(NetworkError, match="internal"):
        manager.publish("ca", "p1_back", ["18095:80"])


# ---------------------------------------------------------------- the world outside

PEER_ECHO = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
while True:
    conn, peer = s.accept()
    conn.sendall(peer[0].encode() + b"\\n")
    conn.close()
"""


@pytest.fixture
def world(in_netns):
    """A namespace of ours playing the outside world, behind a veth that is the sandbox's
    uplink (198.18.0.1 here, 198.18.0.2 there): packets that leave through it stay ours."""
    outside = ProcessNetns()
    run = lambda *argv: subprocess.run(argv, check=True, capture_output=True)  # noqa: E731
    run(
        "ip",
        "link",
        "add",
        "n1up0",
        "type",
        "veth",
        "peer",
        "name",
        "n1world0",
        "netns",
        str(outside.pid),
    )
    try:
        run("ip", "addr", "add", "198.18.0.1/24", "dev", "n1up0")
        run("ip", "link", "set", "n1up0", "up")
        outside.run("ip", "addr", "add", "198.18.0.2/24", "dev", "n1world0")
        outside.run("ip", "link", "set", "n1world0", "up")
        outside.run("ip", "link", "set", "lo", "up")
        outside.run("ip", "route", "add", "default", "via", "198.18.0.1")
        yield outside
    finally:
        subprocess.run(["ip", "link", "del", "n1up0"], capture_output=True)
        outside.stop()


def test_containers_reach_out_masqueraded_and_internal_ones_do_not(
    manager, containers, servers, world
):
    manager.create("p1_front", project="p1")
    internal = manager.create("p1_back", project="p1", internal=True)
    a, b = containers(), containers()
    manager.attach("ca", a.path, "p1_front")
    manager.attach("cb", b.path, "p1_back")
    servers(world, sys.executable, "-c", PEER_ECHO, "9000")
    assert_local_route("198.18.0.2", {"n1up0"})
    # The world sees the sandbox's uplink address, not the container's.
    for _ in range(50):  # bounded: until the server listens
        out = a.run("busybox", "nc", "-w", "5", "198.18.0.2", "9000", check=False).stdout
        if out:
            break
        time.sleep(0.1)
    assert out == "198.18.0.1\n"
    assert b.run("ip", "route", "get", "198.18.0.2", check=False).returncode != 0
    b.run("ip", "route", "add", "default", "via", internal.gateway)
    assert b.run("busybox", "nc", "-w", "2", "198.18.0.2", "9000", check=False).stdout == ""


def test_published_port_from_the_world_outside(manager, containers, servers, world):
    manager.create("p1_default", project="p1")
    a = containers()
    manager.attach("ca", a.path, "p1_default")
    servers(a, "busybox", "nc", "-ll", "-p", "80", "-e", "busybox", "echo", "hello world")
    manager.publish("ca", "p1_default", ["18400:80"])
    assert_local_route("198.18.0.1", {"n1world0"}, netns=world)
    for _ in range(50):
        out = world.run("busybox", "nc", "-w", "5", "198.18.0.1", "18400", check=False).stdout
        if out:
            break
        time.sleep(0.1)
    assert out == "hello world\n"


# ---------------------------------------------------------------- removal and recovery


def test_remove_takes_everything_with_it(manager, containers):
    network = manager.create("p1_default", project="p1")
    a = containers()
    manager.attach("ca", a.path, "p1_default")
    manager.publish("ca", "p1_default", ["18110:80"])
    assert bridge.link_exists(network.bridge) and nft.list_table(manager.table) is not None
    manager.remove("p1_default")
    manager.remove("p1_default")  # idempotent
    assert bridge.links_with_prefix(bridge.BRIDGE_PREFIX, bridge.VETH_PREFIX) == []
    assert nft.list_table(manager.table) is None
    assert a.run("ip", "-o", "link", "show", "eth0", check=False).returncode != 0


def test_create_is_idempotent_and_guards_other_projects(manager):
    first = manager.create("shared", project="p1")
    assert manager.create("shared", project="p1") == first
    with pytest.raises(NetworkError, match="project p1"):
        manager.create("shared", project="p2")


def test_failed_attach_leaves_no_endpoint_behind(manager, containers):
    manager.create("p1_default", project="p1")
    with pytest.raises(NetworkError, match="no netns"):
        manager.attach("ca", "/proc/999999999/ns/net", "p1_default")
    a = containers()
    a.run("ip", "link", "add", "eth0", "type", "bridge")  # the name the veth would take
    with pytest.raises(bridge.BridgeError, match="already has an interface eth0"):
        manager.attach("ca", a.path, "p1_default", ifname="eth0")
    assert manager.inspect("p1_default").containers == {}
    assert bridge.links_with_prefix(bridge.VETH_PREFIX) == []
    # the address went back to the pool
    assert manager.attach("ca", a.path, "p1_default").ipv4.endswith(".2")


def test_detach_removes_the_interface_and_its_ports(manager, containers):
    manager.create("p1_default", project="p1")
    a = containers()
    manager.attach("ca", a.path, "p1_default")
    manager.publish("ca", "p1_default", ["18120:80"])
    manager.detach("ca", "p1_default")
    manager.detach("ca", "p1_default")
    assert manager.inspect("p1_default").containers == {}
    assert manager.inspect("p1_default").ports == ()
    assert bridge.links_with_prefix(bridge.VETH_PREFIX) == []
    assert "18120" not in json.dumps(nft.list_table(manager.table))


def test_cleanup_stale_after_crashes(manager, containers):
    from runtime import state

    manager.create("p1_default", project="p1")
    gone, alive = containers(), containers()
    manager.attach("gone", gone.path, "p1_default")
    manager.attach("alive", alive.path, "p1_default")
    manager.publish("gone", "p1_default", ["18130:80"])
    gone.stop()  # the container died; its veth went with its namespace

    # A create that crashed after making its bridge: the record says "creating".
    half = manager.create("p1_half", project="p1")
    path = manager.dir / "p1_half.json"
    record = state.read_json(path)
    record["state"] = "creating"
    state.atomic_write_json(path, record)

    removed = manager.cleanup_stale()
    assert sorted(removed) == ["endpoint gone on p1_default", "network p1_half"]
    assert not bridge.link_exists(half.bridge)
    network = manager.inspect("p1_default")
    assert set(network.containers) == {"alive"} and network.ports == ()
    assert "18130" not in json.dumps(nft.list_table(manager.table))


def test_pool_exhaustion_names_the_projects(manager, monkeypatch):
    monkeypatch.setenv(ipam.POOL_ENV, "10.97.0.0/25:26")
    manager.create("a_default", project="a")
    manager.create("b_default", project="b")
    with pytest.raises(ipam.PoolExhausted) as err:
        manager.create("c_default", project="c")
    assert "project a (network a_default)" in str(err.value)
    assert "project b (network b_default)" in str(err.value)
    assert not (manager.dir / "c_default.json").exists()


def test_parallel_creates_never_collide(manager):
    import os

    children = []
    for i in range(4):
        pid = os.fork()
        if pid == 0:  # the child inherits this thread's (sandbox) network namespace
            code = 1
            try:
                NetworkManager(manager.dir.parent).create(f"par{i}", project=f"p{i}")
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    codes = [os.waitpid(pid, 0)[1] for pid in children]
    assert codes == [0, 0, 0, 0]
    subnets = [n.subnet for n in manager.list()]
    assert len(subnets) == 4 == len(set(subnets))
    assert len({n.bridge for n in manager.list()}) == 4


def test_parallel_publishes_of_one_port_let_exactly_one_win(manager, containers):
    import os

    manager.create("p1_default", project="p1")
    ids = [f"c{i}" for i in range(4)]
    for container_id in ids:
        manager.attach(container_id, containers().path, "p1_default")
    children = []
    for container_id in ids:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                manager.publish(container_id, "p1_default", ["18200:80"])
                code = 0
            except ports.PortInUse:
                code = 3
            finally:
                os._exit(code)
        children.append(pid)
    codes = sorted(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children)
    assert codes == [0, 3, 3, 3]
    assert [p.host_port for p in manager.inspect("p1_default").ports] == [18200]


def test_container_of_our_runtime_serves_on_a_published_port(
    manager, runtime, busybox_bundle, tmp_path
):
    from rootfs import read_config, write_config

    network = manager.create("p1_default", project="p1")
    config = read_config(busybox_bundle)
    config["process"]["args"] = ["nc", "-ll", "-p", "80", "-e", "echo", "from a container"]
    write_config(busybox_bundle, config)
    container_id = runtime.new_id()
    with open(tmp_path / "out", "w") as out:
        runtime("create", "--bundle", str(busybox_bundle), container_id, stdout=out, stderr=out)
    pid = json.loads(runtime("state", container_id).stdout)["pid"]
    # Attached between create and start, as the engine does: the network is there at exec.
    attachment = manager.attach(container_id, f"/proc/{pid}/ns/net", "p1_default")
    runtime("start", container_id)
    (port,) = manager.publish(container_id, "p1_default", ["80"])
    assert_local_route(attachment.ipv4, {network.bridge})
    assert tcp_read(attachment.ipv4, 80) == b"from a container\n"
    assert tcp_read("127.0.0.1", port.host_port) == b"from a container\n"
    runtime("delete", "--force", container_id)
    assert manager.cleanup_stale() == [f"endpoint {container_id[:12]} on p1_default"]


def test_two_state_roots_keep_their_own_rules_and_ports(manager, containers, tmp_path):
    other = NetworkManager(tmp_path / "other-root")
    assert other.table != manager.table
    try:
        manager.create("p1_default", project="p1")
        other.create("p1_default", project="p1")  # same name, another root
        a, b = containers(), containers()
        manager.attach("ca", a.path, "p1_default")
        other.attach("cb", b.path, "p1_default")
        manager.publish("ca", "p1_default", ["18500:80"])
        with pytest.raises(ports.PortInUse, match="another composer state root"):
            other.publish("cb", "p1_default", ["18500:80"])
        other.publish("cb", "p1_default", ["18501:80"])
        assert "18500" in json.dumps(nft.list_table(manager.table))
        assert manager.inspect("p1_default").subnet != other.inspect("p1_default").subnet
    finally:
        other.remove("p1_default")
    assert nft.list_table(other.table) is None


def test_a_command_killed_mid_attach_leaves_what_remove_cleans(manager, containers):
    import os

    network = manager.create("p1_default", project="p1")
    a = containers()
    pid = os.fork()
    if pid == 0:  # dies right after the veth exists, before "attached" is written
        real = bridge.attach_veth

        def attach_then_die(*args, **kwargs):
            real(*args, **kwargs)
            os._exit(9)

        bridge.attach_veth = attach_then_die
        try:
            manager.attach("ca", a.path, "p1_default")
        finally:
            os._exit(1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 9
    endpoint = manager.inspect("p1_default").containers["ca"]
    assert endpoint["state"] == "attaching" and bridge.link_exists(endpoint["host_ifname"])
    assert a.run("ip", "-o", "link", "show", "eth0").returncode == 0
    manager.remove("p1_default")
    assert not bridge.link_exists(endpoint["host_ifname"])
    assert not bridge.link_exists(network.bridge)
    assert a.run("ip", "-o", "link", "show", "eth0", check=False).returncode != 0


def test_a_netns_is_made_by_the_calling_thread_which_stays_where_it_was(in_netns, tmp_path):
    import threading

    from runtime.network.netns import create_netns, is_netns, remove_netns

    made, seen = [], {}

    def make(i: int) -> None:
        path = str(tmp_path / f"ns{i}")
        create_netns(path)
        seen[i] = netns.netns_inode()
        made.append(path)

    threads = [threading.Thread(target=make, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert netns.netns_inode() == in_netns.inode
        assert set(seen.values()) == {in_netns.inode}  # each thread came back to the sandbox
        inodes = {netns.netns_inode(path) for path in made}
        assert len(inodes) == 4 and in_netns.inode not in inodes
        out = subprocess.run(
            ["nsenter", f"--net={made[0]}", "ip", "-o", "link", "show", "lo"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert ",UP" in out  # loopback is up, as containers expect
        assert create_netns(made[0]) == made[0]  # idempotent: the same namespace
        assert netns.netns_inode(made[0]) in inodes
    finally:
        for path in made:
            remove_netns(path)
    assert not any(is_netns(path) for path in made)


def test_a_record_a_crash_cut_short_counts_as_absent(manager):
    manager.create("p1_default", project="p1")
    (manager.dir / "p1_cut.json").write_text("")  # a write that never reached the disk
    assert [n.name for n in manager.list()] == ["p1_default"]
    assert manager.cleanup_stale() == []
    network = manager.create("p1_cut", project="p1")  # made anew over the remains
    assert manager.inspect("p1_cut") == network


def test_detach_before_the_namespace_ends_leaves_the_veth_to_the_kernel(manager, containers):
    manager.create("p1_default", project="p1")
    a = containers()
    manager.attach("ca", a.path, "p1_default")
    manager.publish("ca", "p1_default", ["18140:80"])
    host_end = manager.inspect("p1_default").containers["ca"]["host_ifname"]
    manager.detach("ca", "p1_default", namespace_going=True)
    network = manager.inspect("p1_default")
    assert network.containers == {} and network.ports == ()
    assert "18140" not in json.dumps(nft.list_table(manager.table))
    assert bridge.link_exists(host_end)  # left for the namespace to take along
    # Its address is free again: the next container gets it.
    b = containers()
    assert manager.attach("cb", b.path, "p1_default").ipv4.endswith(".2")
    a.stop()  # the namespace ends; the kernel deletes the pair in the background
    deadline = time.monotonic() + 10
    while bridge.link_exists(host_end) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not bridge.link_exists(host_end)
    assert can_ping(b, network.gateway)  # the new holder of the address has a working link


def test_rules_read_in_process_match_the_nft_binary(manager, containers):
    assert nft._library() is not None  # libnftables loads where nftables is installed
    manager.create("p1_default", project="p1")
    manager.attach("ca", containers().path, "p1_default")
    manager.publish("ca", "p1_default", ["18150:80"])
    args = ("-j", "list", "table", nft.FAMILY, manager.table)
    code, out, _ = nft._binary(None, args)
    assert code == 0 and json.loads(out) == nft.list_table(manager.table)
    assert "18150" in out
    with pytest.raises(nft.NftError, match="nft -c failed"):
        nft.check("table inet composer_bad { chain c { nonsense } }\n")


def test_bridge_ready_sees_what_ensure_bridge_would_repair(in_netns):
    name, addresses = "cbr-readytest", ["10.231.9.1/24", "fd00:231:9::1/64"]
    assert not bridge.bridge_ready(name, addresses)  # no such link
    try:
        bridge.ensure_bridge(name, addresses)
        assert bridge.bridge_ready(name, addresses)
        assert not bridge.bridge_ready(name, addresses, mtu=1400)
        assert not bridge.bridge_ready(name, ["10.231.9.1/25"])  # another prefix
        assert not bridge.bridge_ready(name, ["10.231.9.2/24"])
        assert not bridge.bridge_ready(name, ["fd00:231:9::2/64"])
        subprocess.run(["ip", "addr", "del", "fd00:231:9::1/64", "dev", name], check=True)
        assert not bridge.bridge_ready(name, addresses)
        bridge.ensure_bridge(name, addresses)
        subprocess.run(["ip", "link", "set", name, "down"], check=True)
        assert not bridge.bridge_ready(name, addresses)
        bridge.ensure_bridge(name, addresses)
        subprocess.run(["ip", "addr", "flush", "dev", name], check=True)
        assert not bridge.bridge_ready(name, addresses)
        bridge.ensure_bridge(name, addresses)
        assert bridge.bridge_ready(name, addresses)
    finally:
        bridge.remove_link(name)
