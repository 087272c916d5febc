"""`composer down` and the other commands that stop or remove containers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from composer import labels as L
from composer.model import Project
from composer.ops import containers as ctr
from composer.ops.backend import Backend
from composer.ops.project import check_identity, forget, in_dependency_order, project_lock

Report = Callable[[str, str], None]


def _service_of(info: dict) -> str:
    return (info.get("labels") or {}).get(L.SERVICE, "")


def _by_service(infos: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for info in infos:
        grouped.setdefault(_service_of(info), []).append(info)
    return grouped


def down(
    project: Project,
    backend: Backend,
    report: Report,
    *,
    volumes: bool = False,
    remove_orphans: bool = False,
    timeout: float | None = None,
) -> None:
    """Stop and remove the project's containers (each once its dependents are stopped,
    all at once otherwise), then its networks; named volumes only with volumes=True."""
    from runtime.network import dns

    with project_lock(backend, project, "composer down", lambda text: report("Project", text)):
        check_identity(backend, project, record=False)
        infos = backend.containers(project.name)
        grouped = _by_service(infos)
        leftovers = [s for s in grouped if s not in project.services]
        if leftovers and not remove_orphans:
            # Orphans still hold the networks; keep those too.
            report(
                "Project",
                f"orphan containers of services {', '.join(sorted(leftovers))} "
                "left in place; `down --remove-orphans` removes them",
            )
        kept = set() if remove_orphans else set(leftovers)
        doomed = {i["id"]: i for i in infos if _service_of(i) not in kept}
        # Nothing stays (no orphans kept): the networks go as soon as every container has
        # let go of them, while the engine still deletes the containers (~0.1 s each).
        whole = len(doomed) == len(infos)
        stopped: dict[str, str | None] = {}

        def release(container_id: str, wait: Callable[[], None]) -> None:
            wait()
            info = doomed[container_id]
            stopped[container_id] = ctr.stop_and_release(
                info, backend, timeout=timeout, service=project.services.get(_service_of(info))
            )

        in_dependency_order(list(doomed), _stops_after(project, grouped, leftovers), release)
        # One thread a container: most of a removal is waiting (the shim, the kernel).
        with ThreadPoolExecutor(max_workers=max(len(doomed), 1) + 1) as pool:
            gone = list(doomed.values())
            removed = [pool.submit(ctr.delete, info, backend, volumes=volumes) for info in gone]
            networks = pool.submit(_remove_networks, project, backend) if whole else None
            for info, future in zip(gone, removed, strict=True):
                future.result()
                how = stopped[info["id"]]
                report(f"Container {info.get('name')}", f"Removed{f' ({how})' if how else ''}")
            for name in networks.result() if networks else ():
                report(f"Network {name}", "Removed")
        if whole and not backend.containers(project.name):
            dns.stop_server(project.name, backend.root)
            dns.forget_project(project.name, backend.root)
            forget(backend, project)
        if volumes:
            for volume in project.volumes.values():
                if not volume.external and backend.volumes.exists(volume.name):
                    backend.volumes.remove(volume.name)
                    report(f"Volume {volume.name}", "Removed")


def _stops_after(
    project: Project, grouped: dict[str, list[dict]], orphans: list[str]
) -> Callable[[str], list[str]]:
    """For a container id, those to stop before it: its service's dependents' containers,
    and orphans before all (what they need is not known)."""
    dependents: dict[str, list[str]] = {}
    for name, service in project.services.items():
        for needed in service.depends_on:
            dependents.setdefault(needed, []).append(name)
    first = [i["id"] for name in orphans for i in grouped.get(name, [])]
    service_of = {i["id"]: _service_of(i) for infos in grouped.values() for i in infos}

    def before(container_id: str) -> list[str]:
        name = service_of[container_id]
        if name in orphans:
            return []
        return first + [i["id"] for d in dependents.get(name, []) for i in grouped.get(d, [])]

    return before


def _remove_networks(project: Project, backend: Backend) -> list[str]:
    """The project's own networks (external ones stay); the names removed."""
    present = {network.name for network in backend.networks.list()}
    gone = []
    for network in project.networks.values():
        if not network.external and network.name in present:
            backend.networks.remove(network.name)
            gone.append(network.name)
    return gone


def dry_run(project: Project, backend: Backend, *, volumes: bool = False) -> list[tuple[str, str]]:
    """What down would remove, without removing it."""
    steps = [
        (
            f"Container {info.get('name')}",
            "Stop and remove" if info.get("status") == "running" else "Remove",
        )
        for info in backend.containers(project.name)
    ]
    present = {network.name for network in backend.networks.list()}
    steps += [
        (f"Network {n.name}", "Remove")
        for n in project.networks.values()
        if not n.external and n.name in present
    ]
    if volumes:
        steps += [
            (f"Volume {v.name}", "Remove")
            for v in project.volumes.values()
            if not v.external and backend.volumes.exists(v.name)
        ]
    return steps


def stop(
    project: Project,
    backend: Backend,
    report: Report,
    *,
    services: list[str] | None = None,
    timeout: float | None = None,
) -> None:
    """Stop (not remove) running containers, dependents first."""
    grouped = _by_service(backend.containers(project.name, include_oneoff=False))
    chosen = set(services or grouped)
    running = {
        info["id"]: info
        for name, infos in grouped.items()
        if name in chosen and name in project.services  # orphans are down's to handle
        for info in infos
        if info.get("status") == "running"
    }
    replies: dict[str, dict] = {}

    def stop_one(container_id: str, wait: Callable[[], None]) -> None:
        wait()
        info = running[container_id]
        service = project.services.get(_service_of(info))
        if service is not None:
            with contextlib.suppress(Exception):  # a failing pre_stop must not block a stop
                ctr.run_hooks(backend, container_id, service, "pre_stop")
        replies[container_id] = backend.engine.stop(
            container_id, timeout=ctr.stop_timeout(service, timeout)
        )

    in_dependency_order(list(running), _stops_after(project, grouped, []), stop_one)
    for container_id, info in running.items():
        why = (replies[container_id] or {}).get("stop_reason")
        report(f"Container {info.get('name')}", f"Stopped{f' ({why})' if why else ''}")
