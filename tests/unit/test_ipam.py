"""IPAM: pools, subnet choice around routed and held ranges, ipam.config, address allocation."""

from __future__ import annotations

import ipaddress

import pytest

from runtime.network import ipam

net = ipaddress.ip_network
addr = ipaddress.ip_address


def test_default_pool_is_carved_in_26_blocks():
    (pool,) = ipam.default_pools(environ={})
    assert pool.base == net("10.89.0.0/16") and pool.prefix == 26


def test_pool_from_environment_with_block_size():
    pools = ipam.default_pools(environ={ipam.POOL_ENV: "172.30.0.0/20:24, 172.31.0.0/16"})
    assert [(str(p.base), p.prefix) for p in pools] == [
        ("172.30.0.0/20", 24),
        ("172.31.0.0/16", 26),
    ]


def test_ipv6_pool_parses_block_size_after_the_address_colons():
    (pool,) = ipam.parse_pools("fd00:1::/48:64")
    assert pool.base == net("fd00:1::/48") and pool.prefix == 64


@pytest.mark.parametrize("text", ["", "10.89.0.1/16", "10.89.0.0/16:31", "10.89.0.0/16:8", "x"])
def test_bad_pools_are_refused(text):
    with pytest.raises(ipam.IpamError):
        ipam.parse_pools(text)


def test_pick_subnet_skips_routed_and_held_ranges():
    pools = ipam.parse_pools("10.89.0.0/24:26")
    taken = [net("10.89.0.0/26"), net("10.89.0.64/27")]  # a route inside the second block
    assert ipam.pick_subnet(pools, taken) == net("10.89.0.128/26")


def test_pick_subnet_skips_a_route_that_covers_the_whole_block():
    pools = ipam.parse_pools("10.89.0.0/24:26")
    assert ipam.pick_subnet(pools, [net("10.89.0.0/25")]) == net("10.89.0.128/26")


def test_exhaustion_names_the_holders_and_routes():
    pools = ipam.parse_pools("10.89.0.0/25:26")
    holders = {"10.89.0.0/26": "project shop (network shop_default)"}
    with pytest.raises(ipam.PoolExhausted) as err:
        ipam.pick_subnet(pools, [net("10.89.0.0/26"), net("10.89.0.64/26")], holders)
    text = str(err.value)
    assert "project shop (network shop_default)" in text
    assert "10.89.0.64/26" in text and ipam.POOL_ENV in text


def test_requested_prefix_larger_than_block():
    pools = ipam.parse_pools("10.89.0.0/16:26")
    assert ipam.pick_subnet(pools, [net("10.89.0.0/26")], prefix=24) == net("10.89.1.0/24")


def test_subnet_config_defaults_gateway_to_first_host():
    config = ipam.subnet_config(None, version=4, pools=ipam.parse_pools("10.89.0.0/16"))
    assert config.subnet == net("10.89.0.0/26") and config.gateway == addr("10.89.0.1")


def test_subnet_config_honours_compose_ipam_entry():
    config = ipam.subnet_config(
        {
            "subnet": "172.28.0.0/16",
            "ip_range": "172.28.5.0/24",
            "gateway": "172.28.5.254",
            "aux_addresses": {"host1": "172.28.1.5"},
        },
        version=4,
    )
    assert config.ip_range == net("172.28.5.0/24") and config.gateway == addr("172.28.5.254")
    assert ipam.SubnetConfig.from_json(config.to_json()) == config
    assert ipam.allocate_address(config, used=[]) == addr("172.28.5.1")


@pytest.mark.parametrize(
    "entry",
    [
        {"subnet": "172.28.0.0/16", "ip_range": "172.29.0.0/24"},
        {"subnet": "172.28.0.0/16", "gateway": "172.29.0.1"},
        {"subnet": "172.28.0.0/16", "gateway": "172.28.0.0"},
        {"subnet": "172.28.0.0/16", "aux_addresses": {"a": "10.0.0.1"}},
        {"subnet": "172.28.0.1/16"},
        {"subnet": "fd00::/64"},
    ],
)
def test_subnet_config_refuses_inconsistent_entries(entry):
    with pytest.raises(ipam.IpamError):
        ipam.subnet_config(entry, version=4)


def test_requested_subnet_that_overlaps_names_the_holder():
    with pytest.raises(ipam.IpamError, match="other project"):
        ipam.subnet_config(
            {"subnet": "10.89.0.0/24"},
            version=4,
            taken=[net("10.89.0.64/26")],
            holders={"10.89.0.64/26": "other project"},
        )


def test_allocation_skips_gateway_aux_and_used():
    config = ipam.subnet_config(
        {"subnet": "10.1.0.0/29", "aux_addresses": {"router": "10.1.0.2"}}, version=4
    )
    assert ipam.allocate_address(config, used=["10.1.0.3"]) == addr("10.1.0.4")


def test_fixed_address_checked_against_use_and_subnet():
    config = ipam.subnet_config({"subnet": "10.1.0.0/29"}, version=4)
    assert ipam.allocate_address(config, [], wanted="10.1.0.5") == addr("10.1.0.5")
    with pytest.raises(ipam.AddressInUse):
        ipam.allocate_address(config, ["10.1.0.5"], wanted="10.1.0.5")
    with pytest.raises(ipam.AddressInUse):
        ipam.allocate_address(config, [], wanted="10.1.0.1")  # the gateway
    for outside in ("10.1.0.7", "10.1.0.0", "10.2.0.1"):  # broadcast, network, elsewhere
        with pytest.raises(ipam.IpamError):
            ipam.allocate_address(config, [], wanted=outside)


def test_subnet_runs_out_of_addresses():
    config = ipam.subnet_config({"subnet": "10.1.0.0/30"}, version=4)  # one host besides gw
    first = ipam.allocate_address(config, [])
    with pytest.raises(ipam.PoolExhausted):
        ipam.allocate_address(config, [str(first)])


def test_ipv6_subnet_and_allocation():
    config = ipam.subnet_config(None, version=6)
    assert config.subnet.version == 6 and config.subnet.prefixlen == 64
    assert ipam.allocate_address(config, []) == config.gateway + 1


def test_routed_networks_parses_proc_route_files(tmp_path):
    (tmp_path / "route").write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "cbr\t00597D0A\t00000000\t0001\t0\t0\t0\tC0FFFFFF\t0\t0\t0\n"
    )
    (tmp_path / "ipv6_route").write_text(
        "fd890000000000000000000000000000 40 00000000000000000000000000000000 00"
        " 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n"
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00"
        " 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n"
    )
    assert ipam.routed_networks(str(tmp_path)) == [
        net("192.168.2.0/24"),
        net("10.125.89.0/26"),
        net("fd89::/64"),
    ]
