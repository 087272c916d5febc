"""Merge Compose trees: `-f a -f b`, override files, and `extends`.

The rules are those of the Compose Specification's "Merge" section: mappings
deep-merge, scalars replace, sequences append; some service attributes have
their own rule (RULES below). The `!reset` tag on a later value removes the key,
`!override` replaces the earlier value instead of merging with it.

Inputs are never modified: the result is a new tree whose every entry carries
the marks of the value that won. Where both sides contribute (a merged mapping,
a merged list) the entry keeps the earlier file's marks, and each item inside
keeps its own.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

from composer.loader.errors import LoadError
from composer.loader.nodes import MapNode, Mark, SeqNode

RESET = "reset"
OVERRIDE = "override"

_BASE, _OVER, _BOTH = "base", "over", "both"


def merge_all(trees: list[MapNode]) -> MapNode:
    """Merge whole Compose files, later ones over earlier ones."""
    result = MapNode(mark=trees[0].mark if trees else None)
    for tree in trees:
        result = _merge_mapping(result, tree, ())
    return result


def merge_services(base: MapNode, override: MapNode, path: tuple) -> MapNode:
    """Merge one service definition over another (`extends`, or the same service in two files).

    path is where the result lives, e.g. ("services", "web"); the per-attribute
    rules are chosen by it. A `!reset` in override stays recorded on the result
    (as a tag on an absent key), so a later file merge resets that key too.
    """
    merged = _merge_mapping(adopt(base), override, tuple(path))
    for key, tag in override.tags.items():
        if tag == RESET and key not in merged:
            merged.tags[key] = RESET
    return merged


def adopt(value: Any) -> Any:
    """A deep copy with marks, without `!reset` entries and without merge tags.

    What a merge takes from a file is adopted: a reset with nothing under it
    removes nothing, and the tags have done their work once merged.
    """
    if isinstance(value, MapNode):
        out = MapNode(mark=value.mark)
        for key, item in value.items():
            if value.tags.get(key) == RESET:
                continue
            out.set(key, adopt(item), value.key_marks.get(key), value.value_marks.get(key))
        return out
    if isinstance(value, SeqNode):
        seq = SeqNode(mark=value.mark)
        for index, item in enumerate(value):
            if value.item_tags[index] == RESET:
                continue
            seq.add(adopt(item), value.item_marks[index])
        return seq
    if isinstance(value, dict):
        return MapNode({k: adopt(v) for k, v in value.items()})
    if isinstance(value, list):
        return SeqNode([adopt(v) for v in value])
    return value


# --- the generic rules ---------------------------------------------------------------------


def _merge_mapping(base: MapNode, over: MapNode, path: tuple) -> MapNode:
    """base is owned by the merge (already adopted); over is read only."""
    out = base
    if out.mark is None:
        out.mark = over.mark
    for key, tag in over.tags.items():
        if tag == RESET and key not in over and key in out:
            out.pop_entry(key)  # a reset recorded by an earlier merge (merge_services)
    for key, value in over.items():
        tag = over.tags.get(key)
        key_mark, value_mark = over.key_marks.get(key), over.value_marks.get(key)
        if tag == RESET:
            if key in out:
                out.pop_entry(key)
            continue
        if tag == OVERRIDE or key not in out:
            if key in out:
                out.pop_entry(key)
            out.set(key, adopt(value), key_mark, value_mark)
            continue
        merged, winner = _merge_value(out[key], value, (*path, key))
        if winner == _OVER:
            out.pop_entry(key)
            out.set(key, merged, key_mark, value_mark)
        else:
            out[key] = merged
    return out


def _merge_value(base: Any, over: Any, path: tuple) -> tuple[Any, str]:
    rule = rule_for(path)
    if rule is not None:
        return rule(base, over, path)
    if over is None:  # a null in a later file keeps the earlier value; `!reset` removes it
        return base, _BASE
    if isinstance(base, MapNode) and isinstance(over, MapNode):
        return _merge_mapping(base, over, path), _BOTH
    if isinstance(base, SeqNode) and isinstance(over, SeqNode):
        return _append(base, over), _BOTH
    return adopt(over), _OVER


def _append(base: SeqNode, over: SeqNode) -> SeqNode:
    for index, item in enumerate(over):
        if over.item_tags[index] != RESET:
            base.add(adopt(item), over.item_marks[index])
    return base


def _replace(base: Any, over: Any, path: tuple) -> tuple[Any, str]:
    if over is None:
        return base, _BASE
    return adopt(over), _OVER


# --- mappings that may be written as KEY=VALUE lists ----------------------------------------


def _split_equals(item: str) -> tuple[str, str | None]:
    key, sep, value = item.partition("=")
    return key, (value if sep else None)


def _split_host(item: str) -> tuple[str, str | None]:
    """extra_hosts items: `host=ip`, or `host:ip` (an IPv6 ip may hold more colons)."""
    if "=" in item:
        return _split_equals(item)
    host, sep, address = item.partition(":")
    return host, (address if sep else None)


def _as_mapping(value: Any, split: Callable[[str], tuple[str, str | None]]) -> Any:
    """A list of KEY=VALUE strings as a MapNode (each entry marked by its list item)."""
    if not isinstance(value, SeqNode):
        return value
    out = MapNode(mark=value.mark)
    for index, item in enumerate(value):
        if value.item_tags[index] == RESET:
            continue
        mark = value.item_marks[index]
        if not isinstance(item, str):
            return value  # not the list form; validation reports it
        key, text = split(item)
        if key in out:
            out.pop_entry(key)  # the last one wins, as when the list is read
        out.set(key, text, mark, mark)
    return out


def _keyed_mapping(split: Callable[[str], tuple[str, str | None]]):
    def merge(base: Any, over: Any, path: tuple) -> tuple[Any, str]:
        if over is None:
            return base, _BASE
        left, right = _as_mapping(base, split), _as_mapping(over, split)
        if not (isinstance(left, MapNode) and isinstance(right, MapNode)):
            return adopt(over), _OVER
        return _merge_mapping(left, right, path), _BOTH

    return merge


def _list_or_mapping(default_item: Callable[[Mark | None], Any]):
    """Attributes written as a list of names or a mapping by name (networks, depends_on).

    A name listed in a later file keeps what an earlier mapping says about it.
    """

    def to_mapping(value: Any, default: Callable[[Mark | None], Any]) -> Any:
        if not isinstance(value, SeqNode):
            return value
        out = MapNode(mark=value.mark)
        for index, item in enumerate(value):
            if value.item_tags[index] == RESET:
                continue
            if not isinstance(item, str):
                return value
            mark = value.item_marks[index]
            out.set(item, default(mark), mark, mark)
        return out

    def merge(base: Any, over: Any, path: tuple) -> tuple[Any, str]:
        if over is None:
            return base, _BASE
        if isinstance(base, SeqNode) and isinstance(over, SeqNode):
            return _unique_values(base, over, path)
        left, right = to_mapping(base, default_item), to_mapping(over, lambda mark: None)
        if not (isinstance(left, MapNode) and isinstance(right, MapNode)):
            return adopt(over), _OVER
        merged = _merge_mapping(left, right, path)
        for name, value in merged.items():
            if value is None:
                merged[name] = default_item(merged.mark_of(name))
        return merged, _BOTH

    return merge


def _started_condition(mark: Mark | None) -> MapNode:
    # The long form of a `depends_on: [name]` entry, as the spec defines it.
    node = MapNode(mark=mark)
    node.set("condition", "service_started", mark, mark)
    return node


# --- sequences whose items are unique by a key -----------------------------------------------


def _as_sequence(value: Any) -> Any:
    """`dns: 8.8.8.8` and friends: a single string stands for a one-item list."""
    if isinstance(value, str | int):
        return SeqNode([value])
    return value


def _unique(key_of: Callable[[Any, Mark | None], Any]):
    """Append, but a later item whose key is already present replaces it in place."""

    def merge(base: Any, over: Any, path: tuple) -> tuple[Any, str]:
        if over is None:
            return base, _BASE
        left, right = _as_sequence(base), _as_sequence(over)
        if not (isinstance(left, SeqNode) and isinstance(right, SeqNode)):
            return adopt(over), _OVER
        positions: dict[Any, int] = {}
        for index, item in enumerate(left):
            positions.setdefault(key_of(item, left.mark_of(index)), index)
        for index, item in enumerate(right):
            if right.item_tags[index] == RESET:
                continue
            mark = right.item_marks[index]
            key = key_of(item, mark)
            if key in positions:
                at = positions[key]
                left[at] = adopt(item)
                left.item_marks[at] = mark
            else:
                positions[key] = len(left)
                left.add(adopt(item), mark)
        return left, _BOTH

    return merge


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((str(k), _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


def _value_key(item: Any, mark: Mark | None) -> Any:
    return ("value", _hashable(item))


_unique_values = _unique(_value_key)


def _port_key(item: Any, mark: Mark | None) -> Any:
    """(host_ip, published, target, protocol): the spec's unique key for ports."""
    if isinstance(item, dict):
        return (_long_port_key(item),)
    if isinstance(item, str | int):
        from composer.loader.normalize import parse_port

        try:
            parsed = parse_port(item, mark)
        except LoadError:
            return _value_key(item, mark)  # normalize reports it with its mark
        entries = parsed if isinstance(parsed, list) else [parsed]
        return tuple(_long_port_key(entry) for entry in entries)
    return _value_key(item, mark)


