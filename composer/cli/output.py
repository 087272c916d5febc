"""Plain terminal output for commands that do not need rich: colour only on a tty."""

from __future__ import annotations

import argparse
import os
import sys


class Output:
    # A plain class: dataclasses would cost ~7 ms of start-up for every command.
    def __init__(self, color: bool) -> None:
        self.color = color

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Output:
        mode = getattr(args, "ansi", "auto")
        if mode == "always":
            color = True
        elif mode == "never" or os.environ.get("NO_COLOR"):
            color = False
        else:
            color = sys.stderr.isatty()
        return cls(color)

    def _paint(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def error(self, text: str) -> None:
        print(self._paint("31", text), file=sys.stderr)

    def warn(self, text: str) -> None:
        print(self._paint("33", f"WARN: {text}"), file=sys.stderr)

    def note(self, text: str) -> None:
        print(self._paint("2", text), file=sys.stderr)


def print_table(columns: tuple[str, ...], rows) -> None:
    """Columns padded to their widest cell, three spaces apart (docker's table style)."""
    table = [tuple(columns), *(tuple(str(cell) for cell in row) for row in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    for r in table:
        print("   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


def print_json(data) -> None:
    import json

    print(json.dumps(data, indent=2))
