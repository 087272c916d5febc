from __future__ import annotations

import pytest

from composer.loader.errors import LoadError
from composer.loader.nodes import MapNode, Mark, SeqNode, locate, to_plain
from composer.loader.normalize import parse_port, parse_volume
from composer.loader.parse import parse_compose

M = Mark("c.yaml", 3, 9)


def plain_ports(value):
    return [to_plain(p) for p in parse_port(value, M)]


# --- ports ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("short", "long"),
    [
        ("80", [{"target": 80, "protocol": "tcp", "mode": "ingress"}]),
        (80, [{"target": 80, "protocol": "tcp", "mode": "ingress"}]),
        (
            "8080:80",
            [{"target": 80, "published": "8080", "protocol": "tcp", "mode": "ingress"}],
        ),
        (
            "127.0.0.1:8080:80/udp",
            [
                {
                    "target": 80,
                    "published": "8080",
                    "host_ip": "127.0.0.1",
                    "protocol": "udp",
                    "mode": "ingress",
                }
            ],
        ),
        (
            "[::1]:80:80",
            [
                {
                    "target": 80,
                    "published": "80",
                    "host_ip": "::1",
                    "protocol": "tcp",
                    "mode": "ingress",
                }
            ],
        ),
        (
            "::1:80:80",
            [
                {
                    "target": 80,
                    "published": "80",
                    "host_ip": "::1",
                    "protocol": "tcp",
                    "mode": "ingress",
                }
            ],
        ),
        (
            "127.0.0.1::80",
            [{"target": 80, "host_ip": "127.0.0.1", "protocol": "tcp", "mode": "ingress"}],
        ),
        (
            "9000/SCTP",
            [{"target": 9000, "protocol": "sctp", "mode": "ingress"}],
        ),
        (
            "8000-8010:80",
            [{"target": 80, "published": "8000-8010", "protocol": "tcp", "mode": "ingress"}],
        ),
    ],
)
def test_short_ports_become_long_form(short, long):
    assert plain_ports(short) == long


def test_port_ranges_expand_to_one_entry_per_port():
    ports = plain_ports("8000-8002:9000-9002")
    assert [(p["published"], p["target"]) for p in ports] == [
        ("8000", 9000),
        ("8001", 9001),
        ("8002", 9002),
    ]
    # A container range without host ports: one random host port each.
    assert [p["target"] for p in plain_ports("3000-3001")] == [3000, 3001]
    assert all("published" not in p for p in plain_ports("3000-3001"))


def test_ports_built_from_a_string_carry_its_mark_everywhere():
    for entry in parse_port("127.0.0.1:8080:80", M):
        assert isinstance(entry, MapNode)
        assert entry.mark == M
        assert set(entry.key_marks.values()) == {M}
        assert entry.mark_of("published") == M


def test_long_form_port_gets_defaults_and_string_published():
    tree = parse_compose(
        "services:\n  web:\n    ports:\n      - target: '80'\n        published: 8080\n", "c.yaml"
    )
    item = tree["services"]["web"]["ports"][0]
    (entry,) = parse_port(item, Mark("c.yaml", 4, 9))
    assert entry is item
    assert to_plain(entry) == {
        "target": 80,
        "published": "8080",
        "protocol": "tcp",
        "mode": "ingress",
    }
    assert entry.value_marks["published"] == Mark("c.yaml", 5, 20)


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("80/xyz", "invalid protocol 'xyz'"),
        ("notanip:80:80", "invalid host IP 'notanip'"),
        ("99999:80", "invalid host port '99999'"),
        ("8080:", "no container port"),
        ("a:b", "invalid container port 'b'"),
        ("8000-8001:9000-9005", "different sizes"),
        ("9-3", "end is before the start"),
    ],
)
def test_bad_ports_are_load_errors_at_the_given_mark(bad, needle):
    with pytest.raises(LoadError) as info:
        parse_port(bad, M, ("services", "web", "ports", 0))
    (problem,) = info.value.problems
    assert needle in problem.message
    assert problem.mark == M
    assert problem.path == ("services", "web", "ports", 0)


def test_a_port_of_the_wrong_type_is_a_load_error():
    with pytest.raises(LoadError):
        parse_port(True, M)
    with pytest.raises(LoadError):
        parse_port(["80"], M)


