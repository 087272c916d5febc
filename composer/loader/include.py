"""Top-level `include:`: other Compose applications loaded into this one.

Each entry is loaded as a project of its own (Compose Specification,
"Include"): its own project directory (`project_directory`, default the first
file's directory), its own env files (`env_file`, default that directory's
`.env`) under the including project's environment, its own includes and
extends. Its relative paths are then made absolute against its project
directory, and its services, networks, volumes, secrets and configs are copied
in. A resource defined twice is an error naming both places: the spec asks for
no silent merging of included resources.

Paths written in `include:` (path, project_directory, env_file) start at the
including project's directory.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from composer.loader import inputs
from composer.loader.errors import LoadError, Problem, display_name, fail
from composer.loader.nodes import MapNode, Mark, SeqNode

if TYPE_CHECKING:
    from composer.loader import LoadOptions
    from composer.loader.discovery import ConfigFile
    from composer.loader.environment import Environment

RESOURCES = ("services", "networks", "volumes", "secrets", "configs")
_ENTRY_KEYS = ("path", "project_directory", "env_file")

# The files being included, outermost first, each with the mark of the entry that
# brought it in: to report a cycle as the chain it is.
Chain = tuple[tuple[str, Mark | None], ...]


def apply_includes(
    tree: MapNode,
    source: ConfigFile,
    env: Environment,
    options: LoadOptions,
    *,
    chain: Chain = (),
) -> MapNode:
    """Load every `include:` entry into tree (in place, and returned); removes `include`."""
    if "include" not in tree:
        return tree
    chain = chain or ((source.path, None),)
    entries = tree["include"]
    if entries is None:
        tree.pop_entry("include")
        return tree
    if not isinstance(entries, SeqNode):
        raise fail("include must be a list", tree.mark_of("include"), ("include",))
    problems: list[Problem] = []
    for index, entry in enumerate(entries):
        path = ("include", index)
        try:
            included = _load_entry(entry, entries.mark_of(index), path, env, options, chain)
            problems.extend(_import_resources(tree, included, entries.mark_of(index), path))
        except LoadError as exc:
            problems.extend(exc.problems)
    if problems:
        raise LoadError(problems)
    tree.pop_entry("include")
    return tree


def _strings(value: Any, mark: Mark | None, path: tuple, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, SeqNode) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise fail(f"{what} must be a string or a list of strings", mark, path)


def _load_entry(
    entry: Any, mark: Mark | None, path: tuple, env: Environment, options: LoadOptions, chain: Chain
) -> MapNode:
    if isinstance(entry, str):
        entry = MapNode({"path": entry}, mark=mark)
        entry.set("path", entry["path"], mark, mark)
    if not isinstance(entry, MapNode):
        raise fail("an include entry must be a path or a mapping with 'path'", mark, path)
    problems = [
        Problem(
            f"unknown include option {key!r}",
            entry.key_mark_of(key),
            (*path, key),
            hint="options are " + ", ".join(_ENTRY_KEYS),
        )
        for key in entry
        if key not in _ENTRY_KEYS
    ]
    if "path" not in entry:
        problems.append(Problem("an include entry needs 'path'", entry.mark or mark, path))
    if problems:
        raise LoadError(problems)
    parent_dir = env.project_dir
    files = [
        _absolute(p, parent_dir)
        for p in _strings(entry["path"], entry.mark_of("path"), (*path, "path"), "path")
    ]
    project_dir = os.path.dirname(files[0])
    if entry.get("project_directory") is not None:
        where = (*path, "project_directory")
        given = entry["project_directory"]
        if not isinstance(given, str):
            raise fail("project_directory must be a string", entry.mark_of(where[-1]), where)
        project_dir = _absolute(given, parent_dir)
    env_files = None
    if entry.get("env_file") is not None:
        where = (*path, "env_file")
        env_files = _strings(entry["env_file"], entry.mark_of("env_file"), where, "env_file")
    child_env = env.child(project_dir, env_files, base_dir=parent_dir)
    trees = []
    for index, file in enumerate(files):
        file_mark = entry.mark_of("path")
        if isinstance(entry["path"], SeqNode):
            file_mark = entry["path"].mark_of(index)
        trees.append(_load_file(file, file_mark, project_dir, child_env, options, chain))
    from composer.loader.merge import merge_all

    included = merge_all(trees) if len(trees) > 1 else trees[0]
    rebase_paths(included, project_dir)
    return included


def _absolute(path: str, base: str) -> str:
    return os.path.normpath(os.path.join(base, inputs.expanduser(path)))


def _load_file(
    path: str,
    mark: Mark | None,
    project_dir: str,
    env: Environment,
    options: LoadOptions,
    chain: Chain,
) -> MapNode:
    from composer.loader.discovery import ConfigFile
    from composer.loader.extends import apply_extends

    for index, (seen, _) in enumerate(chain):
        if seen == path:
            raise _cycle(chain[index:], path, mark, options.cwd)
    tree, shown = read_compose_file(path, mark, env, options)
    source = ConfigFile(path, shown, "", project_dir)
    tree = apply_includes(tree, source, env, options, chain=(*chain, (path, mark)))
    return apply_extends(tree, source, env, options)


def _cycle(chain: Chain, path: str, mark: Mark | None, cwd: str | None) -> LoadError:
    links = [*chain[1:], (path, mark)]
    names = [display_name(p, cwd) for p, _ in chain] + [display_name(path, cwd)]
    related = tuple(
        (f"{display_name(parent, cwd)} includes {display_name(child, cwd)}", where)
        for (parent, _), (child, where) in zip(chain, links, strict=True)
    )
    return LoadError(
        [
            Problem(
                "include cycle: " + " → ".join(names),
                mark,
                hint="remove one of these includes",
                related=related,
            )
        ]
    )


def read_compose_file(
    path: str, mark: Mark | None, env: Environment, options: LoadOptions
) -> tuple[MapNode, str]:
    """Read, parse and interpolate one referenced Compose file; mark is where it is named."""
    from composer.loader import interpolate
    from composer.loader.parse import parse_compose

    shown = display_name(path, options.cwd)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise fail(f"file {shown!r} not found", mark) from None
    except IsADirectoryError:
        raise fail(f"{shown!r} is a directory, not a Compose file", mark) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {shown!r}: {exc}", mark) from None
    tree = parse_compose(text, shown)
    if options.interpolate:
        interpolate.interpolate(tree, env)
        interpolate.cast(tree)
    return tree, shown


def _import_resources(tree: MapNode, included: MapNode, mark: Mark | None, path: tuple):
    """Copy the included resources into tree; a name defined twice is a problem."""
    problems = []
    for kind in RESOURCES:
        theirs = included.get(kind)
        if not isinstance(theirs, MapNode):
            continue
        ours = tree.get(kind)
        if ours is None:
            ours = MapNode(mark=theirs.mark)
            tree.set(kind, ours, included.key_marks.get(kind), included.value_marks.get(kind))
        if not isinstance(ours, MapNode):
            continue  # not a mapping: validation reports it
        for name, value in theirs.items():
            if name in ours:
                problems.append(_conflict(kind, name, ours, theirs, mark))
                continue
            ours.set(name, value, theirs.key_marks.get(name), theirs.value_marks.get(name))
    return problems


def _conflict(kind: str, name: str, ours: MapNode, theirs: MapNode, mark: Mark | None) -> Problem:
    singular = kind[:-1]
    here, there = ours.key_mark_of(name), theirs.key_mark_of(name)
    return Problem(
        f"{singular} {name!r} is defined at {here} and again at {there}, brought in by include",
        here,
        (kind, name),
        hint=f"rename one of them; included {kind} cannot be redefined",
        related=((f"{singular} {name!r} included from", there), ("by the include at", mark)),
    )


# --- making an included file's relative paths absolute ----------------------------------------


def _is_local(path: Any) -> bool:
    """A relative path on this machine (not a URL, git remote, home path or absolute path)."""
    return (
        isinstance(path, str)
        and path != ""
        and not os.path.isabs(path)
        and not path.startswith("~")
        and "://" not in path
        and not path.startswith("git@")
    )


def _rebase(node: MapNode, key: Any, directory: str) -> None:
    value = node.get(key)
    if _is_local(value):
        node[key] = os.path.normpath(os.path.join(directory, value))


def _rebase_files(node: MapNode, key: str, directory: str) -> None:
    """env_file / label_file: a path, or a list of paths or {path: …} entries."""
    value = node.get(key)
    if isinstance(value, str):
        _rebase(node, key, directory)
    elif isinstance(value, SeqNode):
        for index, item in enumerate(value):
            if isinstance(item, str) and _is_local(item):
                value[index] = os.path.normpath(os.path.join(directory, item))
            elif isinstance(item, MapNode):
                _rebase(item, "path", directory)


def rebase_service_paths(service: Any, directory: str) -> None:
    """Make a service's relative host paths absolute against directory, in place."""
    if not isinstance(service, MapNode):
        return
    build = service.get("build")
    if isinstance(build, str):
        _rebase(service, "build", directory)
    elif isinstance(build, MapNode):
        if "context" not in build:
            mark = build.mark
            build.set("context", directory, mark, mark)  # "." of the file it came from
        _rebase(build, "context", directory)
        contexts = build.get("additional_contexts")
        if isinstance(contexts, MapNode):
            for name in contexts:
                _rebase(contexts, name, directory)
    volumes = service.get("volumes")
    if isinstance(volumes, SeqNode):
        for index, volume in enumerate(volumes):
            if isinstance(volume, str) and volume.startswith(".") and ":" in volume:
                host, rest = volume.split(":", 1)
                volumes[index] = os.path.normpath(os.path.join(directory, host)) + ":" + rest
            elif isinstance(volume, MapNode) and volume.get("type") == "bind":
                _rebase(volume, "source", directory)
    _rebase_files(service, "env_file", directory)
    _rebase_files(service, "label_file", directory)
    extends = service.get("extends")
    if isinstance(extends, MapNode):
        _rebase(extends, "file", directory)
    develop = service.get("develop")
    watch = develop.get("watch") if isinstance(develop, MapNode) else None
    if isinstance(watch, SeqNode):
        for rule in watch:
            if isinstance(rule, MapNode):
                _rebase(rule, "path", directory)


def rebase_paths(tree: MapNode, directory: str) -> None:
    """Make every relative host path in a whole file absolute against directory, in place."""
    services = tree.get("services")
    if isinstance(services, MapNode):
        for service in services.values():
            rebase_service_paths(service, directory)
    for kind in ("secrets", "configs"):
        resources = tree.get(kind)
        if isinstance(resources, MapNode):
            for resource in resources.values():
                if isinstance(resource, MapNode):
                    _rebase(resource, "file", directory)
