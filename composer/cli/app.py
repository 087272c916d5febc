"""Argument parsing and dispatch for `composer`.

Kept light: argparse and the command's own modules only, so start-up stays
cheap (rich, networkx and jsonschema load only where a command needs them).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from composer import __version__
from composer.exit_codes import CONFIG as EXIT_CONFIG
from composer.exit_codes import FAILURE as EXIT_FAILURE
from composer.exit_codes import OK as EXIT_OK
from composer.exit_codes import USAGE as EXIT_USAGE

EXIT_STATUS_HELP = f"""exit status:
  {EXIT_OK}   success
  {EXIT_FAILURE}   the command failed
  {EXIT_USAGE}   bad command line
  {EXIT_CONFIG}  invalid project configuration (each problem printed as FILE:LINE:COL: key: message)
"""


def _terminal_width() -> int:
    try:
        return int(os.environ["COLUMNS"]) - 2
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns - 2
    except (OSError, ValueError):
        return 78


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    # argparse builds a formatter on every add_argument, and without a width each
    # one imports shutil (~4 ms of every start) to ask the terminal's size.
    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        super().__init__(prog, indent_increment, max_help_position, width or _terminal_width())


class _FreeOptions:
    """An argument group that leaves out option strings its parser already uses: after
    the command name, the command's own `-f` (logs --follow) wins over the global one."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser
        self.group = parser.add_argument_group("project options")

    def add_argument(self, *names: str, **kwargs: object) -> None:
        taken = self.parser._option_string_actions
        free = [n for n in names if n not in taken]
        if free:
            self.group.add_argument(*free, **kwargs)


def _add_global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Global options, accepted before or after the command name."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    group = _FreeOptions(parser)
    group.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        default=default([]),
        metavar="FILE",
        help="compose file (repeatable; '-' reads stdin)",
    )
    group.add_argument(
        "-p", "--project-name", dest="project_name", default=default(None), help="project name"
    )
    group.add_argument(
        "--project-directory",
        default=default(None),
        metavar="DIR",
        help="project directory (default: the first file's directory)",
    )
    group.add_argument(
        "--profile",
        dest="profiles",
        action="append",
        default=default([]),
        metavar="PROFILE",
        help="enable a profile (repeatable)",
    )
    group.add_argument(
        "--env-file",
        dest="env_files",
        action="append",
        default=default([]),
        metavar="FILE",
        help="read variables from FILE (repeatable; replaces .env)",
    )
    group.add_argument(
        "--strict-env",
        action="store_true",
        default=default(False),
        help="an unset variable in the compose file is an error",
    )
    group.add_argument("--parallel", type=int, default=default(-1), help="limit parallelism")
    group.add_argument(
        "--ansi",
        choices=["never", "always", "auto"],
        default=default("auto"),
        help="control colour output",
    )
    group.add_argument(
        "--progress",
        choices=["auto", "tty", "plain", "json", "quiet"],
        default=default("auto"),
        help="progress output type",
    )
    group.add_argument(
        "--dry-run", action="store_true", default=default(False), help="show what would be done"
    )


def _command_in(argv: list[str], names: set[str]) -> int | None:
    """Where the command is named on the line, skipping the values of global options."""
    takes_value = {
        "-f",
        "--file",
        "-p",
        "--project-name",
        "--project-directory",
        "--profile",
        "--env-file",
        "--parallel",
        "--ansi",
        "--progress",
    }
    skip = False
    for index, token in enumerate(argv):
        if skip:
            skip = False
        elif token in takes_value:
            skip = True
        elif token in names:
            return index
    return None


