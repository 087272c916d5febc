"""The nftables table as text: isolation, internal networks, masquerade, published ports."""

from __future__ import annotations

import pytest

from runtime.network import nft, ports

A = nft.NetworkRules("cbr-a", ("10.89.0.0/26", "fd89:c0::/64"))
B = nft.NetworkRules("cbr-b", ("10.89.0.64/26",))
INTERNAL = nft.NetworkRules("cbr-i", ("10.89.0.128/26",), internal=True)


def chain(text: str, name: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(f"\tchain {name} {{")
    end = lines.index("\t}", start)
    return [line.strip() for line in lines[start + 1 : end]]


def test_one_table_of_our_own():
    text = nft.ruleset([A])
    assert text.startswith("table inet composer {\n")
    assert text.count("table ") == 1


def test_networks_are_isolated_from_each_other():
    forward = chain(nft.ruleset([A, B]), "forward")
    assert 'iifname "cbr-a" oifname "cbr-b" drop' in forward
    assert 'iifname "cbr-b" oifname "cbr-a" drop' in forward
    # Published ports stay reachable across networks: DNAT'ed traffic passes before the drops.
    assert forward.index("ct status dnat accept") < forward.index(
        'iifname "cbr-a" oifname "cbr-b" drop'
    )
    assert forward[-2:] == [
        'iifname { "cbr-a", "cbr-b" } accept',
        'oifname { "cbr-a", "cbr-b" } accept',
    ]


def test_internal_network_only_talks_within_its_bridge_and_is_not_masqueraded():
    text = nft.ruleset([A, INTERNAL])
    forward = chain(text, "forward")
    assert forward[1:3] == [
        'iifname "cbr-i" oifname != "cbr-i" drop',
        'oifname "cbr-i" iifname != "cbr-i" drop',
    ]
    post = chain(text, "postrouting")
    assert 'ip saddr 10.89.0.128/26 oifname != "cbr-i" masquerade' not in post
    assert 'ip saddr 10.89.0.0/26 oifname != "cbr-a" masquerade' in post


def test_ipv6_subnets_are_masqueraded_with_ip6_matches():
    post = chain(nft.ruleset([A]), "postrouting")
    assert 'ip6 saddr fd89:c0::/64 oifname != "cbr-a" masquerade' in post


def test_loopback_and_hairpin_sources_are_masqueraded_towards_the_bridge():
    post = chain(nft.ruleset([A]), "postrouting")
    assert 'oifname "cbr-a" ip saddr 127.0.0.0/8 masquerade' in post
    assert 'oifname "cbr-a" ct status dnat ip saddr 10.89.0.0/26 masquerade' in post


def test_published_ports_from_outside_and_from_the_host():
    ports = [
        nft.PortRule("tcp", 8080, "10.89.0.2", 80, "cbr-a"),
        nft.PortRule("udp", 5353, "10.89.0.2", 53, "cbr-a", host_ip="127.0.0.1"),
        nft.PortRule("tcp", 8443, "fd89:c0::2", 443, "cbr-a", host_ip="::"),
    ]
    text = nft.ruleset([A], ports)
    assert chain(text, "published") == [
        "meta nfproto ipv4 tcp dport 8080 dnat ip to 10.89.0.2:80",
        "meta nfproto ipv6 tcp dport 8443 dnat ip6 to [fd89:c0::2]:443",
        "ip daddr 127.0.0.1 udp dport 5353 dnat ip to 10.89.0.2:53",
    ]
    assert "fib daddr type local jump published" in chain(text, "prerouting")
    assert "fib daddr type local jump published" in chain(text, "output")
    # The jump target is declared before the chains that jump to it.
    assert text.index("chain published") < text.index("chain prerouting")


@pytest.mark.parametrize(
    "port",
    [
        nft.PortRule("sctp", 1, "10.89.0.2", 1, "cbr-a"),
        nft.PortRule("tcp", 1, "10.89.0.2", 1, "cbr-a", host_ip="::1"),
    ],
)
def test_bad_port_rules_are_refused(port):
    with pytest.raises(nft.NftError):
        nft.ruleset([A], [port])


def test_ruleset_is_deterministic():
    ports = [nft.PortRule("tcp", p, "10.89.0.2", 80, "cbr-a") for p in (9002, 9001)]
    assert nft.ruleset([B, A], ports) == nft.ruleset([A, B], reversed(ports))


def test_apply_replaces_the_table_in_one_transaction(monkeypatch):
    scripts = []
    monkeypatch.setattr(nft, "_nft", lambda script, *args: scripts.append(script) or "")
    nft.apply([A])
    nft.apply([])
    replace, remove = scripts
    assert replace.startswith("table inet composer\ndelete table inet composer\ntable inet")
    assert remove == "table inet composer\ndelete table inet composer\n"


# ---------------------------------------------------------------- which host port a request gets


def _make(request, host_ip, host_port):
    return ports.PublishedPort(
        "c1", "n", request.protocol, host_ip, host_port, "10.89.0.2", request.target, "p1", "web"
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("80", [ports.PortRequest(80)]),
        ("8080:80", [ports.PortRequest(80, "8080")]),
        ("127.0.0.1:8080:80/udp", [ports.PortRequest(80, "8080", "127.0.0.1", "udp")]),
        ("[::1]:8080:80", [ports.PortRequest(80, "8080", "::1")]),
        ("8000-8001:80-81", [ports.PortRequest(80, "8000"), ports.PortRequest(81, "8001")]),
        ("9000-9009:80", [ports.PortRequest(80, "9000-9009")]),
        ("80-81", [ports.PortRequest(80), ports.PortRequest(81)]),
    ],
)
def test_short_port_syntax(spec, expected):
    assert ports.parse(spec) == expected


