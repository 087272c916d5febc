"""`composer down` and the other commands that stop or remove containers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from composer import labels as L
from composer.model import Project
from composer.ops import containers as ctr
from composer.ops.backend import Backend
from composer.ops.project import check_identity, forget, graph_of, project_lock

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
    """Stop and remove the project's containers (reverse dependency order, each level
    in parallel), then its networks; named volumes only with volumes=True."""
    from runtime.network import dns

    with project_lock(backend, project, "composer down", lambda text: report("Project", text)):
        check_identity(backend, project, record=False)
        infos = backend.containers(project.name)
        grouped = _by_service(infos)
        order = graph_of(project).stop_generations()
        known = {name for level in order for name in level}
        leftovers = [s for s in grouped if s not in known]
        if leftovers and not remove_orphans:
            # Orphans still hold the networks; keep those too.
            report(
                "Project",
                f"orphan containers of services {', '.join(sorted(leftovers))} "
                "left in place; `down --remove-orphans` removes them",
            )
        levels = ([leftovers] if remove_orphans and leftovers else []) + order
        doomed = [[info for name in level for info in grouped.get(name, [])] for level in levels]
        # Nothing stays (no orphans kept): the networks go as soon as every container has
        # let go of them, while the engine still deletes the containers (~0.1 s each).
        whole = sum(map(len, doomed)) == len(infos)
        # One thread a container: most of a removal is waiting (the shim, the kernel).
        with ThreadPoolExecutor(max_workers=max(len(infos), 1) + 1) as pool:
            stopped = {}
            for level in doomed:  # dependents first
                futures = [
                    pool.submit(
                        ctr.stop_and_release,
                        info,
                        backend,
                        timeout=timeout,
                        service=project.services.get(_service_of(info)),
                    )
                    for info in level
                ]
                stopped.update((i["id"], f.result()) for i, f in zip(level, futures, strict=True))
            gone = [info for level in doomed for info in level]
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
    for level in graph_of(project).stop_generations():
        running = [
            info
            for name in level
            if name in chosen
            for info in grouped.get(name, [])
            if info.get("status") == "running"
        ]

        def stop_one(info: dict) -> dict:
            service = project.services.get(_service_of(info))
            if service is not None:
                with contextlib.suppress(Exception):  # a failing pre_stop must not block a stop
                    ctr.run_hooks(backend, info["id"], service, "pre_stop")
            return backend.engine.stop(info["id"], timeout=ctr.stop_timeout(service, timeout))

        with ThreadPoolExecutor(max_workers=8) as pool:
            replies = list(pool.map(stop_one, running))
        for info, reply in zip(running, replies, strict=True):
            why = (reply or {}).get("stop_reason")
            report(f"Container {info.get('name')}", f"Stopped{f' ({why})' if why else ''}")
