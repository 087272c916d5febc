"""`composer-runtime`: a runc-compatible command line over runtime.oci.container and .spawn.

Start-up cost matters (one process per container operation), so this module imports
only our small modules (the option parser is ours too: argparse and the `re` it pulls in
cost more than the rest of start-up); everything else is imported by the command using it.
The modules `run` loads do without `from __future__ import annotations` (one more module
to load, ~0.13 ms): an annotation naming a later or typing-only name is quoted instead.
"""

import os
import sys

from runtime.oci import container

PROG = "composer-runtime"


# An option is (names, dest, kind, help); kind: "flag", "value", "int", "append", "append-int".
_BUNDLE_OPTIONS = [
    (("-b", "--bundle"), "bundle", "value", "bundle directory (default: .)"),
    (("--pid-file",), "pid_file", "value", "write the container's pid here"),
    (("--console-socket",), "console_socket", "value", "unix socket to send the pty master to"),
    (("--no-pivot",), "no_pivot", "flag", "refused: pivot_root is required"),
    (("--no-new-keyring",), "no_new_keyring", "flag", "accepted"),
    (("--preserve-fds",), "preserve_fds", "int", "pass fds 3..3+N-1 on to the container"),
]
_FORMAT = (("-f", "--format"), "format", "value", "table or json")

GLOBAL_OPTIONS = [
    (("--root",), "root", "value", f"state directory (default {container.DEFAULT_ROOT})"),
    (("--log",), "log", "value", "also append errors to this file"),
    (("--log-format",), "log_format", "value", "text or json"),
    (("--debug",), "debug", "flag", "accepted for runc callers"),
    (("--systemd-cgroup",), "systemd_cgroup", "flag", "refused"),
    (("--rootless",), "rootless", "value", "accepted; only false is supported"),
]

# command -> (help, options, positionals; "?name" optional, "*name" takes the rest)
COMMAND_SYNTAX = {
    "create": ("create a container; its process waits for start", _BUNDLE_OPTIONS, ["id"]),
    "run": (
        "create and start a container, wait for it, then delete it",
        [
            *_BUNDLE_OPTIONS,
            (("-d", "--detach"), "detach", "flag", "return after start"),
            (("--keep",), "keep", "flag", "do not delete after exit"),
        ],
        ["id"],
    ),
    "start": ("start the user process of a created container", [], ["id"]),
    "state": ("print the container state as JSON", [], ["id"]),
    "kill": (
        "send a signal (default SIGTERM) to the container's init",
        [(("-a", "--all"), "all", "flag", "signal every process of the container")],
        ["id", "?signal"],
    ),
    "delete": (
        "delete a stopped container",
        [(("-f", "--force"), "force", "flag", "kill it first if it runs")],
        ["id"],
    ),
    "exec": (
        "run a process in a running container",
        [
            (("-t", "--tty"), "tty", "flag", "allocate a pty (needs --console-socket)"),
            (("--console-socket",), "console_socket", "value", "unix socket for the pty master"),
            (("-e", "--env"), "env", "append", "KEY=VALUE"),
            (("-u", "--user"), "user", "value", "UID[:GID]"),
            (("-g", "--additional-gids"), "additional_gids", "append-int", "extra group"),
            (("--cwd",), "cwd", "value", "working directory"),
            (("-p", "--process"), "process", "value", "process.json with the whole process"),
            (("-d", "--detach"), "detach", "flag", "do not wait for the process"),
            (("--pid-file",), "pid_file", "value", "write the process's pid here"),
            (("--no-new-privs",), "no_new_privs", "flag", "set no_new_privs"),
            (("--preserve-fds",), "preserve_fds", "int", "pass fds 3..3+N-1 on"),
            (("-c", "--cap"), "cap", "append", "add a capability"),
        ],
        ["id", "*args"],
    ),
    "list": (
        "list containers",
        [_FORMAT, (("-q", "--quiet"), "quiet", "flag", "ids only")],
        [],
    ),
    "ps": ("list the pids of a container", [_FORMAT], ["id"]),
    "pause": ("freeze every process of a container", [], ["id"]),
    "resume": ("thaw a paused container", [], ["id"]),
    "spec": (
        "write a default config.json",
        [
            (("-b", "--bundle"), "bundle", "value", "directory (default: .)"),
            (("--rootless",), "rootless", "flag", "refused"),
        ],
        [],
    ),
    "features": ("print what this runtime supports, as JSON", [], []),
}

_DEFAULTS = {"kind:append": list, "kind:append-int": list, "kind:flag": bool, "kind:int": int}


class UsageError(container.ContainerError):
    pass


class Args:
    """Parsed arguments: attributes named by each option's dest."""

    def __init__(self, **values) -> None:
        self.__dict__.update(values)


