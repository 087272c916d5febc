from __future__ import annotations

import pytest

from composer.loader.errors import LoadError
from composer.loader.nodes import Mark
from composer.loader.normalize import normalize
from composer.loader.parse import parse_compose
from composer.loader.semantics import check, did_you_mean


def checked(text, fill_images=True):
    tree = parse_compose(text, "c.yaml")
    if fill_images:
        # Most cases here are about other checks; give image-less services one.
        for service in tree.get("services", {}).values():
            if "image" not in service and "build" not in service:
                service["image"] = "busybox"
    normalize(tree, "/proj", None)
    check(tree)
    return tree


def problems_of(text, fill_images=True):
    with pytest.raises(LoadError) as info:
        checked(text, fill_images)
    return info.value.problems


def test_a_consistent_project_passes():
    checked(
        "services:\n"
        "  web:\n    image: x\n    depends_on: {db: {condition: service_healthy}}\n"
        "    networks: [front]\n    volumes: [data:/data, ./src:/src, /anon]\n"
        "    secrets: [token]\n    configs: [conf]\n    links: [db]\n"
        "    container_name: web1\n    deploy: {replicas: 1}\n"
        "  db:\n    image: y\n    volumes_from: ['container:other']\n"
        "  side:\n    network_mode: service:web\n    ipc: service:db\n"
        "networks:\n  front: {}\n  ext: {external: true, name: shared}\n"
        "volumes:\n  data: {}\n"
        "secrets:\n  token: {file: ./t}\n"
        "configs:\n  conf: {content: hi}\n"
    )


def test_undefined_service_references_everywhere_with_did_you_mean():
    problems = problems_of(
        "services:\n"
        "  web:\n    depends_on: [dbb]\n    links: ['cache:c']\n"
        "    volumes_from: ['service:store:ro']\n"
        "  side:\n    network_mode: service:wbe\n"
        "  db: {}\n"
    )
    assert [(p.mark, p.path) for p in problems] == [
        (Mark("c.yaml", 3, 18), ("services", "web", "depends_on", "dbb")),
        (Mark("c.yaml", 4, 13), ("services", "web", "links", 0)),
        (Mark("c.yaml", 5, 20), ("services", "web", "volumes_from", 0)),
        (Mark("c.yaml", 7, 19), ("services", "side", "network_mode")),
    ]
    assert problems[0].message == "depends_on refers to undefined service 'dbb'"
    assert problems[0].hint == "did you mean 'db'?"
    assert problems[3].hint == "did you mean 'web'?"
    assert "undefined service 'cache'" in problems[1].message
    assert problems[1].hint.startswith("defined services: 'web', 'side', 'db'")


def test_implicit_dependency_is_reported_once_at_the_field_that_implies_it():
    problems = problems_of("services:\n  web:\n    pid: service:ghost\n")
    (problem,) = problems
    assert problem.path == ("services", "web", "pid")
    assert problem.mark == Mark("c.yaml", 3, 10)


def test_an_optional_dependency_may_be_missing():
    checked(
        "services:\n  web:\n    depends_on: {maybe: {condition: service_started, required: false}}\n"
    )


def test_undefined_networks_volumes_secrets_configs():
    problems = problems_of(
        "services:\n  web:\n"
        "    networks: {frontend: {}}\n"
        "    volumes: ['dta:/data']\n"
        "    secrets: [tokn]\n"
        "    configs: [{source: cfg, target: /c}]\n"
        "    build: {context: ., secrets: [buildkey]}\n"
        "networks:\n  front: {}\n"
        "volumes:\n  data: {}\n"
        "secrets:\n  token: {file: ./t}\n"
    )
    assert [(p.mark, p.path) for p in problems] == [
        (Mark("c.yaml", 3, 16), ("services", "web", "networks", "frontend")),
        (Mark("c.yaml", 4, 15), ("services", "web", "volumes", 0, "source")),
        (Mark("c.yaml", 5, 15), ("services", "web", "secrets", 0, "source")),
        (Mark("c.yaml", 6, 24), ("services", "web", "configs", 0, "source")),
        (Mark("c.yaml", 7, 35), ("services", "web", "build", "secrets", 0, "source")),
    ]
    assert problems[0].hint.startswith("did you mean 'front'?")
    assert problems[1].message == "named volume 'dta' is not declared"
    assert problems[1].hint.startswith("did you mean 'data'?")
    assert problems[2].hint.startswith("did you mean 'token'?")
    assert problems[3].hint.startswith("no configs is defined")


def test_default_network_is_implicit_but_not_when_undeclared_by_name():
    checked("services:\n  web:\n    image: x\n")
    checked("services:\n  web:\n    networks: [default]\n")


def test_container_name_with_several_replicas():
    problems = problems_of(
        "services:\n  web:\n    container_name: w\n    scale: 2\n"
        "  api:\n    container_name: a\n    deploy: {replicas: 3}\n"
    )
    assert [(p.mark, p.path) for p in problems] == [
        (Mark("c.yaml", 4, 12), ("services", "web", "scale")),
        (Mark("c.yaml", 7, 24), ("services", "api", "deploy", "replicas")),
    ]
    assert "3 replicas" in problems[1].message and problems[1].hint


