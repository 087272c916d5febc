"""Container events that the engine's state cannot show: a signal sent, a command exec'd.

`composer events` finds most events by watching container state change (created,
running, exited…), but a kill that the process survives or an exec leaves no state
behind. So the engine that composer commands use (Backend.engine) appends them, as
they happen, to a journal in the container's directory: one JSON object a line,
`{"time", "action", "attributes"}`, with docker's action names and attributes
(kill: signal; exec_create: CMD, exec_start: CMD, exec_die: execID, exitCode). The
journal goes when the container is removed, with its directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

JOURNAL = "events.jsonl"


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
    try:
        with open(Path(directory) / JOURNAL, "rb") as handle:
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


_ENGINE_CLASS = None


def engine_class() -> type:
    """runtime.engine.Engine, journaling its kills and execs (made on first use: the
    engine module is not imported on every command's path)."""
    global _ENGINE_CLASS
    if _ENGINE_CLASS is not None:
        return _ENGINE_CLASS
    import signal as signals

    from runtime.engine import Engine, signal_number
    from runtime.state import container_dir

    class JournalingEngine(Engine):
        def kill(self, ref: str, signal: int | str = signals.SIGKILL) -> None:
            container_id = self.resolve(ref)
            sent = signal_number(signal, signals.SIGKILL)
            if self.inspect(container_id).get("status") in ("running", "restarting"):
                # Written before the signal goes: a live `events` then never shows the
                # die it causes ahead of it.
                append(container_dir(container_id, self.root), "kill", signal=int(sent))
            super().kill(container_id, sent)

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
