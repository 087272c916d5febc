"""Commands on single containers of a project: exec, run, attach, kill, pause, unpause,
rm, create, top, port, wait, cp, events, ls.

Argument parsing and output only; the work is in composer/ops (run.py, commands.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from composer.cli.output import print_table
from composer.cli.project_cmds import Progress, _backend, _load

# -- exec ------------------------------------------------------------------------------


def add_exec(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", metavar="SERVICE")
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND")
    parser.add_argument("-d", "--detach", action="store_true", help="run in the background")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("-u", "--user", help="user[:group] to run as")
    parser.add_argument("-w", "--workdir", help="working directory inside the container")
    parser.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true", help="no terminal")
    parser.add_argument(
        "-i", "--interactive", action="store_true", help="accepted: stdin is always passed on"
    )
    parser.add_argument("--index", type=int, default=1, help="which container of the service")
    parser.add_argument("--privileged", action="store_true", help="every capability")


def wants_terminal(args: argparse.Namespace) -> bool:
    """A terminal only when asked for and both ends are one, as docker compose decides."""
    if getattr(args, "no_tty", False) or getattr(args, "detach", False):
        return False
    return sys.stdin.isatty() and sys.stdout.isatty()


def run_exec(args: argparse.Namespace) -> int:
    from composer.ops.commands import exec_engine, refuse_paused, service_container

    if not args.argv:
        raise SystemExit("composer exec: give a command to run")
    project = _load(args)
    backend = _backend()
    info = service_container(backend, project, args.service, args.index)
    refuse_paused([info], "exec into")
    engine = exec_engine(backend, privileged=args.privileged)
    return engine.exec(
        info["id"],
        list(args.argv),
        tty=wants_terminal(args),
        env=list(args.env) or None,
        user=args.user,
        cwd=args.workdir,
        detach=args.detach,
    )


# -- run -------------------------------------------------------------------------------


def add_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", metavar="SERVICE")
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND")
    parser.add_argument("-d", "--detach", action="store_true", help="print the name and leave")
    parser.add_argument("--rm", action="store_true", help="remove the container when it exits")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("-v", "--volume", action="append", default=[], metavar="VOLUME")
    parser.add_argument("-p", "--publish", action="append", default=[], metavar="PORT")
    parser.add_argument("--service-ports", action="store_true", help="publish the service's ports")
    parser.add_argument("--no-deps", action="store_true", help="do not start dependencies")
    parser.add_argument("--entrypoint", help="override the entrypoint ('' for none)")
    parser.add_argument("--name", help="container name")
    parser.add_argument("--use-aliases", action="store_true", help="answer to the service's name")
    parser.add_argument("-u", "--user", help="user[:group] to run as")
    parser.add_argument("-w", "--workdir", help="working directory inside the container")
    parser.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true", help="no terminal")
    parser.add_argument(
        "-i",
        "--interactive",
        action="store_true",
        help="accepted: stdin is passed on unless -d, as with docker compose",
    )
    build = parser.add_mutually_exclusive_group()
    build.add_argument("--build", action="store_true", help="build the image first")
    build.add_argument("--no-build", action="store_true", help="never build the image")


def run_run(args: argparse.Namespace) -> int:
    import shlex

    from composer.ops.run import RunRequest, create_oneoff, remove_oneoff

    if args.rm and args.detach:
        # No daemon: nobody would be left to remove it when it exits.
        raise SystemExit("composer run: --rm and -d cannot be combined; `composer rm` it later")
    project = _load(args, [args.service])
    request = RunRequest(
        service=args.service,
        command=list(args.argv) if args.argv else None,
        entrypoint=shlex.split(args.entrypoint) if args.entrypoint is not None else None,
        env=list(args.env),
        volumes=list(args.volume),
        publish=list(args.publish),
        labels=list(args.label),
        service_ports=args.service_ports,
        no_deps=args.no_deps,
        name=args.name,
        use_aliases=args.use_aliases,
        # A terminal exactly when we are at one (unless -T), whatever the service's tty:
        # piped input must reach the command as it was, not through a line discipline.
        tty=wants_terminal(args),
        interactive=not args.detach,
        user=args.user,
        workdir=args.workdir,
        build="always" if args.build else "never" if args.no_build else "auto",
    )
    backend = _backend()
    with Progress(args) as report:
        container_id, name = create_oneoff(project, backend, request, report)
    if args.detach:
        print(name)
        return 0
    try:
        # Its command starts now that we are attached: no output comes before.
        backend.engine.attach(container_id, stdin=_stdin_fd())
        code = backend.engine.wait(container_id)
    except KeyboardInterrupt:
        backend.engine.stop(container_id, timeout=10)
        code = 130
    finally:
        if args.rm:
            remove_oneoff(project, backend, container_id)
    return 1 if code is None else code


def _stdin_fd() -> int | None:
    """Our stdin to relay, or None when there is none (a closed fd 0)."""
    import os

    try:
        os.fstat(0)
    except OSError:
        return None
    return 0


# -- attach ----------------------------------------------------------------------------


def add_attach(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", metavar="SERVICE")
    parser.add_argument("--index", type=int, default=1, help="which container of the service")
    parser.add_argument("--no-stdin", action="store_true", help="do not pass stdin on")
    parser.add_argument(
        "--detach-keys",
        default="ctrl-p,ctrl-q",
        help="keys that detach, leaving it running (ctrl-p,ctrl-q)",
    )


def detach_key_bytes(text: str) -> bytes:
    """docker's --detach-keys: comma-separated keys, each one character or ctrl-<key>."""
    keys = []
    for part in text.split(","):
        key = part.strip()
        if key.lower().startswith("ctrl-") and len(key) == 6:
            code = ord(key[5].upper()) ^ 0x40  # ctrl-a is 1, ctrl-@ is 0, ctrl-_ is 31
            if code < 32:
                keys.append(code)
                continue
        elif len(key) == 1:
            keys.append(ord(key))
            continue
        raise SystemExit(f"composer attach: --detach-keys: {key!r} is not a key")
    return bytes(keys)


