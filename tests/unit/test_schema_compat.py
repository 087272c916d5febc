"""Our schema against the official Compose Specification schemas, and our two validators
against each other.

- Files the official schema accepts, ours accepts (a corpus covering many features).
- Files the official schema rejects for unknown keys or wrong types, ours rejects.
- Where we are deliberately stricter (the two unanchored patterns), the difference is pinned.
- fastjsonschema's generated code and jsonschema agree on valid/invalid for the corpus and
  for thousands of broken variants made by mutating it.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from composer.loader import validate as validate_module
from composer.loader.nodes import to_plain
from composer.loader.parse import parse_compose

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path("/work/shared/reference")
SPEC = REFERENCE / "compose-spec.json"  # draft-07, the Compose Specification's copy
COMPOSE_GO = REFERENCE / "compose-spec.compose-go.json"  # draft 2020-12, what docker enforces


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def official():
    # The file says "https://json-schema.org/draft-07/schema", a URI python-jsonschema does
    # not map to a draft, so name the draft explicitly.
    return jsonschema.Draft7Validator(_load(SPEC))


@pytest.fixture(scope="module")
def compose_go():
    return jsonschema.Draft202012Validator(_load(COMPOSE_GO))


@pytest.fixture(scope="module")
def ours():
    return jsonschema.Draft7Validator(validate_module.load_schema())


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    with open(validate_module.SCHEMA_PATH, "rb") as fh:
        schema_bytes = fh.read()
    return validate_module.load_fast_validator(schema_bytes, str(tmp_path_factory.mktemp("c")))


# Valid under both official schemas. Each exercises a part of the format.
VALID = {
    "minimal": "services:\n  web:\n    image: nginx\n",
    "obsolete version and name": "version: '3.8'\nname: app\nservices:\n  a: {image: a}\n",
    "build": """\
services:
  string_form: {build: ./dir}
  long_form:
    build:
      context: .
      dockerfile: Dockerfile.dev
      dockerfile_inline: "FROM busybox"
      args: [A=1, B]
      ssh: [default]
      labels: {a: b}
      cache_from: [type=local,src=/tmp]
      cache_to: [type=inline]
      additional_contexts: {base: ../base}
      network: host
      target: dev
      shm_size: 2g
      extra_hosts: ["a:1.2.3.4"]
      isolation: default
      privileged: true
      secrets: [token, {source: key, target: k, mode: 0400}]
      tags: [x:1]
      ulimits: {nofile: 10}
      platforms: [linux/amd64]
      no_cache: false
      pull: true
      provenance: mode=max
      sbom: true
      entitlements: [network.host]
      x-hint: yes
""",
    "ports and expose": """\
services:
  web:
    image: a
    ports:
      - 80
      - "8080:80"
      - "127.0.0.1:8081:81/udp"
      - "[::1]:8082:82"
      - "9000-9005:9000-9005"
      - target: 443
        published: "8443"
        host_ip: 0.0.0.0
        protocol: tcp
        mode: host
        name: https
        app_protocol: https
        x-note: a
    expose: ["3000", 3001]
""",
    "volumes": """\
services:
  web:
    image: a
    volumes:
      - data:/data
      - ./src:/src:ro
      - /anonymous
      - type: bind
        source: ./conf
        target: /etc/conf
        read_only: true
        bind: {propagation: rshared, create_host_path: true, selinux: z, recursive: readonly}
      - type: volume
        source: data
        target: /more
        volume: {nocopy: true, subpath: sub, labels: {a: b}}
      - type: tmpfs
        target: /tmp
        tmpfs: {size: 1000, mode: 1777}
      - type: image
        source: busybox
        target: /img
        image: {subpath: bin}
    volumes_from: [other, "other:ro", "container:c1"]
    tmpfs: [/run, /var/run]
  other: {image: b}
volumes:
  data:
  named: {name: real-name, driver: local, driver_opts: {type: nfs, o: "addr=1.2.3.4"}}
  outside: {external: true}
  labelled: {labels: [a=b]}
""",
    "environment and labels": """\
services:
  web:
    image: a
    environment: {A: "1", B: 2, C: true, D: null, E: 1.5}
    env_file:
      - .env
      - path: ./extra.env
        required: false
        format: raw
    labels: [com.example=1]
    label_file: ./labels
    annotations: {a: b}
    sysctls: {net.core.somaxconn: 1024}
  other:
    image: b
    env_file: ./single.env
    environment: [A=1]
    label_file: [a, b]
""",
    "dependencies": """\