# --- volumes -------------------------------------------------------------------------------


def vol(value, project_dir="/proj"):
    return to_plain(parse_volume(value, M, project_dir))


def test_bind_mount_relative_to_the_project_directory():
    assert vol("./a:/b:ro") == {
        "type": "bind",
        "source": "/proj/a",
        "target": "/b",
        "read_only": True,
        "bind": {"create_host_path": True},
    }
    assert vol("../up/x:/y")["source"] == "/up/x"
    assert vol("/abs:/y/")["target"] == "/y"


def test_bind_mount_home_directory(monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")
    assert vol("~/cfg:/etc/cfg")["source"] == "/home/someone/cfg"


def test_named_and_anonymous_volumes():
    assert vol("data:/x:nocopy") == {
        "type": "volume",
        "source": "data",
        "target": "/x",
        "volume": {"nocopy": True},
    }
    assert vol("/x") == {"type": "volume", "target": "/x", "volume": {}}
    assert vol("data:/x:rw") == {"type": "volume", "source": "data", "target": "/x", "volume": {}}


def test_bind_options_selinux_and_propagation():
    assert vol("/a:/b:ro,z,rshared")["bind"] == {
        "create_host_path": True,
        "selinux": "z",
        "propagation": "rshared",
    }
    assert vol("/a:/b:Z")["bind"]["selinux"] == "Z"
    assert vol("/a:/b:cached")["consistency"] == "cached"


def test_volume_built_from_a_string_carries_its_mark():
    node = parse_volume("./a:/b:ro", M, "/proj")
    assert node.mark == M and node.mark_of("source") == M
    assert isinstance(node["bind"], MapNode) and node["bind"].mark_of("create_host_path") == M


def test_target_is_cleaned_like_go_path_clean():
    assert vol("data://x//y/../z/")["target"] == "/x/z"


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("a:b:c:d", "too many colons"),
        ("a::/b", "empty section"),
        ("data:relative", "must be absolute"),
        ("data:/x:rox", "unknown option 'rox'"),
        ("data:/x:rshared", "bind mounts only"),
        ("./a:/x:nocopy", "named volumes only"),
        ("", "empty volume"),
    ],
)
def test_bad_volumes_are_load_errors(bad, needle):
    with pytest.raises(LoadError) as info:
        parse_volume(bad, M, "/proj", ("services", "web", "volumes", 1))
    (problem,) = info.value.problems
    assert needle in problem.message
    assert problem.mark == M and problem.path == ("services", "web", "volumes", 1)


def test_long_form_volume_is_completed_in_place():
    tree = parse_compose(
        "services:\n  web:\n    volumes:\n"
        "      - type: bind\n        source: ./src\n        target: /app/\n"
        "        bind: {propagation: rslave}\n"
        "      - type: tmpfs\n        target: /tmp\n        tmpfs: {size: 64m, mode: 01777}\n",
        "c.yaml",
    )
    volumes = tree["services"]["web"]["volumes"]
    bind = parse_volume(volumes[0], volumes.mark_of(0), "/proj")
    assert bind is volumes[0]
    assert to_plain(bind) == {
        "type": "bind",
        "source": "/proj/src",
        "target": "/app",
        "bind": {"propagation": "rslave", "create_host_path": True},
    }
    assert bind.value_marks["source"] == Mark("c.yaml", 5, 17)
    tmpfs = parse_volume(volumes[1], volumes.mark_of(1), "/proj")
    assert to_plain(tmpfs)["tmpfs"] == {"size": 64 * 1024 * 1024, "mode": 0o1777}


def test_seqnode_marks_survive(tmp_path):
    tree = parse_compose(
        "services:\n  web:\n    ports:\n      - '8000-8001:80-81'\n      - 9000\n", "c.yaml"
    )
    from composer.loader.normalize import normalize

    normalize(tree, str(tmp_path))
    ports = tree["services"]["web"]["ports"]
    assert isinstance(ports, SeqNode) and len(ports) == 3
    assert locate(tree, ("services", "web", "ports", 1, "published")) == Mark("c.yaml", 4, 9)
    assert locate(tree, ("services", "web", "ports", 2, "target")) == Mark("c.yaml", 5, 9)
