"""Containers do not wait for the project's DNS server to boot: the launcher binds port 53
on each gateway and hands the sockets over, so the first queries wait in the kernel."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid

import dns.message
import dns.query

from runtime.network import dns as dnsserver
from runtime.network.dns_records import add_container
from runtime.state import atomic_write_json
from tests import netns
from tests.compose_helpers import in_netns, netns_sandbox, project  # noqa: F401 (fixtures)
from tests.netns import ProcessNetns, assert_local_route

GATEWAY, CLIENT = "10.89.60.1", "10.89.60.2"


def test_a_container_started_by_up_resolves_a_service_on_its_first_lookup(project):  # noqa: F811
    # The client looks up as its first act, while `up` may still be starting the rest and
    # the server booting; no retry loop around nslookup.
    project.write("""
services:
  server:
    image: busybox:latest
    command: ["sleep", "600"]
  client:
    image: busybox:latest
    command: ["sh", "-c", "nslookup server && echo LOOKUP-OK || echo LOOKUP-FAILED; sleep 600"]
""")
    project.run("up", "-d")
    logs = project.wait_for_log("client", "LOOKUP-")
    assert "LOOKUP-OK" in logs, logs
    server_ip = project.run("dns", "client", "server").stdout.split()[0]
    assert f"Address: {server_ip}" in logs


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=20)


inside = netns.inside


def _socket_fds() -> set[int]:
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                fds.add(int(name))
    return fds


def _addresses(response) -> list[str]:
    return [r.address for rrset in response.answer for r in rrset if hasattr(r, "address")]


def test_queries_sent_as_launch_returns_are_answered_and_a_second_launch_reuses_it(
    in_netns,  # noqa: F811
    tmp_path,
):
    root = tmp_path / "root"
    name = f"dnsb{uuid.uuid4().hex[:8]}"
    bridge = f"cdnsb{os.getpid() % 100000}"
    _ip("link", "add", bridge, "type", "bridge")
    client = None
    try:
        _ip("addr", "add", f"{GATEWAY}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        client = ProcessNetns()
        _ip("link", "add", f"{bridge}v", "type", "veth", "peer", "name", "eth0", "netns", str(client.pid))  # fmt: skip
        _ip("link", "set", f"{bridge}v", "master", bridge, "up")
        client.run("ip", "addr", "add", f"{CLIENT}/24", "dev", "eth0")
        client.run("ip", "link", "set", "eth0", "up")
        assert_local_route(GATEWAY, {"eth0"}, netns=client)
        network = f"{name}_default"
        (root / "networks").mkdir(parents=True)
        atomic_write_json(
            root / "networks" / f"{network}.json",
            {"name": network, "project": name, "subnet": "10.89.60.0/24", "gateway": GATEWAY},
        )
        add_container(name, network, "c-web", f"{name}-web-1", "web", [CLIENT], root=root)
        sockets_before = _socket_fds()

        started = dnsserver.launch(name, root)

        assert started.handed == {GATEWAY}
        assert _socket_fds() == sockets_before  # our copies closed after the handoff
        started.ready()  # at once: nothing left to wait for
        with inside(client.path):  # one try each, no retries
            over_tcp = dns.query.tcp(dns.message.make_query("web", "A"), GATEWAY, timeout=10)
            over_udp = dns.query.udp(dns.message.make_query("web", "A"), GATEWAY, timeout=10)
        assert _addresses(over_tcp) == _addresses(over_udp) == [CLIENT]
        pid = started.wait()
        assert dnsserver.server_pid(name, root) == pid

        again = dnsserver.launch(name, root)
        assert again.handed == set() and again.process is None  # nothing bound, none spawned
        assert again.wait() == pid
        assert _socket_fds() == sockets_before
    finally:
        dnsserver.stop_server(name, root)
        if client is not None:
            client.stop()
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, timeout=20)
    assert dnsserver.forget_project(name, root)