services:
  web:
    image: a
    depends_on:
      db: {condition: service_healthy, restart: true}
      cache: {condition: service_started, required: false}
      init: {condition: service_completed_successfully}
    links: [db, "db:database"]
    external_links: [redis_1]
  db: {image: db, healthcheck: {test: [CMD-SHELL, pg_isready], interval: 5s, timeout: 1s,
       retries: 3, start_period: 10s, start_interval: 1s}}
  cache: {image: redis, depends_on: [db]}
  init: {image: init, healthcheck: {disable: true}}
""",
    "deploy": """\
services:
  web:
    image: a
    deploy:
      mode: replicated
      replicas: 3
      endpoint_mode: vip
      labels: {a: b}
      placement:
        constraints: [node.role==manager]
        preferences: [{spread: node.labels.zone}]
        max_replicas_per_node: 1
      resources:
        limits: {cpus: "0.50", memory: 50M, pids: 100}
        reservations:
          cpus: 0.25
          memory: 20M
          devices: [{capabilities: [gpu], driver: nvidia, count: 1, device_ids: ["0"],
                     options: {a: b}}]
          generic_resources: [{discrete_resource_spec: {kind: ssd, value: 2}}]
      restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3, window: 120s}
      update_config: {parallelism: 2, delay: 10s, order: stop-first, failure_action: pause,
                      monitor: 5s, max_failure_ratio: 0.1}
      rollback_config: {parallelism: 0, order: start-first}
  bare: {image: b, deploy: null}
""",
    "develop and hooks": """\
services:
  web:
    image: a
    develop:
      watch:
        - {path: ./src, action: sync, target: /app/src, ignore: [node_modules/], initial_sync: true}
        - {path: package.json, action: rebuild}
        - {path: ./conf, action: sync+exec, target: /conf, exec: {command: reload}}
        - {path: ./x, action: sync+restart, target: /x, include: "*.py"}
    post_start:
      - command: ["/bin/sh", "-c", "echo started"]
        user: root
        privileged: true
        working_dir: /
        environment: {A: b}
    pre_stop:
      - command: echo stopping
""",
    "networks": """\
services:
  web:
    image: a
    networks:
      front:
        aliases: [site]
        ipv4_address: 172.16.238.10
        ipv6_address: 2001:3984:3989::10
        link_local_ips: [169.254.1.1]
        mac_address: 02:42:ac:11:65:43
        interface_name: eth1
        driver_opts: {a: b}
        priority: 1000
        gw_priority: 1
      back:
  other: {image: b, networks: [front], network_mode: bridge}
networks:
  front:
    driver: bridge
    driver_opts: {com.docker.network.bridge.name: br0, mtu: 1400}
    attachable: true
    enable_ipv6: true
    enable_ipv4: true
    internal: false
    labels: {a: b}
    name: real-front
    ipam:
      driver: default
      config:
        - subnet: 172.16.238.0/24
          ip_range: 172.16.238.0/25
          gateway: 172.16.238.1
          aux_addresses: {host1: 172.16.238.5}
      options: {foo: bar}
  back: {}
  outside: {external: true, name: shared}
""",
    "secrets, configs and models": """\
services:
  web:
    image: a
    secrets: [token, {source: key, target: /run/key, uid: "103", gid: "103", mode: 0440}]
    configs: [nginx, {source: other, target: /etc/other}]
    models: [llm]
  ai:
    image: b
    models:
      llm: {endpoint_var: AI_URL, model_var: AI_MODEL}
secrets:
  token: {file: ./token.txt}
  key: {environment: KEY}
  ext: {external: true}
configs:
  nginx: {file: ./nginx.conf}
  other: {content: "hello ${NAME}"}
  envcfg: {environment: CFG, template_driver: golang}
models:
  llm: {model: ai/smollm2, context_size: 1024, runtime_flags: [--verbose]}
""",
    "runtime options": """\
