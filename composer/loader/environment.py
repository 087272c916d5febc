"""The variables a project is interpolated with, and where each one came from.

Precedence, as in docker compose: the shell environment always wins; then the
--env-file files in order (a later file wins), or, only when none is given,
the project directory's `.env` (unless COMPOSE_DISABLE_ENV_FILE is true).
Values in env files may use variables from the shell and from earlier
entries. An included project (top-level `include:`) sees everything its parent
sees, plus its own env files (or its own `.env`) for names still unset.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from composer.loader import inputs
from composer.loader.dotenv import DotenvValue, parse_dotenv
from composer.loader.errors import LoadError, Problem, display_name
from composer.loader.interpolate import Lookup
from composer.loader.nodes import Mark
from runtime.record import record

SHELL = "shell environment"
NOT_SET = "not set"

# Go's strconv.ParseBool, which COMPOSE_DISABLE_ENV_FILE is read with.
_GO_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}


@record
class Explanation:
    """A variable's value and its origin, for `composer config --explain`."""

    name: str
    value: str | None
    source: str  # SHELL, "FILE:LINE", "default in FILE:LINE:COL" or NOT_SET

    def __str__(self) -> str:
        shown = "(unset)" if self.value is None else repr(self.value)
        return f"{self.name}={shown}  # {self.source}"


@record
class _Entry:
    value: str
    source: str


