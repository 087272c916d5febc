"""`composer-runtime`: a runc-compatible command line over runtime.oci.container.

Start-up cost matters (one process per container operation), so this module imports
only argparse and our small modules; everything else is imported by the command using it.
"""

from __future__ import annotations

import argparse
import os
import sys

from runtime.oci import container

PROG = "composer-runtime"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Run OCI bundles (runc-compatible).")
    parser.add_argument("--root", default=container.DEFAULT_ROOT, help="state directory")
    parser.add_argument("--log", help="log file (accepted; errors go to stderr and here)")
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    parser.add_argument("--debug", action="store_true", help="accepted for runc callers")
    parser.add_argument("--systemd-cgroup", action="store_true", help="refused if set")
    parser.add_argument("--rootless", default="false", help="accepted; only false is supported")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text)

    p = command("create", "create a container from a bundle; its process waits for start")
    _bundle_options(p)
    p.add_argument("id")

    p = command("run", "create and start a container, wait for it, then delete it")
    _bundle_options(p)
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--keep", action="store_true", help="do not delete after exit")
    p.add_argument("id")

    p = command("start", "start the user process of a created container")
    p.add_argument("id")

    p = command("state", "print the container state as JSON")
    p.add_argument("id")

    p = command("kill", "send a signal (default SIGTERM) to the container's init")
    p.add_argument("-a", "--all", action="store_true", help="signal every process in it")
    p.add_argument("id")
    p.add_argument("signal", nargs="?", default="SIGTERM")

    p = command("delete", "delete a stopped container (--force: kill it first)")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("id")

    p = command("exec", "run a process in a running container")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("--console-socket")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-u", "--user", help="UID[:GID]")
    p.add_argument("--additional-gids", "-g", action="append", type=int, default=[])
    p.add_argument("--cwd")
    p.add_argument("-p", "--process", help="process.json with the whole process")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--pid-file")
    p.add_argument("--no-new-privs", action="store_true")
    p.add_argument("--cap", action="append", default=[], help="add a capability")
    p.add_argument("id")
    p.add_argument("args", nargs=argparse.REMAINDER)

    p = command("list", "list containers")
    p.add_argument("-f", "--format", choices=["table", "json"], default="table")
    p.add_argument("-q", "--quiet", action="store_true")

    p = command("ps", "list the processes of a container")
    p.add_argument("-f", "--format", choices=["table", "json"], default="table")
    p.add_argument("id")

    p = command("pause", "freeze every process of a container")
    p.add_argument("id")
    p = command("resume", "thaw a paused container")
    p.add_argument("id")

    p = command("spec", "write a default config.json")
    p.add_argument("-b", "--bundle", default=".")
    p.add_argument("--rootless", action="store_true")

    command("features", "print what this runtime supports, as JSON")
    return parser


def _bundle_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-b", "--bundle", default=".")
    p.add_argument("--pid-file")
    p.add_argument("--console-socket")
    p.add_argument("--no-pivot", action="store_true", help="refused: pivot_root is required")
    p.add_argument("--no-new-keyring", action="store_true", help="accepted")
    p.add_argument("--preserve-fds", type=int, default=0, help="only 0 is supported")


class UsageError(container.ContainerError):
    pass


def _print_json(data) -> None:
    import json

    print(json.dumps(data, indent=2))


def cmd_create(args) -> int:
    _refuse_unsupported(args)
    container.create(args.root, args.id, args.bundle, args.pid_file, args.console_socket)
    return 0


def cmd_run(args) -> int:
    _refuse_unsupported(args)
    if not args.detach:
        container.become_subreaper()
    pid = container.create(args.root, args.id, args.bundle, args.pid_file, args.console_socket)
    try:
        container.start(args.root, args.id)
    except BaseException:
        container.delete(args.root, args.id, force=True)
        raise
    if args.detach:
        return 0
    code = _wait_forwarding_signals(pid)
    if not args.keep:
        container.delete(args.root, args.id, force=True)
    return code


def _wait_forwarding_signals(pid: int) -> int:
    """Wait for the container; signals sent to us go to it, as with runc run."""
    import signal

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1):
        signal.signal(sig, forward)
    return container.wait_exit_code(pid)


def _refuse_unsupported(args) -> None:
    if getattr(args, "no_pivot", False):
        raise UsageError("--no-pivot is not supported: containers always pivot_root")
    if getattr(args, "preserve_fds", 0):
        raise UsageError("--preserve-fds is not supported")


