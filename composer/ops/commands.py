"""What the container commands need beyond up/down: choosing a service's containers,
pause through the OCI runtime, process tables, published ports, waiting, copying
through a container's root filesystem, events from state changes, and the list of
projects."""

from __future__ import annotations

import os
import posixpath
import stat
import time
from collections.abc import Iterator

from composer import labels as L
from composer.model import Project
from composer.ops.backend import Backend
from composer.ops.project import OperationError

# -- choosing containers -------------------------------------------------------------------


def _number(info: dict) -> int:
    text = (info.get("labels") or {}).get(L.NUMBER) or "0"
    return int(text) if text.isdigit() else 0


def check_services(project: Project, services: list[str] | None) -> None:
    unknown = [s for s in services or [] if s not in project.services]
    if unknown:
        raise OperationError(f"no such service: {', '.join(unknown)}")


def select(
    backend: Backend,
    project: Project,
    services: list[str] | None = None,
    *,
    oneoff: bool | None = False,
    index: int | None = None,
    status: tuple[str, ...] | None = None,
) -> list[dict]:
    """The project's containers of `services` (all if empty), in file and number order.

    oneoff: False leaves out `run` containers, True keeps only them, None keeps both."""
    check_services(project, services)
    order = {name: i for i, name in enumerate(project.services)}
    chosen = []
    for info in backend.containers(project.name):
        labels = info.get("labels") or {}
        service = labels.get(L.SERVICE, "")
        if services and service not in services:
            continue
        if oneoff is not None and (labels.get(L.ONEOFF) == "True") != oneoff:
            continue
        if index is not None and _number(info) != index:
            continue
        if status is not None and info.get("status") not in status:
            continue
        chosen.append(info)
    chosen.sort(
        key=lambda i: (order.get((i.get("labels") or {}).get(L.SERVICE), len(order)), _number(i))
    )
    return chosen


def service_container(
    backend: Backend, project: Project, service: str, index: int = 1, *, running: bool = True
) -> dict:
    """Container `index` of `service` (not a one-off); it must run unless running=False."""
    found = select(backend, project, [service], index=index)
    if not found:
        raise OperationError(f"service {service} has no container number {index}")
    info = found[0]
    if running and info.get("status") != "running":
        raise OperationError(f"container {info.get('name')} is not running")
    return info


def name_of(info: dict) -> str:
    return info.get("name") or info["id"][:12]


# -- exec ------------------------------------------------------------------------------


def exec_engine(backend: Backend, *, privileged: bool = False):
    """The engine to exec with; a privileged one hands the process every capability
    we hold (Engine.exec has no option for it: its runtime exec gets --cap flags)."""
    if not privileged:
        return backend.engine
    from composer.ops.journal import engine_class
    from runtime.oci.capabilities import available

    caps = tuple(f"--cap={name}" for name in available())

    class PrivilegedExec(engine_class()):
        def _runtime_argv(self, state: dict, *args: str) -> list[str]:
            if args[:1] == ("exec",):
                args = ("exec", *caps, *args[1:])
            return super()._runtime_argv(state, *args)

    return PrivilegedExec(backend.root, backend.runtime)


# -- pause -----------------------------------------------------------------------------


def is_paused(info: dict) -> bool:
    from runtime.engine import frozen

    return info.get("status") == "running" and frozen(info)


def refuse_paused(infos: list[dict], action: str) -> None:
    """A frozen process cannot act on a signal or start an exec: say so, do not hang."""
    paused = [name_of(info) for info in infos if is_paused(info)]
    if paused:
        raise OperationError(
            f"cannot {action} paused container {', '.join(paused)}: `composer unpause` it first"
        )


def pause(info: dict) -> None:
    from runtime.engine import Engine

    Engine().pause(info["id"])


def resume(info: dict) -> None:
    from runtime.engine import Engine

    Engine().resume(info["id"])


# -- top -------------------------------------------------------------------------------

TOP_COLUMNS = ("UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD")


