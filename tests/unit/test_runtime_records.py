"""runtime's types as records (runtime/record.py) keep what their dataclasses gave: frozen ones
hash and refuse changes, mutable ones change, defaults are fresh, pickles and JSON round trip."""

from __future__ import annotations

import ipaddress
import json
import pickle

import pytest

from runtime.images.build.cache import BuildState
from runtime.images.build.dockerfile import Stage
from runtime.images.reference import Reference
from runtime.images.store import Descriptor, Image
from runtime.network.bridge import Endpoint
from runtime.network.ipam import SubnetConfig
from runtime.network.manager import Network
from runtime.network.ports import PublishedPort
from runtime.oci.spec import Bind, ContainerSpec, Resources


def test_an_endpoint_pickles_as_the_netlink_helper_gets_it():
    endpoint = Endpoint("vh-1", "eth0", ("10.0.0.2/24",), ("10.0.0.1",), "02:42:0a:00:00:02", 1400)
    crossed = pickle.loads(pickle.dumps(endpoint))
    assert crossed == endpoint and hash(crossed) == hash(endpoint)
    assert (crossed.mac, crossed.mtu, crossed.metric) == ("02:42:0a:00:00:02", 1400, 100)
    with pytest.raises(AttributeError):
        crossed.mtu = 1500


def test_a_published_port_round_trips_through_json():
    port = PublishedPort("c1", "net", "tcp", "", 8080, "10.0.0.2", 80, service="web")
    data = json.loads(json.dumps(port.to_json()))
    assert data["host_port"] == 8080 and data["project"] is None and len(data) == 9
    assert PublishedPort.from_json(data) == port
    assert str(port) == "0.0.0.0:8080->80/tcp"


def test_frozen_records_are_dict_keys():
    first, again = Reference(None, "a/b"), Reference(None, "a/b")
    assert {first: 1}[again] == 1 and first.tag == "latest"
    assert str(first.with_tag("v1")) == "a/b:v1"
    assert Bind("/a", "/b") in {Bind("/a", "/b")}


def test_a_network_has_its_own_label_and_container_dicts():
    values = dict(name="n", id="i", project=None, bridge="b", internal=False, subnet="10.0.0.0/24")
    values |= dict(gateway="10.0.0.1", ipv6_subnet=None, ipv6_gateway=None, mtu=None)
    one, other = Network(**values), Network(**values)
    one.labels["x"] = "1"
    assert other.labels == {} and other.containers == {} and other.state == "ready"
    with pytest.raises(AttributeError):
        one.state = "removing"


def test_mutable_records_change_and_are_unhashable():
    subnet = ipaddress.ip_network("10.0.0.0/24")
    config = SubnetConfig(subnet, ipaddress.ip_address("10.0.0.1"))
    config.aux_addresses["host"] = ipaddress.ip_address("10.0.0.5")
    assert SubnetConfig(subnet, config.gateway).aux_addresses == {}
    assert SubnetConfig.from_json(config.to_json()) == config
    with pytest.raises(TypeError):
        hash(config)
    descriptor = Descriptor("application/octet-stream", "sha256:ab", 3)
    descriptor.size = 4
    assert Descriptor.from_dict(descriptor.to_dict()) == descriptor


def test_default_factories_give_each_instance_its_own_value():
    spec, other = ContainerSpec(rootfs="/r"), ContainerSpec(rootfs="/r")
    spec.args.append("-c")
    spec.env = ["A=1"]
    assert other.args == ["sh"] and other.env == [] and other.resources == Resources()
    assert Stage(0, "scratch", None, None, 1).instructions == []
    state = BuildState(diff_ids=["sha256:1"])
    copied = state.copy(key="k")
    copied.diff_ids.append("sha256:2")
    assert state.diff_ids == ["sha256:1"] and copied.key == "k" and BuildState().layers == []


def test_an_image_keeps_its_properties():
    layers = [Descriptor("l", "sha256:1", 10), Descriptor("l", "sha256:2", -1)]
    manifest = {"config": {"mediaType": "c", "digest": "sha256:cf", "size": 2}}
    image = Image("busybox", "sha256:m", manifest, {"created": "now"}, layers)
    assert (image.id, image.size, image.created) == ("sha256:cf", 10, "now")
    assert image.names == [] and image.listed_digest is None
