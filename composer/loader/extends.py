"""`extends`: a service built on another one, in the same file or another file.

As the Compose Specification's `extends` section says: the referenced
service is resolved first (chains are followed, cycles are errors), copied,
and the extending service is merged over it with the same rules as an
override file (composer.loader.merge). Every attribute is inherited,
depends_on, links and volumes_from included: the spec lists no exceptions
and docker compose inherits them too (the old "never shared" note is gone).

`file` is relative to the extending file's directory. A service taken from
another file has its relative paths made absolute against that file's
directory; the other file's own `include:` is not loaded.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from composer.loader import inputs
from composer.loader.errors import LoadError, Problem, display_name, fail
from composer.loader.include import read_compose_file, rebase_service_paths
from composer.loader.merge import adopt, merge_services
from composer.loader.nodes import MapNode, Mark

if TYPE_CHECKING:
    from composer.loader import LoadOptions
    from composer.loader.discovery import ConfigFile
    from composer.loader.environment import Environment

# A service is known by (file path, service name).
Key = tuple[str, str]


def apply_extends(
    tree: MapNode, source: ConfigFile, env: Environment, options: LoadOptions
) -> MapNode:
    """Resolve every service's `extends` in tree (in place, and returned)."""
    services = tree.get("services")
    if not isinstance(services, MapNode):
        return tree
    resolver = _Resolver(source, services, env, options)
    problems: list[Problem] = []
    for name in list(services):
        try:
            services[name] = resolver.resolve((source.path, name), ())
        except LoadError as exc:
            problems.extend(p for p in exc.problems if p not in problems)
    if problems:
        raise LoadError(problems)
    return tree


class _Resolver:
    def __init__(
        self, source: ConfigFile, services: MapNode, env: Environment, options: LoadOptions
    ) -> None:
        self.main = source.path
        self.env = env
        self.options = options
        # Per file: its services and the directory its relative paths start from.
        self.files: dict[str, tuple[MapNode, str]] = {source.path: (services, source.directory)}
        self.done: dict[Key, Any] = {}
        self.reported: set[frozenset[Key]] = set()

    def resolve(self, key: Key, chain: tuple[tuple[Key, Mark | None], ...]) -> Any:
        if key in self.done:
            return self.done[key]
        seen = [k for k, _ in chain]
        if key in seen:
            raise self._cycle(chain[seen.index(key) :], key)
        file, name = key
        services, directory = self.files[file]
        service = services[name]
        if not isinstance(service, MapNode) or "extends" not in service:
            self.done[key] = service
            return service
        mark = service.mark_of("extends")
        path = ("services", name, "extends")
        target, target_file = self._reference(service["extends"], mark, path, directory)
        if target_file is None:
            target_file = file
        elif target_file not in self.files:
            self._load(target_file, service["extends"], path)
        target_services, target_dir = self.files[target_file]
        if target not in target_services:
            raise self._not_found(
                target, target_file, target_services, service["extends"], mark, path
            )
        base = adopt(self.resolve((target_file, target), (*chain, (key, mark))))
        if not isinstance(base, MapNode):
            base = MapNode(mark=target_services.mark_of(target))
        if target_dir != directory:
            rebase_service_paths(base, target_dir)
        local = MapNode(mark=service.mark)
        for attribute, value in service.items():
            if attribute != "extends":
                local.set(attribute, value, None, None)
                local.copy_marks_from(service, attribute)
        merged = merge_services(base, local, ("services", name))
        merged.mark = service.mark
        self.done[key] = merged
        return merged

    def _reference(
        self, value: Any, mark: Mark | None, path: tuple, directory: str
    ) -> tuple[str, str | None]:
        """(service name, absolute file or None) from `extends: name` or `{service, file}`."""
        if isinstance(value, str):
            return value, None
        if not isinstance(value, MapNode):
            raise fail("extends must be a service name or a mapping with 'service'", mark, path)
        problems = [
            Problem(
                f"unknown extends option {key!r}",
                value.key_mark_of(key),
                (*path, key),
                hint="extends takes 'service' and 'file'",
            )
            for key in value
            if key not in ("service", "file")
        ]
        if not isinstance(value.get("service"), str):
            where = value.mark_of("service") if "service" in value else mark
            problems.append(Problem("extends needs 'service' (a service name)", where, path))
        file = value.get("file")
        if file is not None and not isinstance(file, str):
            problems.append(
                Problem("extends 'file' must be a path", value.mark_of("file"), (*path, "file"))
            )
        if problems:
            raise LoadError(problems)
        if file is None:
            return value["service"], None
        return value["service"], os.path.normpath(os.path.join(directory, inputs.expanduser(file)))

    def _load(self, file: str, reference: MapNode, path: tuple) -> None:
        mark = reference.mark_of("file")
        tree, shown = read_compose_file(file, mark, self.env, self.options)
        services = tree.get("services")
        if not isinstance(services, MapNode):
            raise fail(
                f"{shown} has no services to extend",
                mark,
                (*path, "file"),
            )
        self.files[file] = (services, os.path.dirname(file))

    def _not_found(
        self,
        target: str,
        file: str,
        services: MapNode,
        reference: Any,
        mark: Mark | None,
        path: tuple,
    ) -> LoadError:
        if isinstance(reference, MapNode):
            mark, path = reference.mark_of("service"), (*path, "service")
        where = "" if file == self.main else f" in {display_name(file, self.options.cwd)}"
        known = ", ".join(sorted(str(s) for s in services)) or "none"
        return fail(
            f"cannot extend service {target!r}: no such service{where}",
            mark,
            path,
            hint=f"services there: {known}",
        )

    def _label(self, key: Key) -> str:
        file, name = key
        if file == self.main:
            return name
        return f"{name} ({display_name(file, self.options.cwd)})"

    def _cycle(self, chain: tuple[tuple[Key, Mark | None], ...], back_to: Key) -> LoadError:
        keys = [k for k, _ in chain]
        if frozenset(keys) in self.reported:
            return LoadError([])  # the same cycle, found from another of its services
        self.reported.add(frozenset(keys))
        names = [self._label(k) for k in keys] + [self._label(back_to)]
        targets = [*keys[1:], back_to]
        related = tuple(
            (f"{self._label(k)} extends {self._label(t)}", mark)
            for (k, mark), t in zip(chain, targets, strict=True)
        )
        first, first_mark = chain[0]
        return LoadError(
            [
                Problem(
                    "extends cycle: " + " → ".join(names),
                    first_mark,
                    ("services", first[1], "extends"),
                    hint="a service cannot extend itself, directly or through others",
                    related=related,
                )
            ]
        )