services:
  web:
    image: a
    command: ["run", "--fast"]
    entrypoint: /entry.sh
    working_dir: /app
    user: "1000:1000"
    hostname: web
    domainname: example.com
    init: true
    tty: true
    stdin_open: true
    privileged: false
    read_only: true
    restart: always
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    cgroup: private
    cgroup_parent: /parent
    cpus: 1.5
    cpu_shares: 512
    cpu_quota: 50000
    cpu_period: 100000
    cpu_rt_runtime: 400ms
    cpu_rt_period: 1400us
    cpuset: "0-1"
    cpu_count: 2
    cpu_percent: 50
    mem_limit: 1g
    mem_reservation: 512m
    mem_swappiness: 60
    memswap_limit: 2g
    oom_kill_disable: true
    oom_score_adj: -500
    pids_limit: 100
    shm_size: 64m
    dns: 8.8.8.8
    dns_opt: [use-vc]
    dns_search: [example.com]
    extra_hosts: {somehost: 162.242.195.82, multi: ["1.2.3.4", "::1"]}
    group_add: [mail, 1001]
    ipc: shareable
    pid: host
    uts: host
    userns_mode: host
    isolation: default
    security_opt: [no-new-privileges:true]
    ulimits: {nproc: 65535, nofile: {soft: 20000, hard: 40000}}
    devices: ["/dev/ttyUSB0:/dev/ttyUSB0", {source: /dev/sda, target: /dev/xvda, permissions: rwm}]
    device_cgroup_rules: ["c 1:3 mr"]
    blkio_config:
      weight: 300
      weight_device: [{path: /dev/sda, weight: 400}]
      device_read_bps: [{path: /dev/sdb, rate: "12mb"}]
      device_write_iops: [{path: /dev/sdb, rate: 30}]
    logging: {driver: json-file, options: {max-size: 10m, max-file: 3}}
    platform: linux/amd64
    pull_policy: missing
    runtime: runc
    scale: 1
    storage_opt: {size: 1G}
    container_name: my-web
    mac_address: 02:42:ac:11:65:43
    credential_spec: {config: my_credential_spec}
    gpus: [{driver: nvidia, count: 2, capabilities: [gpu]}]
    attach: false
    use_api_socket: true
    annotations: [a=b]
  provided:
    provider: {type: awesomecloud, options: {type: mysql, size: 256, tags: [a, 1, true]}}
  extended:
    extends: {service: web, file: base.yaml}
  extended_short:
    extends: web
""",
    "include and extensions": """\
include:
  - ./common.yaml
  - path: [./a.yaml, ./a.override.yaml]
    project_directory: ./a
    env_file: [./a.env]
  - path: ./b.yaml
    env_file: ./b.env
x-defaults: &defaults {restart: always}
x-list: [1, 2]
services:
  web:
    <<: *defaults
    image: a
    x-meta: {team: web}
    logging: {driver: local, x-tuned: true}
    healthcheck: {test: "curl -f http://localhost", x-h: 1}
""",
    "interpolation left as written": """\
services:
  web:
    image: "${IMAGE:-nginx}"
    cpus: "${CPUS}"
    read_only: "${RO:-false}"
    scale: "${SCALE}"
    ports: [{target: "${T}", published: "${P}"}]
    deploy: {replicas: "${N}", resources: {limits: {cpus: "${C}", pids: "${P}"}}}
    healthcheck: {retries: "${R}", disable: "${D}"}
    ulimits: {nofile: "${NOFILE}"}
    oom_score_adj: "${OOM}"
""",
}

# Valid under compose-go's copy (what docker compose enforces), not yet in the spec's.
VALID_COMPOSE_GO_ONLY = {
    "pre_start": """\
services:
  web:
    image: a
    pre_start:
      - {image: busybox, command: [migrate], environment: {A: b}, user: root,
         working_dir: /, privileged: false, per_replica: true}
      - {command: echo ready}