def test_external_resources_cannot_say_how_to_create_them():
    problems = problems_of(
        "services: {}\n"
        "networks:\n  n: {external: true, driver: bridge, ipam: {}}\n"
        "volumes:\n  v:\n    external: true\n    driver_opts: {a: b}\n"
        "secrets:\n  s: {external: true, file: ./x}\n"
        "configs:\n  c: {external: {name: old}, content: x}\n"
    )
    assert [(p.mark, p.path) for p in problems] == [
        (Mark("c.yaml", 3, 23), ("networks", "n", "driver")),
        (Mark("c.yaml", 3, 39), ("networks", "n", "ipam")),
        (Mark("c.yaml", 7, 5), ("volumes", "v", "driver_opts")),
        (Mark("c.yaml", 9, 23), ("secrets", "s", "file")),
        (Mark("c.yaml", 11, 30), ("configs", "c", "content")),
    ]
    assert problems[0].message == "external network 'n' cannot also set 'driver'"


def test_network_mode_and_networks_together():
    (problem,) = problems_of(
        "services:\n  web:\n    network_mode: host\n    networks: [n]\nnetworks:\n  n: {}\n"
    )
    assert problem.path == ("services", "web", "network_mode")
    assert problem.mark == Mark("c.yaml", 3, 5)


def test_every_problem_is_reported_in_file_order():
    problems = problems_of(
        "services:\n  web:\n    secrets: [nope]\n    depends_on: [ghost]\n"
        "volumes:\n  v: {external: true, labels: {a: b}}\n"
    )
    assert [p.mark.line for p in problems] == [3, 4, 6]


def test_did_you_mean():
    assert did_you_mean("dbb", ["db", "web"], "services") == "did you mean 'db'?"
    assert did_you_mean("zzz", [], "volumes") == "no volumes is defined"
    many = did_you_mean("zzz", [f"s{i}" for i in range(10)], "services")
    assert many.endswith(", …") and "'s7'" in many and "'s8'" not in many


def test_scale_and_replicas_must_agree():
    (problem,) = problems_of("services:\n  web:\n    scale: 2\n    deploy: {replicas: 3}\n")
    assert problem.path == ("services", "web", "deploy", "replicas")
    assert problem.mark == Mark("c.yaml", 4, 24)
    assert "c.yaml:3:12" in problem.hint
    checked("services:\n  web:\n    scale: 2\n    deploy: {replicas: 2}\n")


def test_bind_mount_needs_a_source():
    (problem,) = problems_of("services:\n  web:\n    volumes:\n      - {type: bind, target: /x}\n")
    assert problem.path == ("services", "web", "volumes", 0)
    assert problem.mark == Mark("c.yaml", 4, 9)


def test_a_service_needs_an_image_or_a_build():
    (problem,) = problems_of("services:\n  web:\n    command: run\n", fill_images=False)
    assert problem.path == ("services", "web")
    assert problem.mark == Mark("c.yaml", 2, 3)
    checked("services:\n  web: {build: .}\n  p: {provider: {type: x}}\n", fill_images=False)


def test_build_contexts_from_services_and_platforms():
    problems = problems_of(
        "services:\n"
        "  base: {image: b}\n"
        "  app:\n    platform: linux/amd64\n"
        "    build:\n      context: .\n"
        "      additional_contexts: {b: 'service:base', c: 'service:ghost', d: ./dir}\n"
        "      platforms: [linux/arm64]\n"
    )
    assert [(p.mark, p.path) for p in problems] == [
        (Mark("c.yaml", 7, 32), ("services", "app", "build", "additional_contexts", "b")),
        (Mark("c.yaml", 7, 51), ("services", "app", "build", "additional_contexts", "c")),
        (Mark("c.yaml", 8, 18), ("services", "app", "build", "platforms")),
    ]
    assert "does not build an image" in problems[0].message


def test_old_style_limits_must_agree_with_deploy_resources():
    problems = problems_of(
        "services:\n  web:\n    mem_limit: 512m\n    cpus: 1.5\n    pids_limit: 10\n"
        "    deploy:\n      resources:\n"
        "        limits: {memory: 1g, cpus: '1.5', pids: 20}\n"
    )
    assert [p.path[-1] for p in problems] == ["memory", "pids"]
    assert problems[0].mark == Mark("c.yaml", 8, 26)
    assert "c.yaml:3:16" in problems[0].hint
    checked(
        "services:\n  web:\n    mem_limit: 1024m\n    deploy: {resources: {limits: {memory: 1g}}}\n"
    )


def test_one_container_path_is_mounted_once():
    problems = problems_of(
        "services:\n  web:\n    volumes: [a:/data, './b:/data/']\n    tmpfs: [/data, /run]\n"
        "volumes: {a: {}}\n"
    )
    assert [(p.mark, p.path) for p in problems] == [
        (Mark("c.yaml", 3, 24), ("services", "web", "volumes", 1)),
        (Mark("c.yaml", 4, 13), ("services", "web", "tmpfs", 0)),
    ]
    assert "already mounted (at c.yaml:3:15)" in problems[0].message


def test_watch_rules_that_sync_need_a_target():
    (problem,) = problems_of(
        "services:\n  web:\n    develop:\n      watch:\n"
        "        - {path: ., action: rebuild}\n        - {path: ./src, action: sync}\n"
    )
    assert problem.path == ("services", "web", "develop", "watch", 1)
    assert problem.mark == Mark("c.yaml", 6, 11)


def test_secrets_and_configs_need_a_source_unless_external():
    problems = problems_of(
        "services: {}\nsecrets:\n  s: {labels: {a: b}}\n  e: {external: true}\n"
        "configs:\n  c: {}\n  ok: {content: x}\n"
    )
    assert [(p.mark, p.path) for p in problems] == [
        (Mark("c.yaml", 3, 3), ("secrets", "s")),
        (Mark("c.yaml", 6, 3), ("configs", "c")),
    ]
