"""The netlink helper process (runtime/network/netlink_worker.py) on the real kernel,
inside the test session's own network namespace."""

from __future__ import annotations

import os

import pytest

from runtime.network import bridge, netlink_worker
from runtime.network.rtnl import NetlinkError
from tests import netns

netns_sandbox = netns.netns_sandbox
in_netns = netns.in_netns

BRIDGE = "cbr-nlworker"


@pytest.fixture
def helper(in_netns):
    netlink_worker.prestart()
    worker = netlink_worker.slot.current
    assert worker is not None and worker.alive()
    yield worker
    netlink_worker.stop()
    assert worker.process.returncode is not None  # killed and reaped, no zombie
    bridge.remove_link(BRIDGE)
    assert bridge.links_with_prefix(BRIDGE) == []


def test_requests_run_in_the_helper(helper):
    netlink_worker.call("ensure_bridge", BRIDGE, ["10.231.7.1/24"])
    assert helper.answered == 1
    assert bridge.link_exists(BRIDGE)
    assert netlink_worker.call("delete_link", BRIDGE) is True
    assert netlink_worker.call("delete_link", BRIDGE) is False
    assert helper.answered == 3 and not bridge.link_exists(BRIDGE)


def test_failures_come_back_as_the_same_exceptions(helper, tmp_path):
    with netns.ProcessNetns() as container:
        endpoint = bridge.Endpoint("cvh-nlworker", "eth0", ("10.231.7.2/24",))
        with pytest.raises(bridge.BridgeError, match="bridge cbr-nlmissing does not exist"):
            netlink_worker.call("attach_veth", "cbr-nlmissing", container.path, endpoint)
    with pytest.raises(NetlinkError) as refused:
        netlink_worker.call("ensure_bridge", BRIDGE, ["10.231.7.1/24"], 70000)  # mtu
    assert refused.value.errno != 0
    assert helper.answered == 2 and helper.alive()


def test_an_endpoint_crosses_to_the_helper_whole(helper):
    # Every field of the (pickled) record is used there: name, address, route, MAC, MTU.
    netlink_worker.call("ensure_bridge", BRIDGE, ["10.231.7.1/24"])
    endpoint = bridge.Endpoint(
        "cvh-nlwhole", "eth3", ("10.231.7.9/24",), ("10.231.7.1",), "02:42:0a:e7:07:09", 1400, 77
    )
    with netns.ProcessNetns() as container:
        try:
            mac = netlink_worker.call("attach_veth", BRIDGE, container.path, endpoint)
            inside = container.run("ip", "-o", "addr", "show", "eth3").stdout
            routes = container.run("ip", "route", "show", "default").stdout
            link = container.run("ip", "-o", "link", "show", "eth3").stdout
        finally:
            bridge.remove_link("cvh-nlwhole")
    assert mac == "02:42:0a:e7:07:09" and "10.231.7.9/24" in inside
    assert "via 10.231.7.1 dev eth3" in routes and "metric 77" in routes
    assert "mtu 1400" in link
    assert not bridge.link_exists("cvh-nlwhole")


def test_a_helper_that_died_is_replaced_by_this_process(helper):
    helper.process.kill()
    helper.process.wait()
    netlink_worker.call("ensure_bridge", BRIDGE, ["10.231.7.1/24"])
    assert bridge.link_exists(BRIDGE)
    assert netlink_worker.slot.current is None  # later requests go straight to this process


def test_only_the_namespace_it_started_in_is_its_own(netns_sandbox):
    netlink_worker.prestart()  # here, in the host's namespace: it gets no request
    worker = netlink_worker.slot.current
    try:
        with netns_sandbox.enter():
            netlink_worker.call("ensure_bridge", BRIDGE, ["10.231.7.1/24"])
            assert bridge.link_exists(BRIDGE)
            bridge.remove_link(BRIDGE)
        assert worker.answered == 0
        assert not bridge.link_exists(BRIDGE)
    finally:
        netlink_worker.stop()


def test_it_answers_netlink_requests_only(helper):
    with pytest.raises(ValueError, match="not a netlink request: write_sysctl"):
        helper.call("write_sysctl", ("net/ipv4/ip_forward", "1"), {})


def test_it_leaves_when_its_caller_closes_the_socket(in_netns):
    netlink_worker.prestart()
    worker = netlink_worker.slot.current
    netlink_worker.slot.current = None
    worker.sock.close()
    assert worker.process.wait(timeout=10) == 0
    assert not os.path.exists(f"/proc/{worker.process.pid}/stat")
