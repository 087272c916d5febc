"""Profiles: which services the active profiles (and the command line) enable.

Spec rules: a service without `profiles` is always enabled; one with profiles
is enabled when any of them is active (`*` activates all). A service named on
the command line is enabled whatever its profiles, and so are the services it
depends on. References from an enabled service to a disabled one are errors
that name the profile to enable, except optional (`required: false`)
dependencies, which are dropped.
"""

from __future__ import annotations

from typing import Any

from composer.loader.errors import LoadError, Problem
from composer.loader.nodes import MapNode, locate, locate_key
from runtime.record import field, record

# Fields whose value may be `service:<name>` (network_mode, ipc, pid share a namespace).
_SHARED_NAMESPACE_KEYS = ("network_mode", "ipc", "pid")


@record(frozen=False)
class ProfileSelection:
    """What apply_profiles decided, for `config --profiles` and later error messages."""

    active: list[str]
    all_profiles: list[str]
    # Disabled services by name, as they were in the tree (marks kept).
    disabled: dict[str, Any] = field(default_factory=dict)

    def how_to_enable(self, name: str) -> str | None:
        """A hint for using a disabled service, e.g. "enable it with --profile debug"."""
        if name not in self.disabled:
            return None
        return enable_hint(name, service_profiles(self.disabled[name]))


def service_profiles(service: Any) -> list[str]:
    profiles = service.get("profiles") if isinstance(service, dict) else None
    return [p for p in profiles or () if isinstance(p, str)]


def all_profiles(tree: Any) -> list[str]:
    """Every profile a service of tree names, sorted."""
    services = tree.get("services") if isinstance(tree, dict) else None
    return sorted({p for svc in (services or {}).values() for p in service_profiles(svc)})


def enable_hint(name: str, profiles: list[str]) -> str:
    flags = " or ".join(f"--profile {p}" for p in profiles)
    return f"enable it with {flags}, or name {name!r} on the command line"


def apply_profiles(
    tree: Any, active_profiles: list[str], selected_services: list[str]
) -> ProfileSelection:
    """Remove the services the profiles disable from tree["services"], in place.

    Raises LoadError for services named on the command line that do not
    exist, and for enabled services that need a disabled one.
    """
    services = tree.get("services") if isinstance(tree, dict) else None
    if not isinstance(services, dict):
        services = {}
    active = [p.strip() for p in active_profiles if p and p.strip()]
    selection = ProfileSelection(active=active, all_profiles=all_profiles(tree))

    unknown = [name for name in dict.fromkeys(selected_services) if name not in services]
    if unknown:
        raise LoadError([_no_such_service(name, list(services)) for name in unknown])

    everything = "*" in active
    enabled = {
        name
        for name, service in services.items()
        if everything
        or not service_profiles(service)
        or set(service_profiles(service)) & set(active)
    }
    # Named services come with what they depend on, whatever its profiles.
    pending = list(selected_services)
    while pending:
        name = pending.pop()
        if name in enabled or name not in services:
            continue
        enabled.add(name)
        pending.extend(_dependency_names(services[name]))

    for name in [n for n in services if n not in enabled]:
        selection.disabled[name] = services[name]
    problems: list[Problem] = []
    for name in [n for n in services if n in enabled]:
        problems.extend(_references_to_disabled(tree, name, services[name], selection))
    if problems:
        problems.sort(key=lambda p: (p.mark.file, p.mark.line, p.mark.col) if p.mark else ("",))
        raise LoadError(problems)
    for name in selection.disabled:
        if isinstance(services, MapNode):
            services.pop_entry(name)
        else:
            del services[name]
    return selection


def _no_such_service(name: str, known: list[str]) -> Problem:
    import difflib

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else None
    if hint is None and known:
        hint = "services: " + ", ".join(known)
    return Problem(f"no such service: {name}", None, (), hint)


def _dependency_names(service: Any) -> list[str]:
    depends_on = service.get("depends_on") if isinstance(service, dict) else None
    if isinstance(depends_on, dict):
        return list(depends_on)
    if isinstance(depends_on, list):
        return [d for d in depends_on if isinstance(d, str)]
    return []


def _references_to_disabled(
    tree: Any, name: str, service: Any, selection: ProfileSelection
) -> list[Problem]:
    """Problems for each way service refers to a disabled service; drops optional deps."""
    if not isinstance(service, dict):
        return []
    disabled = selection.disabled
    base = ("services", name)
    found: list[tuple[str, tuple, str]] = []  # (target, path, what)

    depends_on = service.get("depends_on")
    if isinstance(depends_on, list):
        for index, target in enumerate(depends_on):
            if target in disabled:
                found.append((target, (*base, "depends_on", index), "depends on"))
    elif isinstance(depends_on, dict):
        for target, options in list(depends_on.items()):
            if target not in disabled:
                continue
            if isinstance(options, dict) and options.get("required") is False:
                _remove(depends_on, target)
                continue
            found.append((target, (*base, "depends_on", target), "depends on"))

    for index, link in enumerate(_strings(service.get("links"))):
        target = link.split(":", 1)[0]
        if target in disabled:
            found.append((target, (*base, "links", index), "links to"))

    for key in _SHARED_NAMESPACE_KEYS:
        value = service.get(key)
        if isinstance(value, str) and value.startswith("service:"):
            target = value[len("service:") :]
            if target in disabled:
                found.append((target, (*base, key), f"shares its {key} with"))

    for index, source in enumerate(_strings(service.get("volumes_from"))):
        if source.startswith("container:"):
            continue
        target = source.removeprefix("service:").split(":", 1)[0]
        if target in disabled:
            found.append((target, (*base, "volumes_from", index), "mounts volumes from"))

    problems = []
    for target, path, what in found:
        message = f"service {name!r} {what} {target!r}, which is disabled by its profiles"
        hint = selection.how_to_enable(target)
        # A depends_on mapping entry is written as its key; everything else as a value.
        keyed = path[-2] == "depends_on" and isinstance(path[-1], str)
        mark = locate_key(tree, path) if keyed else locate(tree, path)
        problems.append(Problem(message, mark, path, hint))
    return problems


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _remove(mapping: dict, key: Any) -> None:
    if isinstance(mapping, MapNode):
        mapping.pop_entry(key)
    else:
        del mapping[key]
