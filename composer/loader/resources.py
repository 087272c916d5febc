"""Top-level resources as docker compose settles them: real names, unused ones dropped.

Runs after normalization (long forms only) and once the project name is known.
"""

from __future__ import annotations

from composer.loader.nodes import MapNode

RESOURCE_KINDS = ("networks", "volumes", "secrets", "configs")


def used_resources(tree: MapNode) -> dict[str, set[str]]:
    """Which networks, volumes, secrets and configs the enabled services use."""
    used: dict[str, set[str]] = {kind: set() for kind in RESOURCE_KINDS}
    for service in (tree.get("services") or {}).values():
        used["networks"].update(service.get("networks") or {})
        for mount in service.get("volumes") or ():
            if mount.get("type") == "volume" and mount.get("source"):
                used["volumes"].add(mount["source"])
        for kind in ("secrets", "configs"):
            used[kind].update(ref["source"] for ref in service.get(kind) or ())
        used["secrets"].update(
            ref["source"] for ref in (service.get("build") or {}).get("secrets") or ()
        )
    return used


def settle_resources(tree: MapNode, project_name: str) -> None:
    """Drop unused resources; give each the name it has on the host.

    An external resource is named by its key unless it says otherwise; the
    others get `<project>_<key>`, as docker compose names them.
    """
    used = used_resources(tree)
    for kind in RESOURCE_KINDS:
        resources = tree.get(kind)
        if not isinstance(resources, MapNode):
            continue
        for key in list(resources):
            if key not in used[kind]:
                resources.pop_entry(key)
                continue
            definition = resources[key]
            if definition is None:
                definition = MapNode(mark=resources.mark_of(key))
                resources.set(key, definition, None, None)
            if "name" not in definition:
                external = bool(definition.get("external"))
                name = key if external else f"{project_name}_{key}"
                definition.set("name", name, None, resources.mark_of(key))
        if not resources:
            tree.pop_entry(kind)