class _Shared:
    """What a project and its included projects report into together."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.warnings: list[str] = []
        self.warned: set[str] = set()
        self.defaults: dict[str, tuple[str, Mark | None]] = {}

    def report_unset(self, name: str, mark: Mark | None) -> None:
        if name in self.warned:
            return
        self.warned.add(name)
        where = f"{mark}: " if mark else ""
        self.warnings.append(
            f'{where}The "{name}" variable is not set. Defaulting to a blank string.'
        )


class Environment:
    """Resolved variables of one project; build it with build_environment()."""

    def __init__(
        self,
        shell: Mapping[str, str],
        entries: dict[str, _Entry],
        project_dir: str,
        files: list[str],
        shared: _Shared,
    ) -> None:
        # The shell is consulted name by name, never copied: what a load reads of
        # it is an input `composer config`'s memo records (composer/cli/memo.py).
        self._shell = shell
        self._entries = entries  # from env files
        self.project_dir = project_dir
        self.files = files  # env files read, as shown to the user
        self._shared = shared

    @property
    def strict(self) -> bool:
        return self._shared.strict

    @property
    def warnings(self) -> list[str]:
        return self._shared.warnings

    def _entry(self, name: str) -> _Entry | None:
        value = self._shell.get(name)
        return self._entries.get(name) if value is None else _Entry(value, SHELL)

    def lookup(self, name: str) -> str | None:
        entry = self._entry(name)
        return None if entry is None else entry.value

    def get(self, name: str, default: str | None = None) -> str | None:
        """A setting such as COMPOSE_PROJECT_NAME, or default when unset."""
        value = self.lookup(name)
        return default if value is None else value

    def profiles(self) -> list[str]:
        """COMPOSE_PROFILES, comma-separated; blanks dropped."""
        raw = self.lookup("COMPOSE_PROFILES") or ""
        return [p.strip() for p in raw.split(",") if p.strip()]

    def as_dict(self) -> dict[str, str]:
        return {**{name: entry.value for name, entry in self._entries.items()}, **self._shell}

    def explain(self, name: str) -> Explanation:
        entry = self._entry(name)
        default = self._shared.defaults.get(name)
        if default is not None and (entry is None or entry.value == ""):
            value, mark = default
            return Explanation(name, value, f"default in {mark}" if mark else "default")
        if entry is None:
            return Explanation(name, None, NOT_SET)
        return Explanation(name, entry.value, entry.source)

    def record_default(self, name: str, value: str, mark: Mark | None) -> None:
        """Interpolation used `${name:-value}` (or `-`) at mark; the first use is kept."""
        self._shared.defaults.setdefault(name, (value, mark))

    def report_unset(self, name: str, mark: Mark | None) -> None:
        """Warn, once per name, that an unset variable became a blank string."""
        self._shared.report_unset(name, mark)

    def child(
        self,
        project_dir: str,
        env_files: list[str] | None = None,
        base_dir: str | None = None,
        *,
        mark: Mark | None = None,
        path: tuple = (),
    ) -> Environment:
        """The environment of an included project.

        Everything this one resolves wins; the child's env_files (relative to
        base_dir, default this project's directory; /dev/null is skipped) or
        else its own `<project_dir>/.env` fill in the rest. Warnings and
        strictness are shared with this environment. A missing file is a
        problem at mark/path (where the include names its env_file).
        """
        if env_files:
            base = base_dir or self.project_dir
            paths = [
                os.path.join(base, f) if not os.path.isabs(f) else f
                for f in env_files
                if f != os.devnull
            ]
            given = [f for f in env_files if f != os.devnull]
        else:
            paths = _default_env_file(project_dir)
            given = paths
        entries = _read_env_files(paths, given, self.lookup, self._shared, None, mark, path)
        entries.update(self._entries)
        files = [_show(p) for p in paths]
        return Environment(self._shell, entries, project_dir, files, self._shared)


def build_environment(
    shell: Mapping[str, str],
    env_files: list[str],
    project_dir: str,
    strict: bool = False,
    *,
    cwd: str | None = None,
) -> Environment:
    """The project's environment; raises LoadError for a missing or malformed env file.

    Relative --env-file paths are taken from cwd (the current directory by default).
    """
    if env_files:
        base = cwd or os.getcwd()
        paths = [os.path.join(base, f) for f in env_files]
        given = list(env_files)
    else:
        paths = [] if _default_env_file_disabled(shell) else _default_env_file(project_dir)
        given = paths
    shared = _Shared(strict)
    hint = "relative --env-file paths start in the current directory"
    entries = _read_env_files(paths, given, shell.get, shared, hint)
    return Environment(shell, entries, project_dir, [_show(p) for p in paths], shared)


def _default_env_file(project_dir: str) -> list[str]:
    path = os.path.join(project_dir, ".env")
    return [path] if inputs.isfile(path) else []


def _default_env_file_disabled(shell: Mapping[str, str]) -> bool:
    raw = shell.get("COMPOSE_DISABLE_ENV_FILE")
    if raw is None:
        return False
    if raw not in _GO_BOOLS:
        raise LoadError(
            [
                Problem(
                    f"COMPOSE_DISABLE_ENV_FILE={raw!r} is not a boolean",
                    hint="use true or false (also 1/0)",
                )
            ]
        )
    return _GO_BOOLS[raw]


def _show(path: str) -> str:
    return display_name(os.path.normpath(path))


def _read_env_files(
    paths: list[str],
    given: list[str],
    outer: Lookup,
    shared: _Shared,
    missing_hint: str | None = None,
    mark: Mark | None = None,
    path: tuple = (),
) -> dict[str, _Entry]:
    """Read env files in order (a later one wins); `outer` resolves first, as the shell does."""
    entries: dict[str, _Entry] = {}
    problems: list[Problem] = []

    def earlier(name: str) -> str | None:
        entry = entries.get(name)
        return None if entry is None else entry.value

    for file, as_given in zip(paths, given, strict=True):
        shown = _show(file)
        text = _read_text(file, as_given, shown, problems, missing_hint, mark, path)
        if text is None:
            continue
        try:
            values = parse_dotenv(
                text, shown, outer, fallback=earlier, on_unset=shared.report_unset
            )
        except LoadError as exc:
            problems.extend(exc.problems)
            continue
        entries.update((name, _file_entry(v)) for name, v in values.items())
    if problems:
        raise LoadError(problems)
    return entries


def _file_entry(value: DotenvValue) -> _Entry:
    return _Entry(value.value, f"{value.mark.file}:{value.mark.line}")


def _read_text(
    path: str,
    as_given: str,
    shown: str,
    problems: list[Problem],
    missing_hint: str | None,
    mark: Mark | None,
    tree_path: tuple,
) -> str | None:
    if inputs.isdir(path):
        problems.append(Problem(f"env file {as_given} is a directory, not a file", mark, tree_path))
        return None
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        problems.append(
            Problem(
                f"env file {as_given} not found" + (f" ({path})" if path != as_given else ""),
                mark,
                tree_path,
                missing_hint,
            )
        )
        return None
    except OSError as exc:
        problems.append(
            Problem(f"cannot read env file {as_given}: {exc.strerror}", mark, tree_path)
        )
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        problems.append(
            Problem("env file is not valid UTF-8", Mark(shown, line, col), hint="save it as UTF-8")
        )
        return None
