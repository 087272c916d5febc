"""The DNS record store and resolution, with no sockets: records on disk, answers as data."""

from __future__ import annotations

import ipaddress
import json

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.network import dns as dnsserver
from runtime.network.dns_records import (
    DOMAIN,
    Resolver,
    add_container,
    load_records,
    project_networks,
    records_path,
    remove_container,
    reverse_pointer_ip,
)

FRONT, BACK, OTHER = "shop_front", "shop_back", "other_default"


def write_network(root, name, project, subnet, gateway, **extra):
    path = root / "networks" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"name": name, "project": project, "subnet": subnet, "gateway": gateway, **extra}
    path.write_text(json.dumps(data))


@pytest.fixture
def root(tmp_path):
    write_network(tmp_path, FRONT, "shop", "10.89.0.0/26", "10.89.0.1")
    write_network(tmp_path, BACK, "shop", "10.89.0.64/26", "10.89.0.65", internal=True)
    write_network(tmp_path, OTHER, "other", "10.89.1.0/26", "10.89.1.1")
    # web on both networks, two api replicas on back only, a proxy on front only.
    add_container(
        "shop",
        FRONT,
        "c-web",
        "shop-web-1",
        "web",
        ["10.89.0.2"],
        ["www"],
        "webhost",
        root=tmp_path,
    )
    add_container(
        "shop", BACK, "c-web", "shop-web-1", "web", ["10.89.0.66"], [], "webhost", root=tmp_path
    )
    add_container(
        "shop",
        BACK,
        "c-api1",
        "shop-api-1",
        "api",
        ["10.89.0.67", "fd00::67"],
        ["Backend"],
        None,
        root=tmp_path,
    )
    add_container(
        "shop",
        BACK,
        "c-api2",
        "shop-api-2",
        "api",
        ["10.89.0.68"],
        ["backend"],
        None,
        root=tmp_path,
    )
    add_container(
        "shop",
        FRONT,
        "c-proxy",
        "shop-proxy-1",
        "proxy",
        ["10.89.0.3"],
        [],
        None,
        dns=["192.0.2.53"],
        root=tmp_path,
    )
    return tmp_path


def resolver(root, project="shop"):
    return Resolver(load_records(project, root), project_networks(project, root))


# ---------------------------------------------------------------- the store


def test_records_file_is_json_under_networks_dns(root):
    path = records_path("shop", root)
    assert path == root / "networks" / "dns" / "shop.json"
    data = json.loads(path.read_text())
    assert set(data["containers"]) == {"c-web", "c-api1", "c-api2", "c-proxy"}
    assert data["containers"]["c-web"]["networks"][BACK] == {"ips": ["10.89.0.66"], "aliases": []}
    assert not list(path.parent.glob(".*.tmp"))  # atomic writes leave no temporary file


def test_network_files_ignore_the_records_folder_and_other_projects(root):
    networks = project_networks("shop", root)
    assert set(networks) == {FRONT, BACK}
    assert networks[FRONT].gateways == ("10.89.0.1",)
    assert networks[BACK].internal


def test_network_manager_record_format(tmp_path):
    path = tmp_path / "networks" / "shop_default.json"
    path.parent.mkdir()
    record = {
        "name": "shop_default",
        "project": "shop",
        "internal": False,
        "state": "ready",
        "ipv4": {"subnet": "10.89.3.0/26", "gateway": "10.89.3.1", "ip_range": None},
        "ipv6": {"subnet": "fd00:3::/64", "gateway": "fd00:3::1"},
    }
    path.write_text(json.dumps(record))
    info = project_networks("shop", tmp_path)["shop_default"]
    assert info.gateways == ("10.89.3.1", "fd00:3::1")
    assert [str(s) for s in info.subnets] == ["10.89.3.0/26", "fd00:3::/64"]
    path.write_text(json.dumps({**record, "ipv6": None, "state": "removing"}))
    assert project_networks("shop", tmp_path) == {}


def test_network_file_with_a_subnet_list(tmp_path):
    path = tmp_path / "networks" / "n.json"
    path.parent.mkdir()
    path.write_text(
        json.dumps(
            {
                "project": "p",
                "subnets": [
                    {"subnet": "10.89.2.0/26", "gateway": "10.89.2.1"},
                    {"subnet": "fd00:1::/64", "gateway": "fd00:1::1"},
                ],
            }
        )
    )
    info = project_networks("p", tmp_path)["n"]
    assert info.gateways == ("10.89.2.1", "fd00:1::1")
    assert ipaddress.ip_address("fd00:1::9") in info.subnets[1]


