from __future__ import annotations

import pytest

from composer.loader.errors import LoadError
from composer.loader.nodes import Mark
from composer.loader.normalize import normalize
from composer.loader.parse import parse_compose
from composer.loader.semantics import check
from composer.model import (
    DependsOn,
    FrozenMap,
    Mount,
    Port,
    Project,
    Ulimit,
    build_project,
    freeze,
    service_config_hash,
)
from runtime.record import FrozenError


class FakeEnv:
    def __init__(self, **values):
        self.values = values

    def lookup(self, name):
        return self.values.get(name)


def load(text, project_dir, env=None, name="demo"):
    env = env or FakeEnv()
    tree = parse_compose(text, "c.yaml")
    normalize(tree, str(project_dir), env)
    check(tree)
    return build_project(
        tree, name=name, project_dir=str(project_dir), config_files=["c.yaml"], env=env
    )


FULL = """\
services:
  web:
    image: nginx:1.25
    build: ./app
    command: nginx -g 'daemon off;'
    ports: ['127.0.0.1:8080:80', '443']
    volumes: ['./html:/usr/share/nginx/html:ro', 'cache:/var/cache', '/anon']
    environment: [MODE=prod]
    depends_on:
      db: {condition: service_healthy}
    healthcheck: {test: curl -f localhost, interval: 1m30s, retries: 3}
    ulimits: {nofile: 1024}
    mem_limit: 512m
    cpus: 1.5
    stop_grace_period: 20s
    secrets: [token]
    networks: [front, back]
    labels: {tier: web}
    deploy: {replicas: 2, restart_policy: {condition: on-failure, delay: 5s}}
    x-custom: 1
  db:
    image: redis
    networks:
      back: {aliases: [cache-db], ipv4_address: 10.5.0.9}
  helper:
    image: busybox
networks:
  front: {}
  back:
    ipam: {config: [{subnet: 10.5.0.0/16, gateway: 10.5.0.1}]}
  outside: {external: true}
volumes:
  cache: {driver: local}
secrets:
  token: {environment: TOKEN}
configs:
  conf: {content: hello}
x-top: {a: 1}
"""


def test_full_project(tmp_path):
    project = load(FULL, tmp_path, FakeEnv(TOKEN="s3cret"))
    assert isinstance(project, Project)
    assert project.service_names() == ("web", "db", "helper")
    web = project.services["web"]
    assert web.image == "nginx:1.25"
    assert web.build.context == str(tmp_path / "app") and web.build.dockerfile == "Dockerfile"
    assert web.command == ("nginx", "-g", "daemon off;")
    assert web.ports == (
        Port(target=80, published="8080", host_ip="127.0.0.1"),
        Port(target=443),
    )
    assert web.ports[0].published_range() == (8080, 8080) and web.ports[1].published_range() is None
    assert web.volumes == (
        Mount(
            "bind",
            "/usr/share/nginx/html",
            str(tmp_path / "html"),
            read_only=True,
            bind_create_host_path=True,
        ),
        Mount("volume", "/var/cache", "cache"),
        Mount("volume", "/anon"),
    )
    assert web.environment == {"MODE": "prod"}
    assert web.depends_on == {"db": DependsOn("db", "service_healthy")}
    assert web.healthcheck.test == ("CMD-SHELL", "curl -f localhost")
    assert web.healthcheck.interval == 90.0 and web.healthcheck.retries == 3
    assert web.ulimits == {"nofile": Ulimit("nofile", 1024, 1024)}
    assert web.resources.limits.memory == 512 * 1024**2
    assert web.resources.limits.cpus == 1.5
    assert web.stop_grace_period == 20.0
    assert web.secrets[0].target == "/run/secrets/token"
    assert list(web.networks) == ["front", "back"]
    assert web.labels == {"tier": "web"}
    assert web.scale == 2
    assert web.restart_policy.condition == "on-failure" and web.restart_policy.delay == 5.0
    assert web.options["x-custom"] == 1 and web.options["deploy"]["replicas"] == 2
    db = project.services["db"]
    assert db.networks["back"].aliases == ("cache-db",)
    assert db.networks["back"].ipv4_address == "10.5.0.9"
    helper = project.services["helper"]
    assert list(helper.networks) == ["default"] and helper.scale == 1
    # The implicit default network exists because helper uses it.
    assert list(project.networks) == ["front", "back", "outside", "default"]
    assert project.networks["default"].name == "demo_default"
    assert project.networks["back"].name == "demo_back"
    assert project.networks["back"].ipam_pools[0].subnet == "10.5.0.0/16"
    assert project.networks["outside"].name == "outside" and project.networks["outside"].external
    assert project.volumes["cache"].name == "demo_cache"
    assert project.volumes["cache"].driver == "local"
    assert project.secrets["token"].content == "s3cret"
    assert project.configs["conf"].content == "hello"
    assert project.extensions == {"x-top": {"a": 1}}