def cmd_start(args) -> int:
    container.start(args.root, args.id)
    return 0


def cmd_state(args) -> int:
    _print_json(container.state(args.root, args.id))
    return 0


def cmd_kill(args) -> int:
    sig = container.parse_signal(args.signal)
    container.kill(args.root, args.id, sig, all_processes=args.all)
    return 0


def cmd_delete(args) -> int:
    container.delete(args.root, args.id, force=args.force)
    return 0


def cmd_exec(args) -> int:
    if args.process:
        from runtime.state import read_json

        process = read_json(args.process)
    else:
        if not args.args:
            raise UsageError("exec needs a command (or --process)")
        process = {"args": list(args.args)}
        if args.env:
            process["env"] = args.env
        if args.cwd:
            process["cwd"] = args.cwd
        if args.user:
            uid, _, gid = args.user.partition(":")
            process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
            if args.additional_gids:
                process["user"]["additionalGids"] = args.additional_gids
        process["terminal"] = args.tty
        if args.no_new_privs:
            process["noNewPrivileges"] = True
    return container.exec_in(
        args.root,
        args.id,
        process,
        merge=not args.process,
        extra_caps=args.cap,
        console_socket=args.console_socket,
        detach=args.detach,
        pid_file=args.pid_file,
    )


def cmd_list(args) -> int:
    rows = container.list_containers(args.root)
    if args.quiet:
        for row in rows:
            print(row["id"])
    elif args.format == "json":
        _print_json(rows)
    else:
        print(f"{'ID':<24} {'PID':>8} {'STATUS':<10} {'BUNDLE':<40} CREATED")
        for row in rows:
            pid = row.get("pid", 0)
            print(
                f"{row['id']:<24} {pid:>8} {row['status']:<10} {row['bundle']:<40} {row['created']}"
            )
    return 0


def cmd_ps(args) -> int:
    pids = container.processes(args.root, args.id)
    if args.format == "json":
        _print_json(pids)
        return 0
    print("PID")
    for pid in pids:
        print(pid)
    return 0


def cmd_pause(args) -> int:
    container.pause(args.root, args.id)
    return 0


def cmd_resume(args) -> int:
    container.resume(args.root, args.id)
    return 0


def cmd_spec(args) -> int:
    from runtime.oci.spec import default_spec

    if args.rootless:
        raise UsageError("spec --rootless is not supported: this runtime runs as root only")
    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        raise UsageError(f"{path} already exists")
    import json

    with open(path, "w") as f:
        json.dump(default_spec(), f, indent=2)
    return 0


def cmd_features(_args) -> int:
    from runtime.oci import hooks, linux

    _print_json(
        {
            "ociVersionMin": "1.0.0",
            "ociVersionMax": container.OCI_VERSION,
            "hooks": sorted(hooks.WARN_ONLY | hooks.FATAL),
            "mountOptions": sorted([*linux.PROPAGATION, "bind", "rbind", "ro", "rw"]),
            "linux": {
                "namespaces": sorted(linux.NAMESPACES),
                "cgroup": {"v1": True, "v2": True},
                "seccomp": {"enabled": True},
            },
        }
    )
    return 0


COMMANDS = {
    "create": cmd_create,
    "run": cmd_run,
    "start": cmd_start,
    "state": cmd_state,
    "kill": cmd_kill,
    "delete": cmd_delete,
    "exec": cmd_exec,
    "list": cmd_list,
    "ps": cmd_ps,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "spec": cmd_spec,
    "features": cmd_features,
}


def _log_error(args, message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)
    if not getattr(args, "log", None):
        return
    try:
        with open(args.log, "a") as f:
            if args.log_format == "json":
                import json
                import time

                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                f.write(json.dumps({"level": "error", "msg": message, "time": stamp}) + "\n")
            else:
                f.write(f"level=error msg={message!r}\n")
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.root = container.runtime_root(args.root)
    if args.systemd_cgroup:
        _log_error(args, "--systemd-cgroup is not supported")
        return 1
    try:
        return COMMANDS[args.command](args)
    except (container.ContainerError, OSError, ValueError) as err:
        _log_error(args, str(err))
        return 1
    except Exception as err:  # CgroupError and the like: one line, not a traceback
        if type(err).__name__.endswith("Error"):
            _log_error(args, str(err))
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
