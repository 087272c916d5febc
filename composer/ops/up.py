"""`composer up`: converge the project to its file, starting services in
dependency order and independent ones in parallel."""

from __future__ import annotations

import contextlib
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
    image_name,
    in_dependency_order,
    project_lock,
    used_networks,
)
from composer.plan import Existing, UpOptions, orphans, plan_service
from runtime.record import field, record

Report = Callable[[str, str], None]
# Between two looks at a dependency when no change wakes the wait (seconds).
DEPENDENCY_LOOK_INTERVAL = 0.1


@record(frozen=False)
class UpRequest:
    services: list[str] = field(default_factory=list)
    no_deps: bool = False
    build: str = "auto"  # auto (missing only) | always (--build) | never (--no-build)
    force_recreate: bool = False
    no_recreate: bool = False
    create: bool = True  # False: `start`, of existing containers only
    remove_orphans: bool = False
    scale: dict = field(default_factory=dict)
    start: bool = True
    parallel: int = 0  # 0: no limit
    timeout: float | None = None  # stop timeout when recreating
    dependency_timeout: float = 300.0
    pull: str | None = None  # --pull: always, missing, never (else each pull_policy)


def up(project: Project, backend: Backend, request: UpRequest, report: Report) -> list[str]:
    """Bring the project up; return the services acted on."""
    unknown = [s for s in request.services if s not in project.services]
    if unknown:
        raise OperationError(f"no such service: {', '.join(unknown)}")
    # The dependency graph only where it is needed (importing networkx costs ~0.1 s):
    # named services pull in their dependencies, and a --parallel limit needs start order.
    graph = graph_of(project) if request.services and not request.no_deps else None
    selected = (
        graph.select(request.services) if graph else set(request.services or project.services)
    )
    services = [project.services[name] for name in project.services if name in selected]
    with project_lock(backend, project, "composer up", lambda text: report("Project", text)):
        check_identity(backend, project, record=False)
        background = ThreadPoolExecutor(max_workers=3)
        try:
            # Recorded while the rest goes on: its fsync need only be done by the end.
            identity = background.submit(check_identity, backend, project, record=True)
            backend.networks.cleanup_stale()
            # Bridges are made while the containers are (each waits before it is wired).
            networks = background.submit(
                ensure_networks, backend, project, used_networks(project, services), report
            )
            # The name server's sockets are bound on the bridges and handed to it, so
            # containers start while it boots (~0.1-0.25 s): first lookups wait in the kernel.
            dns = background.submit(_launch_dns, backend, project, networks)
            ensure_volumes(backend, project, services, report)
            run = _Run(
                project,
                backend,
                request,
                report,
                images=_ensure_images(backend, project, services, request, report),
                dns_ready=lambda: _dns_ready(dns.result()),
                networks_ready=networks.result,
            )
            _converge(run, [s.name for s in services], graph)
            networks.result()  # its failure counts even when no container was made
            launched = dns.result()
            if launched is not None:  # its failure counts even when nothing started
                launched.wait()
            identity.result()
        finally:
            background.shutdown(wait=True)
    return [s.name for s in services]


def _ensure_images(
    backend: Backend, project: Project, services: list[Service], request: UpRequest, report
) -> dict:
    """Each service's image; services naming the same image (and pull policy) share one
    look-up (~3 ms each)."""
    images: dict = {}
    shared: dict = {}
    for s in services:
        key = None if s.build is not None else (image_name(project, s), s.pull_policy)
        if key is None or key not in shared:
            image = ensure_image(
                backend, project, s, build=request.build, report=report, pull=request.pull
            )
            if key is not None:
                shared[key] = image
        images[s.name] = image if key is None else shared[key]
    return images


class _Run:
    """What every service's convergence in one `up` shares."""

    def __init__(
        self, project, backend, request, report, *, images, dns_ready, networks_ready
    ) -> None:
        self.project: Project = project
        self.backend: Backend = backend
        self.request: UpRequest = request
        self.report: Report = report
        self.images: dict = images
        self.dns_ready: Callable[[], object] = dns_ready
        self.networks_ready: Callable[[], object] = networks_ready
        self.options = UpOptions(
            request.force_recreate,
            request.no_recreate,
            request.scale,
            request.start,
            request.create,
        )
        self.existing: list[Existing] = []
        self.changed: set[str] = set()  # services this up created, recreated or started


def _converge(run: _Run, names: list[str], graph=None) -> None:
    """Every service at once: each makes its containers right away and starts them once
    the services it depends on are done (so containers are made while a dependency becomes
    healthy). Under a --parallel limit they are taken up in start order."""
    run.existing = run.backend.existing(run.project.name)
    _handle_orphans(run.backend, run.project, run.existing, run.request, run.report)
    workers = run.request.parallel if 0 < run.request.parallel < len(names) else 0
    if workers:
        graph = graph or graph_of(run.project)
        names = [name for generation in graph.start_generations(names) for name in generation]
    in_dependency_order(
        names,
        lambda name: run.project.services[name].depends_on,
        lambda name, wait: _converge_service(run, run.project.services[name], wait),
        workers=workers,
    )


