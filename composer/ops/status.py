"""What the project's containers are doing: ps rows, merged logs, readiness."""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterator

from composer import labels as L
from composer.model import Project
from composer.ops.backend import Backend


def _status_text(info: dict) -> str:
    status = info.get("status", "")
    if status == "exited":
        code = info.get("exit_code")
        return "exited" if code is None else f"exited ({code})"  # None: its end went unseen
    health = (info.get("health") or {}).get("status")
    return f"{status} ({health})" if health and status == "running" else status


def ps_rows(
    project: Project,
    backend: Backend,
    *,
    services: list[str] | None = None,
    all: bool = False,
    status: list[str] | None = None,
) -> list[dict]:
    """One row per container: the fields docker compose gives, plus the health reason."""
    from runtime.network.manager import NetworkError

    published: dict[str, list] = {}
    try:
        for network in backend.networks.list():
            for port in network.ports:
                published.setdefault(port.container_id, []).append(port)
    except NetworkError:
        pass
    rows = []
    for info in backend.containers(project.name):
        labels = info.get("labels") or {}
        service = labels.get(L.SERVICE, "")
        if services and service not in services:
            continue
        state = info.get("status", "")
        if status:
            if state not in status:
                continue
        elif not all and state != "running":
            continue
        health = info.get("health") or {}
        ports = [
            f"{p.host_ip}:{p.host_port}->{p.container_port}/{p.protocol}"
            for p in published.get(info["id"], [])
        ]
        rows.append(
            {
                "ID": info["id"][:12],
                "Name": info.get("name") or info["id"][:12],
                "Image": project.services[service].image
                if service in project.services and project.services[service].image
                else f"{project.name}-{service}",
                "Command": " ".join(info.get("args") or []),
                "Project": project.name,
                "Service": service,
                "State": state,
                "Status": _status_text(info),
                "Health": health.get("status", ""),
                "HealthReason": _health_reason(health),
                "ExitCode": info.get("exit_code") if state == "exited" else None,
                "Ports": ", ".join(ports),
                "CreatedAt": info.get("created_at", ""),
            }
        )
    return rows


def _health_reason(health: dict) -> str:
    log = health.get("log") or []
    if not log or health.get("status") == "healthy":
        return ""
    last = log[-1]
    output = (last.get("output") or "").strip().splitlines()
    return f"exit {last.get('exit_code')}: {output[-1] if output else ''}".strip()


def merged_logs(
    project: Project,
    backend: Backend,
    services: list[str],
    *,
    follow: bool,
    tail: int | None = None,
    since=None,
    until=None,
    index: int | None = None,
) -> Iterator[dict]:
    """Every chosen container's records, merged in time order (per stream when following)."""
    infos = [
        i
        for i in backend.containers(project.name)
        if (i.get("labels") or {}).get(L.SERVICE) in services
        and (index is None or (i.get("labels") or {}).get(L.NUMBER) == str(index))
    ]

    # Following starts from before the history was read, and skips what the history
    # already gave: a line written in between is neither lost nor shown twice.
    follow_from = time.time()
    last_seen: dict[str, str] = {}

    def tagged(info: dict) -> Iterator[tuple[str, dict]]:
        name = info.get("name") or info["id"][:12]
        service = (info.get("labels") or {}).get(L.SERVICE, "")
        for record in backend.engine.logs(
            info["id"], follow=False, since=since, until=until, tail=tail
        ):
            last_seen[info["id"]] = record["time"]
            yield record["time"], {**record, "container": name, "service": service}

    for _, record in heapq.merge(*(tagged(i) for i in infos), key=lambda pair: pair[0]):
        yield record
    if not follow:
        return
    yield from _follow(backend, infos, follow_from, last_seen)


def _follow(
    backend: Backend, infos: list[dict], since: float, last_seen: dict[str, str]
) -> Iterator[dict]:
    """New records of running containers as they come, until all have stopped."""
    import queue
    import threading

    lines: queue.Queue = queue.Queue()
    done = object()

    def pump(info: dict) -> None:
        name = info.get("name") or info["id"][:12]
        service = (info.get("labels") or {}).get(L.SERVICE, "")
        seen = last_seen.get(info["id"], "")
        try:
            for record in backend.engine.logs(info["id"], follow=True, since=since):
                if record["time"] > seen:
                    lines.put({**record, "container": name, "service": service})
        finally:
            # The container's end, for `up --abort-on-container-exit` and friends.
            lines.put({"exited": True, "id": info["id"], "container": name, "service": service})
            lines.put(done)

    for info in infos:
        if info.get("status") != "running":  # ended before we looked: report its end too
            name = info.get("name") or info["id"][:12]
            service = (info.get("labels") or {}).get(L.SERVICE, "")
            yield {"exited": True, "id": info["id"], "container": name, "service": service}
    running = [i for i in infos if i.get("status") == "running"]
    for info in running:
        threading.Thread(target=pump, args=(info,), daemon=True).start()
    remaining = len(running)
    while remaining:
        item = lines.get()
        if item is done:
            remaining -= 1
        else:
            yield item


def wait_ready(
    project: Project, backend: Backend, services: list[str], timeout: float
) -> str | None:
    """Wait until each service runs (healthy if it has a healthcheck) or, for one-shot
    jobs, exited 0; None when ready, else why not (with the last log lines)."""
    deadline = time.monotonic() + timeout
    while True:
        problems = []
        waiting = []
        for info in backend.containers(project.name, include_oneoff=False):
            service = (info.get("labels") or {}).get(L.SERVICE)
            if service not in services:
                continue
            health = (info.get("health") or {}).get("status")
            job = _is_job(project, service)
            if info.get("status") == "exited":
                if info.get("exit_code") != 0 or not job:
                    problems.append((info, f"exited with code {info.get('exit_code')}"))
            elif health == "unhealthy":
                problems.append((info, f"is unhealthy: {_health_reason(info['health'])}"))
            elif info.get("status") != "running" or health == "starting" or job:
                waiting.append(info)  # a job is ready once it has exited 0
        if problems:
            return "\n".join(_failure(backend, info, why) for info, why in problems)
        if not waiting:
            return None
        if time.monotonic() > deadline:
            return "\n".join(_failure(backend, i, "is not ready in time") for i in waiting)
        time.sleep(0.1)


def _is_job(project: Project, service: str) -> bool:
    """A one-shot job: another service waits for it to complete, or it is marked
    `x-composer: {job: true}` (with restart "no")."""
    waited = any(
        dep.condition == "service_completed_successfully"
        for s in project.services.values()
        for name, dep in s.depends_on.items()
        if name == service
    )
    definition = project.services[service]
    marked = bool((definition.options.get("x-composer") or {}).get("job"))
    return waited or (marked and definition.restart in (None, "no"))


def _failure(backend: Backend, info: dict, why: str) -> str:
    name = info.get("name") or info["id"][:12]
    lines = [record["log"].rstrip("\n") for record in backend.engine.logs(info["id"], tail=5)]
    tail = "".join(f"\n    {line}" for line in lines)
    return f"container {name} {why}" + (f"; its last output:{tail}" if lines else "")