def run_attach(args: argparse.Namespace) -> int:
    from composer.ops.commands import service_container

    keys = detach_key_bytes(args.detach_keys)
    project = _load(args)
    backend = _backend()
    info = service_container(backend, project, args.service, args.index)
    # Input reaches it only with stdin_open: true (attach reads none otherwise).
    stdin = None if args.no_stdin else _stdin_fd()
    if backend.engine.attach(info["id"], stdin=stdin, detach_keys=keys):
        return 0  # detached: it runs on
    state = backend.engine.inspect(info["id"])
    if state["status"] in ("running", "restarting"):
        return 0  # it restarted, or the connection was dropped: it goes on without us
    code = state.get("exit_code")
    return 1 if code is None else code


# -- kill / pause / unpause ---------------------------------------------------------------------


def add_kill(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="*", metavar="SERVICE")
    parser.add_argument("-s", "--signal", default="SIGKILL", help="signal to send (SIGKILL)")
    parser.add_argument(
        "--remove-orphans",
        action="store_true",
        help="remove containers of services not in the file",
    )


def run_kill(args: argparse.Namespace) -> int:
    from composer.ops.commands import name_of, refuse_paused, select
    from composer.ops.project import OperationError
    from runtime.engine import signal_number

    try:
        sig = signal_number(args.signal)
    except ValueError as err:
        raise OperationError(str(err)) from None
    project = _load(args)
    backend = _backend()
    chosen = select(backend, project, args.services, status=("running", "restarting"))
    refuse_paused(chosen, "kill")
    with Progress(args) as report:
        for info in chosen:
            backend.engine.kill(info["id"], sig)
            report(f"Container {name_of(info)}", "Killed")
        if args.remove_orphans:
            from composer.ops import containers as ctr
            from composer.plan import orphans

            for orphan in orphans(project, backend.existing(project.name)):
                ctr.remove(backend.engine.inspect(orphan.id), backend)
                report(f"Container {orphan.name}", "Removed (orphan)")
    return 0


def add_services(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="*", metavar="SERVICE")


def run_pause(args: argparse.Namespace) -> int:
    from composer.ops.commands import is_paused, name_of, pause, select

    project = _load(args)
    with Progress(args) as report:
        for info in select(_backend(), project, args.services, status=("running",)):
            if not is_paused(info):
                pause(info)
                report(f"Container {name_of(info)}", "Paused")
    return 0


def run_unpause(args: argparse.Namespace) -> int:
    from composer.ops.commands import is_paused, name_of, resume, select

    project = _load(args)
    with Progress(args) as report:
        for info in select(_backend(), project, args.services, status=("running",)):
            if is_paused(info):
                resume(info)
                report(f"Container {name_of(info)}", "Unpaused")
    return 0


# -- rm / create --------------------------------------------------------------------------