def _long_port_key(port: dict) -> Any:
    published = port.get("published")
    return (
        port.get("host_ip") or "",
        "" if published is None else str(published),
        str(port.get("target")),
        port.get("protocol") or "tcp",
    )


def _volume_key(item: Any, mark: Mark | None) -> Any:
    """A service volume is unique by its target path in the container."""
    if isinstance(item, dict):
        return ("target", _clean_target(item.get("target")))
    if isinstance(item, str):
        from composer.loader.normalize import parse_volume

        try:
            parsed = parse_volume(item, mark, "/")
        except LoadError:
            return _value_key(item, mark)
        target = parsed.get("target") if isinstance(parsed, dict) else None
        return ("target", _clean_target(target))
    return _value_key(item, mark)


def _clean_target(target: Any) -> Any:
    from composer.loader.normalize import clean_target

    return clean_target(target) if isinstance(target, str) and target.startswith("/") else target


def _file_mount_key(default_dir: str):
    """secrets and configs: unique by where they appear in the container."""

    def key_of(item: Any, mark: Mark | None) -> Any:
        if isinstance(item, str):
            return ("target", posixpath.join(default_dir, item))
        if isinstance(item, dict):
            target = item.get("target")
            if isinstance(target, str):
                return ("target", posixpath.join(default_dir, target))
            return ("target", posixpath.join(default_dir, str(item.get("source"))))
        return _value_key(item, mark)

    return key_of


