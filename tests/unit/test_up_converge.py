"""How `up` schedules services: containers are made without waiting for dependencies,
started only after them; a failure is reported as itself; --parallel limits never
deadlock. The per-service work is replaced by a recorder (the real one needs a kernel)."""

from __future__ import annotations

import threading

import pytest

from composer.model import DependsOn, FrozenMap, Project, Service
from composer.ops import up as up_ops
from composer.ops.up import UpRequest, _converge, _Run


def project(**needs: list[str]) -> Project:
    services = {
        name: Service(
            name=name,
            image="x",
            depends_on=FrozenMap({d: DependsOn(d) for d in deps}),
        )
        for name, deps in needs.items()
    }
    return Project(name="demo", project_dir="/p", config_files=(), services=FrozenMap(services))


class Backend:
    def existing(self, project: str) -> list:
        return []


def run_of(p: Project, parallel: int = 0) -> _Run:
    request = UpRequest(parallel=parallel)
    return _Run(
        p,
        Backend(),
        request,
        lambda *a: None,
        images={},
        dns_ready=lambda: None,
        networks_ready=lambda: None,
    )


@pytest.fixture
def record(monkeypatch):
    events: list[tuple[str, str]] = []
    lock = threading.Lock()
    hooks: dict = {}

    def fake(run, service, dependencies_done):
        with lock:
            events.append(("made", service.name))
        hooks.get(("made", service.name), lambda: None)()
        dependencies_done()
        hooks.get(("start", service.name), lambda: None)()
        with lock:
            events.append(("started", service.name))

    monkeypatch.setattr(up_ops, "_converge_service", fake)
    return events, hooks


def test_a_dependent_is_made_while_its_dependency_is_still_coming_up(record):
    events, hooks = record
    web_made = threading.Event()
    hooks[("made", "web")] = web_made.set
    # The dependency cannot finish until web is made: waiting first would hang here.
    hooks[("start", "db")] = lambda: web_made.wait(5) or pytest.fail("web was not made")
    _converge(run_of(project(db=[], web=["db"])), ["db", "web"])
    assert events.index(("made", "web")) < events.index(("started", "db"))
    assert events.index(("started", "db")) < events.index(("started", "web"))


def test_a_failed_dependency_is_the_error_and_its_dependents_do_not_start(record):
    events, hooks = record

    def boom():
        raise RuntimeError("db broke")

    hooks[("start", "db")] = boom
    with pytest.raises(RuntimeError, match="db broke"):
        _converge(run_of(project(db=[], api=["db"], web=["api"])), ["db", "api", "web"])
    assert not any(kind == "started" for kind, _ in events)


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_parallel_limit_takes_services_in_start_order(record, parallel):
    events, _ = record
    done = threading.Event()
    names = ["web", "api", "db"]  # given dependents first: the limit must reorder them
    p = project(web=["api"], api=["db"], db=[])
    worker = threading.Thread(target=lambda: (_converge(run_of(p, parallel), names), done.set()))
    worker.daemon = True  # a deadlock must fail the test, not hang the run
    worker.start()
    assert done.wait(10), "deadlocked"
    started = [name for kind, name in events if kind == "started"]
    assert started == ["db", "api", "web"]
    if parallel == 1:
        assert [name for kind, name in events if kind == "made"] == ["db", "api", "web"]