class _HelpWanted(Exception):
    pass


def _parse_options(argv: list[str], spec: list, values: dict) -> int:
    """Consume options up to the first positional; return its index."""
    by_name = {name: (dest, kind) for names, dest, kind, _help in spec for name in names}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return i + 1
        if not arg.startswith("-") or arg == "-":
            return i
        name, has_value, inline = arg.partition("=")
        if name in ("-h", "--help"):
            raise _HelpWanted
        if name not in by_name:
            raise UsageError(f"unknown option {name}")
        dest, kind = by_name[name]
        if kind == "flag":
            values[dest] = True if not has_value else inline.lower() in ("1", "true", "yes")
            i += 1
            continue
        if has_value:
            value = inline
            i += 1
        else:
            if i + 1 >= len(argv):
                raise UsageError(f"option {name} needs a value")
            value = argv[i + 1]
            i += 2
        if kind.endswith("int"):
            try:
                value = int(value)
            except ValueError:
                raise UsageError(f"option {name} needs a number, got {value!r}") from None
        if kind.startswith("append"):
            values.setdefault(dest, []).append(value)
        else:
            values[dest] = value
    return i


def parse_args(argv: list[str]) -> Args:
    values: dict = {"root": container.DEFAULT_ROOT, "log": None, "log_format": "text"}
    values.update(debug=False, systemd_cgroup=False, rootless="false")
    try:
        i = _parse_options(argv, GLOBAL_OPTIONS, values)
    except _HelpWanted:
        raise SystemExit(_usage()) from None
    rest = argv[i:]
    if not rest or rest[0] == "help":
        raise SystemExit(_usage())
    command, rest = rest[0], rest[1:]
    if command not in COMMAND_SYNTAX:
        raise UsageError(f"unknown command {command!r} (see --help)")
    try:
        return _parse_command(command, rest, values)
    except _HelpWanted:
        raise SystemExit(_usage(command)) from None


def _parse_command(command: str, rest: list[str], values: dict) -> Args:
    _help, options, positionals = COMMAND_SYNTAX[command]
    for _names, dest, kind, _ in options:
        values[dest] = _DEFAULTS.get(f"kind:{kind}", lambda: None)()
    values.update(command=command, bundle=".", format="table", signal="SIGTERM")
    # Options may come before, between or after positionals, except after "*rest" starts.
    leftovers: list[str] = []
    while rest:
        taking_rest = bool(positionals) and positionals[-1].startswith("*")
        stop = taking_rest and len(leftovers) == len(positionals) - 1
        if stop:
            leftovers.extend(rest[1:] if rest[0] == "--" else rest)
            break
        i = _parse_options(rest, options, values)
        rest = rest[i:]
        if rest:
            leftovers.append(rest[0])
            rest = rest[1:]
    for name in positionals:
        if name.startswith("*"):
            values[name[1:]] = leftovers
            leftovers = []
        elif name.startswith("?"):
            if leftovers:
                values[name[1:]] = leftovers.pop(0)
        elif leftovers:
            values[name] = leftovers.pop(0)
        else:
            raise UsageError(f"{command}: missing {name.upper()}")
    if leftovers:
        raise UsageError(f"{command}: unexpected arguments {leftovers}")
    if values["log_format"] not in ("text", "json"):
        raise UsageError("--log-format must be text or json")
    if values.get("format") not in ("table", "json"):
        raise UsageError("--format must be table or json")
    return Args(**values)


def _usage(command: str | None = None) -> str:
    lines = []
    if command is None:
        lines.append(f"usage: {PROG} [global options] COMMAND [options] [ID] ...")
        lines.append("Runs OCI bundles; runc-compatible.\n\ncommands:")
        lines += [f"  {name:<10} {spec[0]}" for name, spec in COMMAND_SYNTAX.items()]
        options = GLOBAL_OPTIONS
        lines.append("\nglobal options:")
    else:
        text, options, positionals = COMMAND_SYNTAX[command]
        args = " ".join(p.strip("?*").upper() + ("..." if p[0] == "*" else "") for p in positionals)
        lines.append(f"usage: {PROG} {command} [options] {args}\n{text}\n\noptions:")
    lines += [f"  {', '.join(names):<26} {help_text}" for names, _d, _k, help_text in options]
    print("\n".join(lines))
    return 0


def _print_json(data) -> None:
    import json

    print(json.dumps(data, indent=2))


def cmd_create(args) -> int:
    from runtime.oci import spawn

    _refuse_unsupported(args)
    spawn.create_container(
        args.root, args.id, args.bundle, args.pid_file, args.console_socket, args.preserve_fds
    )
    return 0


