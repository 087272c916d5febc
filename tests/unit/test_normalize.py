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


# --- the whole pass ------------------------------------------------------------------------


class FakeEnv:
    """The project environment as normalize sees it (Environment.lookup)."""

    def __init__(self, **values):
        self.values = values

    def lookup(self, name):
        return self.values.get(name)


def normalized(text, project_dir="/proj", env=None):
    from composer.loader.normalize import normalize

    tree = parse_compose(text, "c.yaml")
    normalize(tree, project_dir, env or FakeEnv())
    return tree


def problems_of(text, project_dir="/proj"):
    with pytest.raises(LoadError) as info:
        normalized(text, project_dir)
    return info.value.problems


def web(text, **kwargs):
    return normalized("services:\n  web:\n" + text, **kwargs)["services"]["web"]


def test_environment_list_becomes_a_mapping_and_bare_names_resolve_from_env():
    service = web(
        "    environment: ['A=1', 'B', 'C=', 'D=x=y', SHELL_ONLY]\n",
        env=FakeEnv(SHELL_ONLY="from-shell"),
    )
    assert to_plain(service["environment"]) == {
        "A": "1",
        "B": None,
        "C": "",
        "D": "x=y",
        "SHELL_ONLY": "from-shell",
    }
    env = service["environment"]
    assert isinstance(env, MapNode)
    assert env.key_marks["B"] == Mark("c.yaml", 3, 26) and env.value_marks["B"] == Mark(
        "c.yaml", 3, 26
    )


def test_environment_mapping_values_become_text_as_docker_compose_passes_them():
    service = web(
        "    environment:\n      N: 1\n      T: true\n      F: 1.5\n      Z: 0755\n      U:\n",
        env=FakeEnv(U="set"),
    )
    assert to_plain(service["environment"]) == {
        "N": "1",
        "T": "true",
        "F": "1.5",
        "Z": "0755",
        "U": "set",
    }


def test_environment_name_with_trailing_space_is_an_error():
    (problem,) = problems_of("services:\n  web:\n    environment: ['A =1']\n")
    assert "trailing space" in problem.message
    assert problem.mark == Mark("c.yaml", 3, 19)
    assert problem.path == ("services", "web", "environment", "A ")


def test_labels_annotations_sysctls_lists_become_mappings():
    service = web(
        "    labels: [a=b, c]\n    annotations: [x=1]\n"
        "    sysctls: [net.core.somaxconn=1024]\n    deploy: {}\n"
    )
    assert to_plain(service["labels"]) == {"a": "b", "c": ""}
    assert to_plain(service["annotations"]) == {"x": "1"}
    assert to_plain(service["sysctls"]) == {"net.core.somaxconn": "1024"}
    assert service["labels"].key_marks["c"] == Mark("c.yaml", 3, 19)


def test_extra_hosts_all_forms():
    service = web(
        "    extra_hosts:\n"
        "      - h1:10.0.0.1\n      - h2=::1\n      - h3=[::2]\n      - h4:::3\n"
        "      - h1=10.0.0.2,10.0.0.3\n"
    )
    assert to_plain(service["extra_hosts"]) == {
        "h1": ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
        "h2": ["::1"],
        "h3": ["::2"],
        "h4": ["::3"],
    }
    assert service["extra_hosts"].key_marks["h3"] == Mark("c.yaml", 6, 9)
    mapping = web("    extra_hosts: {a: 1.2.3.4, b: ['::1', '[::2]']}\n")
    assert to_plain(mapping["extra_hosts"]) == {"a": ["1.2.3.4"], "b": ["::1", "::2"]}


def test_extra_host_without_ip_is_an_error():
    (problem,) = problems_of("services:\n  web:\n    extra_hosts: [justhost]\n")
    assert "no IP address" in problem.message
    assert problem.mark == Mark("c.yaml", 3, 19)
    assert problem.path == ("services", "web", "extra_hosts", 0)