def add_rm(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="*", metavar="SERVICE")
    parser.add_argument("-f", "--force", action="store_true", help="accepted: nothing is asked")
    parser.add_argument("-s", "--stop", action="store_true", help="stop running containers first")
    parser.add_argument("-v", "--volumes", action="store_true", help="remove anonymous volumes")


def run_rm(args: argparse.Namespace) -> int:
    from composer.ops import containers as ctr
    from composer.ops.commands import name_of, resume, select
    from composer.ops.project import project_lock

    project = _load(args)
    backend = _backend()
    with Progress(args) as report, project_lock(backend, project, "composer rm"):
        if args.stop:
            from composer.ops.commands import is_paused

            for info in select(backend, project, args.services, status=("running", "restarting")):
                if is_paused(info):
                    resume(info)  # a frozen process cannot act on the stop signal
                backend.engine.stop(info["id"])
                report(f"Container {name_of(info)}", "Stopped")
        doomed = select(backend, project, args.services, status=("exited", "created"))
        if not doomed:
            print("No stopped containers", file=sys.stderr)
        for info in doomed:
            ctr.remove(info, backend, volumes=args.volumes)
            report(f"Container {name_of(info)}", "Removed")
    return 0


def add_create(parser: argparse.ArgumentParser) -> None:
    from composer.cli.project_cmds import add_create_options

    add_create_options(parser)
    parser.add_argument("-y", "--yes", action="store_true", help="accepted: nothing is asked")


def run_create(args: argparse.Namespace) -> int:
    from composer.cli.project_cmds import up_request
    from composer.ops.up import up

    project = _load(args, args.services)
    request = up_request(args, start=False)
    with Progress(args) as report:
        up(project, _backend(), request, report)
    return 0


# -- top / port ----------------------------------------------------------------------------


def run_top(args: argparse.Namespace) -> int:
    from composer.ops.commands import TOP_COLUMNS, name_of, process_row, processes, select

    project = _load(args)
    first = True
    for info in select(_backend(), project, args.services, oneoff=None, status=("running",)):
        rows = [row for row in map(process_row, processes(info)) if row is not None]
        if not first:
            print()
        first = False
        print(name_of(info))
        print_table(TOP_COLUMNS, [tuple(row[c] for c in TOP_COLUMNS) for row in rows])
    return 0


def add_port(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", metavar="SERVICE")
    parser.add_argument("private_port", metavar="PRIVATE_PORT", help="port[/protocol]")
    parser.add_argument("--protocol", choices=["tcp", "udp", "sctp"], default=None)
    parser.add_argument("--index", type=int, default=1, help="which container of the service")


def run_port(args: argparse.Namespace) -> int:
    from composer.ops.commands import published_port, service_container

    port, _, protocol = args.private_port.partition("/")
    if not port.isdigit():
        raise SystemExit(f"composer port: {args.private_port!r} is not a port number")
    project = _load(args)
    backend = _backend()
    info = service_container(backend, project, args.service, args.index)
    print(published_port(backend, info, int(port), args.protocol or protocol or "tcp"))
    return 0


# -- wait ------------------------------------------------------------------------------


def add_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="+", metavar="SERVICE")
    parser.add_argument(
        "--down-project", action="store_true", help="take the project down when one stops"
    )


def run_wait(args: argparse.Namespace) -> int:
    from composer.ops.commands import select, wait_each

    project = _load(args)
    backend = _backend()
    infos = select(backend, project, args.services)
    first = None
    for _info, code in wait_each(backend, infos):
        print("unknown" if code is None else code, flush=True)
        if first is None:
            first = 1 if code is None else code
        if args.down_project:
            from composer.ops.down import down

            with Progress(args) as report:
                down(project, backend, report)
            break
    return first or 0


# -- cp --------------------------------------------------------------------------------