def test_a_half_written_network_file_keeps_its_previous_reading(root):
    before = project_networks("shop", root)
    (root / "networks" / f"{FRONT}.json").write_text('{"name": "shop_fr')
    assert project_networks("shop", root, previous=before)[FRONT] == before[FRONT]
    assert FRONT not in project_networks("shop", root)


def test_add_refuses_a_bad_address(tmp_path):
    with pytest.raises(ValueError):
        add_container("p", "n", "c", "p-c-1", "c", ["10.0.0.300"], root=tmp_path)
    assert not records_path("p", tmp_path).exists()


def test_remove_from_one_network_keeps_the_other(root):
    assert remove_container("shop", "c-web", BACK, root=root)
    entry = load_records("shop", root)["containers"]["c-web"]
    assert set(entry["networks"]) == {FRONT}
    assert remove_container("shop", "c-web", FRONT, root=root)
    assert "c-web" not in load_records("shop", root)["containers"]
    assert not remove_container("shop", "c-web", root=root)
    assert not remove_container("nosuchproject", "c-web", root=root)


def test_project_names_cannot_escape_the_folder(tmp_path):
    for bad in ("", "../x", ".hidden"):
        with pytest.raises(ValueError):
            records_path(bad, tmp_path)


# ---------------------------------------------------------------- resolution


def test_service_name_gives_every_replica_rotated_per_query(root):
    r = resolver(root)
    scope = r.scope("10.89.0.66")  # web, asking on back
    seen = [r.lookup("api", 4, scope).values for _ in range(3)]
    first, second = ["10.89.0.67", "10.89.0.68"], ["10.89.0.68", "10.89.0.67"]
    assert seen == [first, second, first]
    assert "service api on shop_back" in r.lookup("api", 4, scope).why


def test_container_name_alias_and_hostname(root):
    r = resolver(root)
    scope = r.scope("10.89.0.3")  # proxy, on front only
    assert r.lookup("shop-web-1", 4, scope).values == ["10.89.0.2"]
    assert r.lookup("www", 4, scope).values == ["10.89.0.2"]
    assert r.lookup("webhost", 4, scope).values == ["10.89.0.2"]
    assert r.lookup("www", 4, scope).why.startswith("alias www")


def test_names_are_case_insensitive_and_may_end_in_a_dot(root):
    r = resolver(root)
    scope = r.scope("10.89.0.66")
    assert r.lookup("API.", 4, scope).kind == "answer"
    # aliases Backend and backend on two replicas are one name
    assert sorted(r.lookup("BACKEND", 4, scope).values) == ["10.89.0.67", "10.89.0.68"]


def test_scope_is_the_askers_networks(root):
    r = resolver(root)
    # proxy is on front only: the back-only api is not visible to it
    assert r.lookup("api", 4, r.scope("10.89.0.3")).kind == "forward"
    # web is on both: it sees api, arriving on either network
    assert r.lookup("api", 4, r.scope("10.89.0.2")).values
    assert r.scope("10.89.0.2") == [FRONT, BACK]
    assert r.scope("10.89.0.66") == [BACK, FRONT]


def test_the_arrival_network_answers_first(root):
    r = resolver(root)
    assert r.lookup("web", 4, r.scope("10.89.0.2")).values == ["10.89.0.2"]
    assert r.lookup("web", 4, r.scope("10.89.0.66")).values == ["10.89.0.66"]


def test_unknown_source_sees_only_its_subnet_and_strangers_see_nothing(root):
    r = resolver(root)
    assert r.scope("10.89.0.40") == [FRONT]
    assert r.scope("10.89.1.5") == []  # another project's subnet
    assert r.lookup("web", 4, r.scope("10.89.1.5")).kind == "forward"
    assert r.scope("127.0.0.1", arrived_on=FRONT) == [FRONT]