def test_depends_on_list_and_mapping_become_long_form():
    tree = normalized(
        "services:\n  web:\n    depends_on: [db]\n"
        "  api:\n    depends_on:\n      db: {condition: service_healthy}\n  db: {}\n"
    )
    assert to_plain(tree["services"]["web"]["depends_on"]) == {
        "db": {"condition": "service_started", "required": True, "restart": False}
    }
    assert to_plain(tree["services"]["api"]["depends_on"]) == {
        "db": {"condition": "service_healthy", "required": True, "restart": False}
    }
    deps = tree["services"]["web"]["depends_on"]
    assert deps.key_marks["db"] == Mark("c.yaml", 3, 18)
    assert deps["db"].mark_of("condition") == Mark("c.yaml", 3, 18)
    assert tree["services"]["api"]["depends_on"].key_marks["db"] == Mark("c.yaml", 6, 7)


def test_namespace_links_and_volumes_from_are_implicit_dependencies():
    tree = normalized(
        "services:\n  web:\n    network_mode: service:net\n    ipc: 'service:shm'\n"
        "    pid: host\n    links: ['cache:c']\n"
        "    volumes_from: [data, 'service:more:ro', 'container:abc']\n"
    )
    deps = tree["services"]["web"]["depends_on"]
    assert list(deps) == ["cache", "net", "shm", "data", "more"]
    assert deps["net"]["restart"] is True and deps["data"]["restart"] is False
    # Each implicit dependency points at the field that implies it.
    assert deps.key_marks["net"] == Mark("c.yaml", 3, 19)
    assert deps.key_marks["shm"] == Mark("c.yaml", 4, 10)
    assert deps.key_marks["more"] == Mark("c.yaml", 7, 26)
    assert locate(tree, ("services", "web", "depends_on", "cache", "condition")) == Mark(
        "c.yaml", 6, 13
    )


def test_explicit_dependency_wins_over_an_implicit_one():
    deps = web("    depends_on: {db: {condition: service_healthy}}\n    links: [db]\n")[
        "depends_on"
    ]
    assert to_plain(deps) == {
        "db": {"condition": "service_healthy", "required": True, "restart": False}
    }


def test_build_string_and_mapping():
    service = web("    build: ./app\n")
    assert to_plain(service["build"]) == {"context": "/proj/app", "dockerfile": "Dockerfile"}
    assert service["build"].mark_of("context") == Mark("c.yaml", 3, 12)
    service = web(
        "    build:\n      dockerfile_inline: FROM x\n      args: [A=1, FROMENV, UNSET]\n"
        "      labels: [l=v]\n      shm_size: 1g\n",
        env=FakeEnv(FROMENV="e"),
    )
    assert to_plain(service["build"]) == {
        "dockerfile_inline": "FROM x",
        "args": {"A": "1", "FROMENV": "e"},
        "labels": {"l": "v"},
        "shm_size": 1024**3,
        "context": "/proj",
    }
    remote = web("    build: https://example.invalid/repo.git#main\n")
    assert remote["build"]["context"] == "https://example.invalid/repo.git#main"


def test_command_string_is_split_into_words():
    service = web("    command: sh -c 'echo \"hi there\"'\n    entrypoint: [a, b]\n")
    assert list(service["command"]) == ["sh", "-c", 'echo "hi there"']
    assert list(service["entrypoint"]) == ["a", "b"]
    (problem,) = problems_of("services:\n  web:\n    command: echo 'open\n")
    assert problem.mark == Mark("c.yaml", 3, 14) and "split" in problem.message


def test_healthcheck_forms():
    check = web(
        "    healthcheck:\n      test: curl -f http://localhost\n      interval: 1m30s\n"
        "      timeout: 500ms\n      start_period: 1h\n      start_interval: 2s\n"
    )["healthcheck"]
    assert to_plain(check) == {
        "test": ["CMD-SHELL", "curl -f http://localhost"],
        "interval": "1m30s",
        "timeout": "500ms",
        "start_period": "1h0m0s",
        "start_interval": "2s",
    }
    assert check.mark_of("test") == Mark("c.yaml", 4, 13)
    none = web("    healthcheck: {test: [NONE]}\n")["healthcheck"]
    assert none["disable"] is True
    disabled = web("    healthcheck: {disable: true}\n")["healthcheck"]
    assert to_plain(disabled) == {"disable": True}


