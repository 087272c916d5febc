"""`composer watch`: bring the project up, then follow develop.watch rules until Ctrl-C.

Argument parsing and output only; the work is in composer/watch.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def add_watch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="*", metavar="SERVICE")
    parser.add_argument("--no-up", action="store_true", help="do not bring the project up first")
    parser.add_argument(
        "--prune", action="store_true", help="remove dangling images after each rebuild"
    )
    parser.add_argument("--quiet", action="store_true", help="hide the build output")


def run_watch(args: argparse.Namespace) -> int:
    from composer.cli.project_cmds import Progress, _backend, _load
    from composer.watch import Watcher, rules_of

    project = _load(args, args.services)
    rules = rules_of(project, args.services)
    backend = _backend()
    progress = Progress(args)
    if not args.no_up:
        from composer.ops.up import UpRequest, up

        up(project, backend, UpRequest(services=list(args.services)), progress)
    report = _quiet(progress) if args.quiet else progress
    watcher = Watcher(project, backend, rules, report, prune=args.prune)
    try:
        watcher.start()
        watcher.initial_sync()
        services = ", ".join(dict.fromkeys(r.service for r in rules))
        print(f"Watching {len(rules)} paths of {services} (Ctrl-C stops)", file=sys.stderr)
        sys.stderr.flush()
        watcher.run()
    except KeyboardInterrupt:
        print("Watch stopped", file=sys.stderr)
    finally:
        watcher.close()
    return 0


def _quiet(progress: Callable[[str, str], None]) -> Callable[[str, str], None]:
    # Build steps are reported as "[i/n] …"; the action lines stay.
    def report(resource: str, state: str) -> None:
        if not state.startswith("["):
            progress(resource, state)

    return report


COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "watch": ("Watch the services' files and act on changes (develop.watch)", add_watch, run_watch),
}