def processes(info: dict) -> list[int]:
    """Every process of a running container, by its cgroup (host pids)."""
    from runtime.oci.cgroups import open_cgroup

    if info.get("status") != "running":
        return []
    return open_cgroup(info.get("cgroups_path"), info["id"]).pids()


def process_row(pid: int, now: float | None = None) -> dict | None:
    """What `ps -ef` shows of one process (None if it has gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode(errors="replace")
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
        with open(f"/proc/{pid}/status") as fh:
            uid = next(int(line.split()[1]) for line in fh if line.startswith("Uid:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()  # fields[0] is the state (field 3)
    ticks = os.sysconf("SC_CLK_TCK")
    cpu_seconds = (int(fields[11]) + int(fields[12])) / ticks
    started = _boot_time() + int(fields[19]) / ticks
    now = time.time() if now is None else now
    elapsed = max(now - started, 1e-9)
    return {
        "UID": _user_name(uid),
        "PID": pid,
        "PPID": int(fields[1]),
        "C": min(int(cpu_seconds * 100 / elapsed), 99),
        "STIME": _start_text(started, now),
        "TTY": _tty_name(int(fields[4])),
        "TIME": _cpu_text(cpu_seconds),
        "CMD": " ".join(argv) if argv else f"[{comm}]",
        "State": fields[0],
    }


def _boot_time() -> float:
    with open("/proc/stat") as fh:
        return float(next(line.split()[1] for line in fh if line.startswith("btime ")))


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _start_text(started: float, now: float) -> str:
    if time.localtime(started)[:3] == time.localtime(now)[:3]:
        return time.strftime("%H:%M", time.localtime(started))
    return time.strftime("%b%d", time.localtime(started))


def _tty_name(number: int) -> str:
    if number == 0:
        return "?"
    major, minor = os.major(number), os.minor(number)
    if 136 <= major <= 143:
        return f"pts/{(major - 136) * 256 + minor}"
    return f"tty{minor}" if major == 4 else f"{major}:{minor}"


def _cpu_text(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


# -- port ------------------------------------------------------------------------------


def published_port(backend: Backend, info: dict, private_port: int, protocol: str) -> str:
    """host_ip:port where the container's `private_port` is published."""
    for network in backend.networks.list():
        for port in network.ports:
            if (
                port.container_id == info["id"]
                and port.container_port == private_port
                and port.protocol == protocol
            ):
                host = port.host_ip or "0.0.0.0"
                return f"[{host}]:{port.host_port}" if ":" in host else f"{host}:{port.host_port}"
    raise OperationError(f"no port {private_port}/{protocol} is published by {name_of(info)}")


# -- wait ------------------------------------------------------------------------------


def wait_each(backend: Backend, infos: list[dict]) -> Iterator[tuple[dict, int | None]]:
    """(container, exit code) as each one stops for good, in the order they do."""
    import queue
    import threading

    ended: queue.Queue = queue.Queue()

    def watch(info: dict) -> None:
        try:
            ended.put((info, backend.engine.wait(info["id"])))
        except Exception as err:  # removed meanwhile: report, do not hang
            ended.put((info, err))

    for info in infos:
        threading.Thread(target=watch, args=(info,), daemon=True).start()
    for _ in infos:
        info, result = ended.get()
        if isinstance(result, Exception):
            raise OperationError(f"waiting for {name_of(info)}: {result}")
        yield info, result


# -- cp --------------------------------------------------------------------------------

_MAX_SYMLINKS = 40


