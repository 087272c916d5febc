"""The DNS server's remembered UDP answers (UdpAnswers) against the dnspython path, byte for
byte: the records are test_dns_records' shop (web on front and back, api x2 on back, proxy
on front)."""

from __future__ import annotations

import ipaddress
import os

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_dns_records import BACK, FRONT, resolver
from test_dns_records import root as root  # the fixture

from runtime.network import dns as dnsserver
from runtime.network.dns_records import (
    DOMAIN,
    add_container,
    generation_path,
    load_records,
    project_networks,
    records_path,
)
from runtime.state import atomic_write_json

FRONT_ASKER, BACK_ASKER, BOTH_ASKER = "10.89.0.3", "10.89.0.67", "10.89.0.2"


def make_wire(name: str, rdtype: str = "A", *, edns=None, payload=1232, query_id=0x1234) -> bytes:
    query = dns.message.make_query(
        name, rdtype, use_edns=edns if edns is not None else False, payload=payload
    )
    query.id = query_id
    return query.to_wire()


def slow(r, wire: bytes, source: str) -> bytes | None:
    """The dnspython path, as the server encodes it for UDP; None when it would forward."""
    query = dns.message.from_wire(wire)
    response = dnsserver.local_response(r, query, source, r.network_of(source))
    return None if response is None else dnsserver.Server._encode(response, query, udp=True)


def fast(answers, wire: bytes, source: str):
    return answers.answer(wire, source, answers.resolver.network_of(source))


CASES = [
    ("api", "A", BACK_ASKER),
    ("API", "A", BACK_ASKER),
    ("aPi.", "A", BOTH_ASKER),
    ("Backend", "A", BACK_ASKER),  # an alias on both replicas
    ("shop-api-1", "AAAA", BACK_ASKER),
    ("shop-api-2", "AAAA", BACK_ASKER),  # NODATA
    ("web", "A", FRONT_ASKER),
    ("web", "A", BACK_ASKER),  # the same name, another network's address
    ("webhost", "AAAA", FRONT_ASKER),
    (f"www.{DOMAIN}", "A", FRONT_ASKER),
    (f"WWW.{DOMAIN.upper()}", "A", FRONT_ASKER),
    (f"nothing.{DOMAIN}", "A", FRONT_ASKER),  # NXDOMAIN
    (f"api.{DOMAIN}", "A", FRONT_ASKER),  # NXDOMAIN: api is not in front's scope
    (f"api.{BACK}", "A", BOTH_ASKER),
    ("67.0.89.10.in-addr.arpa", "PTR", BACK_ASKER),
    ("67.0.89.10.IN-ADDR.ARPA", "PTR", BACK_ASKER),
    ("67.0.89.10.in-addr.arpa", "PTR", FRONT_ASKER),  # ours, out of scope: NXDOMAIN
    (ipaddress.ip_address("fd00::67").reverse_pointer, "PTR", BACK_ASKER),
]


@pytest.mark.parametrize(("name", "rdtype", "source"), CASES)
@pytest.mark.parametrize(("edns", "payload"), [(None, 0), (0, 512), (0, 1232), (0, 4096)])
def test_same_bytes_as_the_dnspython_path(root, name, rdtype, source, edns, payload):
    answers, full = dnsserver.UdpAnswers(resolver(root)), resolver(root)
    for query_id in (0x1234, 0, 0xFFFF, 0x1234):  # learnt once, then remembered
        wire = make_wire(name, rdtype, edns=edns, payload=payload, query_id=query_id)
        expected = slow(full, wire, source)
        assert expected is not None
        assert fast(answers, wire, source) == expected


def test_the_answer_carries_the_querys_id_and_rd_flag(root):
    answers = dnsserver.UdpAnswers(resolver(root))
    for query_id in (1, 2, 0xBEEF):
        for rd in (True, False):
            query = dns.message.make_query("web", "A")
            query.id = query_id
            if not rd:
                query.flags &= ~dns.flags.RD
            response = dns.message.from_wire(fast(answers, query.to_wire(), FRONT_ASKER))
            assert response.id == query_id and bool(response.flags & dns.flags.RD) == rd
            assert response.flags & dns.flags.AA and response.flags & dns.flags.QR


def test_replicas_rotate_on_the_same_wheel_as_the_slow_path(root):
    answers, full = dnsserver.UdpAnswers(resolver(root)), resolver(root)
    firsts = []
    # Spellings of one name share one rotation, in either path.
    for spelling in ("api", "API", "api", f"Api.{DOMAIN}", "api", "api."):
        wire = make_wire(spelling)
        reply = fast(answers, wire, BACK_ASKER)
        assert reply == slow(full, wire, BACK_ASKER)
        firsts.append(dns.message.from_wire(reply).answer[0][0].address)
    assert firsts == ["10.89.0.67", "10.89.0.68"] * 3


