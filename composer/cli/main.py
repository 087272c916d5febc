"""`composer` command line: argument parsing and output only."""

from __future__ import annotations

import sys

# Commands that wire or unwire container networks: for them a netlink helper is started
# before anything else is imported (runtime/network/netlink_worker.py). A word matched that
# is not the command (a project named "up") costs only the helper's start.
NETWORKING_COMMANDS = frozenset({"up", "down", "start", "restart", "run", "create"})
# Commands that start containers: their shims are forked by a spawner (started with the
# first of them, runtime/shim_spawner.py), not each a new interpreter.
STARTING_COMMANDS = frozenset({"up", "start", "restart", "run"})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not NETWORKING_COMMANDS.isdisjoint(argv) and "--dry-run" not in argv:
        from runtime.network import netlink_worker

        netlink_worker.prestart()
        if not STARTING_COMMANDS.isdisjoint(argv):
            from runtime import shim_spawner

            shim_spawner.enable()
    if "config" in argv:  # the only command with a memo; the others skip even its import
        from composer.cli import memo

        if memo.usable():
            return _run_with_memo(argv, memo)
    from composer.cli.app import run

    return run(argv)


def _run_with_memo(argv: list[str], memo) -> int:
    path = memo.record_path(argv)
    code = memo.replay(path)
    if code is not None:
        return code
    recorder = memo.Recorder(path)
    from composer.cli.app import run

    code = 1  # what an escaping exception amounts to; never recorded
    try:
        code = run(argv)
    finally:
        recorder.finish(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
