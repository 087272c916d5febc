"""The loader's one error type, and how it is shown to a user.

Every problem is `FILE:LINE:COL: path.to.key: message`, followed by the
offending source line with a caret and, where one exists, a hint. All problems
found in one pass are reported together.
"""

from __future__ import annotations

import os

from composer.exit_codes import CONFIG as EXIT_CONFIG
from composer.loader.nodes import Mark
from runtime.record import record


def format_path(path: tuple | list) -> str:
    """services.web.ports[0] style."""
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += ("." if out else "") + str(step)
    return out


@record
class Problem:
    message: str
    mark: Mark | None = None
    path: tuple = ()
    hint: str | None = None
    # Extra places that explain the problem, e.g. each edge of a cycle.
    related: tuple[tuple[str, Mark | None], ...] = ()

    def headline(self) -> str:
        where = f"{self.mark}: " if self.mark else ""
        key = f"{format_path(self.path)}: " if self.path else ""
        return f"{where}{key}{self.message}"


class LoadError(Exception):
    """Bad input: one or more problems, each with its location."""

    def __init__(self, problems: list[Problem] | None = None, exit_code: int = EXIT_CONFIG) -> None:
        self.problems = list(problems or [])
        self.exit_code = exit_code
        super().__init__(self.problems[0].headline() if self.problems else "invalid configuration")

    def __str__(self) -> str:
        return "\n".join(p.headline() for p in self.problems)

    def render(self, sources: SourceCache | None = None) -> str:
        return render_problems(self.problems, sources)


def fail(
    message: str, mark: Mark | None = None, path: tuple = (), hint: str | None = None
) -> LoadError:
    """Build a one-problem LoadError (callers `raise fail(...)`)."""
    return LoadError([Problem(message, mark, tuple(path), hint)])


class SourceCache:
    """Source text by file name, to show the offending line."""

    def __init__(self) -> None:
        self._texts: dict[str, list[str] | None] = {}

    def add(self, name: str, text: str) -> None:
        self._texts[name] = text.splitlines()

    def line(self, name: str, line: int) -> str | None:
        if name not in self._texts:
            try:
                with open(name, encoding="utf-8", errors="replace") as fh:
                    self._texts[name] = fh.read().splitlines()
            except OSError:
                self._texts[name] = None
        lines = self._texts[name]
        if lines is None or not 1 <= line <= len(lines):
            return None
        return lines[line - 1]


_SOURCES = SourceCache()


def global_sources() -> SourceCache:
    """The cache the loader fills as it reads files (stdin included)."""
    return _SOURCES


def _excerpt(mark: Mark, sources: SourceCache) -> list[str]:
    text = sources.line(mark.file, mark.line)
    if text is None:
        return []
    text = text.expandtabs(1)
    gutter = f"{mark.line:>4} | "
    return [gutter + text, " " * (len(gutter) + max(mark.col - 1, 0)) + "^"]


def render_problems(problems: list[Problem], sources: SourceCache | None = None) -> str:
    sources = sources or _SOURCES
    out: list[str] = []
    for problem in problems:
        out.append(problem.headline())
        if problem.mark:
            out.extend(_excerpt(problem.mark, sources))
        for label, mark in problem.related:
            out.append(f"    {label}" + (f"  ({mark})" if mark else ""))
        if problem.hint:
            out.append(f"  hint: {problem.hint}")
    return "\n".join(out)


def display_name(path: str, base: str | None = None) -> str:
    """A file name as the user would write it: relative to cwd when inside it."""
    if path in ("-", "<stdin>"):
        return "<stdin>"
    try:
        rel = os.path.relpath(path, base or os.getcwd())
    except ValueError:
        return path
    return path if rel.startswith("..") else rel