class ContainerFiles:
    """A container's files as seen from the host: its root filesystem (the overlay mount)
    with bind mounts (volumes, binds, generated files) mapped to their sources.

    Paths inside are resolved by our own walk, a symlink at a time and against the
    container's root, so no link can lead out of the container.
    """

    def __init__(self, info: dict) -> None:
        import json

        bundle = info["bundle"]
        with open(os.path.join(bundle, "config.json")) as fh:
            config = json.load(fh)
        self.name = name_of(info)
        self.root = os.path.join(bundle, config["root"]["path"])
        mounts = [(posixpath.normpath(m["destination"]), m) for m in config.get("mounts") or []]
        self.mounts = sorted(mounts, key=lambda pair: len(pair[0]), reverse=True)

    def host_path(self, path: str) -> str:
        """Where the resolved container path `path` lives on the host."""
        for destination, mount in self.mounts:
            if path == destination or path.startswith(destination.rstrip("/") + "/"):
                options = mount.get("options") or []
                if mount.get("type") == "bind" or "bind" in options or "rbind" in options:
                    return mount["source"] + path[len(destination.rstrip("/")) :]
                raise OperationError(
                    f"{path} in {self.name} is on a {mount.get('type')} mount, which only the "
                    "running container sees; use `exec` to reach it"
                )
        return os.path.join(self.root, path.lstrip("/"))

    def resolve(self, path: str, *, follow_last: bool = True) -> str:
        """`path` with every symlink resolved inside the container (no `..` above /)."""
        pending = [p for p in path.split("/") if p not in ("", ".")]
        pending.reverse()
        current = "/"
        hops = 0
        while pending:
            part = pending.pop()
            if part == "..":
                current = posixpath.dirname(current)
                continue
            candidate = posixpath.join(current, part)
            if not pending and not follow_last:
                return candidate
            host = self.host_path(candidate)
            try:
                mode = os.lstat(host).st_mode
            except (FileNotFoundError, NotADirectoryError):
                current = candidate  # does not exist (yet): the rest is taken as written
                continue
            if not stat.S_ISLNK(mode):
                current = candidate
                continue
            hops += 1
            if hops > _MAX_SYMLINKS:
                raise OperationError(f"{path} in {self.name}: too many levels of symbolic links")
            target = os.readlink(host)
            if target.startswith("/"):
                current = "/"
            pending.extend(reversed([p for p in target.split("/") if p not in ("", ".")]))
        return current

    def lstat(self, path: str) -> os.stat_result | None:
        try:
            return os.lstat(self.host_path(path))
        except (FileNotFoundError, NotADirectoryError):
            return None


