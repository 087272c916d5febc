"""Commands that act on a project's containers: up, down, ps, logs, start, stop …

Argument parsing and output only; the work is in composer/ops.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from composer.cli.config_cmd import options_from_args
from composer.cli.output import Output

COLORS = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")


def _load(args: argparse.Namespace, services: list[str] | None = None):
    from composer.loader import load

    options = options_from_args(args)
    options.selected_services = list(services or [])
    result = load(options)
    out = Output.from_args(args)
    for warning in result.warnings:
        out.warn(warning)
    return result.project


def _backend():
    from composer.ops.backend import Backend

    return Backend()


def Progress(args: argparse.Namespace):
    """The progress display --progress asks for (rich on a terminal, lines otherwise);
    a context manager whose value is called as report(resource, state)."""
    from composer.cli.progress import open_progress

    return open_progress(args)


# -- up -----------------------------------------------------------------------------------


def add_create_options(parser: argparse.ArgumentParser) -> None:
    """What up and create share: services, build, recreate, orphans, scale."""
    parser.add_argument("services", nargs="*", metavar="SERVICE")
    build = parser.add_mutually_exclusive_group()
    build.add_argument("--build", action="store_true", help="build images first")
    build.add_argument("--no-build", action="store_true", help="never build images")
    recreate = parser.add_mutually_exclusive_group()
    recreate.add_argument("--force-recreate", action="store_true")
    recreate.add_argument("--no-recreate", action="store_true")
    parser.add_argument("--remove-orphans", action="store_true")
    parser.add_argument("--scale", action="append", default=[], metavar="SERVICE=N")


def add_up(parser: argparse.ArgumentParser) -> None:
    add_create_options(parser)
    parser.add_argument("-d", "--detach", action="store_true", help="run in the background")
    parser.add_argument("--no-deps", action="store_true", help="do not start dependencies")
    parser.add_argument("--no-start", action="store_true", help="create, do not start")
    parser.add_argument("-t", "--timeout", type=float, help="stop timeout when recreating")
    parser.add_argument("--wait", action="store_true", help="wait until running or healthy")
    parser.add_argument("--wait-timeout", type=float, default=300.0)
    parser.add_argument(
        "--pull",
        choices=["always", "missing", "never"],
        help="pull images before starting (default: each service's pull_policy)",
    )
    parser.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="with --wait: print the result as JSON for scripts",
    )
    parser.add_argument("--no-color", action="store_true")
    parser.add_argument("--no-log-prefix", action="store_true")
    parser.add_argument("--timestamps", action="store_true")
    parser.add_argument(
        "--attach",
        action="append",
        default=[],
        metavar="SERVICE",
        help="only show these services' output",
    )
    parser.add_argument(
        "--no-attach",
        action="append",
        default=[],
        metavar="SERVICE",
        help="do not show these services' output",
    )
    abort = parser.add_mutually_exclusive_group()
    abort.add_argument(
        "--abort-on-container-exit",
        action="store_true",
        help="stop everything when any container exits",
    )
    abort.add_argument(
        "--abort-on-container-failure",
        action="store_true",
        help="stop everything when a container exits with a non-zero code",
    )
    parser.add_argument(
        "--exit-code-from",
        metavar="SERVICE",
        help="exit with this service's exit code (implies abort on exit)",
    )


def up_request(args: argparse.Namespace, *, start: bool):
    """The UpRequest that up's (or create's) options describe."""
    from composer.ops.up import UpRequest

    scale = {}
    for item in args.scale:
        name, _, count = item.partition("=")
        if not count.isdigit():
            raise SystemExit(f"composer: --scale takes SERVICE=N, not {item!r}")
        scale[name] = int(count)
    return UpRequest(
        services=list(args.services),
        no_deps=getattr(args, "no_deps", False),
        build="always" if args.build else "never" if args.no_build else "auto",
        force_recreate=args.force_recreate,
        no_recreate=args.no_recreate,
        remove_orphans=args.remove_orphans,
        scale=scale,
        start=start,
        parallel=max(getattr(args, "parallel", -1), 0),
        timeout=getattr(args, "timeout", None),
        dependency_timeout=getattr(args, "wait_timeout", 300.0),
        pull=getattr(args, "pull", None),
    )


def run_up(args: argparse.Namespace) -> int:
    from composer.ops.up import up

    project = _load(args, args.services)
    request = up_request(args, start=not args.no_start)
    backend = _backend()
    if args.dry_run:
        from composer.ops.up import dry_run

        for resource, action in dry_run(project, backend, request):
            print(f"DRY-RUN  {resource:<40} {action}")
        return 0
    with Progress(args) as report:
        services = up(project, backend, request, report)
    if args.wait:
        from composer.ops.status import wait_ready

        problem = wait_ready(project, backend, services, args.wait_timeout)
        if args.format == "json":
            import json

            from composer.ops.status import ps_rows

            rows = ps_rows(project, backend, services=services, all=True)
            print(
                json.dumps(
                    {"ready": problem is None, "error": problem, "containers": rows}, indent=2
                )
            )
        elif problem:
            Output.from_args(args).error(problem)
        if problem:
            return 1
    if args.detach or args.wait or args.no_start:
        return 0
    return _attach(args, project, backend, services)


def _attach(args, project, backend, services) -> int:
    """Follow the services' output until they all exit (exit 0), a container's exit ends
    it (--abort-on-container-exit / -failure, --exit-code-from: that exit code), or Ctrl-C
    stops them gracefully (a second Ctrl-C kills; exit 130)."""
    from composer.ops.down import stop

    shown = [s for s in (args.attach or services) if s not in args.no_attach]
    abort_any = args.abort_on_container_exit or bool(args.exit_code_from)
    state = {"code": 0}

    def on_exit(event: dict) -> bool:
        code = (backend.engine.inspect(event["id"]) or {}).get("exit_code") or 0
        if args.exit_code_from:
            if event["service"] == args.exit_code_from:
                state["code"] = code
        elif code:
            state["code"] = code
        return abort_any or (args.abort_on_container_failure and code != 0)

    try:
        aborted = _print_logs(
            args, project, backend, services, follow=True, shown=shown, on_exit=on_exit
        )
    except KeyboardInterrupt:
        print("Gracefully stopping... (press Ctrl+C again to force)", file=sys.stderr)
        try:
            with Progress(args) as report:
                stop(project, backend, report, services=services, timeout=args.timeout)
        except KeyboardInterrupt:
            with Progress(args) as report:
                stop(project, backend, report, services=services, timeout=0)
        return 130
    if aborted:
        print("Aborting on container exit...", file=sys.stderr)
        with Progress(args) as report:
            stop(project, backend, report, services=services, timeout=args.timeout)
        return state["code"]
    return state["code"] if (abort_any or args.abort_on_container_failure) else 0


# -- down -----------------------------------------------------------------------------------


def add_down(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--volumes", action="store_true", help="remove named volumes")
    parser.add_argument("--remove-orphans", action="store_true")
    parser.add_argument("-t", "--timeout", type=float, help="seconds to wait before SIGKILL")


def run_down(args: argparse.Namespace) -> int:
    from composer.ops.down import down

    project = _load(args)
    if args.dry_run:
        from composer.ops.down import dry_run

        for resource, action in dry_run(project, _backend(), volumes=args.volumes):
            print(f"DRY-RUN  {resource:<40} {action}")
        return 0
    with Progress(args) as report:
        down(
            project,
            _backend(),
            report,
            volumes=args.volumes,
            remove_orphans=args.remove_orphans,
            timeout=args.timeout,
        )
    return 0


# -- stop / start / restart -----------------------------------------------------------------------


def add_services_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="*", metavar="SERVICE")
    parser.add_argument("-t", "--timeout", type=float, help="seconds to wait before SIGKILL")


def run_stop(args: argparse.Namespace) -> int:
    from composer.ops.down import stop

    project = _load(args)
    with Progress(args) as report:
        stop(project, _backend(), report, services=args.services, timeout=args.timeout)
    return 0


def run_start(args: argparse.Namespace) -> int:
    from composer.ops.up import UpRequest, up

    project = _load(args)
    with Progress(args) as report:
        up(
            project,
            _backend(),
            UpRequest(services=list(args.services), create=False, build="never"),
            report,
        )
    return 0


def run_restart(args: argparse.Namespace) -> int:
    run_stop(args)
    return run_start(args)


# -- ps -----------------------------------------------------------------------------------


def add_ps(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="*", metavar="SERVICE")
    parser.add_argument("-a", "--all", action="store_true", help="also stopped containers")
    parser.add_argument("-q", "--quiet", action="store_true", help="only ids")
    parser.add_argument("--services", dest="list_services", action="store_true")
    parser.add_argument("--status", action="append", default=[])
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="status=, service=, name=, health= (repeatable)",
    )
    parser.add_argument("--format", choices=["table", "json", "jsonl"], default="table")


def run_ps(args: argparse.Namespace) -> int:
    import json

    from composer.ops.status import ps_rows

    project = _load(args)
    status = list(args.status)
    wanted: dict[str, str] = {}
    for item in args.filter:
        key, sep, value = item.partition("=")
        if not sep or key not in ("status", "service", "name", "health"):
            raise SystemExit(
                f"composer ps: --filter takes status=, service=, name= or health=, not {item!r}"
            )
        if key == "status":
            status.append(value)
        else:
            wanted[key.capitalize()] = value
    rows = ps_rows(project, _backend(), services=args.services, all=args.all, status=status)
    rows = [row for row in rows if all(row[k] == v for k, v in wanted.items())]
    if args.quiet:
        print("\n".join(row["ID"] for row in rows))
    elif args.list_services:
        print("\n".join(dict.fromkeys(row["Service"] for row in rows)))
    elif args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.format == "jsonl":
        for row in rows:
            print(json.dumps(row))
    else:
        from composer.cli.output import print_table

        columns = ("Name", "Image", "Command", "Service", "Status", "Ports")
        print_table(columns, [tuple(row[c] for c in columns) for row in rows])
    return 0


# -- logs -----------------------------------------------------------------------------------


def add_logs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="*", metavar="SERVICE")
    parser.add_argument("-f", "--follow", action="store_true")
    parser.add_argument("-n", "--tail", type=int)
    parser.add_argument("--since")
    parser.add_argument("--until")
    parser.add_argument("-t", "--timestamps", action="store_true")
    parser.add_argument("--no-color", action="store_true")
    parser.add_argument("--no-log-prefix", action="store_true")
    parser.add_argument("--index", type=int)


def run_logs(args: argparse.Namespace) -> int:
    project = _load(args)
    _print_logs(
        args, project, _backend(), args.services or list(project.services), follow=args.follow
    )
    return 0


def _print_logs(
    args, project, backend, services, *, follow: bool, shown=None, on_exit=None
) -> bool:
    """Print the records; True when on_exit asked to stop following."""
    from composer.ops.status import merged_logs

    names = sorted(services)
    width = max((len(f"{project.name}-{n}-1") for n in names), default=0) + 1
    color = not getattr(args, "no_color", False) and sys.stdout.isatty()
    palette = {name: COLORS[i % len(COLORS)] for i, name in enumerate(names)}
    for record in merged_logs(
        project,
        backend,
        services,
        follow=follow,
        tail=getattr(args, "tail", None),
        since=getattr(args, "since", None),
        until=getattr(args, "until", None),
        index=getattr(args, "index", None),
    ):
        if record.get("exited"):
            if on_exit is not None and on_exit(record):
                return True
            continue
        if shown is not None and record["service"] not in shown:
            continue
        text = record["log"].rstrip("\n")
        if record.get("boundary"):  # the shim restarted the container here
            text = f"--- container {record['boundary']}ed ---"
        if getattr(args, "timestamps", False):
            text = f"{record['time']} {text}"
        if not getattr(args, "no_log_prefix", False):
            prefix = f"{record['container']:<{width}}| "
            if color:
                prefix = f"\033[{palette.get(record['service'], '0')}m{prefix}\033[0m"
            text = prefix + text
        print(text, flush=follow)
    return False


# -- build -----------------------------------------------------------------------------------


def add_build(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="*", metavar="SERVICE")
    parser.add_argument("--no-cache", action="store_true", help="do not use the layer cache")
    parser.add_argument("--pull", action="store_true", help="always fetch base images")


def run_build(args: argparse.Namespace) -> int:
    from composer.ops.project import OperationError, build_image
    from runtime.record import replace

    project = _load(args, args.services)
    chosen = args.services or [n for n, s in project.services.items() if s.build is not None]
    backend = _backend()
    for name in chosen:
        service = project.services[name]
        if service.build is None:
            raise OperationError(f"service {name} has no build section")
        if args.no_cache or args.pull:
            spec = replace(
                service.build,
                no_cache=args.no_cache or service.build.no_cache,
                pull=args.pull or service.build.pull,
            )
            service = replace(service, build=spec)
        with Progress(args) as report:
            image = build_image(backend, project, service, report)
        print(f"{name}: {image.name or image.digest}")
    return 0


# -- dns -------------------------------------------------------------------------------------


def add_dns(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", metavar="SERVICE", help="ask as this service (or container)")
    parser.add_argument("name", metavar="NAME", help="the name (or address) to resolve")


def run_dns(args: argparse.Namespace) -> int:
    from composer.ops.project import OperationError
    from runtime.network import dns

    project = _load(args)
    try:
        answers, why = dns.explain(project.name, args.service, args.name, _backend().root)
    except LookupError as e:
        raise OperationError(f"{e} (is the project up?)") from None
    for answer in answers:
        print(answer)
    print(f"  ({why})", file=sys.stderr)
    return 0 if answers or "forwarded" in why else 1


COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "dns": ("Resolve a name as a service would, and say which record answered", add_dns, run_dns),
    "build": ("Build or rebuild services' images", add_build, run_build),
    "up": ("Create and start containers", add_up, run_up),
    "down": ("Stop and remove containers and networks", add_down, run_down),
    "ps": ("List containers", add_ps, run_ps),
    "logs": ("View output from containers", add_logs, run_logs),
    "stop": ("Stop services", add_services_timeout, run_stop),
    "start": ("Start services", add_services_timeout, run_start),
    "restart": ("Restart services", add_services_timeout, run_restart),
}
