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


def test_down_stops_a_container_after_its_dependents_and_orphans_first():
    from composer import labels as L
    from composer.ops.down import _stops_after

    web = Service(name="web", image="x", depends_on=FrozenMap({"db": DependsOn("db")}))
    p = project(web, Service(name="db", image="x"))

    def info(cid: str, service: str) -> dict:
        return {"id": cid, "labels": {L.SERVICE: service}}

    grouped = {
        "web": [info("w1", "web"), info("w2", "web")],
        "db": [info("d1", "db")],
        "old": [info("o1", "old")],  # an orphan: its service left the file
    }
    before = _stops_after(p, grouped, ["old"])
    assert sorted(before("d1")) == ["o1", "w1", "w2"]
    assert before("w1") == ["o1"] and before("o1") == []


def test_work_waits_only_where_it_asks_and_the_cause_is_raised():
    import threading

    import pytest

    from composer.ops.project import in_dependency_order

    log, lock = [], threading.Lock()
    a_may_finish = threading.Event()

    def work(unit: str, wait) -> None:
        with lock:
            log.append(f"{unit} begins")
        if unit == "a":
            assert a_may_finish.wait(5), "b never began while a was running"
            raise RuntimeError("a broke")
        a_may_finish.set()  # b begins (its first half) while a still runs
        wait()
        log.append("b passed its wait")

    with pytest.raises(RuntimeError, match="a broke"):
        in_dependency_order(["a", "b"], {"a": [], "b": ["a"]}.get, work)
    assert "b begins" in log and "b passed its wait" not in log
