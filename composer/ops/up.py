"""`composer up`: converge the project to its file, starting services in
dependency order and independent ones in parallel."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from composer.model import Project, Service
from composer.ops import containers as ctr
from composer.ops.backend import Backend
from composer.ops.project import (
    OperationError,
    check_identity,
    ensure_image,
    ensure_networks,
    ensure_volumes,
    graph_of,
    project_lock,
    used_networks,
)
from composer.plan import Existing, UpOptions, orphans, plan_service
from composer.record import field, record

Report = Callable[[str, str], None]


@record(frozen=False)
class UpRequest:
    services: list[str] = field(default_factory=list)
    no_deps: bool = False
    build: str = "auto"  # auto (missing only) | always (--build) | never (--no-build)
    force_recreate: bool = False
    no_recreate: bool = False
    remove_orphans: bool = False
    scale: dict = field(default_factory=dict)
    start: bool = True
    parallel: int = 0  # 0: no limit
    timeout: float | None = None  # stop timeout when recreating
    dependency_timeout: float = 300.0
    pull: str | None = None  # --pull: always, missing, never (else each pull_policy)


def up(project: Project, backend: Backend, request: UpRequest, report: Report) -> list[str]:
    """Bring the project up; return the services acted on."""
    graph = graph_of(project)
    unknown = [s for s in request.services if s not in project.services]
    if unknown:
        raise OperationError(f"no such service: {', '.join(unknown)}")
    selected = graph.select(request.services or project.services, not request.no_deps)
    services = [project.services[name] for name in project.services if name in selected]
    with project_lock(backend, project, "composer up", lambda text: report("Project", text)):
        check_identity(backend, project, record=True)
        backend.networks.cleanup_stale()
        ensure_networks(backend, project, used_networks(project, services), report)
        ensure_volumes(backend, project, services, report)
        images = {
            s.name: ensure_image(
                backend, project, s, build=request.build, report=report, pull=request.pull
            )
            for s in services
        }
        # The name server boots (~0.1 s, another process) while containers are made; each
        # container waits for it only before it starts, when its first lookup may come.
        dns_pool = ThreadPoolExecutor(max_workers=1)
        dns = dns_pool.submit(_ensure_dns, backend, project)
        try:
            _converge(project, backend, request, report, graph, selected, images, dns.result)
            dns.result()  # its failure counts even when no container needed starting
        finally:
            dns_pool.shutdown(wait=True)
    return [s.name for s in services]


def _converge(
    project: Project,
    backend: Backend,
    request: UpRequest,
    report: Report,
    graph,
    selected: set[str],
    images: dict,
    dns_ready: Callable[[], object],
) -> None:
    existing = backend.existing(project.name)
    _handle_orphans(backend, project, existing, request, report)
    options = UpOptions(request.force_recreate, request.no_recreate, request.scale, request.start)
    workers = request.parallel if request.parallel > 0 else max(len(selected), 1)
    changed: set[str] = set()  # services this up created, recreated or started
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for generation in graph.start_generations(selected):
            futures = [
                pool.submit(
                    _converge_service,
                    project,
                    project.services[name],
                    images[name],
                    existing,
                    backend,
                    options,
                    request,
                    report,
                    changed,
                    dns_ready,
                )
                for name in generation
            ]
            errors = [f.exception() for f in futures if f.exception() is not None]
            if errors:
                raise errors[0]


def dry_run(project: Project, backend: Backend, request: UpRequest) -> list[tuple[str, str]]:
    """What up would do, without doing it: (resource, action) pairs."""
    from composer.ops.project import image_name

    graph = graph_of(project)
    selected = graph.select(request.services or project.services, not request.no_deps)
    services = [project.services[name] for name in project.services if name in selected]
    steps: list[tuple[str, str]] = []
    existing_networks = {n.name for n in backend.networks.list()}
    for key in used_networks(project, services):
        network = project.networks[key]
        if not network.external and network.name not in existing_networks:
            steps.append((f"Network {network.name}", "Create"))
    images = {}
    for service in services:
        name = image_name(project, service)
        image = backend.store.resolve(name)
        if service.build is not None and (image is None or request.build == "always"):
            steps.append((f"Image {name}", "Build"))
        elif image is None:
            steps.append((f"Image {name}", "Pull or bootstrap"))
        images[service.name] = image.digest if image is not None else ""
    existing = backend.existing(project.name)
    options = UpOptions(request.force_recreate, request.no_recreate, request.scale, request.start)
    for generation in graph.start_generations(selected):
        for name in generation:
            mine = [c for c in existing if c.service == name]
            for action in plan_service(
                project, project.services[name], mine, images[name], options
            ):
                why = f" ({action.reason})" if action.reason else ""
                steps.append((f"Container {action.name}", f"{action.kind.capitalize()}{why}"))
    return steps


def _ensure_dns(backend: Backend, project: Project) -> None:
    from runtime.network import dns

    dns.ensure_running(project.name, backend.root)


def _handle_orphans(
    backend: Backend, project: Project, existing: list[Existing], request: UpRequest, report: Report
) -> None:
    found = orphans(project, existing)
    if not found:
        return
    if request.remove_orphans:
        for container in found:
            ctr.remove(backend.engine.inspect(container.id), backend, timeout=request.timeout)
            report(f"Container {container.name}", "Removed (orphan)")
        return
    names = ", ".join(sorted({f"{c.name} (service {c.service})" for c in found}))
    report(
        "Project",
        f"found orphan containers: {names}; "
        "their services are no longer in the file; `up --remove-orphans` removes them",
    )


def _converge_service(
    project: Project,
    service: Service,
    image,
    existing: list[Existing],
    backend: Backend,
    options: UpOptions,
    request: UpRequest,
    report: Report,
    changed: set[str],
    dns_ready: Callable[[], object],
) -> None:
    mine = [c for c in existing if c.service == service.name]
    actions = plan_service(project, service, mine, image.digest, options)
    if actions:
        changed.add(service.name)  # for dependents that asked to restart with it
    elif options.start:
        _restart_for_dependencies(service, mine, backend, changed, report, dns_ready)
    if options.start and actions:
        wait_for_dependencies(project, service, backend, request.dependency_timeout, report)
    for action in actions:
        label = f"Container {action.name}"
        if action.kind == "remove":
            ctr.remove(
                backend.engine.inspect(action.container),
                backend,
                timeout=request.timeout,
                service=service,
            )
            report(label, "Removed")
            continue
        if action.kind == "recreate":
            ctr.remove(
                backend.engine.inspect(action.container),
                backend,
                timeout=request.timeout,
                service=service,
            )
            report(label, f"Recreate ({action.reason})")
        container_id = action.container
        if action.kind in ("create", "recreate"):
            container_id = ctr.create(project, service, action.number, image, backend)
            report(label, "Created")
        if options.start:
            dns_ready()
            backend.engine.start(container_id)
            ctr.run_hooks(backend, container_id, service, "post_start")
            report(label, "Started")
    if options.start and not actions:
        report(f"Service {service.name}", "Up to date")


def _restart_for_dependencies(
    service: Service,
    mine: list[Existing],
    backend: Backend,
    changed: set[str],
    report: Report,
    dns_ready: Callable[[], object],
) -> None:
    """depends_on `restart: true`: a dependency this up recreated or restarted takes
    this (otherwise unchanged) service's running containers with it."""
    causes = [name for name, dep in service.depends_on.items() if dep.restart and name in changed]
    if not causes:
        return
    for container in mine:
        if container.status == "running":
            backend.engine.stop(container.id, timeout=ctr.stop_timeout(service, None))
            dns_ready()
            backend.engine.start(container.id)
            report(f"Container {container.name}", f"Restarted ({causes[0]} changed)")
    changed.add(service.name)