def test_durations_and_sizes_everywhere():
    service = web(
        "    stop_grace_period: 90s\n    mem_limit: 512m\n    memswap_limit: -1\n"
        "    shm_size: 1024k\n    mem_reservation: 100\n"
        "    deploy:\n      restart_policy: {delay: 5s, window: 2m}\n"
        "      update_config: {delay: 1s, monitor: 1500ms}\n"
        "      resources: {limits: {memory: 1g}, reservations: {memory: 1.5GiB}}\n"
        "    blkio_config: {device_read_bps: [{path: /dev/sda, rate: 1mb}]}\n"
    )
    assert service["stop_grace_period"] == "1m30s"
    assert service["mem_limit"] == 512 * 1024**2
    assert service["memswap_limit"] == -1
    assert service["shm_size"] == 1024**2
    assert service["mem_reservation"] == 100
    deploy = service["deploy"]
    assert to_plain(deploy["restart_policy"]) == {"delay": "5s", "window": "2m0s"}
    assert to_plain(deploy["update_config"]) == {"delay": "1s", "monitor": "1.5s"}
    assert deploy["resources"]["limits"]["memory"] == 1024**3
    assert deploy["resources"]["reservations"]["memory"] == int(1.5 * 1024**3)
    assert service["blkio_config"]["device_read_bps"][0]["rate"] == 1024**2


def test_bad_duration_and_size_are_reported_together_with_locations():
    problems = problems_of(
        "services:\n  web:\n    stop_grace_period: 10\n    mem_limit: lots\n"
        "    healthcheck: {interval: 5 minutes}\n"
    )
    assert [(p.path, p.mark) for p in problems] == [
        (("services", "web", "stop_grace_period"), Mark("c.yaml", 3, 24)),
        (("services", "web", "mem_limit"), Mark("c.yaml", 4, 16)),
        (("services", "web", "healthcheck", "interval"), Mark("c.yaml", 5, 29)),
    ]
    assert "no unit" in problems[0].message
    assert all(p.hint for p in problems)


def test_ulimits_short_form():
    service = web("    ulimits:\n      nofile: 1024\n      nproc: {soft: 10, hard: 20}\n")
    assert to_plain(service["ulimits"]) == {
        "nofile": {"soft": 1024, "hard": 1024},
        "nproc": {"soft": 10, "hard": 20},
    }
    assert service["ulimits"]["nofile"].mark_of("hard") == Mark("c.yaml", 4, 15)


def test_env_file_forms(tmp_path):
    one = web("    env_file: ./a.env\n", project_dir=str(tmp_path))
    assert to_plain(one["env_file"]) == [{"path": str(tmp_path / "a.env"), "required": True}]
    assert one["env_file"][0].mark_of("path") == Mark("c.yaml", 3, 15)
    many = web(
        "    env_file:\n      - a.env\n      - path: /abs/b.env\n        required: false\n"
        "      - {path: c.env, format: raw}\n",
        project_dir=str(tmp_path),
    )
    assert to_plain(many["env_file"]) == [
        {"path": str(tmp_path / "a.env"), "required": True},
        {"path": "/abs/b.env", "required": False},
        {"path": str(tmp_path / "c.env"), "format": "raw", "required": True},
    ]


def test_service_secrets_and_configs_short_and_long():
    service = web(
        "    secrets:\n      - s1\n      - {source: s2, target: custom, mode: 0440}\n"
        "      - {source: s3, target: /etc/s3, uid: 100, mode: 288}\n"
        "    configs:\n      - c1\n      - {source: c2, target: /etc/c2, mode: '0644'}\n"
    )
    assert to_plain(service["secrets"]) == [
        {"source": "s1", "target": "/run/secrets/s1"},
        {"source": "s2", "target": "/run/secrets/custom", "mode": 0o440},
        {"source": "s3", "target": "/etc/s3", "uid": "100", "mode": 288},
    ]
    assert to_plain(service["configs"]) == [
        {"source": "c1", "target": "/c1"},
        {"source": "c2", "target": "/etc/c2", "mode": 0o644},
    ]
    assert service["secrets"][0].mark_of("target") == Mark("c.yaml", 4, 9)


def test_bad_file_mode_is_an_error():
    (problem,) = problems_of("services:\n  web:\n    secrets: [{source: s, mode: rwx}]\n")
    assert problem.path == ("services", "web", "secrets", 0, "mode")
    assert problem.mark == Mark("c.yaml", 3, 33)