def test_model_is_immutable_and_hashable(tmp_path):
    project = load(FULL, tmp_path)
    with pytest.raises(FrozenError):
        project.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        project.services["new"] = None  # type: ignore[index]
    with pytest.raises(AttributeError):
        project.services["web"].__dict__  # noqa: B018 - slots: no instance dict
    again = load(FULL, tmp_path)
    assert project == again and hash(project) == hash(again)
    assert isinstance(project.services["web"].labels, FrozenMap)


def test_frozen_map_equality_ignores_order_but_keeps_it():
    a, b = FrozenMap({"x": 1, "y": 2}), FrozenMap({"y": 2, "x": 1})
    assert a == b and hash(a) == hash(b) and list(a) == ["x", "y"]
    assert freeze({"k": [1, {"n": [2]}]}) == FrozenMap({"k": (1, FrozenMap({"n": (2,)}))})


def test_environment_from_env_files_then_environment(tmp_path):
    (tmp_path / "base.env").write_text("A=from-base\nB=from-base\nREF=${SHELL_VAR}-x\n")
    (tmp_path / "override.env").write_text("B=from-override\nC='quoted # not comment'\n")
    (tmp_path / "raw.env").write_text("R='kept \"as is\"'\n")
    project = load(
        "services:\n  web:\n    image: x\n"
        "    env_file: [base.env, override.env, {path: missing.env, required: false},"
        " {path: raw.env, format: raw}]\n"
        "    environment:\n      C: from-environment\n      UNSET:\n      FROM_SHELL:\n",
        tmp_path,
        FakeEnv(SHELL_VAR="sv", FROM_SHELL="shell-value"),
    )
    web = project.services["web"]
    assert web.environment == {
        "A": "from-base",
        "B": "from-override",
        "REF": "sv-x",
        "C": "from-environment",
        "R": "'kept \"as is\"'",
        "FROM_SHELL": "shell-value",
    }
    assert web.env_files == tuple(
        str(tmp_path / n) for n in ("base.env", "override.env", "missing.env", "raw.env")
    )


def test_missing_required_env_file_is_reported_at_its_entry(tmp_path):
    with pytest.raises(LoadError) as info:
        load("services:\n  web:\n    image: x\n    env_file:\n      - ./nope.env\n", tmp_path)
    (problem,) = info.value.problems
    assert problem.mark == Mark("c.yaml", 5, 9)
    assert problem.path == ("services", "web", "env_file", 0)
    assert "nope.env not found" in problem.message and problem.hint


def test_a_malformed_env_file_names_its_own_line(tmp_path):
    (tmp_path / "bad.env").write_text("GOOD=1\nBAD='unterminated\n")
    with pytest.raises(LoadError) as info:
        load("services:\n  web:\n    image: x\n    env_file: bad.env\n", tmp_path)
    assert info.value.problems
    assert all(p.mark.file.endswith("bad.env") for p in info.value.problems)


def test_container_values_that_do_not_fit_the_model_are_load_errors(tmp_path):
    tree = parse_compose(
        "services:\n  web:\n    image: x\n    pids_limit: lots\n    scale: many\n", "c.yaml"
    )
    with pytest.raises(LoadError) as info:
        build_project(tree, name="demo", project_dir=str(tmp_path))
    assert [(p.path, p.mark) for p in info.value.problems] == [
        (("services", "web", "pids_limit"), Mark("c.yaml", 4, 17)),
        (("services", "web", "scale"), Mark("c.yaml", 5, 12)),
    ]


def test_explicit_resource_names_win(tmp_path):
    project = load(
        "services:\n  web: {image: x, networks: [n]}\n"
        "networks:\n  n: {name: custom-net}\nvolumes:\n  v: {name: custom-vol}\n",
        tmp_path,
    )
    assert project.networks["n"].name == "custom-net"
    assert project.volumes["v"].name == "custom-vol"
    assert "default" not in project.networks