def test_fast_and_slow_queries_mixed_turn_one_wheel(root):
    r = resolver(root)
    answers = dnsserver.UdpAnswers(r)
    first = dns.message.from_wire(fast(answers, make_wire("api"), BACK_ASKER))
    second = dns.message.from_wire(slow(r, make_wire("api"), BACK_ASKER))
    third = dns.message.from_wire(fast(answers, make_wire("api"), BACK_ASKER))
    order = [[rr.address for rr in m.answer[0]] for m in (first, second, third)]
    one, other = ["10.89.0.67", "10.89.0.68"], ["10.89.0.68", "10.89.0.67"]
    assert order == [one, other, one]


def test_the_same_bytes_from_another_asker_are_scoped_anew(root):
    answers = dnsserver.UdpAnswers(resolver(root))
    wire = make_wire(f"api.{DOMAIN}")
    assert dns.message.from_wire(fast(answers, wire, BACK_ASKER)).rcode() == dns.rcode.NOERROR
    assert dns.message.from_wire(fast(answers, wire, FRONT_ASKER)).rcode() == dns.rcode.NXDOMAIN
    web = make_wire("web")
    front_reply = dns.message.from_wire(fast(answers, web, FRONT_ASKER))
    back_reply = dns.message.from_wire(fast(answers, web, BACK_ASKER))
    assert [rr.address for rr in front_reply.answer[0]] == ["10.89.0.2"]
    assert [rr.address for rr in back_reply.answer[0]] == ["10.89.0.66"]


def test_names_not_ours_are_forwarded_and_the_rest_left_to_the_full_path(root):
    answers = dnsserver.UdpAnswers(resolver(root))
    for name, rdtype in (("example.com", "A"), ("api", "AAAA"), ("8.8.8.8.in-addr.arpa", "PTR")):
        for _ in range(2):
            assert fast(answers, make_wire(name, rdtype), FRONT_ASKER) is dnsserver.FORWARD
    unusual = [
        make_wire("api", "MX"),
        make_wire("api", edns=1),
        dns.message.make_response(dns.message.make_query("api", "A")).to_wire(),
        make_wire("api")[:-2],
        b"",
        b"\x00",
    ]
    two_questions = dns.message.make_query("api", "A")
    two_questions.question.append(dns.message.make_query("web", "A").question[0])
    unusual.append(two_questions.to_wire())
    notify = dns.message.make_query("api", "A")
    notify.set_opcode(dns.opcode.NOTIFY)
    unusual.append(notify.to_wire())
    for wire in unusual:
        for _ in range(2):
            assert fast(answers, wire, BACK_ASKER) is None


def test_truncates_like_the_full_path_and_still_rotates_over_tcp(root):
    for n in range(40):
        add_container(
            "shop", FRONT, f"c-many{n}", f"shop-many-{n}", "many", [f"10.89.0.{10 + n}"], root=root
        )
    answers, full = dnsserver.UdpAnswers(resolver(root)), resolver(root)
    for payload in (None, 1232):
        wire = make_wire("many", edns=None if payload is None else 0, payload=payload or 0)
        for _ in range(3):
            reply = fast(answers, wire, FRONT_ASKER)
            assert reply == slow(full, wire, FRONT_ASKER)
        message = dns.message.from_wire(reply)
        if payload is None:
            assert message.flags & dns.flags.TC and not message.answer
        else:
            assert len(message.answer[0]) == 40 and not message.flags & dns.flags.TC


def test_remembers_a_bounded_number_of_queries(root):
    answers = dnsserver.UdpAnswers(resolver(root))
    answers.LIMIT = 5
    for n in range(12):
        wire = make_wire(f"name{n}.{DOMAIN}")
        assert dns.message.from_wire(fast(answers, wire, FRONT_ASKER)).rcode() == 3
        assert len(answers._known) <= 5
    assert fast(answers, make_wire("www"), FRONT_ASKER) == slow(
        resolver(root), make_wire("www"), FRONT_ASKER
    )


def test_remembers_a_bounded_number_of_bytes(root):
    answers, full = dnsserver.UdpAnswers(resolver(root)), resolver(root)
    answers.BUDGET = 400
    for n in range(30):  # rotating answers count too
        wire = make_wire("api" if n % 2 else f"name{n}.{DOMAIN}", edns=0)
        assert fast(answers, wire, BACK_ASKER) == slow(full, wire, BACK_ASKER)
        assert answers._size <= 400


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=80), st.sampled_from([FRONT_ASKER, BACK_ASKER, "10.89.1.5"]))
def test_never_raises_on_junk_and_says_the_same_twice(root, junk, source):
    answers = dnsserver.UdpAnswers(resolver(root))
    prefix = make_wire("api")[:12]
    for wire in (junk, prefix + junk):
        first = fast(answers, wire, source)
        quick = dnsserver.quick_response(resolver(root), wire, source, None, udp=True)
        if first is None or first is dnsserver.FORWARD:
            assert quick is first
            assert fast(answers, wire, source) is first
        else:
            assert dns.message.from_wire(first).rcode() in (0, 3)


