"""`composer run`: a one-off container of a service, with the command line's changes
laid over the service (command, entrypoint, environment, volumes, ports…)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from composer.model import FrozenMap, Mount, Port, Project, Service
from composer.ops import containers as ctr
from composer.ops.backend import Backend
from composer.ops.project import (
    OperationError,
    check_identity,
    ensure_image,
    ensure_networks,
    ensure_volumes,
    project_lock,
    used_networks,
)
from runtime.record import field, record, replace

Report = Callable[[str, str], None]


@record(frozen=False)
class RunRequest:
    service: str
    command: list[str] | None = None  # None: the service's
    entrypoint: list[str] | None = None  # None: the service's; []: none at all
    env: list[str] = field(default_factory=list)  # KEY=VALUE, or KEY to take ours
    volumes: list[str] = field(default_factory=list)  # short syntax
    publish: list[str] = field(default_factory=list)  # short syntax
    labels: list[str] = field(default_factory=list)  # KEY=VALUE
    service_ports: bool = False
    no_deps: bool = False
    name: str | None = None
    use_aliases: bool = False
    tty: bool = False
    # The caller attaches (Engine.attach) and relays its stdin; the container starts then.
    interactive: bool = False
    user: str | None = None
    workdir: str | None = None
    build: str = "auto"
    dependency_timeout: float = 300.0


def oneoff_name(project: Project, service: Service) -> str:
    return f"{project.name}-{service.name}-run-{os.urandom(6).hex()}"


def oneoff_service(project: Project, service: Service, request: RunRequest) -> Service:
    """The service as this one-off runs it: ports only when asked for, no fixed name."""
    environment = dict(service.environment)
    for item in request.env:
        key, has_value, value = item.partition("=")
        if has_value:
            environment[key] = value
        elif key in os.environ:  # `-e KEY`: our own value, as docker does
            environment[key] = os.environ[key]
    labels = dict(service.labels)
    labels.update(item.partition("=")[::2] for item in request.labels)
    ports = list(service.ports) if request.service_ports else []
    ports += [p for spec in request.publish for p in parse_ports(spec)]
    volumes = list(service.volumes) + [
        parse_mount(spec, project.project_dir) for spec in request.volumes
    ]
    changes: dict = {
        "environment": FrozenMap(environment),
        "labels": FrozenMap(labels),
        "ports": tuple(ports),
        "volumes": tuple(volumes),
        "container_name": None,
        "tty": request.tty,
        # -d keeps the service's own stdin_open: `composer attach` can feed it later
        "stdin_open": request.interactive or service.stdin_open,
    }
    if request.command is not None:
        changes["command"] = tuple(request.command)
    if request.entrypoint is not None:
        changes["entrypoint"] = tuple(request.entrypoint)
    if request.user is not None:
        changes["user"] = request.user
    if request.workdir is not None:
        changes["working_dir"] = request.workdir
    return replace(service, **changes)


def parse_ports(spec: str) -> list[Port]:
    """`-p` in the short syntax of `ports:`."""
    from composer.loader.errors import LoadError
    from composer.loader.normalize import parse_port

    try:
        nodes = parse_port(spec, None)
    except LoadError as err:
        raise OperationError(f"-p {spec}: {err}") from None
    return [
        Port(
            target=int(node["target"]),
            published=node.get("published"),
            host_ip=node.get("host_ip"),
            protocol=node.get("protocol", "tcp"),
        )
        for node in nodes
    ]


def parse_mount(spec: str, project_dir: str) -> Mount:
    """`-v` in the short syntax of `volumes:`; a missing bind source is made, as compose does."""
    from composer.loader.errors import LoadError
    from composer.loader.normalize import parse_volume

    try:
        node = parse_volume(spec, None, project_dir)
    except LoadError as err:
        raise OperationError(f"-v {spec}: {err}") from None
    kind = node["type"]
    options = node.get(kind) or {}
    if kind == "bind" and node.get("source"):
        os.makedirs(node["source"], exist_ok=True)
    return Mount(
        type=kind,
        target=node["target"],
        source=node.get("source"),
        read_only=bool(node.get("read_only")),
        bind_propagation=options.get("propagation") if kind == "bind" else None,
        volume_nocopy=bool(options.get("nocopy")) if kind == "volume" else False,
    )


def create_oneoff(
    project: Project, backend: Backend, request: RunRequest, report: Report
) -> tuple[str, str]:
    """Start the dependencies (unless no_deps), create the one-off container and start it
    once its dependencies are ready; (id, name). An interactive one-off's command runs
    when its caller attaches (Engine.attach), so none of its output comes before that."""
    from composer.ops.up import UpRequest, up, wait_for_dependencies
    from runtime.network import dns

    if request.service not in project.services:
        raise OperationError(f"no such service: {request.service}")
    declared = project.services[request.service]
    dependencies = [d for d in declared.depends_on if d in project.services]
    if dependencies and not request.no_deps:
        up(project, backend, UpRequest(services=dependencies, build=request.build), report)
    service = oneoff_service(project, declared, request)
    with project_lock(backend, project, "composer run"):
        check_identity(backend, project, record=True)
        ensure_networks(backend, project, used_networks(project, [service]), report)
        ensure_volumes(backend, project, [service], report)
        image = ensure_image(backend, project, service, build=request.build, report=report)
        # Bound here and handed over: the one-off need not wait for the server to boot.
        name_server = dns.launch(project.name, backend.root)
        name = request.name or oneoff_name(project, service)
        container_id = ctr.create(
            project,
            service,
            1,
            image,
            backend,
            name=name,
            oneoff=True,
            stdin_once=request.interactive,
        )
    try:
        if not request.use_aliases:
            _only_container_name(project, backend, container_id)
        if dependencies and not request.no_deps:
            wait_for_dependencies(project, service, backend, request.dependency_timeout, report)
        if name_server is not None:
            name_server.ready()
        backend.engine.start(container_id, on_attach=request.interactive)
        if name_server is not None:
            name_server.wait()  # its failure is reported; lookups wait in the kernel meanwhile
    except BaseException:
        remove_oneoff(project, backend, container_id)
        raise
    return container_id, name


def _only_container_name(project: Project, backend: Backend, container_id: str) -> None:
    """Take the service name and aliases off the one-off's DNS records: other containers
    asking for the service must not be sent to it."""
    from runtime.network import dns_records

    entry = dns_records.load_records(project.name, backend.root)["containers"].get(container_id)
    if not entry:
        return
    for network, attachment in entry["networks"].items():
        dns_records.add_container(
            project.name,
            network,
            container_id,
            entry["name"],
            None,
            attachment["ips"],
            (),
            entry.get("hostname"),
            dns=entry.get("dns") or (),
            root=backend.root,
        )


def remove_oneoff(project: Project, backend: Backend, container_id: str) -> None:
    """Remove a one-off with its anonymous volumes (`run --rm`)."""
    from runtime.engine import NoSuchContainer

    with project_lock(backend, project, "composer run --rm"), contextlib.suppress(NoSuchContainer):
        ctr.remove(backend.engine.inspect(container_id), backend, timeout=10, volumes=True)