def cmd_run(args) -> int:
    from runtime.oci import spawn

    _refuse_unsupported(args)
    if not args.detach:
        spawn.become_subreaper()
    config = container.load_config(os.path.abspath(args.bundle))
    console = args.console_socket
    terminal = None
    if console is None and not args.detach and config["process"].get("terminal"):
        terminal = _ConsoleProxy()  # like runc: a pty in the container, proxied to our stdio
        console = terminal.container_end
    # Started by create itself where nothing can tell (the record is written while the init
    # execs); not for a pid file, startContainer hooks or a terminal, which come first.
    at_once = not (
        args.pid_file
        or config["process"].get("terminal")
        or container.has_hooks(config, "startContainer")
    )
    try:
        record = spawn.create_container(
            args.root,
            args.id,
            args.bundle,
            args.pid_file,
            console,
            args.preserve_fds,
            config,
            start=at_once,
        )
    finally:
        if terminal:
            terminal.created()
    if not at_once:
        try:
            container.start(args.root, args.id, record)
        except BaseException:
            container.delete(args.root, args.id, force=True)
            raise
    if args.detach:
        return 0
    if terminal:
        terminal.proxy()
    code = _wait_forwarding_signals(record["pid"])
    if not args.keep:
        container.delete(args.root, args.id, force=True, record=record)
    return code


class _ConsoleProxy:
    """`run` of a terminal container without --console-socket: receive the pty master over
    a socket pair, then copy our stdin to it and its output to our stdout until it closes."""

    def __init__(self) -> None:
        import socket

        self._ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.container_end = theirs.detach()
        self.master = -1

    def created(self) -> None:
        import socket

        os.close(self.container_end)
        try:
            _msg, fds, _flags, _addr = socket.recv_fds(self._ours, 1024, 1)
        except OSError:
            fds = []
        self._ours.close()
        self.master = fds[0] if fds else -1

    def proxy(self) -> None:
        import select
        import termios
        import tty

        if self.master < 0:
            return
        saved = None
        if os.isatty(0):
            saved = termios.tcgetattr(0)
            tty.setraw(0)
            termios.tcsetwinsize(self.master, termios.tcgetwinsize(0))
        sources = [self.master, 0]
        try:
            while True:
                ready, _, _ = select.select(sources, [], [])
                if self.master in ready:
                    try:
                        data = os.read(self.master, 65536)
                    except OSError:  # EIO: the container's side is closed
                        data = b""
                    if not data:
                        break
                    os.write(1, data)
                if 0 in ready:
                    data = os.read(0, 65536)
                    if data:
                        os.write(self.master, data)
                    else:
                        sources.remove(0)  # our stdin ended; the container may go on
        finally:
            if saved is not None:
                termios.tcsetattr(0, termios.TCSADRAIN, saved)
            os.close(self.master)


def _wait_forwarding_signals(pid: int) -> int:
    """Wait for the container; signals sent to us go to it, as with runc run."""
    import _signal  # the C module: `signal` builds enums, a few ms of a short run

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1):
        _signal.signal(sig, forward)
    return container.wait_exit_code(pid)


def _refuse_unsupported(args) -> None:
    if getattr(args, "no_pivot", False):
        raise UsageError("--no-pivot is not supported: containers always pivot_root")
    if args.preserve_fds < 0:
        raise UsageError("--preserve-fds must not be negative")


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
    from runtime.oci import spawn

    return spawn.exec_in(
        args.root,
        args.id,
        process,
        merge=not args.process,
        extra_caps=args.cap,
        console_socket=args.console_socket,
        detach=args.detach,
        pid_file=args.pid_file,
        preserve_fds=args.preserve_fds,
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
            "ociVersionMax": "1.3.0",  # newer fields we cannot honour are refused
            "hooks": sorted(hooks.WARN_ONLY | hooks.FATAL),
            "mountOptions": sorted([*linux.PROPAGATION, *linux.MOUNT_FLAGS]),
            "linux": {
                "namespaces": sorted(linux.NAMESPACES),
                "cgroup": {"v1": True, "v2": True},
                "seccomp": {"enabled": True},
                # applied where the kernel runs them, refused where it does not
                "apparmor": {"enabled": True},
                "selinux": {"enabled": True},
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
    """The command line; called without `argv` it is the program and ends the process."""
    if argv is None:
        import gc

        gc.disable()  # a process of ~30 ms frees what it made by ending: collections are waste
    code = _main(sys.argv[1:] if argv is None else argv)
    if argv is None:
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """Exit without the interpreter's teardown (2-3 ms of a 30 ms `run`): nothing of ours
    needs it (no atexit work, files closed as they are used); our output is flushed here."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1  # a closed or broken stdout: the output did not arrive
    os._exit(code)


def _main(argv: list[str]) -> int:
    try:
        args = parse_args(argv)
    except UsageError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
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
