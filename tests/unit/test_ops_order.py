"""The order commands act in: a project without dependencies gets the same generations as
the networkx graph gives, without importing networkx."""

from __future__ import annotations

import subprocess
import sys

from composer.graph import ServiceGraph
from composer.model import DependsOn, FrozenMap, Project, Service
from composer.ops.project import Independent, graph_of


def project(*services: Service) -> Project:
    return Project(
        name="demo",
        project_dir="/p",
        config_files=("/p/compose.yaml",),
        services=FrozenMap({s.name: s for s in services}),
    )


NAMES = ["web", "db", "cache", "api"]


def test_independent_services_order_as_the_graph_would():
    independent = graph_of(project(*(Service(name=n, image="x") for n in NAMES)))
    assert isinstance(independent, Independent)
    graph = ServiceGraph(NAMES, [])
    for chosen in (None, ["web"], ["db", "api"], []):
        assert independent.start_generations(chosen) == graph.start_generations(chosen)
        assert independent.stop_generations(chosen) == graph.stop_generations(chosen)
    assert independent.select(["web"]) == graph.select(["web"]) == {"web"}
    assert independent.dependencies("web") == independent.dependents("web") == set()


def test_a_dependency_brings_the_graph_back():
    web = Service(name="web", image="x", depends_on=FrozenMap({"db": DependsOn("db")}))
    ordered = graph_of(project(web, Service(name="db", image="x")))
    assert isinstance(ordered, ServiceGraph)
    assert ordered.start_generations() == [["db"], ["web"]]
    assert ordered.select(["web"]) == {"web", "db"}


def test_ordering_an_independent_project_does_not_import_networkx():
    code = (
        "import sys\n"
        "from composer.model import FrozenMap, Project, Service\n"
        "from composer.ops.project import graph_of\n"
        "p = Project(name='d', project_dir='/p', config_files=(),"
        " services=FrozenMap({'a': Service(name='a', image='x')}))\n"
        "assert graph_of(p).start_generations() == [['a']]\n"
        "print('networkx' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
