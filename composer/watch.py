"""develop.watch: keep a project's running containers in step with files on the host.

Each service's `develop.watch` rules (Compose Specification) name a host path, an action
(sync, sync+restart, sync+exec, restart, rebuild), a container target and ignore/include
patterns. watchdog reports changes; a quiet period turns a burst (an editor's save, a git
checkout) into one batch, and each rule's share of a batch becomes one action.

Syncing writes into the container's root filesystem from the host (the overlay mount the
engine runs it on) or into the host directory behind the mount that covers the target.
Every path is resolved inside that root as the container would see it: a symlink in the
container, even one swapped in mid-copy, never leads the copy out onto the host.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import shlex
import stat
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from composer import labels as L
from composer.model import Project
from composer.ops.backend import Backend
from composer.ops.project import OperationError
from runtime.record import record

Report = Callable[[str, str], None]

SYNC_ACTIONS = ("sync", "sync+restart", "sync+exec")
ACTIONS = (*SYNC_ACTIONS, "restart", "rebuild")
# Editors' swap and backup files and VCS metadata: never worth an action.
DEFAULT_IGNORE = (".git", "**/*~", "**/.*.swp", "**/.*.swx", "**/4913", "**/.#*")
# watchdog also reports opens and reads (ours too, while copying): not changes.
CHANGE_EVENTS = frozenset({"created", "modified", "deleted", "moved", "closed"})
QUIET_PERIOD = 0.2  # seconds without events that end a batch
MAX_BATCH_DELAY = 5.0  # a file written without pause still gets synced this often
MAX_SYMLINKS = 40


@record
class ExecHook:
    command: tuple[str, ...]
    user: str | None = None
    working_dir: str | None = None
    environment: tuple[tuple[str, str], ...] = ()


@record
class WatchRule:
    service: str
    path: str  # absolute host path, file or directory
    action: str
    target: str | None = None  # container path (sync actions)
    ignore: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    initial_sync: bool = False
    exec: ExecHook | None = None


def rules_of(project: Project, services: Iterable[str] = ()) -> list[WatchRule]:
    """The develop.watch rules of `services` (all services when empty)."""
    chosen = list(services) or list(project.services)
    unknown = [s for s in chosen if s not in project.services]
    if unknown:
        raise OperationError(f"no such service: {', '.join(unknown)}")
    rules = []
    for name in chosen:
        develop = project.services[name].options.get("develop") or {}
        for entry in develop.get("watch") or ():
            rules.append(_rule(name, entry, project.project_dir))
    if not rules:
        raise OperationError(
            f"no develop.watch rules in {', '.join(chosen)}: "
            "add `develop: {watch: [{path: ., action: sync, target: /app}]}` to one"
        )
    return rules


def _rule(service: str, entry, project_dir: str) -> WatchRule:
    action = entry.get("action") or "rebuild"
    if action not in ACTIONS:
        raise OperationError(f"service {service}: unknown develop.watch action {action!r}")
    hook = None
    if action == "sync+exec":
        spec = entry["exec"]  # the schema requires exec.command with sync+exec
        command = spec["command"]
        environment = spec.get("environment") or {}
        if not hasattr(environment, "items"):  # the list form, KEY=VALUE
            environment = dict(str(e).partition("=")[::2] for e in environment)
        hook = ExecHook(
            tuple(shlex.split(command) if isinstance(command, str) else map(str, command)),
            None if spec.get("user") is None else str(spec["user"]),
            spec.get("working_dir"),
            tuple((str(k), "" if v is None else str(v)) for k, v in environment.items()),
        )
    return WatchRule(
        service=service,
        # Files the main file includes are rebased already; its own paths are relative.
        path=os.path.normpath(os.path.join(project_dir, str(entry["path"]))),
        action=action,
        target=entry.get("target"),
        ignore=tuple(_strings(entry.get("ignore"))),
        include=tuple(_strings(entry.get("include"))),
        initial_sync=bool(entry.get("initial_sync")),
        exec=hook,
    )


def _strings(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def relative(rule: WatchRule, path: str) -> str | None:
    """`path` relative to the rule's path ("." for the path itself), None if outside it."""
    if path == rule.path:
        return "."
    if path.startswith(rule.path.rstrip("/") + "/"):
        return path[len(rule.path.rstrip("/")) + 1 :]
    return None


