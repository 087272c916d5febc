from __future__ import annotations

from composer.loader.merge import merge_all, merge_services
from composer.loader.nodes import MapNode, Mark, SeqNode, locate, locate_key, to_plain
from composer.loader.parse import parse_compose


def merged(*texts: str):
    trees = [parse_compose(text, f"f{i}.yaml") for i, text in enumerate(texts)]
    return merge_all(trees)


def web(tree):
    return to_plain(tree["services"]["web"])


def test_mappings_deep_merge_and_scalars_replace_with_the_winners_marks():
    tree = merged(
        "services:\n  web:\n    image: a\n    user: root\n",
        "services:\n  web:\n    image: b\n    tty: true\n",
    )
    assert web(tree) == {"image": "b", "user": "root", "tty": True}
    assert locate(tree, ("services", "web", "image")) == Mark("f1.yaml", 3, 12)
    assert locate_key(tree, ("services", "web", "image")) == Mark("f1.yaml", 3, 5)
    assert locate(tree, ("services", "web", "user")) == Mark("f0.yaml", 4, 11)
    assert locate(tree, ("services", "web", "tty")) == Mark("f1.yaml", 4, 10)
    # A mapping both files write keeps the first file's place; its entries keep their own.
    assert locate_key(tree, ("services", "web")) == Mark("f0.yaml", 2, 3)


def test_inputs_are_not_modified():
    first = parse_compose("services:\n  web:\n    environment: {A: '1'}\n", "a.yaml")
    second = parse_compose("services:\n  web:\n    environment: [B=2]\n", "b.yaml")
    merge_all([first, second])
    assert to_plain(first) == {"services": {"web": {"environment": {"A": "1"}}}}
    assert to_plain(second) == {"services": {"web": {"environment": ["B=2"]}}}


def test_shell_commands_replace_instead_of_appending():
    tree = merged(
        "services:\n  web:\n    command: [echo, foo]\n    entrypoint: [sh, -c]\n"
        "    healthcheck:\n      test: [CMD, a]\n      retries: 3\n",
        "services:\n  web:\n    command: [echo, bar]\n    entrypoint: /bin/x\n"
        "    healthcheck:\n      test: [CMD, b]\n",
    )
    service = web(tree)
    assert service["command"] == ["echo", "bar"]
    assert service["entrypoint"] == "/bin/x"
    assert service["healthcheck"] == {"test": ["CMD", "b"], "retries": 3}
    assert locate(tree, ("services", "web", "command", 0)) == Mark("f1.yaml", 3, 15)


def test_plain_sequences_append():
    tree = merged(
        "services:\n  web:\n    group_add: [a]\n", "services:\n  web:\n    group_add: [b, a]\n"
    )
    assert web(tree)["group_add"] == ["a", "b", "a"]


def test_environment_merges_by_name_across_list_and_mapping_syntax():
    tree = merged(
        "services:\n  web:\n    environment:\n      - A=1\n      - B=2\n      - C\n",
        "services:\n  web:\n    environment:\n      B: three\n      D: '4'\n",
    )
    assert web(tree)["environment"] == {"A": "1", "B": "three", "C": None, "D": "4"}
    env = ("services", "web", "environment")
    assert locate(tree, (*env, "A")) == Mark("f0.yaml", 4, 9)
    assert locate(tree, (*env, "B")) == Mark("f1.yaml", 4, 10)
    assert locate_key(tree, (*env, "D")) == Mark("f1.yaml", 5, 7)


def test_key_value_attributes_all_merge_as_mappings():
    tree = merged(
        "services:\n  web:\n    labels: [a=1, b=2]\n    sysctls: {net.x: 1}\n"
        "    annotations: [n=1]\n    build:\n      context: .\n      args: [V=1, W=1]\n",
        "services:\n  web:\n    labels: {b: '3'}\n    sysctls: [net.y=2]\n"
        "    annotations: [n=2]\n    build:\n      args: {W: '2'}\n",
    )
    service = web(tree)
    assert service["labels"] == {"a": "1", "b": "3"}
    assert service["sysctls"] == {"net.x": 1, "net.y": "2"}
    assert service["annotations"] == {"n": "2"}
    assert service["build"] == {"context": ".", "args": {"V": "1", "W": "2"}}


def test_extra_hosts_merge_by_host_name_with_either_separator():
    tree = merged(
        "services:\n  web:\n    extra_hosts: ['a=10.0.0.1', 'b:10.0.0.2', 'v6:::1']\n",
        "services:\n  web:\n    extra_hosts: {b: 10.0.0.9}\n",
    )
    assert web(tree)["extra_hosts"] == {"a": "10.0.0.1", "b": "10.0.0.9", "v6": "::1"}