# --- config hash -------------------------------------------------------------------------------


def service_tree(text, tmp_path="/proj"):
    tree = parse_compose(text, "c.yaml")
    normalize(tree, str(tmp_path), FakeEnv())
    return tree["services"]["web"]


BASE = "services:\n  web:\n    image: nginx\n    environment: {A: '1', B: '2'}\n    ports: ['80']\n"


def test_hash_ignores_mapping_key_order():
    one = service_tree(BASE)
    two = service_tree(
        "services:\n  web:\n    ports: ['80']\n    environment: {B: '2', A: '1'}\n    image: nginx\n"
    )
    assert service_config_hash(one) == service_config_hash(two)
    assert len(service_config_hash(one)) == 64


def test_hash_ignores_short_or_long_syntax():
    long = service_tree(
        "services:\n  web:\n    image: nginx\n    environment: [A=1, B=2]\n"
        "    ports: [{target: 80}]\n"
    )
    assert service_config_hash(long) == service_config_hash(service_tree(BASE))


@pytest.mark.parametrize(
    "extra",
    [
        "    build: ./app\n",
        "    pull_policy: always\n",
        "    scale: 3\n",
        "    deploy: {replicas: 4}\n",
        "    depends_on: [db]\n",
        "    profiles: [debug]\n",
    ],
)
def test_hash_ignores_excluded_fields(extra):
    assert service_config_hash(service_tree(BASE + extra)) == service_config_hash(
        service_tree(BASE)
    )


@pytest.mark.parametrize(
    "change",
    [
        ("image: nginx", "image: nginx:2"),
        ("A: '1'", "A: '9'"),
        ("['80']", "['81']"),
    ],
)
def test_hash_changes_with_the_configuration(change):
    changed = BASE.replace(*change)
    assert service_config_hash(service_tree(changed)) != service_config_hash(service_tree(BASE))


def test_deploy_other_than_replicas_counts():
    with_limits = BASE + "    deploy: {replicas: 2, resources: {limits: {cpus: '1'}}}\n"
    assert service_config_hash(service_tree(with_limits)) != service_config_hash(service_tree(BASE))


def test_model_hash_follows_env_file_content(tmp_path):
    text = "services:\n  web:\n    image: x\n    env_file: app.env\n    depends_on: []\n"
    (tmp_path / "app.env").write_text("A=1\n")
    first = load(text, tmp_path).services["web"]
    assert service_config_hash(first) == first.config_hash != ""
    (tmp_path / "app.env").write_text("A=2\n")
    second = load(text, tmp_path).services["web"]
    assert service_config_hash(second) != service_config_hash(first)
    (tmp_path / "app.env").write_text("A=1\n")
    moved = load(text.replace("image: x\n", "image: x\n    scale: 2\n"), tmp_path)
    assert service_config_hash(moved.services["web"]) == service_config_hash(first)


def test_model_of_an_uninterpolated_tree_skips_unresolved_values(tmp_path):
    tree = parse_compose(
        "services:\n  web:\n    image: x\n    ports: ['${P}:80', '81']\n"
        "    volumes: ['${SRC}:/x']\n    mem_limit: ${MEM}\n    scale: ${N}\n",
        "c.yaml",
    )
    normalize(tree, str(tmp_path), None)
    web = build_project(tree, name="demo", project_dir=str(tmp_path)).services["web"]
    assert web.ports == (Port(target=81),)
    assert web.volumes == () and web.resources.limits.memory is None and web.scale == 1


def test_labels_from_label_files_then_labels(tmp_path):
    (tmp_path / "a.labels").write_text("team=core\ntier=${team}-x\n")
    project = load(
        "services:\n  web:\n    image: x\n    label_file: ./a.labels\n    labels: {tier: web}\n",
        tmp_path,
    )
    assert project.services["web"].labels == {"team": "core", "tier": "web"}
    assert "label_file" not in project.services["web"].options
    with pytest.raises(LoadError) as info:
        load("services:\n  web:\n    image: x\n    label_file: [gone]\n", tmp_path)
    assert info.value.problems[0].path == ("services", "web", "label_file", 0)