""",
    "no_cache_filter": "services:\n  web:\n    build: {context: ., no_cache_filter: [base]}\n",
    "null model options": "services:\n  web:\n    image: a\n    models:\n      llm:\n"
    "models:\n  llm: {model: ai/x}\n",
}

# Rejected by the official schema for an unknown key or a wrong type; ours must reject too.
INVALID = {
    "unknown top-level key": "services: {}\nservice: {}\n",
    "service at the top level": "services: {}\nweb:\n  image: a\n",
    "unknown service key": "services:\n  web:\n    imagee: a\n",
    "unknown build key": "services:\n  web:\n    build: {context: ., dockerfil: x}\n",
    "unknown long port key": "services:\n  web:\n    ports: [{target: 80, publish: 8080}]\n",
    "unknown long volume key": "services:\n  web:\n    volumes: [{type: bind, src: ., target: /x}]\n",
    "unknown bind option": "services:\n  web:\n    volumes: [{type: bind, source: ., target: /x,"
    " bind: {propagate: shared}}]\n",
    "unknown deploy key": "services:\n  web:\n    deploy: {replica: 2}\n",
    "unknown resources key": "services:\n  web:\n    deploy: {resources: {limit: {cpus: 1}}}\n",
    "unknown healthcheck key": "services:\n  web:\n    healthcheck: {test: x, intervall: 1s}\n",
    "unknown depends_on key": "services:\n  web:\n    depends_on: {db: {condition: service_started,"
    " requird: true}}\n",
    "unknown network key": "services: {}\nnetworks:\n  n: {drivr: bridge}\n",
    "unknown ipam key": "services: {}\nnetworks:\n  n: {ipam: {configs: []}}\n",
    "unknown volume key": "services: {}\nvolumes:\n  v: {drivers: local}\n",
    "unknown secret key": "services: {}\nsecrets:\n  s: {files: ./x}\n",
    "unknown config key": "services: {}\nconfigs:\n  c: {contents: x}\n",
    "unknown model key": "services: {}\nmodels:\n  m: {model: x, size: 1}\n",
    "unknown watch key": "services:\n  web:\n    develop: {watch: [{path: ., action: sync,"
    " targets: /x}]}\n",
    "unknown hook key": "services:\n  web:\n    post_start: [{command: x, usr: root}]\n",
    "unknown include key": "include: [{paths: a.yaml}]\nservices: {}\n",
    "unknown logging key": "services:\n  web:\n    logging: {drivers: local}\n",
    "unknown service network key": "services:\n  web:\n    networks: {n: {alias: [a]}}\n",
    "extension key where none is allowed": "services:\n  web:\n    blkio_config: {x-a: 1}\n",
    "services is a list": "services: [web]\n",
    "service is a string": "services:\n  web: nginx\n",
    "image is a number": "services:\n  web:\n    image: 5\n",
    "ports is a mapping": "services:\n  web:\n    ports: {http: 80}\n",
    "port is a list": "services:\n  web:\n    ports: [[80]]\n",
    "command is a mapping": "services:\n  web:\n    command: {run: x}\n",
    "environment value is a list": "services:\n  web:\n    environment: {A: [1]}\n",
    "environment is a string": "services:\n  web:\n    environment: A=1\n",
    "depends_on without condition": "services:\n  web:\n    depends_on: {db: {required: true}}\n",
    "depends_on is a string": "services:\n  web:\n    depends_on: db\n",
    "bad condition": "services:\n  web:\n    depends_on: {db: {condition: healthy}}\n",
    "healthcheck test is a mapping": "services:\n  web:\n    healthcheck: {test: {a: b}}\n",
    "volume type unknown": "services:\n  web:\n    volumes: [{type: disk, target: /x}]\n",
    "long volume without type": "services:\n  web:\n    volumes: [{source: a, target: /x}]\n",
    "labels value is a mapping": "services:\n  web:\n    labels: {a: {b: c}}\n",
    "use_api_socket is a string": "services:\n  web:\n    use_api_socket: 'yes'\n",
    "model without model": "services: {}\nmodels:\n  m: {name: x}\n",
    "provider without type": "services:\n  web:\n    provider: {options: {}}\n",
    "duplicate ports": "services:\n  web:\n    ports: ['80:80', '80:80']\n",
    "cpu_percent above 100": "services:\n  web:\n    cpu_percent: 101\n",
    "gpus is some": "services:\n  web:\n    gpus: some\n",
    "bad service name": "services:\n  'a b': {image: a}\n",
    "watch without action": "services:\n  web:\n    develop: {watch: [{path: .}]}\n",
    "secret is a list": "services: {}\nsecrets:\n  s: [a]\n",
    "version is a mapping": "version: {a: 1}\nservices: {}\n",
}

# Accepted by the official schema only because its patterns are unanchored.
STRICTER = {
    "pull_policy with a suffix": "services:\n  web:\n    pull_policy: always_sometimes\n",
    "pull_policy inside a word": "services:\n  web:\n    pull_policy: nevermind\n",
    "container_name with a space": "services:\n  web:\n    container_name: my web\n",
    "container_name starting with a dash": "services:\n  web:\n    container_name: -web\n",
    # Where the spec forgot additionalProperties, unknown keys are still errors for us.
    "ulimit that is no ulimit name": "services:\n  web:\n    ulimits: {no_file: 1}\n",
    "gpu request with an unknown key": "services:\n  web:\n    gpus: [{driver: nvidia, cont: 1}]\n",
    "external secret with an unknown key": "services: {}\nsecrets:\n  s: {external: {nam: x}}\n",
}

# Accepted by us, rejected by the official schema: `version` is obsolete and ignored, so an
# unquoted `version: 3.8` (a number in YAML) is not worth an error.
LENIENT = {"version as a number": "version: 3.8\nservices: {}\n"}


def plain(text: str):
    return to_plain(parse_compose(text, "c.yaml"))


@pytest.mark.parametrize("case", sorted(VALID))
def test_valid_files_pass_the_official_schemas_and_ours(case, official, compose_go, ours, fast):
    document = plain(VALID[case])
    assert list(official.iter_errors(document)) == []
    assert list(compose_go.iter_errors(document)) == []
    assert [e.message for e in ours.iter_errors(document)] == []
    assert fast(parse_compose(VALID[case], "c.yaml"))


@pytest.mark.parametrize("case", sorted(VALID_COMPOSE_GO_ONLY))
def test_compose_go_additions_pass_ours(case, official, compose_go, ours, fast):
    document = plain(VALID_COMPOSE_GO_ONLY[case])
    assert not official.is_valid(document)  # else this belongs in VALID
    assert list(compose_go.iter_errors(document)) == []
    assert [e.message for e in ours.iter_errors(document)] == []
    assert fast(document)


@pytest.mark.parametrize("case", sorted(INVALID))
def test_files_the_official_schema_rejects_are_rejected(case, official, ours, fast):
    document = plain(INVALID[case])
    assert not official.is_valid(document)
    assert not ours.is_valid(document)
    assert not fast(document)


@pytest.mark.parametrize("case", sorted(STRICTER))
def test_our_anchored_patterns_are_stricter_than_the_spec(case, official, ours, fast):
    document = plain(STRICTER[case])
    assert official.is_valid(document)
    assert not ours.is_valid(document)
    assert not fast(document)


@pytest.mark.parametrize("case", sorted(LENIENT))
def test_where_we_are_more_lenient_than_the_spec(case, official, ours, fast):
    document = plain(LENIENT[case])
    assert not official.is_valid(document)
    assert ours.is_valid(document)
    assert fast(document)


def _project_files() -> list[Path]:
    found = sorted((ROOT / "tests" / "golden").rglob("*.yaml"))
    found += sorted((ROOT / "samples").rglob("compose*.yaml"))
    return [p for p in found if not p.name.startswith("expected")]


def test_the_repository_own_compose_files_pass_both(official, ours, fast):
    files = _project_files()
    assert files, "expected the golden projects and the sample"
    for path in files:
        tree = parse_compose(path.read_text(), str(path))
        if "services" not in tree and "include" not in tree:
            continue  # a fragment for extends, not a Compose file on its own
        document = to_plain(tree)
        assert official.is_valid(document) == ours.is_valid(document) == fast(tree), path


# --- differential: fastjsonschema's code and jsonschema agree --------------------------------

_REPLACEMENTS = ([1], {"k": "v"}, True, 2.5, -5, None, "every_1x")


def _mutations(document):
    """Broken (and some still valid) variants: one change each, anywhere in the document."""

    def walk(node, rebuild):
        if isinstance(node, dict):
            yield rebuild({**node, "bogus_key": 1})
            yield rebuild({**node, "x-extension": 1})
            for key, value in node.items():
                yield from walk(value, lambda new, key=key: rebuild({**node, key: new}))
        elif isinstance(node, list):
            if node:
                yield rebuild([*node, node[0]])
            for index, value in enumerate(node):

                def put(new, index=index):
                    return rebuild([*node[:index], new, *node[index + 1 :]])

                yield from walk(value, put)
        for replacement in _REPLACEMENTS:
            if type(replacement) is not type(node):
                yield rebuild(replacement)

    yield from walk(document, lambda new: new)


def test_both_validators_agree_on_every_variant(ours, fast):
    checked = invalid = 0
    for case in sorted(VALID) + sorted(VALID_COMPOSE_GO_ONLY):
        source = VALID.get(case) or VALID_COMPOSE_GO_ONLY[case]
        for variant in _mutations(plain(source)):
            expected = ours.is_valid(variant)
            assert fast(variant) == expected, (case, json.dumps(variant)[:300])
            checked += 1
            invalid += not expected
    # The corpus is big enough to mean something, and most variants are broken.
    assert checked > 3000 and invalid > checked // 2


def test_validate_and_explain_agree_on_every_broken_variant(monkeypatch, tmp_path):
    """Whenever the fast path says invalid, the explanation has at least one located problem."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(validate_module, "_fast_validators", {})
    tree = parse_compose(VALID["networks"], "c.yaml")
    document = to_plain(tree)
    for variant in list(_mutations(document))[::7]:
        if validate_module.fast_validator()(variant):
            continue
        problems = validate_module.explain(variant)
        assert problems, json.dumps(variant)[:300]
        assert all(p.message and "{" not in p.message for p in problems)