def test_ports_merge_by_their_unique_key():
    tree = merged(
        "services:\n  web:\n    ports:\n      - '8080:80'\n      - '9090:90'\n",
        "services:\n  web:\n    ports:\n      - target: 80\n        published: '8080'\n"
        "      - '127.0.0.1:8080:80'\n      - '8080:80/udp'\n",
    )
    ports = web(tree)["ports"]
    assert ports == [
        {"target": 80, "published": "8080"},
        "9090:90",
        "127.0.0.1:8080:80",
        "8080:80/udp",
    ]
    # The replaced entry points at the later file, the kept one at the first.
    assert locate(tree, ("services", "web", "ports", 0)) == Mark("f1.yaml", 4, 9)
    assert locate(tree, ("services", "web", "ports", 1)) == Mark("f0.yaml", 5, 9)


def test_volumes_merge_by_target_in_either_syntax():
    tree = merged(
        "services:\n  web:\n    volumes:\n      - common:/data:rw\n      - ./src:/src\n",
        "services:\n  web:\n    volumes:\n      - cli:/data/:ro\n"
        "      - type: bind\n        source: ./other\n        target: /src\n      - /logs\n",
    )
    volumes = web(tree)["volumes"]
    assert volumes == [
        "cli:/data/:ro",
        {"type": "bind", "source": "./other", "target": "/src"},
        "/logs",
    ]
    assert locate(tree, ("services", "web", "volumes", 0)) == Mark("f1.yaml", 4, 9)


def test_secrets_and_configs_merge_by_their_target_in_the_container():
    tree = merged(
        "services:\n  web:\n    secrets: [db, api]\n    configs: [app]\n",
        "services:\n  web:\n    secrets:\n      - source: db\n        mode: 0400\n"
        "      - source: other\n        target: api\n    configs:\n"
        "      - source: app2\n        target: /app\n",
    )
    service = web(tree)
    assert service["secrets"] == [
        {"source": "db", "mode": 400},
        {"source": "other", "target": "api"},
    ]
    assert service["configs"] == [{"source": "app2", "target": "/app"}]


def test_unique_value_lists_drop_repeats_and_accept_a_single_string():
    tree = merged(
        "services:\n  web:\n    dns: 8.8.8.8\n    tmpfs: [/run]\n    cap_add: [NET_ADMIN]\n",
        "services:\n  web:\n    dns: [8.8.8.8, 1.1.1.1]\n    tmpfs: /tmp\n"
        "    cap_add: [NET_ADMIN, SYS_TIME]\n",
    )
    service = web(tree)
    assert service["dns"] == ["8.8.8.8", "1.1.1.1"]
    assert service["tmpfs"] == ["/run", "/tmp"]
    assert service["cap_add"] == ["NET_ADMIN", "SYS_TIME"]
    assert locate(tree, ("services", "web", "dns", 1)) == Mark("f1.yaml", 3, 20)


def test_env_files_append_once_each():
    tree = merged(
        "services:\n  web:\n    env_file: a.env\n",
        "services:\n  web:\n    env_file:\n      - b.env\n      - path: a.env\n"
        "        required: false\n",
    )
    assert web(tree)["env_file"] == [{"path": "a.env", "required": False}, "b.env"]


def test_service_networks_merge_across_list_and_mapping_syntax():
    tree = merged(
        "services:\n  web:\n    networks: [front, back]\n",
        "services:\n  web:\n    networks:\n      back:\n        aliases: [db]\n      admin:\n",
    )
    assert web(tree)["networks"] == {"front": None, "back": {"aliases": ["db"]}, "admin": None}
    assert locate_key(tree, ("services", "web", "networks", "front")) == Mark("f0.yaml", 3, 16)
    both_lists = merged(
        "services:\n  web:\n    networks: [front]\n",
        "services:\n  web:\n    networks: [front, back]\n",
    )
    assert web(both_lists)["networks"] == ["front", "back"]


def test_depends_on_short_and_long_syntax():
    tree = merged(
        "services:\n  web:\n    depends_on:\n      db:\n        condition: service_healthy\n",
        "services:\n  web:\n    depends_on: [db, cache]\n",
    )
    # Naming db again keeps its condition; a new name gets the short syntax's meaning.
    assert web(tree)["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "cache": {"condition": "service_started"},
    }
    assert locate(tree, ("services", "web", "depends_on", "cache")) == Mark("f1.yaml", 3, 22)
    tree = merged(
        "services:\n  web:\n    depends_on: [db]\n",
        "services:\n  web:\n    depends_on:\n      db: {required: false}\n",
    )
    assert web(tree)["depends_on"] == {"db": {"condition": "service_started", "required": False}}


def test_build_string_is_a_context():
    tree = merged(
        "services:\n  web:\n    build: ./app\n",
        "services:\n  web:\n    build:\n      dockerfile: Dev.Dockerfile\n",
    )
    assert web(tree)["build"] == {"context": "./app", "dockerfile": "Dev.Dockerfile"}
    tree = merged(
        "services:\n  web:\n    build: {context: ., target: x}\n",
        "services:\n  web:\n    build: ./other\n",
    )
    assert web(tree)["build"] == {"context": "./other", "target": "x"}


