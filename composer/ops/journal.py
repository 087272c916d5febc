"""Container events that the engine's state cannot show: a signal sent, a command exec'd.

`composer events` finds most events by watching container state change (created,
running, exited…), but a kill that the process survives or an exec leaves no state
behind. So the engine that composer commands use (Backend.engine) appends them, as
they happen, to a journal in the container's directory: one JSON object a line,
`{"time", "action", "attributes"}`, with docker's action names and attributes
(kill: signal; exec_create: CMD, exec_start: CMD, exec_die: execID, exitCode). A stop
journals its kills as docker's does: the stop signal, then 9 once the grace period is
over (only 9 when the shim kills at once a PID 1 that ignores the stop signal). The
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
