"""Progress of builds, pulls and pushes: a line per resource with its state, and a bar
per transfer (a layer going up or down).

    with open_progress(args) as progress:
        progress("Image web", "Pulling")              # a state change (the ops' report)
        progress.transfer("  3f4e5a6b7c8d", 512, 2048)  # bytes done of a layer

Modes (--progress): "tty" redraws in place with rich (imported only then: it costs
start-up), "plain" prints one line per state change, "json" one JSON object per change,
"quiet" nothing. "auto" is "tty" on a terminal, else "plain". Output goes to stderr:
stdout is for the command's result.
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import TextIO

MODES = ("auto", "tty", "plain", "json", "quiet")


def choose_mode(requested: str = "auto", stream: TextIO | None = None) -> str:
    """The concrete mode for `requested`: "auto" draws only when both stdout and the
    display stream are terminals (escape codes in a log file help nobody)."""
    stream = stream or sys.stderr
    if requested == "auto":
        return "tty" if _isatty(sys.stdout) and _isatty(stream) else "plain"
    if requested not in MODES:
        raise ValueError(f"unknown progress mode {requested!r}")
    return requested


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def open_progress(
    args: argparse.Namespace | str | None = None, stream: TextIO | None = None
) -> ProgressDisplay:
    """The display `args.progress` (or a mode name) asks for; use it as a context manager."""
    requested = args if isinstance(args, str) else getattr(args, "progress", "auto") or "auto"
    stream = stream or sys.stderr
    mode = choose_mode(requested, stream)
    if mode == "tty":
        return RichDisplay(stream)
    if mode == "quiet":
        return ProgressDisplay(stream)
    return LineDisplay(stream, as_json=mode == "json")


class ProgressDisplay:
    """Shows nothing: the quiet mode, and the interface the others fill in."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, resource: str, state: str) -> None:
        """`resource` is now in `state` (same signature as the ops' report callback)."""

    def transfer(self, resource: str, done: int, total: int | None, state: str = "") -> None:
        """`done` of `total` bytes of `resource` moved; `state` names the step."""

    def close(self) -> None:
        pass


class LineDisplay(ProgressDisplay):
    """One line per state change; a transfer prints when its state changes, not per chunk."""

    def __init__(self, stream: TextIO, as_json: bool = False) -> None:
        super().__init__(stream)
        self.as_json = as_json
        self.lock = threading.Lock()
        self.last: dict[str, str] = {}

    def __call__(self, resource: str, state: str) -> None:
        with self.lock:
            self.last[resource] = state
            self._print(resource, state)

    def transfer(self, resource: str, done: int, total: int | None, state: str = "") -> None:
        finished = total is not None and total >= 0 and done >= total
        shown = state if not finished else f"{state} complete" if state else "Complete"
        with self.lock:
            if self.last.get(resource) == shown:
                return
            self.last[resource] = shown
            self._print(resource, shown, done, total)

    def _print(self, resource: str, state: str, done: int | None = None, total=None) -> None:
        if self.as_json:
            import json

            record: dict = {"resource": resource.strip(), "state": state}
            if done is not None:
                record.update(current=done, total=total)
            line = json.dumps(record)
        else:
            line = f" {resource:<40} {state}"
        print(line, file=self.stream, flush=True)


class RichDisplay(ProgressDisplay):
    """Redraws a line per resource in place; transfers get a bar and a byte count."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        from rich.console import Console
        from rich.progress import Progress, TextColumn

        self.console = Console(file=stream)
        self.progress = Progress(
            TextColumn("{task.description}"),
            _state_or_bar_column(),
            console=self.console,
            refresh_per_second=10,
        )
        self.tasks: dict[str, int] = {}
        self.lock = threading.Lock()
        self.progress.start()

    def _task(self, resource: str) -> int:
        with self.lock:
            task = self.tasks.get(resource)
            if task is None:
                task = self.progress.add_task(f" {resource}", total=None, state="", bar=False)
                self.tasks[resource] = task
            return task

    def __call__(self, resource: str, state: str) -> None:
        self.progress.update(self._task(resource), state=state, bar=False)

    def transfer(self, resource: str, done: int, total: int | None, state: str = "") -> None:
        known = total is not None and total >= 0
        finished = known and done >= total
        self.progress.update(
            self._task(resource),
            completed=done,
            total=total if known else None,
            state=(f"{state} complete" if state else "Complete") if finished else state,
            bar=not finished,
        )

    def close(self) -> None:
        self.progress.stop()


def _state_or_bar_column():
    """A rich column class, made here so rich loads only for the tty display."""
    from rich.progress import BarColumn, DownloadColumn, ProgressColumn
    from rich.table import Table
    from rich.text import Text

    class StateOrBar(ProgressColumn):
        """A bar and bytes while a transfer runs; the state text otherwise."""

        def __init__(self) -> None:
            super().__init__()
            self.bar = BarColumn(bar_width=30)
            self.bytes = DownloadColumn()

        def render(self, task) -> object:
            state = task.fields.get("state", "")
            if not task.fields.get("bar"):
                return Text(state)
            row = Table.grid(padding=(0, 1))
            row.add_row(Text(state), self.bar.render(task), self.bytes.render(task))
            return row

    return StateOrBar()