def _copy_file(source: str, destination: int | str, mode: int) -> None:
    """Copy bytes into a new file; never through a symlink at the destination."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    out = os.open(destination, flags, stat.S_IMODE(mode))
    try:
        with open(source, "rb") as src:
            while chunk := src.read(1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
        os.fchmod(out, stat.S_IMODE(mode))
    finally:
        os.close(out)


def _make_node(host_source: str, info: os.stat_result, host_target: str) -> None:
    if stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(host_source), host_target)
    else:  # device or fifo: we run as root, so the node itself can be made
        os.mknod(host_target, info.st_mode, info.st_rdev)


def copy_into(
    files: ContainerFiles, source: str, destination: str, *, archive: bool = False
) -> str:
    """`cp SRC SERVICE:DEST`; the container path written. archive keeps owners."""
    contents_only = source.endswith("/.")
    source = os.path.normpath(source)
    info = os.lstat(source)
    target = files.resolve(destination)
    existing = files.lstat(target)
    if existing is not None and stat.S_ISDIR(existing.st_mode) and not contents_only:
        target = files.resolve(posixpath.join(target, os.path.basename(source)))
        existing = files.lstat(target)
    elif existing is None:
        parent = files.lstat(posixpath.dirname(target))
        if parent is None or not stat.S_ISDIR(parent.st_mode):
            raise OperationError(f"{destination}: no such directory in {files.name}")
        if destination.endswith("/") and not stat.S_ISDIR(info.st_mode):
            raise OperationError(f"{destination}: no such directory in {files.name}")
    _copy_in(files, source, info, target, existing, archive)
    return target


def _copy_in(
    files: ContainerFiles,
    source: str,
    info: os.stat_result,
    target: str,
    existing: os.stat_result | None,
    archive: bool,
) -> None:
    host = files.host_path(target)
    if stat.S_ISDIR(info.st_mode):
        if existing is None:
            os.mkdir(host, stat.S_IMODE(info.st_mode))
        elif not stat.S_ISDIR(existing.st_mode):
            raise OperationError(f"cannot copy directory {source} onto file {target}")
        for entry in sorted(os.listdir(source)):
            child = os.path.join(source, entry)
            # Re-resolved each time: an existing link inside the tree stays in the container.
            child_target = files.resolve(posixpath.join(target, entry), follow_last=False)
            child_info = os.lstat(child)
            child_existing = files.lstat(child_target)
            if child_existing is not None and stat.S_ISLNK(child_existing.st_mode):
                if stat.S_ISDIR(child_info.st_mode):
                    child_target = files.resolve(child_target)
                    child_existing = files.lstat(child_target)
                else:
                    os.unlink(files.host_path(child_target))
                    child_existing = None
            _copy_in(files, child, child_info, child_target, child_existing, archive)
    elif stat.S_ISREG(info.st_mode):
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise OperationError(f"cannot copy file {source} onto directory {target}")
        _copy_file(source, host, info.st_mode)
    else:
        if existing is not None:
            os.unlink(host)
        _make_node(source, info, host)
    if archive:
        os.lchown(host, info.st_uid, info.st_gid)
    else:  # as docker cp: the container's root owns what was copied in
        os.lchown(host, 0, 0)


def copy_out(
    files: ContainerFiles, source: str, destination: str, *, follow_link: bool = False
) -> str:
    """`cp SERVICE:SRC DEST`; the host path written."""
    contents_only = source.endswith("/.")
    path = files.resolve(source, follow_last=follow_link or contents_only)
    info = files.lstat(path)
    if info is None:
        raise OperationError(f"{source}: no such file or directory in {files.name}")
    target = destination
    if os.path.isdir(destination) and not contents_only:
        target = os.path.join(destination, posixpath.basename(path) or "root")
    elif not os.path.exists(destination) and not os.path.isdir(
        os.path.dirname(os.path.abspath(destination))
    ):
        raise OperationError(f"{destination}: no such directory")
    _copy_out(files, path, info, target)
    return target


def _copy_out(files: ContainerFiles, path: str, info: os.stat_result, target: str) -> None:
    host = files.host_path(path)
    if stat.S_ISDIR(info.st_mode):
        os.makedirs(target, exist_ok=True)
        for entry in sorted(os.listdir(host)):
            child = posixpath.join(path, entry)
            try:
                child_info = files.lstat(child)
            except OperationError:
                continue  # a mount point of /proc, a tmpfs…: not in the root filesystem
            if child_info is not None:
                _copy_out(files, child, child_info, os.path.join(target, entry))
        os.chmod(target, stat.S_IMODE(info.st_mode))
        return
    if os.path.lexists(target) and not os.path.isdir(target):
        os.unlink(target)
    if stat.S_ISREG(info.st_mode):
        _copy_file(host, target, info.st_mode)
    else:
        _make_node(host, info, target)


# -- events ----------------------------------------------------------------------------


def _snapshot(info: dict) -> dict:
    return {
        "status": info.get("status"),
        "health": (info.get("health") or {}).get("status"),
        "restarts": info.get("restart_count") or 0,
        "paused": is_paused(info),
    }


def _event(info: dict, action: str, when: str | None = None, **attributes) -> dict:
    from runtime.logs import format_time

    labels = info.get("labels") or {}
    attributes = {
        "name": name_of(info),
        "image": labels.get(L.IMAGE, ""),
        # Strings, as docker's (an exit code too), and as the journal's events are.
        **{k: str(v) for k, v in attributes.items() if v is not None},
    }
    return {
        "time": when or format_time(time.time_ns()),
        "type": "container",
        "action": action,
        "id": info["id"],
        "service": labels.get(L.SERVICE, ""),
        "attributes": attributes,
    }


def _changes(info: dict, before: dict | None, now: dict) -> list[dict]:
    events = []
    if before is None:
        events.append(_event(info, "create", info.get("created_at")))
        before = {"status": "created", "health": None, "restarts": 0, "paused": False}
    restarted = now["restarts"] > before["restarts"]
    was_up = before["status"] == "running"
    is_up = now["status"] == "running"
    # A run that began and ended between two polls still shows as start and die.
    brief = before["status"] == "created" and not is_up and bool(info.get("started_at"))
    if (is_up and (not was_up or restarted)) or brief:
        if was_up:
            events.append(_event(info, "die"))
        events.append(_event(info, "start", info.get("started_at")))
    if (was_up or brief) and now["status"] == "exited":
        events.append(_event(info, "die", info.get("finished_at"), exitCode=info.get("exit_code")))
        if info.get("killed") is not None:  # the shim records it for a stop request only
            events.append(_event(info, "stop", info.get("finished_at")))
    elif was_up and now["status"] == "restarting":
        events.append(_event(info, "die", info.get("finished_at"), exitCode=info.get("exit_code")))
    if now["paused"] != before["paused"]:
        events.append(_event(info, "pause" if now["paused"] else "unpause"))
    if now["health"] and now["health"] != before["health"]:
        events.append(_event(info, f"health_status: {now['health']}"))
    return events


def _replay(info: dict, since_ns: int) -> list[dict]:
    """What happened to a container since `since_ns`, from the times its state keeps."""
    from runtime.logs import parse_time

    def after(key: str) -> bool:
        return bool(info.get(key)) and parse_time(info[key]) >= since_ns

    events = []
    if after("created_at"):
        events.append(_event(info, "create", info["created_at"]))
    if after("started_at") and info.get("status") != "created":
        events.append(_event(info, "start", info["started_at"]))
    if info.get("status") == "exited" and after("finished_at"):
        events.append(_event(info, "die", info["finished_at"], exitCode=info.get("exit_code")))
        if info.get("killed") is not None:
            events.append(_event(info, "stop", info["finished_at"]))
    return events


def _journaled(
    info: dict, directory, offset: int, offsets: dict[str, int], since_ns: int | None = None
) -> list[dict]:
    """The kills and execs (composer.ops.journal) recorded after `offset` (and at or
    after since_ns); remembers where reading stopped."""
    from composer.ops import journal
    from runtime.logs import parse_time

    entries, offsets[info["id"]] = journal.read(directory, offset)
    return [
        _event(info, entry["action"], entry["time"], **entry.get("attributes", {}))
        for entry in entries
        if since_ns is None or parse_time(entry["time"]) >= since_ns
    ]


def _removal_events(
    record: dict, before: tuple[dict, dict] | None, offset: int, since_ns: int
) -> list[dict]:
    """A removed container's last events from its record in the project journal: from
    `before` (what we last saw of it) and `offset` (how far we read its journal) on, or,
    never seen, all it did since `since_ns`."""
    from runtime.logs import parse_time

    info = record["container"]
    entries = record.get("journal") or []
    if before is None:
        events = _replay(info, since_ns)
        entries = [e for e in entries if parse_time(e["time"]) >= since_ns]
    else:
        events = _changes(info, before[1], _snapshot(info))
        entries = [e for e in entries if e["at"] >= offset]
    events += [
        _event(info, entry["action"], entry["time"], **entry.get("attributes", {}))
        for entry in entries
    ]
    if parse_time(record["time"]) >= since_ns:
        events.append(_event(info, "destroy", record["time"]))
    return events


# Polls a container may be missing from the listing before its removal record is given up
# on (a removal by something else than composer's engine writes none).
_UNRECORDED_REMOVAL_POLLS = 10


def container_events(
    backend: Backend,
    project: str,
    *,
    since_ns: int | None = None,
    until_ns: int | None = None,
    interval: float = 0.1,
    services: list[str] | None = None,
) -> Iterator[dict]:
    """The project's container events, found by polling the engine's state, the
    containers' journals and the project's journal of removals; until `until_ns` (wall
    clock) if given, else forever."""

    def wanted(info: dict) -> bool:
        return not services or (info.get("labels") or {}).get(L.SERVICE) in services

    from composer.ops import journal

    removals = journal.project_journal(backend.root, project)
    # Replayed from the oldest record kept, or followed from now on.
    cursor = None if since_ns is not None else journal.project_end(removals)
    began_ns = time.time_ns()
    seen: dict[str, tuple[dict, dict]] = {}
    journaled: dict[str, int] = {}  # how far each container's journal has been read
    destroyed: set[str] = set()  # recorded as removed; may stay listed a moment
    missing: dict[str, int] = {}  # polls since a seen container left the listing
    first = True
    while True:
        current = {i["id"]: i for i in backend.containers(project) if wanted(i)}
        # Read after the listing: a container removed meanwhile is in one or the other.
        records, cursor = journal.read_project(removals, cursor)
        removed = {r["id"]: r for r in records if wanted(r.get("container") or {})}
        destroyed = {c for c in destroyed if c in current} | set(removed)
        events: list[dict] = []
        for container_id, info in current.items():
            if container_id in destroyed:
                continue
            now = _snapshot(info)
            directory = backend.container_dir(container_id)
            if first:
                if since_ns is not None:
                    events.extend(_replay(info, since_ns))
                    events.extend(_journaled(info, directory, 0, journaled, since_ns))
                else:
                    journaled[container_id] = journal.size(directory)
            else:
                before = seen.get(container_id)
                events.extend(_changes(info, before[1] if before else None, now))
                events.extend(
                    _journaled(info, directory, journaled.get(container_id, 0), journaled)
                )
            seen[container_id] = (info, now)
        for container_id, record in removed.items():
            before = seen.pop(container_id, None)
            offset = journaled.pop(container_id, 0)
            missing.pop(container_id, None)
            replay_from = since_ns if first and since_ns is not None else began_ns
            events.extend(_removal_events(record, before, offset, replay_from))
        for container_id in [c for c in seen if c not in current]:
            missing[container_id] = missing.get(container_id, 0) + 1
            if missing[container_id] <= _UNRECORDED_REMOVAL_POLLS:
                continue  # its record may be on its way
            info, last = seen.pop(container_id)
            journaled.pop(container_id, None)
            missing.pop(container_id)
            if last["status"] in ("running", "restarting"):
                events.append(_event(info, "die"))
            events.append(_event(info, "destroy"))
        first = False
        events.sort(key=lambda e: e["time"])
        yield from events
        if until_ns is not None and time.time_ns() >= until_ns:
            return
        time.sleep(interval)


# -- ls --------------------------------------------------------------------------------


def list_projects(backend: Backend, *, all: bool = False) -> list[dict]:
    """Projects under this state root: recorded ones and any with containers, each with
    its status counts ("running(2), exited(1)") and config files."""
    import glob
    import json

    projects: dict[str, dict] = {}
    for path in sorted(glob.glob(str(backend.project_dir() / "*.json"))):
        try:
            with open(path) as fh:
                known = json.load(fh)
        except (OSError, ValueError):
            continue
        projects[known["name"]] = {
            "config_files": list(known.get("config_files") or []),
            "counts": {},
        }
    for info in backend.engine.list({L.PROJECT: None}):
        labels = info.get("labels") or {}
        entry = projects.setdefault(
            labels[L.PROJECT],
            {"config_files": [f for f in labels.get(L.CONFIG_FILES, "").split(",") if f]},
        )
        counts = entry.setdefault("counts", {})
        state = "paused" if is_paused(info) else info.get("status", "")
        counts[state] = counts.get(state, 0) + 1
    rows = []
    for name in sorted(projects):
        counts = projects[name]["counts"]
        if not all and not counts.get("running") and not counts.get("paused"):
            continue
        rows.append(
            {
                "Name": name,
                "Status": ", ".join(f"{s}({n})" for s, n in sorted(counts.items())),
                "ConfigFiles": ",".join(projects[name]["config_files"]),
            }
        )
    return rows
