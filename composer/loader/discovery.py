"""Which Compose files make the project, and where the project directory is.

As docker compose: `-f` files in order (`-` is stdin); else COMPOSE_FILE
(split by COMPOSE_PATH_SEPARATOR, default ':'); else the first of
DEFAULT_NAMES found in the working directory or the nearest parent that has
one, plus its override file. The project directory is --project-directory,
else the first file's directory (stdin: the working directory).

COMPOSE_FILE and COMPOSE_PATH_SEPARATOR are taken from the shell, else from the
--env-file files, else from `.env` in the working directory (--project-directory
if given, else the current directory; not when COMPOSE_DISABLE_ENV_FILE is
true), the place docker compose reads them from. Relative COMPOSE_FILE entries, like `-f` paths, start at the current
directory.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from composer.loader import inputs
from composer.loader.errors import LoadError, Problem, display_name, fail
from runtime.record import field, record

if TYPE_CHECKING:
    from composer.loader import LoadOptions

DEFAULT_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_NAMES = (
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yaml",
    "docker-compose.override.yml",
)
STDIN = "-"


@record(frozen=False)
class ConfigFile:
    path: str  # absolute, or "-" for stdin
    display: str  # how errors name it: as the user wrote it, or relative to cwd
    text: str
    directory: str  # where its relative paths start (stdin: the working directory)


@record(frozen=False)
class Discovery:
    files: list[ConfigFile]
    project_dir: str
    warnings: list[str] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [f.path for f in self.files]


def discover(options: LoadOptions) -> Discovery:
    """Find and read the project's Compose files; raises LoadError when there are none."""
    cwd = os.path.abspath(options.cwd or os.getcwd())
    workdir = _absolute(options.project_directory, cwd) if options.project_directory else None
    warnings: list[str] = []
    if options.files:
        named = list(options.files)
    else:
        named = _from_compose_file_variable(options, workdir or cwd)
    if named:
        files = [_read_named(name, options, cwd) for name in named]
    else:
        files = _read_default(workdir or cwd, cwd, warnings)
    if workdir is not None:
        project_dir = workdir
    elif files[0].path == STDIN:
        project_dir = cwd
    else:
        project_dir = files[0].directory
    return Discovery(files, project_dir, warnings)


def _absolute(path: str, cwd: str) -> str:
    return os.path.normpath(os.path.join(cwd, inputs.expanduser(path)))


def _read_named(name: str, options: LoadOptions, cwd: str) -> ConfigFile:
    if name == STDIN:
        text = options.stdin_text if options.stdin_text is not None else sys.stdin.read()
        return ConfigFile(STDIN, display_name(STDIN), text, cwd)
    path = _absolute(name, cwd)
    return ConfigFile(path, name, _read(path, name), os.path.dirname(path))


def _read(path: str, shown: str, what: str = "compose file") -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise fail(f"{what} {shown!r} not found", hint="check the path given") from None
    except IsADirectoryError:
        raise fail(
            f"{what} {shown!r} is a directory",
            hint="name the file, e.g. " + os.path.join(shown, DEFAULT_NAMES[0]),
        ) from None
    except UnicodeDecodeError as exc:
        raise fail(f"{what} {shown!r} is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise fail(f"cannot read {what} {shown!r}: {exc.strerror}") from None


def _read_default(start: str, cwd: str, warnings: list[str]) -> list[ConfigFile]:
    directory = start
    while True:
        found = [n for n in DEFAULT_NAMES if inputs.isfile(os.path.join(directory, n))]
        if found:
            break
        parent = os.path.dirname(directory)
        if parent == directory:
            raise LoadError(
                [
                    Problem(
                        f"no compose file found in {start} or any parent directory "
                        f"(looked for {', '.join(DEFAULT_NAMES)})",
                        hint="create compose.yaml, or name files with -f or COMPOSE_FILE",
                    )
                ]
            )
        directory = parent
    chosen = [found[0]]
    if len(found) > 1:
        warnings.append(
            f"found {', '.join(found)} in {directory}; using {found[0]} (rename or remove the others)"
        )
    overrides = [n for n in _override_names(found[0]) if inputs.isfile(os.path.join(directory, n))]
    if overrides:
        chosen.append(overrides[0])
        if len(overrides) > 1:
            warnings.append(
                f"found {', '.join(overrides)} in {directory}; using {overrides[0]} as the override"
            )
    files = []
    for name in chosen:
        path = os.path.join(directory, name)
        shown = display_name(path, cwd)
        files.append(ConfigFile(path, shown, _read(path, shown), directory))
    return files


def _override_names(main: str) -> list[str]:
    """compose.yml pairs with compose.override.yml first, then the other names in order."""
    stem, ext = os.path.splitext(main)
    matching = f"{stem}.override{ext}"
    return [matching, *(n for n in OVERRIDE_NAMES if n != matching)]


def _from_compose_file_variable(options: LoadOptions, workdir: str) -> list[str]:
    values = _compose_variables(options, workdir)
    value = values.get("COMPOSE_FILE")
    if not value:
        return []
    separator = values.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
    return [part for part in value.split(separator) if part]


def _compose_variables(options: LoadOptions, workdir: str) -> dict[str, str]:
    """COMPOSE_FILE and COMPOSE_PATH_SEPARATOR: the shell's, else the env files'."""
    shell = options.shell_environ()
    wanted = ("COMPOSE_FILE", "COMPOSE_PATH_SEPARATOR")
    values = {k: shell[k] for k in wanted if k in shell}
    if len(values) == len(wanted):
        return values
    from composer.loader.dotenv import parse_dotenv
    from composer.loader.environment import _default_env_file_disabled

    cwd = os.path.abspath(options.cwd or os.getcwd())
    if options.env_files:
        env_files = [_absolute(p, cwd) for p in options.env_files]
    elif _default_env_file_disabled(shell):
        env_files = []
    else:
        env_files = [os.path.join(workdir, ".env")]
    from_files: dict[str, str] = {}
    for path in env_files:
        if not inputs.isfile(path):
            continue  # a missing --env-file is reported by the environment pass
        shown = display_name(path, cwd)
        parsed = parse_dotenv(_read(path, shown, "env file"), shown, shell.get)
        from_files.update({k: v.value for k, v in parsed.items()})
    for key in wanted:
        if key not in values and key in from_files:
            values[key] = from_files[key]
    return values
