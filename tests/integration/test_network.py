"""Networks on the real kernel, inside a network namespace of the test session's own."""

from __future__ import annotations

import subprocess

from tests import netns
from tests.netns import ProcessNetns, assert_local_route, host_netns_inode, netns_inode

netns_sandbox = netns.netns_sandbox
in_netns = netns.in_netns


def test_sandbox_is_not_the_host_netns(in_netns):
    assert netns_inode() == in_netns.inode != host_netns_inode()
    links = subprocess.run(["ip", "-o", "link"], check=True, capture_output=True, text=True)
    assert [line.split(":")[1].strip() for line in links.stdout.splitlines()] == ["lo"]
    assert_local_route("127.0.0.1", {"lo"})


def test_process_netns_is_separate(in_netns):
    with ProcessNetns() as container:
        assert netns_inode(container.path) not in (in_netns.inode, host_netns_inode())
        links = container.run("ip", "-o", "link").stdout
        assert "lo" in links and "eth0" not in links