def test_search_domain_and_network_forms(root):
    r = resolver(root)
    scope = r.scope("10.89.0.2")
    assert r.lookup(f"web.{DOMAIN}", 4, scope).values == ["10.89.0.2"]
    assert r.lookup(f"WEB.{DOMAIN.upper()}.", 4, scope).values == ["10.89.0.2"]
    assert r.lookup(f"web.{BACK}", 4, scope).values == ["10.89.0.66"]
    # our domain is never forwarded: an unknown name there does not exist
    assert r.lookup(f"nothing.{DOMAIN}", 4, scope).kind == "nxdomain"
    assert r.lookup("nothing", 4, scope).kind == "forward"
    # a network the asker is not on is no suffix of ours
    assert r.lookup(f"web.{OTHER}", 4, scope).kind == "forward"


def test_aaaa_and_a_separately(root):
    r = resolver(root)
    scope = r.scope("10.89.0.66")
    assert r.lookup("shop-api-1", 6, scope).values == ["fd00::67"]
    assert r.lookup("shop-api-1", 4, scope).values == ["10.89.0.67"]
    # a name with no IPv6 address: ours, but no data
    result = r.lookup("shop-api-2", 6, scope)
    assert (result.kind, result.values) == ("answer", [])


def test_ptr_for_our_addresses_only_in_scope(root):
    r = resolver(root)
    back = r.scope("10.89.0.66")
    result = r.reverse(ipaddress.ip_address("10.89.0.67").reverse_pointer, back)
    assert result.values == [f"shop-api-1.{BACK}"]
    v6 = r.reverse(ipaddress.ip_address("fd00::67").reverse_pointer, back)
    assert v6.values == [f"shop-api-1.{BACK}"]
    front_only = r.scope("10.89.0.3")
    hidden = r.reverse(ipaddress.ip_address("10.89.0.67").reverse_pointer, front_only)
    assert hidden.kind == "nxdomain"  # ours, so never asked upstream, but not visible
    assert r.reverse("8.8.8.8.in-addr.arpa", back).kind == "forward"


def test_reverse_pointer_parsing():
    assert reverse_pointer_ip("4.3.2.10.in-addr.arpa.") == "10.2.3.4"
    assert reverse_pointer_ip(ipaddress.ip_address("fd00::1").reverse_pointer) == "fd00::1"
    assert reverse_pointer_ip("3.2.10.in-addr.arpa") is None
    assert reverse_pointer_ip("example.com") is None


def test_removed_container_is_gone_at_the_next_query(root):
    scope = resolver(root).scope("10.89.0.2")
    assert resolver(root).lookup(f"shop-api-2.{DOMAIN}", 4, scope).values == ["10.89.0.68"]
    remove_container("shop", "c-api2", root=root)
    r = resolver(root)
    assert r.lookup(f"shop-api-2.{DOMAIN}", 4, scope).kind == "nxdomain"
    assert r.lookup("api", 4, scope).values == ["10.89.0.67"]


def test_containers_on_a_removed_network_are_not_served(root):
    (root / "networks" / f"{BACK}.json").unlink()
    r = resolver(root)
    assert r.lookup("api", 4, [FRONT, BACK]).kind == "forward"


def test_own_upstreams(root):
    r = resolver(root)
    assert r.upstreams_for("10.89.0.3") == ["192.0.2.53"]
    assert r.upstreams_for("10.89.0.2") == []
    assert r.upstreams_for("198.51.100.1") == []


# ---------------------------------------------------------------- wire format (no sockets)


def ask(root, source, name, rdtype="A"):
    query = dns.message.make_query(name, rdtype)
    r = resolver(root)
    return dnsserver.local_response(r, query, source, r.network_of(source))


