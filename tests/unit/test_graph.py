from __future__ import annotations

import pytest

from composer.graph import ServiceGraph, check_acyclic, edges_from_tree, find_cycle
from composer.loader.errors import LoadError
from composer.loader.nodes import Mark
from composer.loader.parse import parse_compose

PROJECT = """\
services:
  web:
    image: web
    depends_on:
      api: {condition: service_started}
      cache: {condition: service_healthy}
  api:
    image: api
    depends_on:
      db: {condition: service_healthy}
    links: ["cache:redis"]
  worker:
    image: worker
    network_mode: "service:api"
    volumes_from: ["db:ro", "container:elsewhere"]
  db:
    image: db
  cache:
    image: cache
  lonely:
    image: lonely
"""


def test_edges_cover_every_kind_of_reference():
    edges = {
        (e.service, e.needs, e.kind) for e in edges_from_tree(parse_compose(PROJECT, "c.yaml"))
    }
    assert edges == {
        ("web", "api", "depends_on"),
        ("web", "cache", "depends_on"),
        ("api", "db", "depends_on"),
        ("api", "cache", "links"),
        ("worker", "api", "network_mode"),
        ("worker", "db", "volumes_from"),
    }


def test_start_generations_put_independent_services_together():
    graph = ServiceGraph.from_tree(parse_compose(PROJECT, "c.yaml"))
    assert graph.start_generations() == [["cache", "db", "lonely"], ["api"], ["web", "worker"]]
    assert graph.stop_generations() == [["web", "worker"], ["api"], ["cache", "db", "lonely"]]


def test_selecting_a_service_pulls_in_its_dependencies_unless_no_deps():
    graph = ServiceGraph.from_tree(parse_compose(PROJECT, "c.yaml"))
    assert graph.select(["web"]) == {"web", "api", "cache", "db"}
    assert graph.select(["web"], with_dependencies=False) == {"web"}
    assert graph.dependents("db") == {"api", "web", "worker"}
    assert graph.start_generations(graph.select(["api"])) == [["cache", "db"], ["api"]]


def test_acyclic_project_passes():
    check_acyclic(parse_compose(PROJECT, "c.yaml"))


def test_cycle_is_reported_as_a_path_with_each_edge_location():
    tree = parse_compose(
        "services:\n"
        "  a:\n    image: x\n    depends_on:\n      b: {condition: service_started}\n"
        "  b:\n    image: x\n    links: [c]\n"
        "  c:\n    image: x\n    network_mode: service:a\n",
        "c.yaml",
    )
    with pytest.raises(LoadError) as info:
        check_acyclic(tree)
    problem = info.value.problems[0]
    assert problem.message == "dependency cycle: a → b → c → a"
    assert problem.mark == Mark("c.yaml", 5, 7)
    assert [mark for _, mark in problem.related] == [
        Mark("c.yaml", 5, 7),
        Mark("c.yaml", 8, 13),
        Mark("c.yaml", 11, 19),
    ]
    rendered = info.value.render()
    assert "c → a (network_mode)" in rendered and "c.yaml:11:19" in rendered


def test_self_dependency_is_a_cycle():
    tree = parse_compose("services:\n  a:\n    depends_on: {a: {}}\n", "c.yaml")
    with pytest.raises(LoadError) as info:
        check_acyclic(tree)
    assert info.value.problems[0].message == "dependency cycle: a → a"


def test_find_cycle_ignores_diamonds():
    from composer.graph import Edge

    diamond = [Edge("a", "b", "d"), Edge("a", "c", "d"), Edge("b", "d", "d"), Edge("c", "d", "d")]
    assert find_cycle(diamond) is None
    cycle = find_cycle([*diamond, Edge("d", "a", "d")])
    assert cycle is not None and cycle[0].service == cycle[-1].needs