def _table() -> dict:
    from composer.cli import config_cmd

    return {
        "config": ("Validate and print the project's configuration", config_cmd.add_arguments),
        **{name: (entry[0], entry[1]) for name, entry in _command_table().items()},
        "version": ("Show the version", _version_arguments),
    }


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every command as a sub-parser (for help and usage)."""
    parser = argparse.ArgumentParser(
        prog="composer",
        description="Run Compose projects on an embedded, daemonless container runtime.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("-v", "--version", action="store_true", help="show the version")
    _add_global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments) in _table().items():
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EXIT_STATUS_HELP,
            formatter_class=_HelpFormatter,
        )
        add_arguments(sub)
        _add_global_options(sub, suppress=True)
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse argv. When it names a command, only that command's parser is built: every
    argparse parser costs ~0.5 ms (it looks up translations), forty of them ~20 ms of
    each start. Global options are accepted before and after the command name."""
    table = _table()
    at = _command_in(argv, set(table))
    if at is None:
        return build_parser().parse_args(argv)
    name, before, after = argv[at], argv[:at], argv[at + 1 :]
    if "-h" in before or "--help" in before:
        return build_parser().parse_args(argv)
    front = argparse.ArgumentParser(prog="composer", add_help=False, formatter_class=_HelpFormatter)
    front.add_argument("-v", "--version", action="store_true")
    _add_global_options(front, suppress=False)
    args = front.parse_args(before)
    help_text, add_arguments = table[name]
    parser = argparse.ArgumentParser(
        prog=f"composer {name}",
        description=help_text,
        epilog=EXIT_STATUS_HELP,
        formatter_class=_HelpFormatter,
    )
    add_arguments(parser)
    _add_global_options(parser, suppress=True)
    args = parser.parse_args(after, namespace=args)
    args.command = name
    return args


def _version_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["pretty", "json"], default="pretty")
    parser.add_argument("--short", action="store_true", help="print the version number only")


def _version(args: argparse.Namespace) -> int:
    if getattr(args, "short", False):
        print(__version__)
    elif getattr(args, "format", "pretty") == "json":
        import json

        print(json.dumps({"version": __version__}))
    else:
        print(f"composer version {__version__}")
    return EXIT_OK


def _handlers() -> dict[str, Callable[[argparse.Namespace], int]]:
    from composer.cli import config_cmd

    handlers = {"config": config_cmd.run, "version": _version}
    handlers.update({name: entry[2] for name, entry in _command_table().items()})
    return handlers


# Modules with a COMMANDS table: name -> (help, add_arguments(parser), run(args) -> exit code).
COMMAND_MODULES = (
    "composer.cli.project_cmds",
    "composer.cli.watch_cmd",
    "composer.cli.image_cmds",
    "composer.cli.volume_cmds",
    "composer.cli.container_cmds",
)


def _command_table() -> dict:
    import importlib

    table: dict = {}
    for module in COMMAND_MODULES:
        table.update(importlib.import_module(module).COMMANDS)
    return table


def _is_operational(err: Exception) -> bool:
    """Failures a command reports as a plain message: the state of the machine or the
    project made it impossible (a port in use, a failing build…), not a bug of ours."""
    kinds = [
        ("composer.ops.project", "OperationError"),
        ("composer.containers", "ServiceSpecError"),
        ("runtime.engine", "ContainerError"),
        ("runtime.volumes", "VolumeError"),
        ("runtime.network.manager", "NetworkError"),
        ("runtime.images.store", "ImageError"),
        ("runtime.images.obtain", "ImageUnavailable"),
        ("runtime.images.build.builder", "BuildError"),
        ("runtime.images.build.dockerfile", "DockerfileError"),
        ("runtime.state", "LockBusy"),
        ("runtime.images.registry", "RegistryError"),
        ("runtime.images.auth", "AuthError"),
        ("runtime.network.ports", "PortError"),
        ("runtime.oci.cgroups", "CgroupError"),  # e.g. no cgroup filesystem mounted here
    ]
    # Only modules already imported can have raised it: no import on this path.
    classes = [getattr(sys.modules[m], n, None) for m, n in kinds if m in sys.modules]
    return isinstance(err, tuple(c for c in classes if isinstance(c, type)))


def run(argv: list[str]) -> int:
    args = parse(argv)
    if args.version:
        return _version(args)
    if not args.command:
        build_parser().print_help()
        return EXIT_USAGE
    from composer.cli.output import Output
    from composer.loader.errors import LoadError

    out = Output.from_args(args)
    try:
        return _handlers()[args.command](args)
    except LoadError as err:
        out.error(err.render())
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `composer config | head`: the reader left; say nothing more.
        sys.stderr.close()
        return EXIT_OK
    except Exception as err:
        if _is_operational(err):
            out.error(f"composer: {err}")
            return EXIT_FAILURE
        # Our bug, not the user's input: say so, keep it short.
        if os.environ.get("COMPOSER_DEBUG"):
            raise
        out.error(
            f"internal error: {type(err).__name__}: {err}\n"
            "  (set COMPOSER_DEBUG=1 for the traceback, and please report it)"
        )
        return EXIT_FAILURE
    finally:
        # The helpers a command started end with it, also when run in-process.
        for helper in ("runtime.network.netlink_worker", "runtime.shim_spawner"):
            if helper in sys.modules:
                sys.modules[helper].stop()
