"""The DNS server's inherited sockets: the --socket argument and adopting the descriptors.

Loopback sockets on a free port stand in for the gateways' port 53 (no root needed).
"""

from __future__ import annotations

import os
import socket

import pytest

from runtime.network import dns


def test_handoff_argument_round_trips_for_both_families():
    for address in ("10.89.0.1", "fd00:dead::1"):
        text = dns.handoff_argument(address, 7, 8)
        assert dns.parse_handoff(text) == (address, 7, 8)


def test_parse_handoff_normalises_the_address():
    assert dns.parse_handoff("fd00:0:0::1=5,6") == ("fd00::1", 5, 6)


@pytest.mark.parametrize(
    "text",
    [
        "10.0.0.1",  # no descriptors
        "10.0.0.1=5",  # one descriptor
        "10.0.0.1=5,x",
        "10.0.0.1=-5,6",
        "10.0.0.1=2,6",  # stdio is not a socket of ours
        "10.0.0.1=5,5",
        "web=5,6",  # a name, not an address
        "=5,6",
    ],
)
def test_parse_handoff_rejects(text):
    with pytest.raises(ValueError):
        dns.parse_handoff(text)


def test_the_server_refuses_a_malformed_socket_argument_before_doing_anything(capsys):
    with pytest.raises(SystemExit) as exit_info:
        dns.main(["--project", "p", "--root", "/nonexistent", "--socket", "10.0.0.1=5"])
    assert exit_info.value.code == 2
    assert "--socket" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def bound():
    """(port, udp, tcp): a pair bound as the launcher binds them, on loopback."""
    port = _free_port()
    udp, tcp = dns.bind_listeners("127.0.0.1", port)
    try:
        yield port, udp, tcp
    finally:
        udp.close()
        tcp.close()


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def test_adopted_sockets_receive_what_was_sent_before_adoption(bound):
    port, udp, tcp = bound
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(b"queued", ("127.0.0.1", port))  # before anyone reads the socket
        udp_fd, tcp_fd = os.dup(udp.fileno()), os.dup(tcp.fileno())
        adopted = dns.adopt_sockets([("127.0.0.1", udp_fd, tcp_fd)], port)
        try:
            assert list(adopted) == ["127.0.0.1"]
            got_udp, got_tcp = adopted["127.0.0.1"]
            assert (got_udp.fileno(), got_tcp.fileno()) == (udp_fd, tcp_fd)
            assert not os.get_inheritable(udp_fd) and not os.get_inheritable(tcp_fd)
            got_udp.settimeout(5)
            assert got_udp.recvfrom(100)[0] == b"queued"
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                got_tcp.settimeout(5)
                conn, _ = got_tcp.accept()
                conn.close()
        finally:
            for pair in adopted.values():
                for sock in pair:
                    sock.close()


@pytest.mark.parametrize("swap, port_offset", [(True, 0), (False, 1)])
def test_a_pair_that_is_not_what_it_claims_is_closed(bound, capsys, swap, port_offset):
    port, udp, tcp = bound
    udp_fd, tcp_fd = os.dup(udp.fileno()), os.dup(tcp.fileno())
    if swap:
        udp_fd, tcp_fd = tcp_fd, udp_fd
    assert dns.adopt_sockets([("127.0.0.1", udp_fd, tcp_fd)], port + port_offset) == {}
    assert _closed(udp_fd) and _closed(tcp_fd)
    assert "is not 127.0.0.1" in capsys.readouterr().err


def test_a_descriptor_that_is_not_open_spoils_its_pair(bound, capsys):
    port, udp, _ = bound
    udp_fd = os.dup(udp.fileno())
    missing = os.dup(udp_fd)
    os.close(missing)
    assert dns.adopt_sockets([("127.0.0.1", udp_fd, missing)], port) == {}
    assert _closed(udp_fd)
    assert f"descriptor {missing}" in capsys.readouterr().err


def test_a_second_bind_of_a_served_address_is_refused(bound):
    port, _, _ = bound
    with pytest.raises(OSError) as error:
        dns.bind_listeners("127.0.0.1", port)
    assert error.value.errno == 98  # EADDRINUSE: the launcher leaves that address alone