@pytest.mark.parametrize("spec", ["", "0", "70000", "a:80", "8000-8002:80-81", "1:2:3:4"])
def test_bad_short_port_syntax(spec):
    with pytest.raises(ports.PortError):
        ports.parse(spec)


def test_random_ports_avoid_the_ephemeral_range():
    assert ports.random_range((32768, 60999)) == (61000, 65535)
    assert ports.random_range((40000, 65535)) == (35000, 39999)
    with pytest.raises(ports.PortError):
        ports.random_range((1024, 65535))


def test_assign_skips_ports_held_by_us_or_by_processes():
    held = [_make(ports.PortRequest(80), "", 61000)]
    busy = {61001}
    result = ports.assign(
        [ports.PortRequest(80)],
        held,
        make=_make,
        is_free=lambda proto, ip, port: port not in busy,
        random_ports=(61000, 61003),
        rng=type("First", (), {"randrange": lambda self, a, b: a})(),
    )
    assert [p.host_port for p in result] == [61002]


def test_assign_names_our_holder_or_another_process():
    held = [_make(ports.PortRequest(80), "127.0.0.1", 8080)]
    with pytest.raises(ports.PortInUse, match="project p1 service web"):
        ports.assign([ports.PortRequest(81, "8080")], held, make=_make, is_free=lambda *a: True)
    with pytest.raises(ports.PortInUse, match="in use by another process"):
        ports.assign([ports.PortRequest(81, "9090")], held, make=_make, is_free=lambda *a: False)
    # Another specific host IP, or another protocol, does not clash.
    ok = ports.assign(
        [ports.PortRequest(81, "8080", "10.0.0.1"), ports.PortRequest(81, "8080", None, "udp")],
        held,
        make=_make,
        is_free=lambda *a: True,
    )
    assert [p.host_port for p in ok] == [8080, 8080]


def test_assign_within_one_request_batch_never_repeats_a_port():
    result = ports.assign(
        [ports.PortRequest(80, "7000-7001"), ports.PortRequest(81, "7000-7001")],
        [],
        make=_make,
        is_free=lambda *a: True,
    )
    assert [p.host_port for p in result] == [7000, 7001]
    with pytest.raises(ports.PortInUse, match=r"no free host port in 0\.0\.0\.0:7000-7001/tcp"):
        ports.assign(
            [ports.PortRequest(82, "7000-7001")], result, make=_make, is_free=lambda *a: True
        )


def test_an_existing_publication_satisfies_the_same_request_only():
    port = _make(ports.PortRequest(80), "", 8080)
    assert ports.satisfies(port, ports.PortRequest(80, "8080"))
    assert ports.satisfies(port, ports.PortRequest(80, "8000-8090"))
    assert ports.satisfies(port, ports.PortRequest(80))  # any host port will do
    assert not ports.satisfies(port, ports.PortRequest(80, "8081"))
    assert not ports.satisfies(port, ports.PortRequest(80, "8080", protocol="udp"))
    assert not ports.satisfies(port, ports.PortRequest(80, "8080", host_ip="127.0.0.1"))
    assert not ports.satisfies(port, ports.PortRequest(81, "8080"))


def test_each_state_root_other_than_the_default_has_a_table_of_its_own(tmp_path):
    assert nft.table_for_root("/var/lib/composer") == "composer"
    one, two = nft.table_for_root(str(tmp_path / "a")), nft.table_for_root(str(tmp_path / "b"))
    assert one != two and one.startswith("composer_") and len(one) <= 32
    assert nft.ruleset([A], table=one).startswith(f"table inet {one} {{")


LISTED_CHAIN = {
    "nftables": [
        {"metainfo": {"version": "1.0.6"}},
        {"chain": {"family": "inet", "table": "composer_x", "name": "published"}},
        {
            "rule": {
                "expr": [
                    {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}},
                    {
                        "match": {
                            "op": "==",
                            "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                            "right": 8080,
                        }
                    },
                    {"dnat": {"family": "ip", "addr": "10.89.0.2", "port": 80}},
                ]
            }
        },
        {
            "rule": {
                "expr": [
                    {
                        "match": {
                            "op": "==",
                            "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                            "right": "127.0.0.1",
                        }
                    },
                    {
                        "match": {
                            "op": "==",
                            "left": {"payload": {"protocol": "udp", "field": "dport"}},
                            "right": 5353,
                        }
                    },
                    {"dnat": {"family": "ip", "addr": "10.89.0.66", "port": 53}},
                ]
            }
        },
    ]
}


def test_ports_published_by_other_roots_are_read_from_their_rules():
    found = nft.parse_published(LISTED_CHAIN)
    assert found == {("tcp", "", 8080), ("udp", "127.0.0.1", 5353)}
    with pytest.raises(ports.PortInUse, match="another composer state root"):
        ports.assign(
            [ports.PortRequest(80, "8080")],
            [],
            make=_make,
            is_free=lambda *a: True,
            elsewhere=found,
        )
    random = ports.assign(
        [ports.PortRequest(80)],
        [],
        make=_make,
        is_free=lambda *a: True,
        elsewhere=found,
        random_ports=(8080, 8081),
        rng=type("First", (), {"randrange": lambda self, a, b: a})(),
    )
    assert random[0].host_port == 8081
