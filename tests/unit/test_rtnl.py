"""The rtnetlink encoding as bytes: what the kernel reads, checked against the layouts of
linux/rtnetlink.h and linux/if_link.h (the real kernel runs it in test_network.py)."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from runtime.network import rtnl


def test_attributes_are_padded_to_four_bytes():
    assert rtnl.attr(3, b"eth0\0") == struct.pack("=HH", 9, 3) + b"eth0\0" + b"\0\0\0"
    assert rtnl.u32(4, 1500) == struct.pack("=HHI", 8, 4, 1500)
    assert rtnl.nested(18, b"abcd") == struct.pack("=HH", 8, 18 | rtnl.NLA_F_NESTED) + b"abcd"


def test_message_header_counts_itself():
    body = rtnl.ifinfo(7, up=True)
    msg = rtnl.message(rtnl.RTM_NEWLINK, rtnl.NLM_F_REQUEST, 42, body)
    assert struct.unpack_from("=IHHII", msg) == (16 + 16, rtnl.RTM_NEWLINK, 1, 42, 0)
    # family, type, index, flags, change: up is set and marked as changed
    assert struct.unpack_from("=BxHiII", msg, 16) == (0, 0, 7, 1, 1)


def test_veth_request_nests_the_peer_with_its_name_mac_and_namespace():
    body = rtnl.veth_request("cvh-1", "eth0", 9, master=5, mtu=1400, mac="02:42:0a:00:00:02")
    host = rtnl.parse_attrs(body, 16)
    assert host[rtnl.IFLA_IFNAME] == b"cvh-1\0"
    assert struct.unpack("=I", host[rtnl.IFLA_MASTER]) == (5,)
    assert struct.unpack("=I", host[rtnl.IFLA_MTU]) == (1400,)
    info = rtnl.parse_attrs(host[rtnl.IFLA_LINKINFO])
    assert info[rtnl.IFLA_INFO_KIND] == b"veth"
    peer_msg = rtnl.parse_attrs(info[rtnl.IFLA_INFO_DATA])[rtnl.VETH_INFO_PEER]
    # The peer starts down: the kernel opens it before the two ends are paired.
    assert struct.unpack_from("=BxHiII", peer_msg)[3] == 0
    peer = rtnl.parse_attrs(peer_msg, 16)
    assert peer[rtnl.IFLA_IFNAME] == b"eth0\0"
    assert peer[rtnl.IFLA_ADDRESS] == bytes([2, 0x42, 10, 0, 0, 2])
    assert struct.unpack("=I", peer[rtnl.IFLA_NET_NS_FD]) == (9,)
    assert struct.unpack("=I", peer[rtnl.IFLA_MTU]) == (1400,)


def test_ipv4_address_carries_local_and_broadcast_ipv6_only_the_address():
    v4 = rtnl.address_request(3, "10.89.0.2", 26)
    assert struct.unpack_from("=BBBBI", v4) == (socket.AF_INET, 26, 0, 0, 3)
    attrs = rtnl.parse_attrs(v4, 8)
    assert attrs[rtnl.IFA_LOCAL] == attrs[rtnl.IFA_ADDRESS] == bytes([10, 89, 0, 2])
    assert attrs[rtnl.IFA_BROADCAST] == bytes([10, 89, 0, 63])
    v6 = rtnl.address_request(3, "fd89:c0::2", 64, flags=0x02)
    assert struct.unpack_from("=BBBBI", v6) == (socket.AF_INET6, 64, 0x02, 0, 3)
    assert set(rtnl.parse_attrs(v6, 8)) == {rtnl.IFA_ADDRESS}


def test_default_route_names_gateway_interface_and_metric():
    body = rtnl.default_route_request("10.89.0.1", 4, 16000)
    family, dst_len, _src, _tos, table, _proto, scope, kind, _flags = struct.unpack_from(
        "=BBBBBBBBI", body
    )
    assert (family, dst_len, table, scope, kind) == (socket.AF_INET, 0, 254, 0, 1)
    attrs = rtnl.parse_attrs(body, 12)
    assert attrs[rtnl.RTA_GATEWAY] == bytes([10, 89, 0, 1])
    assert struct.unpack("=I", attrs[rtnl.RTA_OIF]) == (4,)
    assert struct.unpack("=I", attrs[rtnl.RTA_PRIORITY]) == (16000,)


def test_hairpin_is_a_nested_bridge_port_mode():
    body = rtnl.hairpin_request(6)
    assert struct.unpack_from("=BxHiII", body) == (socket.AF_BRIDGE, 0, 6, 0, 0)
    (kind,) = struct.unpack_from("=H", body, 16 + 2)
    assert kind == rtnl.IFLA_PROTINFO | rtnl.NLA_F_NESTED  # unnested means an STP state
    assert rtnl.parse_attrs(rtnl.parse_attrs(body, 16)[rtnl.IFLA_PROTINFO]) == {
        rtnl.IFLA_BRPORT_MODE: b"\1"
    }


def test_replies_split_into_messages_and_links_decode():
    link = rtnl.ifinfo(12, up=True) + rtnl.link_attrs("cbr-x", mtu=1500, mac="02:00:00:00:00:01")
    ack = struct.pack("=i", 0) + b"\0" * 16
    refused = struct.pack("=i", -errno.EEXIST) + b"\0" * 16
    data = b"".join(
        (
            rtnl.message(rtnl.RTM_NEWLINK, 0, 1, link),
            rtnl.message(rtnl.NLMSG_ERROR, 0, 1, ack),
            rtnl.message(rtnl.NLMSG_ERROR, 0, 2, refused),
        )
    )
    (kind, _, seq, body), (_, _, _, ok), (_, _, _, bad) = rtnl.parse_messages(data)
    assert (kind, seq) == (rtnl.RTM_NEWLINK, 1)
    assert rtnl.link_from(body) == {
        "index": 12,
        "up": True,
        "name": "cbr-x",
        "mtu": 1500,
        "mac": "02:00:00:00:00:01",
    }
    assert rtnl.error_code(ok) == 0 and rtnl.error_code(bad) == errno.EEXIST


class FakeSocket:
    """Answers each request with the datagrams it is given, as the kernel would."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.sent = []

    def send(self, data):
        self.sent.append(data)
        return len(data)

    def recv(self, size):
        return self.answers.pop(0)

    def close(self):
        pass