def _device_key(item: Any, mark: Mark | None) -> Any:
    """devices: unique by the path inside the container (`host[:container[:perms]]`)."""
    if isinstance(item, str):
        parts = item.split(":")
        return ("target", parts[1] if len(parts) > 1 else parts[0])
    if isinstance(item, dict):
        return ("target", item.get("target"))
    return _value_key(item, mark)


def _path_key(item: Any, mark: Mark | None) -> Any:
    """env_file / label_file: a file listed twice is read once, where first listed."""
    if isinstance(item, dict):
        return ("path", item.get("path"))
    return ("path", item)


def _subnet_key(item: Any, mark: Mark | None) -> Any:
    if isinstance(item, dict) and item.get("subnet") is not None:
        return ("subnet", item.get("subnet"))
    return _value_key(item, mark)


# --- attributes with a rule of their own ------------------------------------------------------


def _merge_build(base: Any, over: Any, path: tuple) -> tuple[Any, str]:
    """`build: ./dir` is `build: {context: ./dir}`."""
    if over is None:
        return base, _BASE

    def as_mapping(value: Any, source: Any) -> Any:
        if isinstance(value, str):
            node = MapNode(mark=getattr(source, "mark", None))
            node.set("context", value, None, None)
            return node
        return value

    left, right = as_mapping(base, base), as_mapping(over, over)
    if not (isinstance(left, MapNode) and isinstance(right, MapNode)):
        return adopt(over), _OVER
    return _merge_mapping(left, right, path), _BOTH