class PathFilter:
    """Which changes under a rule's path count: .dockerignore syntax, relative to it."""

    def __init__(self, rule: WatchRule, build_context: str | None = None) -> None:
        from runtime.images.build.context import BuildContext, parse_ignore

        self.rule = rule
        self.ignored = BuildContext(
            rule.path, parse_ignore("\n".join(DEFAULT_IGNORE + rule.ignore))
        )
        self.included = (
            BuildContext(rule.path, parse_ignore("\n".join(rule.include))) if rule.include else None
        )
        # A rebuild is pointless for what the build would not see.
        self.context = BuildContext.load(build_context) if build_context else None

    def wanted(self, path: str, is_dir: bool = False) -> bool:
        rel = relative(self.rule, path)
        if rel is None:
            return False
        if rel != "." and self.ignored.excluded(rel):
            return False
        # Include rules "exclude" what they match: that is what is wanted.
        if self.included is not None and not is_dir and rel != ".":
            return self.included.excluded(rel) and self._in_context(path)
        return self._in_context(path)

    def _in_context(self, path: str) -> bool:
        if self.context is None:
            return True
        in_context = os.path.relpath(path, self.context.root)
        return in_context.startswith("..") or not self.context.excluded(in_context)


# ---------------------------------------------------------------- copying into a container