def _client(answers) -> rtnl.Rtnl:
    client = rtnl.Rtnl.__new__(rtnl.Rtnl)
    client.sock, client.seq = FakeSocket(answers), 0
    return client


def test_request_skips_stale_answers_and_raises_the_kernels_errno():
    stale = rtnl.message(rtnl.NLMSG_ERROR, 0, 99, struct.pack("=i", 0) + b"\0" * 16)
    refused = rtnl.message(rtnl.NLMSG_ERROR, 0, 1, struct.pack("=i", -errno.ENODEV) + b"\0" * 16)
    client = _client([stale + refused])
    with pytest.raises(rtnl.NetlinkError) as err:
        client.request(rtnl.RTM_DELLINK, rtnl.ifinfo())
    assert err.value.errno == errno.ENODEV
    flags = struct.unpack_from("=IHH", client.sock.sent[0])[2]
    assert flags == rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK


def test_missing_link_is_none_and_existing_address_is_no_error():
    gone = rtnl.message(rtnl.NLMSG_ERROR, 0, 1, struct.pack("=i", -errno.ENODEV) + b"\0" * 16)
    there = rtnl.message(rtnl.NLMSG_ERROR, 0, 2, struct.pack("=i", -errno.EEXIST) + b"\0" * 16)
    client = _client([gone, there])
    assert client.link("cbr-none") is None
    client.add_address(3, "10.89.0.1", 26)  # EEXIST: already there, as wanted


def test_dump_reads_until_done_without_asking_for_an_ack():
    one = rtnl.message(rtnl.RTM_NEWLINK, 2, 1, rtnl.ifinfo(1) + rtnl.link_attrs("lo"))
    two = rtnl.message(rtnl.RTM_NEWLINK, 2, 1, rtnl.ifinfo(2) + rtnl.link_attrs("eth0"))
    done = rtnl.message(rtnl.NLMSG_DONE, 2, 1, struct.pack("=i", 0))
    client = _client([one, two + done])
    assert [link["name"] for link in client.links()] == ["lo", "eth0"]
    flags = struct.unpack_from("=IHH", client.sock.sent[0])[2]
    assert flags == rtnl.NLM_F_REQUEST | rtnl.NLM_F_DUMP