def _merge_logging(base: Any, over: Any, path: tuple) -> tuple[Any, str]:
    """Logging options merge only when both name the same driver (or one names none)."""
    if isinstance(base, MapNode) and isinstance(over, MapNode):
        left, right = base.get("driver"), over.get("driver")
        if left is None or right is None or left == right:
            return _merge_mapping(base, over, path), _BOTH
    return _replace(base, over, path)


_key_values = _keyed_mapping(_split_equals)

# Patterns are paths with "*" for any name. First match wins; unlisted paths use the
# generic rules. The sources: the spec's merge document and its extends section.
RULES: dict[tuple, Callable[[Any, Any, tuple], tuple[Any, str]]] = {
    ("services", "*", "command"): _replace,
    ("services", "*", "entrypoint"): _replace,
    ("services", "*", "healthcheck", "test"): _replace,
    ("services", "*", "ulimits", "*"): _replace,
    ("services", "*", "build"): _merge_build,
    ("services", "*", "logging"): _merge_logging,
    ("services", "*", "environment"): _key_values,
    ("services", "*", "labels"): _key_values,
    ("services", "*", "annotations"): _key_values,
    ("services", "*", "sysctls"): _key_values,
    ("services", "*", "storage_opt"): _key_values,
    ("services", "*", "build", "args"): _key_values,
    ("services", "*", "build", "labels"): _key_values,
    ("services", "*", "build", "additional_contexts"): _key_values,
    ("services", "*", "deploy", "labels"): _key_values,
    ("services", "*", "extra_hosts"): _keyed_mapping(_split_host),
    ("services", "*", "build", "extra_hosts"): _keyed_mapping(_split_host),
    ("services", "*", "ports"): _unique(_port_key),
    ("services", "*", "volumes"): _unique(_volume_key),
    ("services", "*", "secrets"): _unique(_file_mount_key("/run/secrets")),
    ("services", "*", "configs"): _unique(_file_mount_key("/")),
    ("services", "*", "devices"): _unique(_device_key),
    ("services", "*", "env_file"): _unique(_path_key),
    ("services", "*", "label_file"): _unique(_path_key),
    ("services", "*", "networks"): _list_or_mapping(lambda mark: None),
    ("services", "*", "depends_on"): _list_or_mapping(_started_condition),
    ("services", "*", "dns"): _unique_values,
    ("services", "*", "dns_opt"): _unique_values,
    ("services", "*", "dns_search"): _unique_values,
    ("services", "*", "tmpfs"): _unique_values,
    ("services", "*", "cap_add"): _unique_values,
    ("services", "*", "cap_drop"): _unique_values,
    ("services", "*", "expose"): _unique_values,
    ("services", "*", "profiles"): _unique_values,
    ("services", "*", "links"): _unique_values,
    ("services", "*", "external_links"): _unique_values,
    ("services", "*", "security_opt"): _unique_values,
    ("services", "*", "device_cgroup_rules"): _unique_values,
    ("services", "*", "networks", "*", "aliases"): _unique_values,
    ("services", "*", "networks", "*", "link_local_ips"): _unique_values,
    ("networks", "*", "labels"): _key_values,
    ("networks", "*", "ipam", "config"): _unique(_subnet_key),
    ("volumes", "*", "labels"): _key_values,
    ("secrets", "*", "labels"): _key_values,
    ("configs", "*", "labels"): _key_values,
}


def rule_for(path: tuple) -> Callable[[Any, Any, tuple], tuple[Any, str]] | None:
    for pattern, rule in RULES.items():
        if len(pattern) == len(path) and all(
            p in ("*", s) for p, s in zip(pattern, path, strict=True)
        ):
            return rule
    return None