def test_wire_answer_is_authoritative_with_ttl_zero(root):
    response = ask(root, "10.89.0.2", "WWW", "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA and response.flags & dns.flags.RA
    (rrset,) = response.answer
    assert [r.address for r in rrset] == ["10.89.0.2"] and rrset.ttl == 0


def test_wire_keeps_the_rotation_order(root):
    r = resolver(root)
    query = dns.message.make_query("api", "A")
    firsts = []
    for _ in range(4):
        response = dnsserver.local_response(r, query, "10.89.0.66", BACK)
        wire = dnsserver.Server._encode(response, query, udp=True)
        firsts.append(dns.message.from_wire(wire).answer[0][0].address)
    assert firsts == ["10.89.0.67", "10.89.0.68", "10.89.0.67", "10.89.0.68"]


def test_wire_nxdomain_nodata_and_forward(root):
    assert ask(root, "10.89.0.2", f"gone.{DOMAIN}").rcode() == dns.rcode.NXDOMAIN
    nodata = ask(root, "10.89.0.66", "shop-api-2", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    mx = ask(root, "10.89.0.66", "api", "MX")
    assert mx.rcode() == dns.rcode.NOERROR and not mx.answer
    assert ask(root, "10.89.0.2", "example.com") is None
    assert ask(root, "10.89.0.2", "example.com", "PTR") is None


def test_wire_ptr_and_any(root):
    response = ask(root, "10.89.0.66", ipaddress.ip_address("10.89.0.67").reverse_pointer, "PTR")
    assert [r.target.to_text() for r in response.answer[0]] == [f"shop-api-1.{BACK}."]
    both = ask(root, "10.89.0.66", "shop-api-1", "ANY")
    types = {rrset.rdtype for rrset in both.answer}
    assert types == {dns.rdatatype.A, dns.rdatatype.AAAA}


def test_wire_truncates_for_small_udp_clients(root):
    for n in range(40):
        add_container(
            "shop", FRONT, f"c-many{n}", f"shop-many-{n}", "many", [f"10.89.0.{10 + n}"], root=root
        )
    query = dns.message.make_query("many", "A")  # no EDNS: 512 bytes at most
    r = resolver(root)
    response = dnsserver.local_response(r, query, "10.89.0.2", FRONT)
    wire = dnsserver.Server._encode(response, query, udp=True)
    assert len(wire) <= 512
    assert dns.message.from_wire(wire, ignore_trailing=True).flags & dns.flags.TC
    assert len(dnsserver.Server._encode(response, query, udp=False)) > 512


# ---------------------------------------------------------------- container files and explain


def test_resolv_conf():
    text = dnsserver.resolv_conf(
        "10.89.0.1", dns=["1.1.1.1"], dns_search=["corp.example"], dns_opt=["ndots:2"]
    )
    assert text.splitlines() == [
        "nameserver 10.89.0.1",
        f"search {DOMAIN} corp.example",
        "options ndots:2",
    ]
    assert dnsserver.resolv_conf("10.89.0.1") == f"nameserver 10.89.0.1\nsearch {DOMAIN}\n"
    with pytest.raises(ValueError, match="gateway"):
        dnsserver.resolv_conf(None)


def test_hosts_file_with_host_gateway():
    text = dnsserver.hosts_file(
        "web",
        ["10.89.0.2"],
        ["db:10.0.0.9", "host.docker.internal:host-gateway", "v6=::1"],
        gateway="10.89.0.1",
    )
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert "10.89.0.2\tweb" in lines
    assert "10.0.0.9\tdb" in lines
    assert "10.89.0.1\thost.docker.internal" in lines
    assert "::1\tv6" in lines
    with pytest.raises(ValueError):
        dnsserver.hosts_file("web", [], {"h": "host-gateway"})
    with pytest.raises(ValueError):
        dnsserver.hosts_file("web", [], {"h": "not-an-address"})


def test_explain(root):
    answers, why = dnsserver.explain("shop", "web", "api", root=root)
    assert sorted(answers) == ["10.89.0.67", "10.89.0.68", "fd00::67"]
    assert "service api" in why
    answers, why = dnsserver.explain("shop", "shop-api-1", "shop-api-1", root=root)
    assert answers == ["10.89.0.67", "fd00::67"]
    assert dnsserver.explain("shop", "proxy", "api", root=root) == (
        [],
        "not ours: forwarded to 192.0.2.53",
    )
    answers, why = dnsserver.explain("shop", "web", "10.89.0.67", root=root)
    assert answers == [f"shop-api-1.{BACK}"]
    assert dnsserver.explain("shop", "web", f"nope.{DOMAIN}", root=root)[0] == []
    with pytest.raises(LookupError):
        dnsserver.explain("shop", "nobody", "api", root=root)


def test_upstream_parsing(tmp_path):
    assert dnsserver.parse_upstream("10.0.0.1") == ("10.0.0.1", 53)
    assert dnsserver.parse_upstream("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert dnsserver.parse_upstream("[::1]:5353") == ("::1", 5353)
    assert dnsserver.parse_upstream("fd00::1") == ("fd00::1", 53)
    conf = tmp_path / "resolv.conf"
    conf.write_text("# c\nnameserver 127.0.0.53\nsearch x\nnameserver fe80::1%eth0\n")
    assert dnsserver.host_upstreams(str(conf)) == [("127.0.0.53", 53), ("fe80::1%eth0", 53)]
    assert dnsserver.host_upstreams(str(tmp_path / "missing")) == []


def test_internal_networks_are_refused_outside_names_and_others_forwarded(root):
    server = dnsserver.Server("shop", root, [("127.0.0.1", 5353)], port=0)
    try:
        server.networks = project_networks("shop", root)
        server.listeners = {"10.89.0.65": (None, None, BACK), "10.89.0.1": (None, None, FRONT)}
        wire = dns.message.make_query("example.com", "A").to_wire()
        _, response, _ = server.prepare(wire, "10.89.0.67", "10.89.0.65")  # api: back only
        assert response.rcode() == dns.rcode.REFUSED
        _, response, upstreams = server.prepare(wire, "10.89.0.66", "10.89.0.65")  # web: both
        assert response is None and upstreams == [("127.0.0.1", 5353)]
        _, response, upstreams = server.prepare(wire, "10.89.0.3", "10.89.0.1")  # own dns
        assert response is None and upstreams == [("192.0.2.53", 53)]
        assert server.prepare(b"\x00garbage", "10.89.0.3", "10.89.0.1") is None
        answer = dns.message.make_response(dns.message.make_query("x", "A")).to_wire()
        assert server.prepare(answer, "10.89.0.3", "10.89.0.1") is None  # never loop
    finally:
        server.workers.shutdown()
        server.selector.close()


def test_records_reload_when_the_file_changes(root):
    server = dnsserver.Server("shop", root, [], port=0)
    try:
        server.networks = project_networks("shop", root)
        scope = [FRONT, BACK]
        assert server.current_resolver().lookup("api", 4, scope).kind == "answer"
        same = server.current_resolver()
        assert server.current_resolver() is same  # unchanged file: no rebuild
        remove_container("shop", "c-api1", root=root)
        remove_container("shop", "c-api2", root=root)
        assert server.current_resolver().lookup("api", 4, scope).kind == "forward"
    finally:
        server.workers.shutdown()
        server.selector.close()


# ---------------------------------------------------------------- the hand-built fast path


def _full_path(root, wire, source, udp):
    r = resolver(root)
    query = dns.message.from_wire(wire)
    response = dnsserver.local_response(r, query, source, r.network_of(source))
    return None if response is None else dnsserver.Server._encode(response, query, udp)


def _quick_path(root, wire, source, udp):
    r = resolver(root)
    return dnsserver.quick_response(r, wire, source, r.network_of(source), udp)


def _same(a: bytes, b: bytes) -> None:
    """Two wire responses say the same: id, flags, rcode, question, answers, EDNS."""
    x, y = dns.message.from_wire(a), dns.message.from_wire(b)
    assert (x.id, x.flags, x.rcode(), x.question) == (y.id, y.flags, y.rcode(), y.question)
    assert x.answer == y.answer and [list(r) for r in x.answer] == [list(r) for r in y.answer]
    assert (x.edns, x.payload) == (y.edns, y.payload)


@pytest.mark.parametrize(
    ("name", "rdtype", "source", "edns"),
    [
        ("api", "A", "10.89.0.66", False),
        ("API.", "A", "10.89.0.66", True),
        ("shop-api-1", "AAAA", "10.89.0.66", False),
        ("shop-api-2", "AAAA", "10.89.0.66", True),  # NODATA
        (f"nothing.{DOMAIN}", "A", "10.89.0.2", False),  # NXDOMAIN
        (f"www.{DOMAIN.upper()}", "A", "10.89.0.3", True),
        ("67.0.89.10.in-addr.arpa", "PTR", "10.89.0.66", False),
        ("67.0.89.10.in-addr.arpa", "PTR", "10.89.0.3", True),  # ours, out of scope
    ],
)
def test_quick_path_says_what_dnspython_says(root, name, rdtype, source, edns):
    query = dns.message.make_query(name, rdtype, use_edns=0 if edns else False, payload=4096)
    query.flags |= dns.flags.RD
    wire = query.to_wire()
    for udp in (True, False):
        quick = _quick_path(root, wire, source, udp)
        assert quick is not None
        _same(quick, _full_path(root, wire, source, udp))


def test_quick_path_truncates_like_the_full_path(root):
    for n in range(40):
        add_container(
            "shop", FRONT, f"c-many{n}", f"shop-many-{n}", "many", [f"10.89.0.{10 + n}"], root=root
        )
    wire = dns.message.make_query("many", "A").to_wire()
    quick = _quick_path(root, wire, "10.89.0.2", udp=True)
    assert len(quick) <= 512 and dns.message.from_wire(quick).flags & dns.flags.TC
    assert not dns.message.from_wire(quick).answer
    assert (
        len(dns.message.from_wire(_quick_path(root, wire, "10.89.0.2", udp=False)).answer[0]) == 40
    )


def test_quick_path_says_forward_for_names_not_ours(root):
    for name, rdtype in (("example.com", "A"), ("api", "AAAA"), ("8.8.8.8.in-addr.arpa", "PTR")):
        wire = dns.message.make_query(name, rdtype).to_wire()
        assert _quick_path(root, wire, "10.89.0.3", True) is dnsserver.FORWARD
        assert _full_path(root, wire, "10.89.0.3", True) is None


@pytest.mark.parametrize(
    "query",
    [
        dns.message.make_query("api", "MX"),  # other types
        dns.message.make_query("api", "A", use_edns=1),  # EDNS version 1
        dns.message.make_response(dns.message.make_query("api", "A")),  # a response
    ],
)
def test_quick_path_leaves_the_rest_to_the_full_path(root, query):
    assert _quick_path(root, query.to_wire(), "10.89.0.66", True) is None


def test_quick_path_refuses_malformed_wire(root):
    wire = dns.message.make_query("api", "A").to_wire()
    for broken in (wire[:11], wire[:-2], wire[:12] + b"\xc0\x0c" + wire[-4:], wire + b"junk"):
        assert _quick_path(root, broken, "10.89.0.66", True) is None


def test_never_forwards_to_itself(root):
    upstreams = [("10.89.0.1", 53), ("10.89.0.1", 5353), ("127.0.0.53", 53)]
    server = dnsserver.Server("shop", root, upstreams, port=53)
    try:
        server.networks = project_networks("shop", root)
        server.listeners = {"10.89.0.1": (None, None, FRONT)}
        wire = dns.message.make_query("example.com", "A").to_wire()
        _, response, chosen = server.prepare(wire, "10.89.0.2", "10.89.0.1")
        assert response is None and chosen == upstreams[1:]
    finally:
        server.workers.shutdown()
        server.selector.close()


# ---------------------------------------------------------------- properties

_KNOWN = ["api", "www", "web", "shop-api-1", "shop-api-2", "webhost", "backend", "nothing"]
_SUFFIXES = ["", ".", f".{DOMAIN}", f".{BACK}", f".{FRONT}", ".example.com"]
_SOURCES = ["10.89.0.2", "10.89.0.3", "10.89.0.66", "10.89.0.67", "10.89.0.40", "10.89.1.5"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    label=st.sampled_from(_KNOWN),
    suffix=st.sampled_from(_SUFFIXES),
    upper=st.lists(st.booleans(), min_size=20, max_size=20),
    rdtype=st.sampled_from(["A", "AAAA", "PTR", "MX", "TXT"]),
    source=st.sampled_from(_SOURCES),
    edns=st.sampled_from([None, 0]),
    query_id=st.integers(0, 0xFFFF),
)
def test_quick_path_agrees_with_the_full_path(
    root, label, suffix, upper, rdtype, source, edns, query_id
):
    name = "".join(c.upper() if u else c for c, u in zip(label + suffix, upper * 4, strict=False))
    if rdtype == "PTR":
        name = ipaddress.ip_address(f"10.89.0.{len(label) + 60}").reverse_pointer
    query = dns.message.make_query(
        name or ".", rdtype, use_edns=edns if edns is not None else False
    )
    query.id = query_id
    wire = query.to_wire()
    quick = _quick_path(root, wire, source, True)
    full = _full_path(root, wire, source, True)
    if quick is dnsserver.FORWARD:
        assert full is None, "the quick path forwards what the full path answers"
    elif quick is not None:
        assert full is not None, "the quick path answered what the full path forwards"
        _same(quick, full)
    else:
        assert rdtype not in ("A", "AAAA", "PTR"), "the usual types never need the full path"


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=80))
def test_quick_path_never_raises_on_junk(root, junk):
    prefix = dns.message.make_query("api", "A").to_wire()[:12]
    for wire in (junk, prefix + junk):
        result = _quick_path(root, wire, "10.89.0.66", True)
        if result not in (None, dnsserver.FORWARD):
            assert dns.message.from_wire(result).rcode() in (0, 3)