def test_top_level_resources(tmp_path):
    tree = normalized(
        "services: {}\n"
        "secrets:\n  s1: {file: ./s.txt}\n  s2: {environment: TOKEN}\n"
        "configs:\n  c1: {content: hi}\n  c2: {file: /etc/hosts}\n"
        "networks:\n  plain:\n  legacy: {external: {name: oldnet}}\n"
        "volumes:\n  data:\n  tagged: {labels: [a=b]}\n",
        project_dir=str(tmp_path),
    )
    assert tree["secrets"]["s1"]["file"] == str(tmp_path / "s.txt")
    assert to_plain(tree["secrets"]["s2"]) == {"environment": "TOKEN"}
    assert to_plain(tree["configs"]["c2"]) == {"file": "/etc/hosts"}
    assert isinstance(tree["networks"]["plain"], MapNode)
    assert tree["networks"]["plain"].mark == Mark("c.yaml", 9, 9)
    assert to_plain(tree["networks"]["legacy"]) == {"external": True, "name": "oldnet"}
    assert to_plain(tree["volumes"]) == {"data": {}, "tagged": {"labels": {"a": "b"}}}


def test_service_networks_list_and_implicit_default():
    tree = normalized(
        "services:\n  a:\n    networks: [front, back]\n  b:\n    image: x\n"
        "  c:\n    network_mode: host\n  d:\n    networks: {default: {}, front: }\n"
        "networks:\n  front:\n  back:\n"
    )
    services = tree["services"]
    assert to_plain(services["a"]["networks"]) == {"front": None, "back": None}
    assert services["a"]["networks"].key_marks["back"] == Mark("c.yaml", 3, 23)
    assert to_plain(services["b"]["networks"]) == {"default": None}
    assert services["b"]["networks"].key_marks["default"] == Mark("c.yaml", 5, 5)
    assert "networks" not in services["c"]
    assert list(tree["networks"]) == ["front", "back", "default"]


def test_no_default_network_when_nobody_uses_it():
    tree = normalized("services:\n  a:\n    networks: [front]\nnetworks:\n  front: {}\n")
    assert list(tree["networks"]) == ["front"]


def test_small_string_or_list_fields_and_devices_and_expose():
    service = web(
        "    dns: 8.8.8.8\n    tmpfs: /run\n    expose: [80, '90']\n"
        "    devices: ['/dev/fuse', '/dev/a:/dev/b:r', {source: /x, target: /y}]\n"
        "    pull_policy: if_not_present\n"
        "    develop: {watch: [{path: ., action: sync, target: /a, ignore: node_modules}]}\n"
    )
    assert list(service["dns"]) == ["8.8.8.8"] and list(service["tmpfs"]) == ["/run"]
    assert list(service["expose"]) == ["80", "90"]
    assert to_plain(service["devices"]) == [
        {"source": "/dev/fuse", "target": "/dev/fuse", "permissions": "rwm"},
        {"source": "/dev/a", "target": "/dev/b", "permissions": "r"},
        {"source": "/x", "target": "/y"},
    ]
    assert service["pull_policy"] == "missing"
    assert list(service["develop"]["watch"][0]["ignore"]) == ["node_modules"]


def test_every_problem_of_the_pass_is_reported_at_once():
    problems = problems_of(
        "services:\n  web:\n    ports: ['80/xyz', '8080:80', 'a:b']\n"
        "    volumes: ['data:/x:bogus']\n  db:\n    extra_hosts: [nohost]\n"
    )
    assert [p.path for p in problems] == [
        ("services", "web", "ports", 0),
        ("services", "web", "ports", 2),
        ("services", "web", "volumes", 0),
        ("services", "db", "extra_hosts", 0),
    ]
    assert [p.mark for p in problems] == [
        Mark("c.yaml", 3, 13),
        Mark("c.yaml", 3, 34),
        Mark("c.yaml", 4, 15),
        Mark("c.yaml", 6, 19),
    ]