def wait_for_dependencies(
    project: Project, service: Service, backend: Backend, timeout: float, report: Report
) -> None:
    deadline = time.monotonic() + timeout
    for name, dependency in service.depends_on.items():
        if name not in project.services:
            if dependency.required:
                raise OperationError(f"service {service.name} depends on missing service {name}")
            continue
        while True:
            ready, why = _condition_met(backend, project, name, dependency.condition)
            if ready:
                break
            if why and why.startswith("failed"):
                if not dependency.required:
                    report(f"Service {service.name}", f"optional dependency {name} {why}")
                    break
                raise OperationError(f"service {service.name}: dependency {name} {why}")
            if time.monotonic() > deadline:
                raise OperationError(
                    f"service {service.name}: gave up waiting for {name} ({dependency.condition})"
                    f": {why}"
                )
            time.sleep(0.05)


def _condition_met(
    backend: Backend, project: Project, service: str, condition: str
) -> tuple[bool, str]:
    from composer import labels as L

    infos = [
        c
        for c in backend.containers(project.name, include_oneoff=False)
        if (c.get("labels") or {}).get(L.SERVICE) == service
    ]
    if not infos:
        return False, "has no container"
    if condition == "service_completed_successfully":
        codes = [c.get("exit_code") for c in infos if c.get("status") == "exited"]
        if len(codes) < len(infos):
            return False, "is still running"
        bad = [code for code in codes if code != 0]
        return (not bad), (f"failed: exited with code {bad[0]}" if bad else "")
    if condition == "service_healthy":
        states = [(c.get("health") or {}).get("status") for c in infos]
        if any(c.get("status") == "exited" for c in infos):
            return False, "failed: it exited"
        if all(s == "healthy" for s in states):
            return True, ""
        if "unhealthy" in states:
            return False, "failed: it is unhealthy"
        if any(s is None for s in states):
            return False, "failed: it has no healthcheck"
        return False, f"is {', '.join(str(s) for s in states)}"
    started = all(c.get("status") in ("running", "exited") for c in infos)
    return started, "" if started else "is not started"