def _absolute(path: str) -> str:
    # normpath keeps a leading "//" (POSIX leaves its meaning open): strip them first.
    return posixpath.normpath("/" + path.lstrip("/"))


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _walk_dirs(root_fd: int, names: list[str]) -> int:
    fd = os.dup(root_fd)
    try:
        for name in names:
            child = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_dir_in_root(root_fd: int, path: str, *, create: bool) -> int:
    """An O_PATH descriptor of directory `path` in root_fd's tree, symlinks resolved as if
    the root were `/`. Each step is opened with O_NOFOLLOW from the one before, so a link
    swapped in meanwhile fails the walk instead of leading out. create: make missing
    directories (0755)."""
    pending = _parts(path)
    done: list[str] = []
    links = 0
    fd = os.dup(root_fd)
    try:
        while pending:
            name = pending.pop(0)
            if name == "..":
                if done:
                    done.pop()
                    os.close(fd)
                    fd = _walk_dirs(root_fd, done)
                continue
            try:
                child = os.open(name, os.O_PATH | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=fd)
                pending.insert(0, name)
                continue
            mode = os.fstat(child).st_mode
            if stat.S_ISLNK(mode):
                target = os.readlink("", dir_fd=child)  # the link we opened, not its name now
                os.close(child)
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
                if target.startswith("/"):
                    done = []
                    os.close(fd)
                    fd = os.dup(root_fd)
                pending = _parts(target) + pending
                continue
            if not stat.S_ISDIR(mode):
                os.close(child)
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
            os.close(fd)
            fd = child
            done.append(name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _clear(dir_fd: int, name: str) -> os.stat_result | None:
    """Remove what is at `name` if it is a directory (a rename cannot replace one)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        import shutil

        shutil.rmtree(name, dir_fd=dir_fd)
    return st


def _owner(dir_fd: int, previous: os.stat_result | None) -> tuple[int, int]:
    # Keep the owner a container user gave the file; a new one gets its directory's.
    st = previous or os.fstat(dir_fd)
    return st.st_uid, st.st_gid


def _place_file(dir_fd: int, name: str, source: str, st: os.stat_result) -> None:
    temp = f".{name}.sync-{os.urandom(4).hex()}"
    with open(source, "rb") as src:
        out = os.open(
            temp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=dir_fd,
        )
        try:
            with open(out, "wb", closefd=False) as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            previous = _clear(dir_fd, name)
            os.fchown(out, *_owner(dir_fd, previous))
            os.fchmod(out, stat.S_IMODE(st.st_mode))
        except BaseException:
            os.close(out)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
        os.close(out)
    os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _place_symlink(dir_fd: int, name: str, source: str) -> None:
    # Created as it is: it is only ever followed inside the container.
    temp = f".{name}.sync-{os.urandom(4).hex()}"
    os.symlink(os.readlink(source), temp, dir_fd=dir_fd)
    _clear(dir_fd, name)
    os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def copy_into(root: str | os.PathLike, dest: str, source: str, wanted=None) -> int:
    """Copy host file, symlink or directory `source` to `dest` inside the tree at `root`;
    the number of files and links written. wanted(host_path, is_dir) filters a tree."""
    parent_path, name = posixpath.split(_absolute(dest))
    if not name:
        raise OperationError(f"cannot sync onto {dest!r}")
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        parent = open_dir_in_root(root_fd, parent_path, create=True)
        try:
            return _copy_entry(parent, name, source, wanted)
        finally:
            os.close(parent)
    finally:
        os.close(root_fd)


def _copy_entry(dir_fd: int, name: str, source: str, wanted) -> int:
    st = os.lstat(source)
    if stat.S_ISREG(st.st_mode):
        _place_file(dir_fd, name, source, st)
        return 1
    if stat.S_ISLNK(st.st_mode):
        _place_symlink(dir_fd, name, source)
        return 1
    if not stat.S_ISDIR(st.st_mode):
        return 0  # sockets, fifos, devices: nothing a container could use from here
    try:
        existing = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        existing = None
    if existing is not None and not stat.S_ISDIR(existing.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        existing = None
    if existing is None:
        os.mkdir(name, stat.S_IMODE(st.st_mode), dir_fd=dir_fd)
    child = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        count = 0
        for entry in sorted(os.scandir(source), key=lambda e: e.name):
            if wanted is not None and not wanted(entry.path, entry.is_dir(follow_symlinks=False)):
                continue
            count += _copy_entry(child, entry.name, entry.path, wanted)
        return count
    finally:
        os.close(child)


def remove_from(root: str | os.PathLike, dest: str) -> bool:
    """Remove `dest` (a file, link or whole directory) inside the tree at `root`; whether
    anything was there."""
    parent_path, name = posixpath.split(_absolute(dest))
    if not name:
        return False
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            parent = open_dir_in_root(root_fd, parent_path, create=False)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            found = _clear(parent, name)
            if found is not None and not stat.S_ISDIR(found.st_mode):
                os.unlink(name, dir_fd=parent)
            return found is not None
        finally:
            os.close(parent)
    finally:
        os.close(root_fd)


class NotSyncable(Exception):
    """A container path the host cannot write (e.g. on a tmpfs)."""


class ContainerFiles:
    """Where a running container's paths live on the host: its root filesystem, or the
    host directory of the bind mount (or volume) covering them."""

    def __init__(self, info: dict) -> None:
        import json

        bundle = Path(info["bundle"])
        config = json.loads((bundle / "config.json").read_text())
        self.rootfs = bundle / config["root"]["path"]
        self.mounts = sorted(
            (m for m in config.get("mounts") or [] if m.get("destination")),
            key=lambda m: len(m["destination"]),
            reverse=True,
        )

    def locate(self, path: str) -> tuple[str, str, bool]:
        """(host root, path inside it, is a bind mount's source) for container `path`."""
        path = _absolute(path)
        for mount in self.mounts:
            top = posixpath.normpath(mount["destination"])
            if path != top and not path.startswith(top.rstrip("/") + "/"):
                continue
            bind = mount.get("type") == "bind" or "bind" in (mount.get("options") or [])
            if not bind or not os.path.isdir(mount.get("source", "")):
                raise NotSyncable(f"{path} is on a {mount.get('type') or 'special'} mount")
            return mount["source"], posixpath.relpath(path, top), True
        return str(self.rootfs), path, False


# ---------------------------------------------------------------- the watcher


def _has_ancestor_in(path: str, paths: set[str]) -> bool:
    parent = os.path.dirname(path)
    while parent not in ("/", ""):
        if parent in paths:
            return True
        parent = os.path.dirname(parent)
    return False


class Watcher:
    """Observers on the rules' paths and the loop that turns batches of changes into
    actions on the services' running containers."""

    def __init__(
        self,
        project: Project,
        backend: Backend,
        rules: list[WatchRule],
        report: Report,
        *,
        prune: bool = False,
        quiet_period: float = QUIET_PERIOD,
    ) -> None:
        self.project = project
        self.backend = backend
        self.rules = rules
        self.report = report
        self.prune = prune
        self.quiet_period = quiet_period
        self.filters = [PathFilter(r, self._build_context(r)) for r in rules]
        self._changed = threading.Condition()
        self._pending: dict[int, set[str]] = {}
        self._first_event = self._last_event = 0.0
        self._observer = None

    def _build_context(self, rule: WatchRule) -> str | None:
        build = self.project.services[rule.service].build
        if rule.action != "rebuild" or build is None:
            return None
        return build.context

    # -- events (watchdog's thread) --

    def start(self) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                watcher._on_event(event)

        for rule in self.rules:
            if not os.path.exists(rule.path):
                raise OperationError(
                    f"service {rule.service}: watch path {rule.path} does not exist"
                )
        observer = Observer()
        scheduled = set()
        for rule in self.rules:
            is_dir = os.path.isdir(rule.path)
            where = (rule.path if is_dir else os.path.dirname(rule.path), is_dir)
            if where not in scheduled:
                scheduled.add(where)
                observer.schedule(Handler(), where[0], recursive=where[1])
        observer.start()
        self._observer = observer

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
            self._observer = None

    def _on_event(self, event) -> None:
        if event.event_type not in CHANGE_EVENTS:
            return
        if event.is_directory and event.event_type in ("modified", "closed"):
            return  # a directory's own times: its entries report what changed
        paths = [os.fsdecode(event.src_path)]
        if getattr(event, "dest_path", ""):
            paths.append(os.fsdecode(event.dest_path))
        hits = [
            (index, path)
            for path in paths
            for index, check in enumerate(self.filters)
            if check.wanted(path, event.is_directory)
        ]
        if not hits:
            return
        with self._changed:
            self._last_event = time.monotonic()
            if not self._pending:
                self._first_event = self._last_event
            for index, path in hits:
                self._pending.setdefault(index, set()).add(path)
            self._changed.notify()

    # -- the loop (caller's thread) --

    def run(self, stop: threading.Event | None = None) -> None:
        """Watch until `stop` is set (or Ctrl-C); observers are stopped and joined after."""
        stop = stop or threading.Event()
        try:
            if self._observer is None:
                self.start()
            while not stop.is_set():
                batch = self.next_batch(stop)
                if batch:
                    self.apply(batch)
        finally:
            self.close()

    def next_batch(self, stop: threading.Event) -> dict[int, set[str]]:
        """The changes of the next burst, once it has been quiet for quiet_period (or has
        lasted MAX_BATCH_DELAY)."""
        with self._changed:
            while not self._pending and not stop.is_set():
                self._changed.wait(0.5)
            while self._pending and not stop.is_set():
                due = min(self._last_event + self.quiet_period, self._first_event + MAX_BATCH_DELAY)
                left = due - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            batch, self._pending = self._pending, {}
        return batch

    def initial_sync(self) -> None:
        for index, rule in enumerate(self.rules):
            if rule.initial_sync and rule.action in SYNC_ACTIONS:
                self.apply({index: {rule.path}}, restart=False)

    def apply(self, batch: dict[int, set[str]], *, restart: bool = True) -> None:
        """One action per rule with changes; a rebuild of a service replaces its syncs."""
        rebuilt = set()
        for index in sorted(batch):
            rule = self.rules[index]
            if rule.action == "rebuild" and rule.service not in rebuilt:
                rebuilt.add(rule.service)
                self._guarded(rule, self.rebuild, rule, batch[index])
        for index in sorted(batch):
            rule = self.rules[index]
            if rule.service in rebuilt or rule.action == "rebuild":
                continue
            self._guarded(rule, self.update, rule, batch[index], restart)

    def _guarded(self, rule: WatchRule, action, *args) -> None:
        # One failed action (a build error, a stopped container) must not end the watch.
        from runtime.engine import ContainerError
        from runtime.images.store import ImageError

        try:
            action(*args)
        except (OperationError, ContainerError, ImageError, NotSyncable, OSError) as e:
            self.report(f"Service {rule.service}", f"{rule.action} failed: {e}")

    def _running(self, service: str) -> list[dict]:
        return [
            info
            for info in self.backend.containers(self.project.name, include_oneoff=False)
            if (info.get("labels") or {}).get(L.SERVICE) == service
            and info.get("status") == "running"
        ]

    def update(self, rule: WatchRule, paths: set[str], restart: bool = True) -> None:
        import subprocess

        containers = self._running(rule.service)
        if not containers:
            self.report(f"Service {rule.service}", f"{rule.action} skipped: nothing running")
            return
        for info in containers:
            label = f"Container {info.get('name') or info['id'][:12]}"
            if rule.action in SYNC_ACTIONS:
                copied, removed, skipped = self.sync(rule, paths, ContainerFiles(info))
                done = f"Synced {copied} files, removed {removed} to {rule.target}"
                self.report(label, done + (f" ({skipped} on a bind mount)" if skipped else ""))
            if not restart:
                continue
            if rule.action in ("sync+restart", "restart"):
                service = self.project.services[rule.service]
                grace = 10 if service.stop_grace_period is None else service.stop_grace_period
                self.backend.engine.stop(info["id"], timeout=grace)
                self.backend.engine.start(info["id"])
                self.report(label, "Restarted")
            elif rule.action == "sync+exec":
                hook = rule.exec
                code = self.backend.engine.exec(
                    info["id"],
                    list(hook.command),
                    user=hook.user,
                    cwd=hook.working_dir,
                    env=dict(hook.environment) or None,
                    stdin=subprocess.DEVNULL,
                )
                self.report(label, f"Ran {shlex.join(hook.command)}: exit {code}")

    def sync(self, rule: WatchRule, paths: set[str], files: ContainerFiles) -> tuple[int, int, int]:
        """Copy what exists, remove what is gone; (copied, removed, skipped on a bind)."""
        check = self.filters[self.rules.index(rule)]
        copied = removed = skipped = 0
        # A directory's copy covers everything under it.
        tops = [p for p in sorted(paths) if not _has_ancestor_in(p, paths)]
        for path in tops:
            rel = relative(rule, path)
            dest = rule.target if rel == "." else posixpath.join(rule.target, rel)
            root, inside, bound = files.locate(dest)
            if bound and os.path.realpath(os.path.join(root, inside)) == os.path.realpath(path):
                skipped += 1  # the container sees the host file itself
                continue
            if os.path.lexists(path):
                copied += copy_into(root, inside, path, check.wanted)
            elif remove_from(root, inside):
                removed += 1
        return copied, removed, skipped

    def rebuild(self, rule: WatchRule, paths: set[str]) -> None:
        from composer.ops.project import build_image
        from composer.ops.up import UpRequest, up

        service = self.project.services[rule.service]
        if service.build is None:
            raise OperationError("rebuild needs a build section")
        self.report(f"Service {rule.service}", f"Rebuilding ({len(paths)} changes)")
        image = build_image(self.backend, self.project, service, self.report)
        request = UpRequest(
            services=[rule.service], no_deps=True, force_recreate=True, build="never"
        )
        up(self.project, self.backend, request, self.report)
        self.report(f"Service {rule.service}", f"Rebuilt and recreated ({image.digest[:19]})")
        if self.prune:
            gone = self.backend.store.prune(dangling=True)
            if gone["images"]:
                self.report("Images", f"Pruned {len(gone['images'])} dangling")