def test_logging_options_merge_only_for_the_same_driver():
    same = merged(
        "services:\n  web:\n    logging: {driver: json-file, options: {max-size: 1m}}\n",
        "services:\n  web:\n    logging: {options: {max-file: '3'}}\n",
    )
    assert web(same)["logging"] == {
        "driver": "json-file",
        "options": {"max-size": "1m", "max-file": "3"},
    }
    other = merged(
        "services:\n  web:\n    logging: {driver: json-file, options: {max-size: 1m}}\n",
        "services:\n  web:\n    logging: {driver: syslog}\n",
    )
    assert web(other)["logging"] == {"driver": "syslog"}


def test_reset_removes_the_earlier_value():
    tree = merged(
        "services:\n  web:\n    image: a\n    ports: ['80:80']\n    environment: {FOO: bar, K: v}\n",
        "services:\n  web:\n    ports: !reset []\n    environment:\n      FOO: !reset null\n",
    )
    assert web(tree) == {"image": "a", "environment": {"K": "v"}}


def test_reset_in_a_first_file_leaves_nothing_behind():
    tree = merged("services:\n  web:\n    image: a\n    ports: !reset ['1:1']\n")
    assert web(tree) == {"image": "a"}
    assert tree["services"]["web"].tags == {}


def test_override_replaces_instead_of_merging():
    tree = merged(
        "services:\n  web:\n    ports: ['8080:80']\n    environment: {A: '1'}\n",
        "services:\n  web:\n    ports: !override\n      - '8443:443'\n"
        "    environment: !override {B: '2'}\n",
    )
    assert web(tree)["ports"] == ["8443:443"]
    assert web(tree)["environment"] == {"B": "2"}
    assert locate(tree, ("services", "web", "ports", 0)) == Mark("f1.yaml", 4, 9)


def test_a_later_null_keeps_the_earlier_value():
    tree = merged("services:\n  web:\n    image: a\n", "services:\n  web:\n    image:\n")
    assert web(tree) == {"image": "a"}
    assert locate(tree, ("services", "web", "image")) == Mark("f0.yaml", 3, 12)


def test_top_level_resources_and_extensions_merge():
    tree = merged(
        "networks:\n  front:\n    labels: [a=1]\n    ipam:\n      config:\n"
        "        - subnet: 10.1.0.0/16\n          gateway: 10.1.0.1\n"
        "volumes:\n  data: {}\nx-common: {a: 1}\nname: one\n",
        "networks:\n  front:\n    labels: {b: '2'}\n    ipam:\n      config:\n"
        "        - subnet: 10.1.0.0/16\n        - subnet: 10.2.0.0/16\n"
        "volumes:\n  data: {driver: local}\nx-common: {b: 2}\nname: two\n",
    )
    plain = to_plain(tree)
    assert plain["networks"]["front"]["labels"] == {"a": "1", "b": "2"}
    assert plain["networks"]["front"]["ipam"]["config"] == [
        {"subnet": "10.1.0.0/16"},
        {"subnet": "10.2.0.0/16"},
    ]
    assert plain["volumes"] == {"data": {"driver": "local"}}
    assert plain["x-common"] == {"a": 1, "b": 2}
    assert plain["name"] == "two" and locate(tree, ("name",)) == Mark("f1.yaml", 11, 7)


def test_merge_services_keeps_a_reset_for_later_files():
    base = parse_compose("services:\n  b:\n    image: x\n    ports: ['1:1']\n", "base.yaml")
    local = parse_compose("services:\n  w:\n    ports: !reset []\n    user: u\n", "local.yaml")
    service = merge_services(base["services"]["b"], local["services"]["w"], ("services", "w"))
    assert to_plain(service) == {"image": "x", "user": "u"}
    assert service.tags == {"ports": "reset"}
    first = MapNode({"services": MapNode({"w": MapNode({"ports": SeqNode(["2:2"])})})})
    second = MapNode({"services": MapNode({"w": service})})
    assert to_plain(merge_all([first, second])) == {"services": {"w": {"image": "x", "user": "u"}}}


def test_a_reset_item_in_a_later_list_is_dropped():
    tree = merged(
        "services:\n  web:\n    group_add: [a]\n",
        "services:\n  web:\n    group_add: [b, !reset c]\n",
    )
    assert web(tree)["group_add"] == ["a", "b"]


def test_merge_all_of_one_file_is_a_copy_of_it():
    tree = parse_compose("services:\n  web:\n    image: a\n    env_file: !override x\n", "c.yaml")
    result = merge_all([tree])
    assert to_plain(result) == to_plain(tree)
    assert result["services"]["web"] is not tree["services"]["web"]
    assert result["services"]["web"].tags == {}
    assert locate(result, ("services", "web", "image")) == Mark("c.yaml", 3, 12)