# --- scalar helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds", "canonical"),
    [
        ("1m30s", 90.0, "1m30s"),
        ("500ms", 0.5, "500ms"),
        ("1h", 3600.0, "1h0m0s"),
        ("1.5s", 1.5, "1.5s"),
        ("90s", 90.0, "1m30s"),
        ("2h45m", 9900.0, "2h45m0s"),
        ("10us", 0.00001, "10µs"),
        ("1d", 86400.0, "24h0m0s"),
        ("0", 0.0, "0s"),
        (0, 0.0, "0s"),
        ("-5s", -5.0, "-5s"),
        ("100ns", 1e-7, "100ns"),
    ],
)
def test_durations(text, seconds, canonical):
    from composer.loader.normalize import canonical_duration, parse_duration

    assert parse_duration(text) == pytest.approx(seconds)
    assert canonical_duration(text) == canonical


@pytest.mark.parametrize("bad", ["10", 10, "", "1x", "s", "1m30", True, None])
def test_bad_durations(bad):
    from composer.loader.normalize import parse_duration

    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512m", 512 * 1024**2),
        ("1g", 1024**3),
        ("1024k", 1024**2),
        ("1GB", 1024**3),
        ("1.5g", int(1.5 * 1024**3)),
        ("100", 100),
        ("100b", 100),
        ("2 MiB", 2 * 1024**2),
        (4096, 4096),
        ("-1", -1),
    ],
)
def test_byte_sizes(text, size):
    from composer.loader.normalize import parse_bytes

    assert parse_bytes(text) == size


@pytest.mark.parametrize("bad", ["lots", "1x", "", "1.5.5g", True, [1]])
def test_bad_byte_sizes(bad):
    from composer.loader.normalize import parse_bytes

    with pytest.raises(ValueError):
        parse_bytes(bad)


KITCHEN_SINK = """\
services:
  web:
    build: {context: ./app, args: [A=1]}
    command: run --fast
    ports: ['127.0.0.1:8000-8001:80-81/udp', {target: 9000, published: 9000}]
    volumes: ['./src:/src:ro,z', 'data:/data:nocopy', '/anon']
    environment: [A=1, B]
    env_file: [.env]
    labels: [a=b]
    extra_hosts: ['h:1.2.3.4']
    depends_on: [db]
    links: [db]
    healthcheck: {test: 'true', interval: 90s}
    stop_grace_period: 1h
    mem_limit: 1g
    ulimits: {nofile: 10}
    secrets: [s]
    configs: [{source: c, mode: 0644}]
    networks: [n]
    devices: ['/dev/null']
    tmpfs: /run
  db:
    image: redis
    volumes_from: [web]
networks: {n: }
volumes: {data: }
secrets: {s: {file: ./s}}
configs: {c: {content: x}}
"""


def test_normalize_is_idempotent():
    from composer.loader.normalize import normalize

    tree = normalized(KITCHEN_SINK)
    once = to_plain(tree)
    normalize(tree, "/proj", FakeEnv())
    assert to_plain(tree) == once


def test_gpus_and_models():
    service = web("    gpus: all\n    models: [llm]\n")
    assert to_plain(service["gpus"]) == [{"count": "all"}]
    assert to_plain(service["models"]) == {"llm": None}
    assert service["models"].key_marks["llm"] == Mark("c.yaml", 4, 14)
    listed = web("    gpus: [{driver: nvidia}, {device_ids: ['0']}]\n")
    assert to_plain(listed["gpus"]) == [
        {"driver": "nvidia", "count": "all"},
        {"device_ids": ["0"]},
    ]


def test_variables_left_by_no_interpolate_stay_as_written():
    service = web(
        "    ports: ['${PORT}:80', {target: '${T}'}]\n    volumes: ['${SRC}:/x']\n"
        "    mem_limit: ${MEM}\n    stop_grace_period: $GRACE\n"
        "    secrets: [{source: s, mode: '${MODE}'}]\n"
    )
    assert to_plain(service["ports"]) == [
        "${PORT}:80",
        {"target": "${T}", "protocol": "tcp", "mode": "ingress"},
    ]
    assert list(service["volumes"]) == ["${SRC}:/x"]
    assert service["mem_limit"] == "${MEM}" and service["stop_grace_period"] == "$GRACE"
    assert service["secrets"][0]["mode"] == "${MODE}"
