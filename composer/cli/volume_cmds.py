"""The `volume` command group: ls, inspect, create, rm, prune.

Argument parsing and output only; volumes are runtime.volumes', containers the engine's.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from composer import labels as L
from composer.cli.image_cmds import confirm, human_size
from composer.cli.output import Output, print_json, print_table

# Set by composer/ops/containers.py on a volume made for one container (no name given).
ANONYMOUS = L.PREFIX + "anonymous"


def _volumes():
    from runtime.volumes import Volumes

    return Volumes()


def add_volume(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="volume_command", metavar="COMMAND", required=True)

    ls = sub.add_parser("ls", aliases=["list"], help="List volumes")
    ls.add_argument("-q", "--quiet", action="store_true", help="only names")
    ls.add_argument("--format", choices=["table", "json"], default="table")
    ls.set_defaults(volume_run=_volume_ls)

    inspect = sub.add_parser("inspect", help="Show volumes' details as JSON")
    inspect.add_argument("names", nargs="+", metavar="NAME")
    inspect.set_defaults(volume_run=_volume_inspect)

    create = sub.add_parser("create", help="Create a volume")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    create.set_defaults(volume_run=_volume_create)

    rm = sub.add_parser("rm", aliases=["remove"], help="Remove volumes")
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.add_argument("-f", "--force", action="store_true", help="even if a container uses it")
    rm.set_defaults(volume_run=_volume_rm)

    prune = sub.add_parser("prune", help="Remove unused anonymous volumes")
    prune.add_argument("-a", "--all", action="store_true", help="named volumes too")
    prune.add_argument("-f", "--force", action="store_true", help="do not ask")
    prune.set_defaults(volume_run=_volume_prune)


def run_volume(args: argparse.Namespace) -> int:
    return args.volume_run(args)


def inspect_record(record: dict) -> dict:
    """A volume record in docker's field names."""
    return {
        "CreatedAt": record.get("created_at"),
        "Driver": record.get("driver", "local"),
        "Labels": record.get("labels") or {},
        "Mountpoint": record.get("mountpoint"),
        "Name": record["name"],
        "Options": record.get("options") or {},
        "Scope": "local",
    }


def container_mounts(root=None) -> dict[str, list[str]]:
    """Each container's name and the host paths its bundle mounts."""
    from runtime.engine import Engine
    from runtime.state import read_json

    found = {}
    for info in Engine(root).list():
        config = read_json(os.path.join(info.get("bundle", ""), "config.json"), {}) or {}
        sources = [m.get("source") or "" for m in config.get("mounts") or []]
        found[info.get("name") or info["id"][:12]] = sources
    return found


def _binds(mountpoint: str, sources: list[str]) -> bool:
    """Whether a container mounting `sources` uses the volume (or a path in it)."""
    mountpoint = mountpoint.rstrip("/")
    return any(s == mountpoint or s.startswith(mountpoint + "/") for s in sources)


def volume_users(mountpoint: str, root=None) -> list[str]:
    """Names of the containers whose bundle binds `mountpoint` (or a path under it)."""
    return [name for name, sources in container_mounts(root).items() if _binds(mountpoint, sources)]


def _volume_ls(args: argparse.Namespace) -> int:
    records = _volumes().list()
    if args.quiet:
        for record in records:
            print(record["name"])
    elif args.format == "json":
        print_json(
            [
                {
                    "Name": r["name"],
                    "Driver": r.get("driver", "local"),
                    "Project": (r.get("labels") or {}).get(L.PROJECT, ""),
                    "Labels": r.get("labels") or {},
                    "Mountpoint": r.get("mountpoint"),
                }
                for r in records
            ]
        )
    else:
        print_table(
            ("DRIVER", "VOLUME NAME", "PROJECT"),
            [
                (r.get("driver", "local"), r["name"], (r.get("labels") or {}).get(L.PROJECT, ""))
                for r in records
            ],
        )
    return 0


def _volume_inspect(args: argparse.Namespace) -> int:
    from runtime.volumes import VolumeError

    volumes = _volumes()
    found, missing = [], []
    for name in args.names:
        try:
            found.append(inspect_record(volumes.inspect(name)))
        except VolumeError:
            missing.append(name)
    print_json(found)
    for name in missing:
        Output.from_args(args).error(f"Error: no such volume: {name}")
    return 1 if missing else 0


def _volume_create(args: argparse.Namespace) -> int:
    from runtime.volumes import VolumeError

    labels = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not key:
            raise VolumeError(f"--label takes KEY=VALUE, not {item!r}")
        labels[key] = value if sep else ""
    print(_volumes().create(args.name, labels=labels)["name"])
    return 0


def _volume_rm(args: argparse.Namespace) -> int:
    from runtime.volumes import VolumeError

    volumes = _volumes()
    out = Output.from_args(args)
    failed = False
    for name in args.names:
        try:
            record = volumes.inspect(name)
        except VolumeError as e:
            if not args.force:  # -f: a volume already gone is no failure
                out.error(f"Error: {e}")
                failed = True
            continue
        users = [] if args.force else volume_users(record["mountpoint"], volumes.root)
        try:
            volumes.remove(name, in_use_by=users)
        except VolumeError as e:
            out.error(f"Error: {e} (remove the container first, or use -f)")
            failed = True
            continue
        print(name)
    return 1 if failed else 0


def _disk_usage(path: str) -> int:
    total = 0
    for directory, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except FileNotFoundError:
                continue
    return total


def prunable(volumes, all_unused: bool) -> list[dict]:
    """Volumes no container uses: anonymous ones, or every one with `all_unused`."""
    mounted = [source for sources in container_mounts(volumes.root).values() for source in sources]
    return [
        record
        for record in volumes.list()
        if (all_unused or ANONYMOUS in (record.get("labels") or {}))
        and not _binds(record["mountpoint"], mounted)
    ]


def _volume_prune(args: argparse.Namespace) -> int:
    which = "all volumes" if args.all else "anonymous volumes"
    if not confirm(
        f"WARNING! This will remove {which} not used by at least one container.", args.force
    ):
        return 0
    volumes = _volumes()
    doomed = prunable(volumes, args.all)
    reclaimed = 0
    if doomed:
        print("Deleted Volumes:")
    for record in doomed:
        reclaimed += _disk_usage(record["mountpoint"])
        volumes.remove(record["name"])
        print(record["name"])
    if doomed:
        print()
    print(f"Total reclaimed space: {human_size(reclaimed)}")
    return 0


COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "volume": ("Manage volumes", add_volume, run_volume),
}
