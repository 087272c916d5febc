"""Project-wide steps shared by the commands: the lock, the identity check,
networks and volumes, images, and the dependency graph of the model."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator

from composer.graph import Edge, ServiceGraph
from composer.model import Project, Service
from composer.ops.backend import Backend


class OperationError(Exception):
    """A command that cannot go on; the message says why and what to do."""


class DependencyFailed(OperationError):
    """A unit of work given up because one it waits for failed."""


def graph_of(project: Project) -> ServiceGraph | Independent:
    edges = [
        Edge(name, needed, "depends_on")
        for name, service in project.services.items()
        for needed in service.depends_on
    ]
    if not edges:
        return Independent(project.services)
    return ServiceGraph(project.services, edges)


class Independent:
    """The ordering of services none of which depends on another: any order will do, so
    there is nothing for networkx to sort (importing it costs ~100 ms of a command)."""

    def __init__(self, services: Iterable[str]) -> None:
        self.services = list(services)

    def dependencies(self, service: str) -> set[str]:
        return set()

    def dependents(self, service: str) -> set[str]:
        return set()

    def select(self, services: Iterable[str], with_dependencies: bool = True) -> set[str]:
        return set(services)

    def start_generations(self, services: Iterable[str] | None = None) -> list[list[str]]:
        chosen = sorted(self.services if services is None else set(services))
        return [chosen] if chosen else []

    def stop_generations(self, services: Iterable[str] | None = None) -> list[list[str]]:
        return self.start_generations(services)


def in_dependency_order(
    units: list[str],
    waits_for: Callable[[str], Iterable[str]],
    work: Callable[[str, Callable[[], None]], None],
    *,
    workers: int = 0,
) -> None:
    """work(unit, wait) for every unit at once, each on a thread of its own. work calls
    wait() at the point it must not pass before the units it waits for are done (up makes
    a service's containers, then waits for its dependencies to start them; down stops a
    container once its dependents' are gone), so the graph needs no sorting (networkx).

    With `workers`, that many at a time: `units` must then list each unit after those it
    waits for, so a waiting unit never holds the thread its prerequisite needs. The first
    error is raised, not the DependencyFailed it caused further on.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    finished = {unit: threading.Event() for unit in units}
    failed: set[str] = set()

    def run(unit: str) -> None:
        def wait() -> None:
            for other in waits_for(unit):
                if other in finished and other != unit:
                    finished[other].wait()
                    if other in failed:
                        raise DependencyFailed(f"{unit}: not done, as {other} failed")

        try:
            work(unit, wait)
        except BaseException:
            failed.add(unit)
            raise
        finally:
            finished[unit].set()

    with ThreadPoolExecutor(max_workers=workers or max(len(units), 1)) as pool:
        futures = [pool.submit(run, unit) for unit in units]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise next((e for e in errors if not isinstance(e, DependencyFailed)), errors[0])


LOCK_WAIT = 120.0  # seconds a command waits for another one on the same project


@contextlib.contextmanager
def project_lock(
    backend: Backend, project: Project, purpose: str, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Serialize commands on one project; a waiting one is told who holds it."""
    from runtime.state import Lock, LockBusy

    directory = backend.project_dir()
    directory.mkdir(parents=True, exist_ok=True)
    lock = Lock(directory / f"{project.name}.lock", purpose, timeout=0)
    try:
        lock.acquire()
    except LockBusy as busy:
        if on_wait is not None:
            on_wait(f"waiting: {busy}")
        try:
            lock.acquire(timeout=LOCK_WAIT)
        except LockBusy as e:
            raise OperationError(str(e)) from None
    try:
        sweep_incomplete(backend, project)
        yield
    finally:
        lock.release()


def sweep_incomplete(backend: Backend, project: Project) -> None:
    """Undo what a killed command left half-made for this project: container
    directories that never got to the engine (no state.json) but hold a mounted root
    filesystem, a network namespace, addresses or DNS records."""
    from composer.ops import containers

    if not backend.engine.containers.is_dir():
        return
    for directory in backend.engine.containers.iterdir():
        if not directory.is_dir() or (directory / "state.json").exists():
            continue
        owner = containers.read_record(directory).get("project")
        if owner == project.name and not containers.being_created(directory):
            containers.undo(directory.name, directory, backend, project.name)


def check_identity(backend: Backend, project: Project, *, record: bool) -> None:
    """Refuse to act on a project of the same name that lives in another folder."""
    from runtime.state import atomic_write_json, read_json

    path = backend.project_dir() / f"{project.name}.json"
    known = read_json(path, None)
    if known and known.get("working_dir") != project.project_dir:
        others = backend.containers(project.name)
        if others:
            raise OperationError(
                f"project name {project.name!r} is already used by the project in "
                f"{known['working_dir']} ({len(others)} containers).\n"
                f"  hint: give this one another name with -p NAME (or `name:` in the file), "
                f"or run `composer down` in {known['working_dir']} first"
            )
    wanted = {
        "name": project.name,
        "working_dir": project.project_dir,
        "config_files": list(project.config_files),
    }
    if record and known != wanted:  # unchanged: no write (and no fsync) on every up
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, wanted)


def forget(backend: Backend, project: Project) -> None:
    """Drop the project's record once it has nothing left. Its lock file stays: removing
    a lock file another command waits on would let two commands in at once."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(backend.project_dir() / f"{project.name}.json")


def used_networks(project: Project, services: list[Service]) -> list[str]:
    keys: list[str] = []
    for service in services:
        if service.network_mode and service.network_mode != "bridge":
            continue
        keys.extend(k for k in service.networks if k not in keys)
    return keys


def ensure_networks(
    backend: Backend, project: Project, keys: list[str], report: Callable[[str, str], None]
) -> None:
    from runtime.network.manager import NetworkNotFound

    present = {n.name for n in backend.networks.list()}
    for key in keys:
        network = project.networks[key]
        if network.external:
            try:
                backend.networks.inspect(network.name)
            except NetworkNotFound:
                raise OperationError(
                    f"network {network.name} is external but does not exist: create it first"
                ) from None
            continue
        backend.networks.create(
            network.name,
            project=project.name,
            internal=network.internal,
            ipv6=network.enable_ipv6,
            labels=dict(network.labels),
            ipam=_ipam(network),
            driver_opts=dict(network.driver_opts),
        )  # idempotent: it also repairs a network whose bridge or rules went missing
        if network.name not in present:
            report(f"Network {network.name}", "Created")


def _ipam(network) -> dict | None:
    if not network.ipam_pools:
        return None
    return {
        "config": [
            {
                k: v
                for k, v in (
                    ("subnet", p.subnet),
                    ("ip_range", p.ip_range),
                    ("gateway", p.gateway),
                    ("aux_addresses", dict(p.aux_addresses)),
                )
                if v
            }
            for p in network.ipam_pools
        ]
    }


def ensure_volumes(
    backend: Backend, project: Project, services: list[Service], report: Callable[[str, str], None]
) -> None:
    from composer import labels as L

    wanted = {m.source for s in services for m in s.volumes if m.type == "volume" and m.source}
    for key in wanted:
        volume = project.volumes.get(key)
        if volume is None:
            continue
        if volume.external:
            if not backend.volumes.exists(volume.name):
                raise OperationError(
                    f"volume {volume.name} is external but does not exist: create it first"
                )
            continue
        if not backend.volumes.exists(volume.name):
            backend.volumes.create(
                volume.name,
                labels={**dict(volume.labels), L.PROJECT: project.name, "io.composer.volume": key},
            )
            report(f"Volume {volume.name}", "Created")


def image_name(project: Project, service: Service) -> str:
    return service.image or f"{project.name}-{service.name}"


def ensure_image(
    backend: Backend,
    project: Project,
    service: Service,
    *,
    build: str,
    report: Callable[[str, str], None],
    pull: str | None = None,
):
    """The service's image: built (build: always, or missing), or obtained. `pull`
    (up --pull) overrides the service's pull_policy."""
    name = image_name(project, service)
    policy = pull or service.pull_policy or "missing"
    if service.build is not None and policy != "never":
        local = backend.store.resolve(name)
        if build == "always" or policy == "build" or (local is None and build != "never"):
            return build_image(backend, project, service, report)
        if local is not None:
            return local
    from runtime.images.obtain import ImageUnavailable, obtain

    try:
        image = obtain(
            name, backend.store, policy=policy, on_output=lambda line: report(f"Image {name}", line)
        )
    except ImageUnavailable as e:
        raise OperationError(f"service {service.name}: {e}") from None
    return image


def build_image(
    backend: Backend, project: Project, service: Service, report: Callable[[str, str], None]
):
    from composer.containers import check_build_context
    from runtime.images.build.builder import BuildError, build

    check_build_context(project, service)  # named at its line, not as a missing Dockerfile
    spec = service.build
    name = image_name(project, service)

    def on_step(index: int, total: int, text: str, cached: bool) -> None:
        report(f"Image {name}", f"[{index}/{total}] {'CACHED ' if cached else ''}{text}")

    try:
        return build(
            spec.context,
            spec.dockerfile or "Dockerfile",
            inline=spec.dockerfile_inline,
            target=spec.target,
            args={k: v for k, v in spec.args.items() if v is not None},
            labels=dict(spec.labels),
            tags=(name, *spec.tags),
            no_cache=spec.no_cache,
            pull=spec.pull,
            store=backend.store,
            on_step=on_step,
            on_output=lambda line: report(f"Image {name}", line.rstrip()),
        )
    except BuildError as e:
        tail = "".join(f"\n    {line}" for line in e.output.splitlines()[-15:])
        shown = f"; its last output:{tail}" if tail else ""
        raise OperationError(f"service {service.name}: build failed: {e}{shown}") from None
