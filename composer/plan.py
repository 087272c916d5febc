"""What `up` must do: the desired project against the containers that exist.

Pure functions over plain data, so every decision is unit-tested without a
kernel: the ops layer lists the actual containers, asks for a plan and carries
it out. Containers carry labels (composer/labels.py); the config hash decides
recreation, and an unchanged one-shot job that completed is not run again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from composer import labels as L
from composer.model import Project, Service
from runtime.record import record


@record
class Existing:
    """A container of the project as the engine reports it."""

    id: str
    name: str
    service: str
    number: int
    config_hash: str
    image: str
    status: str  # created, running, exited
    exit_code: int | None = None
    oneoff: bool = False

    @classmethod
    def from_engine(cls, info: Mapping) -> Existing:
        labels = info.get("labels") or {}
        return cls(
            id=info["id"],
            name=info.get("name") or info["id"][:12],
            service=labels.get(L.SERVICE, ""),
            number=int(labels.get(L.NUMBER) or 0),
            config_hash=labels.get(L.CONFIG_HASH, ""),
            image=labels.get(L.IMAGE, ""),
            status=info.get("status", ""),
            exit_code=info.get("exit_code"),
            oneoff=labels.get(L.ONEOFF) == "True",
        )


@record
class Action:
    """One step: create, recreate, start, or remove a container."""

    kind: str  # create | recreate | start | remove
    service: str
    number: int
    name: str
    container: str | None = None  # the existing container's id, if any
    reason: str = ""


@record
class UpOptions:
    force_recreate: bool = False
    no_recreate: bool = False
    scale: Mapping[str, int] | None = None  # --scale overrides
    start: bool = True  # False for --no-start / `create`
    create: bool = True  # False for `start`: existing containers are started, nothing else


def container_name(project: Project, service: Service, number: int) -> str:
    return service.container_name or f"{project.name}-{service.name}-{number}"


def replicas(service: Service, options: UpOptions) -> int:
    if options.scale and service.name in options.scale:
        return options.scale[service.name]
    return service.scale


def completed_job(existing: Existing, service: Service) -> bool:
    """A one-shot job that already succeeded: `up` leaves it alone."""
    return (
        existing.status == "exited" and existing.exit_code == 0 and service.restart in (None, "no")
    )


def plan_service(
    project: Project,
    service: Service,
    existing: Iterable[Existing],
    image: str,
    options: UpOptions | None = None,
) -> list[Action]:
    """Actions that bring one service's containers to what the project says."""
    options = options or UpOptions()
    wanted = replicas(service, options)
    by_number: dict[int, Existing] = {}
    surplus: list[Existing] = []
    for container in sorted(existing, key=lambda c: c.number):
        if container.oneoff:
            continue
        if 1 <= container.number <= wanted and container.number not in by_number:
            by_number[container.number] = container
        else:
            surplus.append(container)
    actions: list[Action] = []
    for number in range(1, wanted + 1):
        name = container_name(project, service, number)
        current = by_number.get(number)
        if current is None:
            if options.create:
                actions.append(Action("create", service.name, number, name, reason="missing"))
            continue
        if not options.create:  # as `docker compose start`: a finished job runs again too
            if current.status != "running":
                actions.append(
                    Action("start", service.name, number, name, current.id, current.status)
                )
            continue
        stale = _staleness(current, service, image)
        if options.force_recreate or (stale and not options.no_recreate):
            reason = "forced" if options.force_recreate else stale
            actions.append(Action("recreate", service.name, number, name, current.id, reason))
        elif current.status == "running" or completed_job(current, service):
            continue
        elif options.start:
            actions.append(Action("start", service.name, number, name, current.id, current.status))
    for container in surplus if options.create else ():
        actions.append(
            Action(
                "remove",
                service.name,
                container.number,
                container.name,
                container.id,
                "scaled down" if container.number > wanted else "duplicate number",
            )
        )
    return actions


def _staleness(current: Existing, service: Service, image: str) -> str:
    if current.config_hash != service.config_hash:
        return "configuration changed"
    if image and current.image and current.image != image:
        return "image changed"
    return ""


def orphans(project: Project, existing: Iterable[Existing]) -> list[Existing]:
    """Containers of this project whose service is no longer in it."""
    return [c for c in existing if not c.oneoff and c.service not in project.services]