def add_cp(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SRC", help="SERVICE:PATH or a host path")
    parser.add_argument("destination", metavar="DEST", help="SERVICE:PATH or a host path")
    parser.add_argument("-a", "--archive", action="store_true", help="keep owners (into it)")
    parser.add_argument("-L", "--follow-link", action="store_true", help="follow SRC's link")
    parser.add_argument("--index", type=int, default=1, help="which container of the service")


def container_side(argument: str) -> tuple[str, str] | None:
    """(service, path) for SERVICE:PATH; None for a host path (a '/' before any ':')."""
    service, colon, path = argument.partition(":")
    if not colon or not service or "/" in service:
        return None
    return service, path


def run_cp(args: argparse.Namespace) -> int:
    from composer.ops.commands import ContainerFiles, copy_into, copy_out, service_container

    if "-" in (args.source, args.destination):
        raise SystemExit("composer cp: tar streams (-) are not supported; copy to a path")
    source, destination = container_side(args.source), container_side(args.destination)
    if (source is None) == (destination is None):
        raise SystemExit("composer cp: exactly one of SRC and DEST must be SERVICE:PATH")
    project = _load(args)
    backend = _backend()
    service = (source or destination)[0]
    info = service_container(backend, project, service, args.index, running=False)
    files = ContainerFiles(info)
    if source is not None:
        copy_out(files, source[1], args.destination, follow_link=args.follow_link)
    else:
        copy_into(files, args.source, destination[1], archive=args.archive)
    return 0


# -- events ----------------------------------------------------------------------------


def add_events(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="*", metavar="SERVICE")
    parser.add_argument("--json", action="store_true", help="one JSON object a line")
    parser.add_argument("--since", help="also what happened since (RFC 3339, unix time, 10m)")
    parser.add_argument("--until", help="stop then (RFC 3339, unix time, or 30s from now)")


def until_time(text: str) -> int:
    """--until as nanoseconds: a time, or a duration counted from now."""
    import time

    from runtime.logs import parse_time

    try:
        value = parse_time(float(text) if text.replace(".", "", 1).isdigit() else text)
    except ValueError as err:
        raise SystemExit(f"composer events: --until: {err}") from None
    now = time.time_ns()
    is_duration = text[-1:].isalpha() and "T" not in text.upper()
    return now + (now - value) if is_duration else value


def run_events(args: argparse.Namespace) -> int:
    import json

    from composer.ops.commands import check_services, container_events
    from runtime.logs import parse_time

    project = _load(args)
    check_services(project, args.services)
    since = None
    if args.since:
        text = args.since
        since = parse_time(float(text) if text.replace(".", "", 1).isdigit() else text)
    until = until_time(args.until) if args.until else None
    for event in container_events(
        _backend(), project.name, since_ns=since, until_ns=until, services=args.services
    ):
        if args.json:
            print(json.dumps(event), flush=True)
        else:
            details = ", ".join(f"{k}={v}" for k, v in event["attributes"].items())
            print(
                f"{event['time']} container {event['action']} {event['id']} ({details})",
                flush=True,
            )
    return 0


# -- ls --------------------------------------------------------------------------------


def add_ls(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="also stopped projects")
    parser.add_argument("-q", "--quiet", action="store_true", help="only names")
    parser.add_argument("--format", choices=["table", "json"], default="table")
    parser.add_argument("--filter", action="append", default=[], metavar="name=NAME")


def run_ls(args: argparse.Namespace) -> int:
    import json

    from composer.ops.commands import list_projects

    rows = list_projects(_backend(), all=args.all)
    for condition in args.filter:
        key, _, value = condition.partition("=")
        if key != "name":
            raise SystemExit(f"composer ls: unknown filter {key!r} (name=NAME)")
        rows = [row for row in rows if value in row["Name"]]
    if args.quiet:
        for row in rows:
            print(row["Name"])
    elif args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        columns = ("Name", "Status", "ConfigFiles")
        table = [("NAME", "STATUS", "CONFIG FILES")] + [tuple(r[c] for c in columns) for r in rows]
        widths = [max(len(r[i]) for r in table) for i in range(2)]
        for r in table:
            print(f"{r[0].ljust(widths[0])}   {r[1].ljust(widths[1])}   {r[2]}".rstrip())
    return 0


COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "exec": ("Execute a command in a running container", add_exec, run_exec),
    "run": ("Run a one-off command on a service", add_run, run_run),
    "attach": ("Attach to a service's running container", add_attach, run_attach),
    "kill": ("Force stop service containers", add_kill, run_kill),
    "pause": ("Pause services", add_services, run_pause),
    "unpause": ("Unpause services", add_services, run_unpause),
    "rm": ("Remove stopped service containers", add_rm, run_rm),
    "create": ("Create containers for a service", add_create, run_create),
    "top": ("Display the running processes", add_services, run_top),
    "port": ("Print the public port for a port binding", add_port, run_port),
    "wait": ("Block until containers of the given services stop", add_wait, run_wait),
    "cp": ("Copy files between a service container and the host", add_cp, run_cp),
    "events": ("Receive real-time events from containers", add_events, run_events),
    "ls": ("List running projects", add_ls, run_ls),
}