# ---------------------------------------------------------------- the server's snapshot


@pytest.fixture
def server(root):
    server = dnsserver.Server("shop", root, [], port=0)
    server.networks = project_networks("shop", root)
    try:
        yield server
    finally:
        server.workers.shutdown()
        server.selector.close()


def test_a_record_change_is_answered_at_the_next_query(server, root):
    wire = make_wire(f"late.{DOMAIN}")
    server.current_resolver()
    assert dns.message.from_wire(fast(server.answers, wire, FRONT_ASKER)).rcode() == 3
    unchanged = server.answers
    server.current_resolver()
    assert server.answers is unchanged  # nothing written: the remembered answers stay
    add_container("shop", FRONT, "c-late", "shop-late-1", "late", ["10.89.0.9"], root=root)
    server.current_resolver()
    reply = dns.message.from_wire(fast(server.answers, wire, FRONT_ASKER))
    assert [rr.address for rr in reply.answer[0]] == ["10.89.0.9"]


def test_records_written_without_counting_are_seen_at_the_rescan(server, root):
    server.current_resolver()
    count_before = generation_path("shop", root).read_bytes()
    records = load_records("shop", root)
    del records["containers"]["c-proxy"]
    atomic_write_json(records_path("shop", root), records)  # bypasses the change count
    assert generation_path("shop", root).read_bytes() == count_before
    server.rescan()
    wire = make_wire(f"proxy.{DOMAIN}")
    server.current_resolver()
    assert dns.message.from_wire(fast(server.answers, wire, FRONT_ASKER)).rcode() == 3


def test_a_replaced_count_file_is_mapped_again(server, root):
    server.current_resolver()
    os.unlink(generation_path("shop", root))
    server.rescan()  # maps the new file
    add_container("shop", FRONT, "c-late", "shop-late-1", "late", ["10.89.0.9"], root=root)
    server.current_resolver()
    reply = dns.message.from_wire(fast(server.answers, make_wire("late"), FRONT_ASKER))
    assert [rr.address for rr in reply.answer[0]] == ["10.89.0.9"]


def test_forget_project_removes_the_count_file(root):
    add_container("shop", FRONT, "c-late", "shop-late-1", "late", ["10.89.0.9"], root=root)
    assert generation_path("shop", root).exists()
    assert dnsserver.forget_project("shop", root)
    assert not generation_path("shop", root).exists()


# ---------------------------------------------------------------- forwarding on the loop


def test_forwarding_fails_over_at_the_deadline_and_keeps_no_answered_job(root):
    import socket

    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    first, second, listener, client = sockets
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
    upstreams = [first.getsockname(), second.getsockname()]
    server = dnsserver.Server("shop", root, upstreams, port=0)
    try:
        wire = make_wire("example.com", query_id=77)
        server.forward_udp(listener, client.getsockname(), wire, None, list(upstreams))
        asked, _ = first.recvfrom(4096)
        assert asked[2:] == wire[2:]
        # Its deadline passes: the same query goes to the second upstream under the same id.
        server.deadlines[0] = (0.0, *server.deadlines[0][1:])
        server.expire_forwarding()
        again, back_to = second.recvfrom(4096)
        assert again == asked
        reply = dns.message.make_response(dns.message.from_wire(again))
        second.sendto(reply.to_wire(), back_to)
        upstream_socket = server.upstream_sockets[socket.AF_INET]
        upstream_socket.settimeout(5)
        server.on_upstream(upstream_socket)
        answer = dns.message.from_wire(client.recv(4096))
        assert answer.id == 77 and not server.forwarding
        assert not any(
            isinstance(item, dnsserver._Forwarding) for e in server.deadlines for item in e
        )
        # A later job under the same upstream id is not moved on by the earlier job's deadline.
        upstream_id = int.from_bytes(asked[:2], "big")
        server.forward_udp(listener, client.getsockname(), wire, None, list(upstreams))
        first.recvfrom(4096)
        (later,) = server.forwarding.values()
        server.forwarding = {upstream_id: later}
        stale = [d for d in server.deadlines if d[1] == upstream_id and d[2] != later.serial]
        assert stale
        server.deadlines.appendleft((0.0, *stale[0][1:]))
        server.expire_forwarding()
        assert later.attempt == 0
    finally:
        for sock in sockets:
            sock.close()
        for sock in server.upstream_sockets.values():
            sock.close()
        server.workers.shutdown()
        server.selector.close()
