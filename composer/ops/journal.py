"""Container events that the engine's state cannot show: a signal sent, a command exec'd.

`composer events` finds most events by watching container state change (created,
running, exited…), but a kill that the process survives or an exec leaves no state
behind. So the engine that composer commands use (Backend.engine) appends them, as
they happen, to a journal in the container's directory: one JSON object a line,
`{"time", "action", "attributes"}`, with docker's action names and attributes
(kill: signal; exec_create: CMD, exec_start: CMD, exec_die: execID, exitCode). A stop
journals its kills as docker's does: the stop signal, then 9 once the grace period is
over (only 9 when the shim kills at once a PID 1 that ignores the stop signal); a removal
of a running container journals kill 9, as docker's `rm -f`.

The container's journal goes with its directory, and with it its state: a follower that
polls every 0.1 s would miss a container stopped and removed in between (die, stop, the
kills, destroy). So the removal appends one record to the project's journal
(projects/<name>.events.jsonl), written just before the container's directory goes: the
container's last state (enough to tell its die and stop) and its journal's tail, whose
byte offsets let a follower go on where it stopped reading. The project journal is kept
after `down` (a follower may still be reading it, and `events --since` replays it, as
docker keeps its recent events); it is rotated at PROJECT_JOURNAL_LIMIT into one older
generation (.1), so a project holds at most twice that.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

JOURNAL = "events.jsonl"
PROJECT_JOURNAL_LIMIT = 256 * 1024  # bytes a generation; a removal record is ~1-2 KiB
_TAIL_LIMIT = 64 * 1024  # of a container's journal, in its removal record
# What a follower needs of a removed container: its events' attributes and state changes.
_KEPT_FIELDS = (
    "id",
    "name",
    "labels",
    "status",
    "created_at",
    "started_at",
    "finished_at",
    "exit_code",
    "killed",
    "restart_count",
    "cgroups_path",
)


def append(directory: str | os.PathLike, action: str, when_ns: int | None = None, **attributes):
    """Add one event; never fails the command that caused it (events are a report)."""
    from runtime.logs import format_time

    line = {
        "time": format_time(time.time_ns() if when_ns is None else when_ns),
        "action": action,
        "attributes": {k: str(v) for k, v in attributes.items()},
    }
    data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
    with contextlib.suppress(OSError):
        # One write with O_APPEND: concurrent writers (two execs) never interleave lines.
        fd = os.open(
            Path(directory) / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
        )
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def size(directory: str | os.PathLike) -> int:
    """Where the journal ends now: reading from here gives only what comes next."""
    try:
        return os.stat(Path(directory) / JOURNAL).st_size
    except OSError:
        return 0


def read(directory: str | os.PathLike, offset: int = 0) -> tuple[list[dict], int]:
    """The complete lines after `offset`, and the offset after them (a line still being
    written is left for the next read)."""
    return _read_lines(Path(directory) / JOURNAL, offset, None)


def _entries_with_offsets(directory: str | os.PathLike) -> list[dict]:
    """The last _TAIL_LIMIT bytes of a container's journal, each entry with `at`: the
    offset its line starts at (what a follower's offset compares with)."""
    try:
        with open(Path(directory) / JOURNAL, "rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            start = max(0, end - _TAIL_LIMIT)
            handle.seek(start)
            data = handle.read()
    except OSError:
        return []
    at = start
    if start and data[:1] != b"\n":  # cut mid-line: begin at the next whole one
        cut = data.find(b"\n") + 1
        data, at = data[cut:], start + cut
    entries = []
    for raw in data.splitlines(keepends=True):
        if raw.endswith(b"\n"):
            with contextlib.suppress(ValueError):
                entries.append({**json.loads(raw), "at": at})
        at += len(raw)
    return entries


def project_journal(root: str | os.PathLike, project: str) -> Path:
    return Path(root) / "projects" / f"{project}.events.jsonl"


def record_removal(root: str | os.PathLike, info: dict, directory: str | os.PathLike) -> None:
    """Append a container's removal to its project's journal (see the module's text);
    never fails the removal."""
    from composer import labels as L
    from runtime.logs import format_time

    project = (info.get("labels") or {}).get(L.PROJECT)
    if not project:
        return
    record = {
        "time": format_time(time.time_ns()),
        "action": "destroy",
        "id": info["id"],
        "container": {key: info.get(key) for key in _KEPT_FIELDS},
        "journal": _entries_with_offsets(directory),
    }
    data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    with contextlib.suppress(OSError):
        _append_rotating(project_journal(root, project), data)


def _append_rotating(path: Path, data: bytes) -> None:
    """One write under an exclusive lock of the file; past the limit the file becomes the
    older generation. The lock makes two writers never rotate twice for one limit."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(5):  # another writer rotated it between our open and our lock
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    continue
            except FileNotFoundError:
                continue
            os.write(fd, data)
            if os.fstat(fd).st_size >= PROJECT_JOURNAL_LIMIT:
                os.rename(path, f"{path}.1")
            return
        finally:
            os.close(fd)


def project_end(path: Path) -> tuple[int, int]:
    """A cursor at the project journal's end: reading from it gives what comes next."""
    try:
        info = os.stat(path)
    except OSError:
        return (0, 0)
    return (info.st_ino, info.st_size)


def _read_lines(path: str | os.PathLike, offset: int, inode: int | None) -> tuple[list, int]:
    """Whole lines of `path` after `offset` (only if it is still file `inode`), and the
    offset after them."""
    try:
        with open(path, "rb") as handle:
            if inode is not None and os.fstat(handle.fileno()).st_ino != inode:
                return [], offset
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1
    entries = []
    for raw in data[:end].splitlines():
        with contextlib.suppress(ValueError):
            entries.append(json.loads(raw))
    return entries, offset + end


def read_project(path: Path, cursor: tuple[int, int] | None) -> tuple[list[dict], tuple[int, int]]:
    """The project journal's records after `cursor` (None: from the oldest kept), and the
    cursor after them. A rotation since the last read is followed: the rest of the older
    generation first, then the new file from its start."""
    records: list[dict] = []
    inode, offset = cursor if cursor is not None else (0, 0)
    try:
        now = os.stat(path).st_ino
    except OSError:
        now = 0
    if cursor is None:
        records += _read_lines(f"{path}.1", 0, None)[0]
    elif inode != now:
        if inode:  # the file we were reading is the older generation now (if one back)
            records += _read_lines(f"{path}.1", offset, inode)[0]
        inode, offset = now, 0
    if now:
        found, offset = _read_lines(path, offset, now)
        records += found
        inode = now
    return records, (inode, offset)


_ENGINE_CLASS = None


def engine_class() -> type:
    """runtime.engine.Engine, journaling its kills and execs (made on first use: the
    engine module is not imported on every command's path)."""
    global _ENGINE_CLASS
    if _ENGINE_CLASS is not None:
        return _ENGINE_CLASS
    import signal as signals
    import threading

    from runtime import shim
    from runtime.engine import Engine, signal_number
    from runtime.logs import parse_time
    from runtime.state import container_dir, pid_alive

    class JournalingEngine(Engine):
        def kill(self, ref: str, signal: int | str = signals.SIGKILL) -> None:
            container_id = self.resolve(ref)
            sent = signal_number(signal, signals.SIGKILL)
            if self.inspect(container_id).get("status") in ("running", "restarting"):
                # Written before the signal goes: a live `events` then never shows the
                # die it causes ahead of it.
                append(container_dir(container_id, self.root), "kill", signal=int(sent))
            super().kill(container_id, sent)

        def remove(self, ref: str, force: bool = False) -> None:
            container_id = self.resolve(ref)
            if force and self.inspect(container_id).get("status") == "running":
                # As docker's `rm -f`: the SIGKILL that ends it is an event of its own
                # (not for a restarting container, which has no process to signal).
                append(container_dir(container_id, self.root), "kill", signal=int(signals.SIGKILL))
            super().remove(container_id, force)

        def _removing(self, container_id: str) -> None:
            directory = container_dir(container_id, self.root)
            with contextlib.suppress(Exception):  # a report: the removal goes on regardless
                record_removal(self.root, self.inspect(container_id), directory)

        def stop(self, ref: str, timeout: float = 10, signal: int | str | None = None) -> dict:
            container_id = self.resolve(ref)
            info = self.inspect(container_id)
            pid, started = info.get("pid"), info.get("pid_start_time")
            if info.get("status") != "running" or not pid_alive(pid, started):
                return super().stop(container_id, timeout, signal)
            directory = container_dir(container_id, self.root)
            sig = signal_number(signal, info.get("stop_signal") or signals.SIGTERM)
            # Journaled as they go, so a live `events` shows them ahead of the die: the
            # first signal now (the shim's rule decides which), SIGKILL when the grace
            # period ends with the container still there.
            at_once = sig == signals.SIGKILL or shim.futile_signal_reason(pid, sig)
            append(directory, "kill", signal=int(signals.SIGKILL if at_once else sig))
            kill_journaled = threading.Event()
            started_ns = time.time_ns()

            def grace_over() -> None:
                if pid_alive(pid, started) and not kill_journaled.is_set():
                    kill_journaled.set()
                    append(directory, "kill", signal=int(signals.SIGKILL))

            timer = None
            if not at_once:
                timer = threading.Timer(timeout, grace_over)
                timer.daemon = True
                timer.start()
            try:
                reply = super().stop(container_id, timeout, signal)
            finally:
                if timer is not None:
                    timer.cancel()
                    timer.join()
            if not at_once and reply.get("killed") and not kill_journaled.is_set():
                # Our timer starts before the shim's deadline, so only a late thread gets
                # here: journaled late, but dated between the signal and the end.
                end = reply.get("finished_at")
                when = started_ns + int(timeout * 1e9)
                if end:
                    when = min(when, parse_time(end) - 1)
                append(directory, "kill", when, signal=int(signals.SIGKILL))
            return reply

        def exec(self, ref: str, args: list[str], *rest, **options) -> int:
            container_id = self.resolve(ref)
            if self.inspect(container_id).get("status") != "running":
                return super().exec(container_id, args, *rest, **options)  # it refuses
            directory = container_dir(container_id, self.root)
            exec_id = os.urandom(32).hex()
            command = " ".join(str(arg) for arg in args)
            append(directory, f"exec_create: {command}", execID=exec_id)
            append(directory, f"exec_start: {command}", execID=exec_id)
            code = None
            try:
                code = super().exec(container_id, args, *rest, **options)
            finally:
                # A detached exec's end is not ours to see; an exec that raised has no code.
                if not options.get("detach"):
                    ended = {} if code is None else {"exitCode": code}
                    append(directory, "exec_die", execID=exec_id, **ended)
            return code

    _ENGINE_CLASS = JournalingEngine
    return JournalingEngine
