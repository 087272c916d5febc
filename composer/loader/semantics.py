"""Checks the schema cannot express, on the normalized tree.

Every reference must name something defined (services, networks, volumes,
secrets, configs); `container_name` needs exactly one replica; an external
resource is only referenced, so it must not say how to create it. Every
problem is reported at once, in file order, each at the place it is written,
with a did-you-mean hint when a defined name is close.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from composer.loader.errors import LoadError, Problem
from composer.loader.nodes import MapNode, Mark, SeqNode
from composer.loader.normalize import SERVICE_PREFIX, implicit_dependencies, sort_problems

# Attributes that tell the engine how to create a resource; an external one already exists.
CREATION_ATTRIBUTES = {
    "networks": (
        "driver",
        "driver_opts",
        "ipam",
        "labels",
        "internal",
        "attachable",
        "enable_ipv4",
        "enable_ipv6",
    ),
    "volumes": ("driver", "driver_opts", "labels"),
    "secrets": ("file", "environment", "content", "labels", "driver", "driver_opts"),
    "configs": ("file", "environment", "content", "labels", "template_driver"),
}


def did_you_mean(name: Any, choices: Iterable[Any], what: str) -> str:
    """A hint naming the closest defined name, or listing what is defined."""
    names = [str(choice) for choice in choices]
    import difflib

    close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    if not names:
        return f"no {what} is defined"
    shown = ", ".join(repr(n) for n in names[:8]) + (", …" if len(names) > 8 else "")
    return f"defined {what}: {shown}"


def check(tree: MapNode) -> None:
    """Raise LoadError with every semantic problem of a normalized tree.

    (References to services that profiles disabled are reported, with the
    profile to enable, by the profiles pass that runs before.)
    """
    checker = _Checker(tree)
    checker.run()
    if checker.problems:
        raise LoadError(sort_problems(checker.problems))


def _section(tree: MapNode, key: str) -> MapNode:
    value = tree.get(key)
    return value if isinstance(value, MapNode) else MapNode()


class _Checker:
    def __init__(self, tree: MapNode) -> None:
        self.tree = tree
        self.services = _section(tree, "services")
        self.problems: list[Problem] = []
        # (service, referenced name, mark) already reported, so an implicit
        # depends_on entry does not repeat the error of the field implying it.
        self.reported: set[tuple[str, str, Mark | None]] = set()

    def problem(
        self, message: str, mark: Mark | None, path: tuple, hint: str | None = None
    ) -> None:
        self.problems.append(Problem(message, mark, tuple(path), hint))

    def run(self) -> None:
        for name, service in self.services.items():
            if isinstance(service, MapNode):
                self.service(name, service)
        for section in CREATION_ATTRIBUTES:
            self.externals(section)

    # -- services --

    def service_ref(self, owner: str, target: str, mark: Mark | None, path: tuple, what: str):
        """Report a reference to an undefined service (once per place)."""
        if target in self.services:
            return
        key = (owner, target, mark)
        if key in self.reported:
            return
        self.reported.add(key)
        hint = did_you_mean(target, self.services, "services")
        self.problem(f"{what} refers to undefined service {target!r}", mark, path, hint)

    def service(self, name: str, service: MapNode) -> None:
        path = ("services", name)
        for target, mark, _restart, field, where in implicit_dependencies(service):
            what = "link" if field == "links" else field
            self.service_ref(name, target, mark, (*path, *where), what)
        depends = service.get("depends_on")
        if isinstance(depends, MapNode):
            for target, spec in depends.items():
                optional = isinstance(spec, dict) and spec.get("required") is False
                if optional:
                    continue  # docker compose only warns about a missing optional dependency
                mark = depends.key_mark_of(target)
                self.service_ref(name, target, mark, (*path, "depends_on", target), "depends_on")
        extends = service.get("extends")
        if isinstance(extends, MapNode) and "file" not in extends:
            target = extends.get("service")
            if isinstance(target, str):
                mark = extends.mark_of("service")
                self.service_ref(name, target, mark, (*path, "extends", "service"), "extends")
        self.networks(name, service, path)
        self.mounts(service, path)
        for kind in ("secrets", "configs"):
            self.file_refs(service, kind, path)
        build = service.get("build")
        if isinstance(build, MapNode):
            self.file_refs(build, "secrets", (*path, "build"))
        self.replicas(service, path)
        self.image_or_build(name, service, path)
        self.build_contexts(service, path)
        self.duplicate_limits(service, path)
        self.mount_targets(service, path)
        self.watch_targets(service, path)
        models = service.get("models")
        if isinstance(models, MapNode):
            defined = _section(self.tree, "models")
            for model in models:
                if model not in defined:
                    self.problem(
                        f"undefined model {model!r}",
                        models.key_mark_of(model),
                        (*path, "models", model),
                        did_you_mean(model, defined, "models")
                        + " (declare it under the top-level 'models:')",
                    )

    def networks(self, name: str, service: MapNode, path: tuple) -> None:
        networks = service.get("networks")
        if not isinstance(networks, MapNode):
            return
        defined = _section(self.tree, "networks")
        for network in networks:
            if network not in defined:
                self.problem(
                    f"service {name!r} uses undefined network {network!r}",
                    networks.key_mark_of(network),
                    (*path, "networks", network),
                    did_you_mean(network, defined, "networks")
                    + " (declare it under the top-level 'networks:')",
                )
        mode = service.get("network_mode")
        if networks and mode is not None and "network_mode" in service:
            self.problem(
                "'network_mode' and 'networks' cannot be used together",
                service.key_mark_of("network_mode"),
                (*path, "network_mode"),
                "a service either joins networks or shares another network namespace",
            )

    def mounts(self, service: MapNode, path: tuple) -> None:
        volumes = service.get("volumes")
        if not isinstance(volumes, SeqNode):
            return
        defined = _section(self.tree, "volumes")
        for index, mount in enumerate(volumes):
            if (
                isinstance(mount, MapNode)
                and mount.get("type") == "bind"
                and not mount.get("source")
            ):
                self.problem(
                    "a bind mount needs a source (the host path)",
                    volumes.mark_of(index),
                    (*path, "volumes", index),
                )
            if not isinstance(mount, MapNode) or mount.get("type") != "volume":
                continue
            source = mount.get("source")
            if not source or source in defined:
                continue
            self.problem(
                f"named volume {source!r} is not declared",
                mount.mark_of("source") or volumes.mark_of(index),
                (*path, "volumes", index, "source"),
                did_you_mean(source, defined, "volumes")
                + " (declare it under the top-level 'volumes:', or start the source with"
                " './' for a bind mount)",
            )

    def file_refs(self, owner: MapNode, kind: str, path: tuple) -> None:
        refs = owner.get(kind)
        if not isinstance(refs, SeqNode):
            return
        defined = _section(self.tree, kind)
        for index, ref in enumerate(refs):
            source = ref.get("source") if isinstance(ref, MapNode) else ref
            if not isinstance(source, str) or source in defined:
                continue
            mark = ref.mark_of("source") if isinstance(ref, MapNode) else refs.mark_of(index)
            self.problem(
                f"undefined {kind[:-1]} {source!r}",
                mark,
                (*path, kind, index, "source"),
                did_you_mean(source, defined, kind)
                + f" (declare it under the top-level '{kind}:')",
            )

    def replicas(self, service: MapNode, path: tuple) -> None:
        counts: list[tuple[int, Mark | None, tuple]] = []
        scale = service.get("scale")
        if isinstance(scale, int) and not isinstance(scale, bool):
            counts.append((scale, service.mark_of("scale"), (*path, "scale")))
        deploy = service.get("deploy")
        replicas = deploy.get("replicas") if isinstance(deploy, MapNode) else None
        if isinstance(replicas, int) and not isinstance(replicas, bool):
            counts.append((replicas, deploy.mark_of("replicas"), (*path, "deploy", "replicas")))
        if len(counts) == 2 and counts[0][0] != counts[1][0]:
            self.problem(
                "'scale' and 'deploy.replicas' disagree",
                counts[1][1],
                counts[1][2],
                f"scale is {counts[0][0]} at {counts[0][1]}; set only one of them",
            )
        if "container_name" not in service:
            return
        for count, mark, where in counts:
            if count > 1:
                self.problem(
                    f"container_name {service['container_name']!r} cannot be shared by"
                    f" {count} replicas",
                    mark,
                    where,
                    "a container name is unique; remove container_name or use one replica",
                )

    def image_or_build(self, name: str, service: MapNode, path: tuple) -> None:
        if "image" in service or "build" in service or "provider" in service:
            return
        self.problem(
            f"service {name!r} has neither an image nor a build context",
            self.services.key_mark_of(name),
            path,
            "add 'image:' to run an existing image, or 'build:' to build one",
        )

    def build_contexts(self, service: MapNode, path: tuple) -> None:
        """`additional_contexts: {x: service:NAME}` needs NAME to be a service that builds."""
        build = service.get("build")
        contexts = build.get("additional_contexts") if isinstance(build, MapNode) else None
        if isinstance(contexts, MapNode):
            for key, value in contexts.items():
                if not isinstance(value, str) or not value.startswith(SERVICE_PREFIX):
                    continue
                target = value[len(SERVICE_PREFIX) :]
                where = (*path, "build", "additional_contexts", key)
                if target not in self.services:
                    self.service_ref(path[1], target, contexts.mark_of(key), where, "build context")
                elif "build" not in (self.services[target] or {}):
                    self.problem(
                        f"service {target!r} used as a build context does not build an image",
                        contexts.mark_of(key),
                        where,
                    )
        platform = service.get("platform")
        platforms = build.get("platforms") if isinstance(build, MapNode) else None
        listed = isinstance(platforms, SeqNode) and bool(platforms)
        if isinstance(platform, str) and listed and platform not in platforms:
            self.problem(
                f"build.platforms must include the service's platform {platform!r}",
                build.mark_of("platforms"),
                (*path, "build", "platforms"),
            )

    def duplicate_limits(self, service: MapNode, path: tuple) -> None:
        """An old-style limit and its deploy.resources twin must not disagree."""
        pairs = (
            ("cpus", ("limits", "cpus"), float),
            ("mem_limit", ("limits", "memory"), int),
            ("mem_reservation", ("reservations", "memory"), int),
            ("pids_limit", ("limits", "pids"), int),
        )
        deploy = service.get("deploy")
        resources = deploy.get("resources") if isinstance(deploy, MapNode) else None
        if not isinstance(resources, MapNode):
            return
        for key, (kind, field), number in pairs:
            section = resources.get(kind)
            if key not in service or not isinstance(section, MapNode) or field not in section:
                continue
            try:
                same = number(service[key]) == number(section[field])
            except (TypeError, ValueError):
                same = str(service[key]) == str(section[field])
            if not same:
                self.problem(
                    f"'{key}' and 'deploy.resources.{kind}.{field}' disagree",
                    section.mark_of(field),
                    (*path, "deploy", "resources", kind, field),
                    f"{key} is {service[key]!r} at {service.mark_of(key)}; set only one of them",
                )

    def mount_targets(self, service: MapNode, path: tuple) -> None:
        """Two mounts on one container path: the second would hide the first."""
        seen: dict[str, Mark | None] = {}
        volumes = service.get("volumes")
        for index, mount in enumerate(volumes if isinstance(volumes, SeqNode) else ()):
            target = mount.get("target") if isinstance(mount, MapNode) else None
            mark = volumes.mark_of(index)
            self.one_mount(target, mark, (*path, "volumes", index), seen)
        tmpfs = service.get("tmpfs")
        for index, entry in enumerate(tmpfs if isinstance(tmpfs, SeqNode) else ()):
            target = str(entry).split(":", 1)[0]
            self.one_mount(target, tmpfs.mark_of(index), (*path, "tmpfs", index), seen)

    def one_mount(
        self, target: Any, mark: Mark | None, path: tuple, seen: dict[str, Mark | None]
    ) -> None:
        if not isinstance(target, str) or not target:
            return
        if target in seen:
            self.problem(
                f"{target} is already mounted (at {seen[target]})",
                mark,
                path,
                "mount each container path once",
            )
        else:
            seen[target] = mark

    def watch_targets(self, service: MapNode, path: tuple) -> None:
        develop = service.get("develop")
        watch = develop.get("watch") if isinstance(develop, MapNode) else None
        for index, rule in enumerate(watch if isinstance(watch, SeqNode) else ()):
            if not isinstance(rule, MapNode) or "target" in rule:
                continue
            if rule.get("action") in ("rebuild", None):
                continue
            self.problem(
                f"develop.watch action {rule.get('action')!r} needs a 'target'",
                watch.mark_of(index),
                (*path, "develop", "watch", index),
                "target is the path in the container that receives the changes",
            )

    # -- top-level resources --

    def externals(self, section: str) -> None:
        for name, resource in _section(self.tree, section).items():
            if not isinstance(resource, MapNode):
                continue
            if resource.get("external") is not True:
                self.file_source(section, name, resource)
                continue
            for key in CREATION_ATTRIBUTES[section]:
                if key in resource:
                    self.problem(
                        f"external {section[:-1]} {name!r} cannot also set {key!r}",
                        resource.key_mark_of(key),
                        (section, name, key),
                        "an external resource already exists; remove the attribute,"
                        " or 'external: true' to let composer create it",
                    )

    def file_source(self, section: str, name: str, resource: MapNode) -> None:
        """A secret or config composer creates must say where its content comes from."""
        if section not in ("secrets", "configs"):
            return
        if any(key in resource for key in ("file", "environment", "content")):
            return
        self.problem(
            f"{section[:-1]} {name!r} needs 'file', 'environment' or 'content'",
            _section(self.tree, section).key_mark_of(name),
            (section, name),
            "or set 'external: true' if it already exists",
        )