def dry_run(project: Project, backend: Backend, request: UpRequest) -> list[tuple[str, str]]:
    """What up would do, without doing it: (resource, action) pairs."""
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


def _launch_dns(backend: Backend, project: Project, networks):
    from runtime.network import dns

    networks.result()
    return dns.launch(project.name, backend.root)


def _dns_ready(launch) -> None:
    """Before a container starts: its first lookup must not be refused."""
    if launch is not None:
        launch.ready()


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


def _converge_service(run: _Run, service: Service, dependencies_done: Callable[[], None]) -> None:
    backend, report, request = run.backend, run.report, run.request
    mine = [c for c in run.existing if c.service == service.name]
    if not run.options.create and not any(not c.oneoff for c in mine) and service.scale:
        raise OperationError(f"service {service.name} has no container to start")
    image = run.images[service.name]
    actions = plan_service(run.project, service, mine, image.digest, run.options)
    if actions:
        run.changed.add(service.name)  # for dependents that asked to restart with it
        if run.options.start and any(a.kind != "remove" for a in actions):
            from runtime import shim_spawner

            shim_spawner.expect_launches()
    # Containers are made while the dependencies come up, unless making them needs one
    # running: joining another container's network namespace.
    waited = run.options.start and (service.network_mode or "").startswith(
        ("service:", "container:")
    )
    if waited:
        dependencies_done()
        if actions:
            wait_for_dependencies(run.project, service, backend, request.dependency_timeout, report)
    to_start = []
    made_before = {a.container for a in actions if a.kind == "start"}  # maybe before a reboot
    for action in actions:
        label = f"Container {action.name}"
        if action.kind in ("remove", "recreate"):
            ctr.remove(
                backend.engine.inspect(action.container),
                backend,
                timeout=request.timeout,
                service=service,
            )
            if action.kind == "remove":
                report(label, "Removed")
                continue
            report(label, f"Recreate ({action.reason})")
        container_id = action.container
        if action.kind in ("create", "recreate"):
            container_id = ctr.create(
                run.project,
                service,
                action.number,
                image,
                backend,
                networks_ready=run.networks_ready,
            )
            report(label, "Created")
        to_start.append((label, container_id))
    if not run.options.start:
        return
    if not waited:
        starting = [c for _, c in to_start]
        _wait_holding(run, service, starting, made_before, dependencies_done)
    if not actions:
        _restart_for_dependencies(service, mine, backend, run.changed, report, run.dns_ready)
        report(f"Service {service.name}", "Up to date")
        return
    for label, container_id in to_start:
        if container_id in made_before:
            ctr.ensure_startable(
                run.project,
                service,
                backend.engine.inspect(container_id),
                backend,
                run.networks_ready,
            )
        run.dns_ready()
        backend.engine.start(container_id)
        ctr.run_hooks(backend, container_id, service, "post_start")
        report(label, "Started")


def _wait_holding(
    run: _Run,
    service: Service,
    starting: list[str],
    made_before: set[str],
    dependencies_done: Callable[[], None],
) -> None:
    """Wait until the services this one depends on are done and their conditions met.
    Meanwhile its new containers are made all but started (shim, namespaces, mounts, the
    init before its exec), so their start after the wait is a release of a few ms. If the
    wait fails they are left created, as before."""
    held = [c for c in starting if c not in made_before] if service.depends_on else []
    try:
        for container_id in held:
            run.backend.engine.start(container_id, hold=True)
        dependencies_done()
        if starting:
            wait_for_dependencies(
                run.project, service, run.backend, run.request.dependency_timeout, run.report
            )
    except BaseException:
        for container_id in held:
            with contextlib.suppress(Exception):
                run.backend.engine.discard(container_id)
        raise


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
    from composer import labels as L
    from runtime.inotify import DirectoryWatch

    deadline = time.monotonic() + timeout
    with DirectoryWatch([str(backend.engine.containers)]) as changes:
        for name, dependency in service.depends_on.items():
            if name not in project.services:
                if dependency.required:
                    raise OperationError(
                        f"service {service.name} depends on missing service {name}"
                    )
                continue
            while True:
                infos = [
                    c
                    for c in backend.containers(project.name, include_oneoff=False)
                    if (c.get("labels") or {}).get(L.SERVICE) == name
                ]
                ready, why = _condition_met(infos, dependency.condition)
                if ready:
                    break
                if why and why.startswith("failed"):
                    if not dependency.required:
                        report(f"Service {service.name}", f"optional dependency {name} {why}")
                        break
                    raise OperationError(f"service {service.name}: dependency {name} {why}")
                if time.monotonic() > deadline:
                    raise OperationError(
                        f"service {service.name}: gave up waiting for {name}"
                        f" ({dependency.condition}): {why}"
                    )
                # Woken when a container is made or removed, or a state file in their
                # directories is replaced (a start, a probe, an exit).
                if not changes.add(info["dir"] for info in infos):
                    changes.wait(DEPENDENCY_LOOK_INTERVAL)


def _condition_met(infos: list[dict], condition: str) -> tuple[bool, str]:
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
