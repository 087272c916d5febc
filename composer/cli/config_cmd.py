"""`composer config`: validate the project and print its normalized form."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from composer.cli import memo
from composer.cli.output import Output

if TYPE_CHECKING:
    from composer.loader import LoadOptions, LoadResult

TOP_LEVEL_ORDER = ("name", "services", "networks", "volumes", "secrets", "configs", "models")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="*", metavar="SERVICE", help="only these services")
    parser.add_argument("--format", choices=["yaml", "json"], default="yaml")
    parser.add_argument("-q", "--quiet", action="store_true", help="only validate")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    parser.add_argument("--no-interpolate", action="store_true", help="keep ${VAR} as written")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--services", dest="list_services", action="store_true")
    shown.add_argument("--volumes", dest="list_volumes", action="store_true")
    shown.add_argument("--networks", dest="list_networks", action="store_true")
    shown.add_argument("--images", dest="list_images", action="store_true")
    shown.add_argument("--profiles", dest="list_profiles", action="store_true")
    shown.add_argument(
        "--hash", metavar="SERVICES", help="config hash of services ('*' for all, or a,b)"
    )
    shown.add_argument(
        "--environment", action="store_true", help="variables available for interpolation"
    )
    shown.add_argument(
        "--variables", action="store_true", help="variables the files use, with defaults"
    )
    shown.add_argument(
        "--explain", metavar="VAR", help="a variable's final value and where it came from"
    )


def options_from_args(args: argparse.Namespace) -> LoadOptions:
    from composer.loader import LoadOptions

    return LoadOptions(
        files=list(args.files or []),
        project_directory=args.project_directory,
        project_name=args.project_name,
        profiles=list(args.profiles or []),
        env_files=list(args.env_files or []),
        selected_services=list(getattr(args, "services", None) or []),
        interpolate=not getattr(args, "no_interpolate", False),
        strict_env=bool(args.strict_env),
    )


def run(args: argparse.Namespace) -> int:
    out = Output.from_args(args)
    options = options_from_args(args)
    # Output to a file, or input from stdin, is more than the memo can replay.
    reads_stdin = "-" in options.files or "-" in options.env_files
    memo.config_ran(replayable=not (args.output or reads_stdin))
    if args.variables:
        return _print_variables(options, args.format)
    from composer.loader import load

    result = load(options)
    for warning in result.warnings:
        out.warn(warning)
    if "→" in result.name_source:
        out.note(f"project name {result.project.name!r}: {result.name_source}")
    if args.quiet:
        return 0
    text = _render(result, args)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


def _lines(items: list[str]) -> str:
    return "".join(f"{item}\n" for item in items)


def _render(result: LoadResult, args: argparse.Namespace) -> str:
    tree = result.tree
    if args.list_services:
        return _lines(list(tree.get("services") or {}))
    if args.list_volumes:
        return _lines(list(tree.get("volumes") or {}))
    if args.list_networks:
        return _lines(list(tree.get("networks") or {}))
    if args.list_profiles:
        return _lines(result.all_profiles)
    if args.list_images:
        return _lines(
            [
                service.get("image") or f"{result.project.name}-{name}"
                for name, service in (tree.get("services") or {}).items()
            ]
        )
    if args.hash:
        return _lines(_hashes(result, args.hash))
    if args.environment:
        return _lines(
            [f"{key}={value}" for key, value in sorted(result.environment.as_dict().items())]
        )
    if args.explain:
        return _explain(result, args.explain)
    document = project_document(result, interpolated=not args.no_interpolate)
    if args.format == "json":
        import json

        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return dump_yaml(document)


def _hashes(result: LoadResult, wanted: str) -> list[str]:
    from composer.loader.errors import fail
    from composer.model import service_config_hash

    services = result.project.services
    names = list(services) if wanted.strip() == "*" else [n.strip() for n in wanted.split(",")]
    unknown = [name for name in names if name not in services]
    if unknown:
        raise fail(f"no such service: {', '.join(unknown)}")
    return [f"{name} {service_config_hash(services[name])}" for name in names]


def _explain(result: LoadResult, name: str) -> str:
    explanation = result.environment.explain(name)
    if explanation is None or explanation.value is None:
        return f"{name} is not set\n"
    return f"{name}={explanation.value}\n  from: {explanation.source}\n"


def _print_variables(options: LoadOptions, fmt: str) -> int:
    from composer.loader import variables

    found = variables(options)
    if fmt == "json":
        import json

        sys.stdout.write(
            json.dumps(
                [
                    {
                        "name": v.name,
                        "required": v.required,
                        "default": v.default,
                        "alternate": v.alternate,
                    }
                    for v in found
                ],
                indent=2,
            )
            + "\n"
        )
        return 0
    from composer.cli.output import print_table

    print_table(
        ("NAME", "REQUIRED", "DEFAULT VALUE", "ALTERNATE VALUE"),
        [
            (v.name, "true" if v.required else "false", v.default or "", v.alternate or "")
            for v in found
        ],
    )
    return 0


def _plain(node: Any) -> Any:
    """Marks and int subclasses stripped, for the emitters."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def _escape_dollars(node: Any) -> Any:
    """`$` → `$$` in values, so the output interpolates back to the same project."""
    if isinstance(node, dict):
        return {k: _escape_dollars(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_escape_dollars(v) for v in node]
    if isinstance(node, str):
        return node.replace("$", "$$")
    return node


def project_document(result: LoadResult, interpolated: bool = True) -> dict[str, Any]:
    """The normalized project as plain data: name first, then the spec's order.

    env_file contents are folded into each service's environment, as the
    container will see them (a bare `KEY` with no value stays null).
    """
    tree = _plain(result.tree)
    tree["name"] = result.project.name
    for name, service in (tree.get("services") or {}).items():
        if name not in result.project.services or "env_file" not in service:
            continue
        declared = service.get("environment") or {}
        resolved = dict(result.project.services[name].environment)
        resolved.update({k: None for k, v in declared.items() if v is None and k not in resolved})
        service["environment"] = resolved
        del service["env_file"]
    if interpolated:
        tree = _escape_dollars(tree)
    ordered = {key: tree[key] for key in TOP_LEVEL_ORDER if key in tree}
    ordered.update({key: tree[key] for key in sorted(tree) if key not in ordered})
    return ordered


def dump_yaml(document: dict[str, Any]) -> str:
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    parts = []
    for key, value in document.items():
        parts.append(
            yaml.dump(
                {key: value},
                Dumper=dumper,
                sort_keys=True,
                default_flow_style=False,
                allow_unicode=True,
                width=1 << 16,
            )
        )
    return "".join(parts)
