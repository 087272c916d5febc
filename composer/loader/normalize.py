"""Short syntax → long form, in place, keeping every mark.

After this pass each service field has one shape (ports and volumes are lists
of mappings, environment and labels are mappings, durations and byte sizes are
canonical…), so later passes and the model read one form only. Nodes built
here from a short string carry that string's mark, so an error about
`services.web.ports[0].published` still points at the line the user wrote.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable
from typing import Any

from composer.loader import inputs
from composer.loader.errors import LoadError, Problem, fail
from composer.loader.nodes import MapNode, Mark, SeqNode
from composer.loader.parse import LeadingZeroInt

PROTOCOLS = ("tcp", "udp", "sctp")
PROPAGATIONS = ("rprivate", "private", "rshared", "shared", "rslave", "slave")
SELINUX_OPTIONS = ("z", "Z")
CONSISTENCY_OPTIONS = ("consistent", "cached", "delegated")
VOLUME_OPTIONS = ("ro", "rw", "nocopy", *PROPAGATIONS, *SELINUX_OPTIONS, *CONSISTENCY_OPTIONS)


# --- building marked nodes -------------------------------------------------------------


def marked_map(mark: Mark | None, items: dict[str, Any]) -> MapNode:
    """A MapNode whose every key and value carries one mark (nested dicts too)."""
    node = MapNode(mark=mark)
    for key, value in items.items():
        if isinstance(value, dict) and not isinstance(value, MapNode):
            value = marked_map(mark, value)
        elif isinstance(value, list) and not isinstance(value, SeqNode):
            value = marked_seq(mark, value)
        node.set(key, value, mark, mark)
    return node


def marked_seq(mark: Mark | None, items: list[Any]) -> SeqNode:
    node = SeqNode(mark=mark)
    for item in items:
        if isinstance(item, dict) and not isinstance(item, MapNode):
            item = marked_map(mark, item)
        node.add(item, mark)
    return node


def scalar_text(value: Any) -> str:
    """A scalar as the string docker compose would pass on (true, not True)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, LeadingZeroInt):
        return value.text  # the writer meant the digits, not a number
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


# --- ports -------------------------------------------------------------------------------


def _port_number(text: str, what: str, mark: Mark | None, path: tuple) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise fail(f"invalid {what} {text!r}: expected a number from 0 to 65535", mark, path)
    return int(text)


def _port_range(text: str, what: str, mark: Mark | None, path: tuple) -> tuple[int, int]:
    start, sep, end = text.partition("-")
    first = _port_number(start, what, mark, path)
    last = _port_number(end, what, mark, path) if sep else first
    if last < first:
        raise fail(f"invalid {what} range {text!r}: the end is before the start", mark, path)
    return first, last


def _split_port_spec(spec: str) -> tuple[str, str, str]:
    """(host_ip, published, target) of `[ip:][published:]target`; IPv6 may be bracketed."""
    parts = spec.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def parse_port(value: Any, mark: Mark | None, path: tuple = ()) -> list[MapNode]:
    """One `ports:` item in long form; a range gives one entry per port.

    Short forms: `80`, `8080:80`, `127.0.0.1:8080:80/udp`, `[::1]:80:80`,
    `127.0.0.1::80` (random host port), `8000-8010:8000-8010`, `8000-8010:80`
    (any free host port of the range). A mapping is completed with defaults.
    """
    if isinstance(value, MapNode | dict):
        return [_long_port(value, mark, path)]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise fail("a port must be a string, a number or a mapping", mark, path)
    spec = str(value).strip()
    protocol = "tcp"
    if "/" in spec:
        spec, protocol = spec.rsplit("/", 1)
        protocol = protocol.lower()
        if protocol not in PROTOCOLS:
            raise fail(
                f"invalid protocol {protocol!r} in port {value!r}",
                mark,
                path,
                hint="use one of " + ", ".join(PROTOCOLS),
            )
    host_ip, published, target = _split_port_spec(spec)
    if not target:
        raise fail(f"no container port in {value!r}", mark, path)
    if host_ip:
        bare_ip = host_ip[1:-1] if host_ip.startswith("[") and host_ip.endswith("]") else host_ip
        try:
            import ipaddress

            ipaddress.ip_address(bare_ip)
        except ValueError:
            raise fail(
                f"invalid host IP {host_ip!r} in port {value!r}",
                mark,
                path,
                hint="write IPv6 addresses in brackets, e.g. [::1]:8080:80",
            ) from None
        host_ip = bare_ip
    first, last = _port_range(target, "container port", mark, path)
    host_first = host_last = None
    if published:
        host_first, host_last = _port_range(published, "host port", mark, path)
        if last - first != host_last - host_first and first != last:
            raise fail(
                f"port ranges of different sizes in {value!r}",
                mark,
                path,
                hint="map a range to a range of the same size, or a host range to one port",
            )
    entries = []
    for offset in range(last - first + 1):
        items: dict[str, Any] = {"target": first + offset}
        if host_first is not None:
            if first == last and host_first != host_last:
                items["published"] = f"{host_first}-{host_last}"
            else:
                items["published"] = str(host_first + offset)
        if host_ip:
            items["host_ip"] = host_ip
        items["protocol"] = protocol
        items["mode"] = "ingress"
        entries.append(marked_map(mark, items))
    return entries


def _long_port(node: dict, mark: Mark | None, path: tuple) -> MapNode:
    if not isinstance(node, MapNode):
        node = marked_map(mark, dict(node))
    target = node.get("target")
    if isinstance(target, str) and target.strip().isdigit():
        node["target"] = int(target)
    elif (isinstance(target, bool) or not isinstance(target, int)) and not unresolved(target):
        raise fail("a port needs a numeric 'target'", node.mark_of("target") or mark, path)
    published = node.get("published")
    if published is not None and not isinstance(published, str):
        node["published"] = scalar_text(published)
    if published == "":
        node.pop_entry("published")
    own = node.mark or mark
    if "protocol" not in node:
        node.set("protocol", "tcp", own, own)
    if "mode" not in node:
        node.set("mode", "ingress", own, own)
    return node


# --- volumes -----------------------------------------------------------------------------


def clean_target(target: str) -> str:
    """Like Go's path.Clean: `/a//b/../c/` → `/a/c` (POSIX keeps a leading `//`; Go does not)."""
    cleaned = posixpath.normpath(target)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def host_path(source: str, project_dir: str) -> str:
    """An absolute host path: `~` is the user's home, relative is against project_dir."""
    expanded = inputs.expanduser(source)
    return os.path.normpath(os.path.join(project_dir, expanded))


def _split_volume_spec(spec: str) -> list[str]:
    """Split on ':' but not inside `${…}` (left over with --no-interpolate)."""
    parts, buffer, depth, i = [], [], 0, 0
    while i < len(spec):
        char = spec[i]
        if char == "$" and spec[i + 1 : i + 2] == "{":
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        elif char == ":" and not depth:
            parts.append("".join(buffer))
            buffer = []
            i += 1
            continue
        buffer.append(char)
        i += 1
    parts.append("".join(buffer))
    return parts


def _is_host_path(source: str) -> bool:
    return source[:1] in (".", "/", "~")


def parse_volume(value: Any, mark: Mark | None, project_dir: str, path: tuple = ()) -> MapNode:
    """One service `volumes:` item in long form.

    Short forms: `/x` (anonymous volume), `data:/x[:opts]` (named volume),
    `./a:/b[:opts]` or `/a:/b` or `~/a:/b` (bind; the source becomes absolute
    and, as docker compose does for the short syntax, a missing host path is
    created). opts are comma-separated: ro, rw, nocopy, z, Z, a propagation.
    """
    if isinstance(value, MapNode | dict):
        return _long_volume(value, mark, project_dir, path)
    if not isinstance(value, str):
        raise fail("a volume must be a string or a mapping", mark, path)
    if not value:
        raise fail("empty volume specification", mark, path)
    parts = _split_volume_spec(value)
    if len(parts) > 3:
        raise fail(
            f"too many colons in volume {value!r}",
            mark,
            path,
            hint="write SOURCE:TARGET[:OPTIONS], or use the long syntax",
        )
    if any(not part for part in parts):
        raise fail(f"empty section between colons in volume {value!r}", mark, path)
    source = parts[0] if len(parts) > 1 else ""
    target = parts[1] if len(parts) > 1 else parts[0]
    options = parts[2].split(",") if len(parts) == 3 else []
    if not target.startswith("/") and not target.startswith("${"):
        raise fail(
            f"the container path {target!r} of volume {value!r} must be absolute",
            mark,
            path,
        )
    kind = "bind" if _is_host_path(source) else "volume"
    items: dict[str, Any] = {"type": kind}
    if source:
        items["source"] = host_path(source, project_dir) if kind == "bind" else source
    items["target"] = clean_target(target)
    sub: dict[str, Any] = {"create_host_path": True} if kind == "bind" else {}
    read_only = False
    for option in options:
        if option not in VOLUME_OPTIONS:
            raise fail(
                f"unknown option {option!r} in volume {value!r}",
                mark,
                path,
                hint="options are " + ", ".join(VOLUME_OPTIONS),
            )
        if option in ("ro", "rw"):
            read_only = option == "ro"
        elif option in CONSISTENCY_OPTIONS:
            items["consistency"] = option
        elif kind == "volume" and option != "nocopy":
            raise fail(
                f"option {option!r} in volume {value!r} applies to bind mounts only",
                mark,
                path,
                hint="a source that starts with '.', '/' or '~' is a bind mount",
            )
        elif kind == "bind" and option == "nocopy":
            raise fail(
                f"option 'nocopy' in volume {value!r} applies to named volumes only",
                mark,
                path,
            )
        elif option == "nocopy":
            sub["nocopy"] = True
        elif option in SELINUX_OPTIONS:
            sub["selinux"] = option
        else:
            sub["propagation"] = option
    if read_only:
        items["read_only"] = True
    items[kind] = sub
    return marked_map(mark, items)


def _long_volume(node: dict, mark: Mark | None, project_dir: str, path: tuple) -> MapNode:
    if not isinstance(node, MapNode):
        node = marked_map(mark, dict(node))
    kind = node.get("type")
    target = node.get("target")
    if isinstance(target, str) and target:
        node["target"] = clean_target(target)
    source = node.get("source")
    if kind == "bind" and isinstance(source, str) and source:
        node["source"] = host_path(source, project_dir)
    if kind == "bind" and isinstance(node.get("bind"), MapNode):
        bind = node["bind"]
        if "create_host_path" not in bind:
            bind.set("create_host_path", True, bind.mark, bind.mark)
    tmpfs = node.get("tmpfs")
    if isinstance(tmpfs, MapNode):
        if "size" in tmpfs:
            tmpfs["size"] = _bytes_at(tmpfs, "size", (*path, "tmpfs", "size"))
        if "mode" in tmpfs:
            tmpfs["mode"] = file_mode(
                tmpfs["mode"], tmpfs.mark_of("mode"), (*path, "tmpfs", "mode")
            )
    return node


# --- scalars: durations, byte sizes, file modes ---------------------------------------------

_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # Go accepts both micro signs
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 604_800_000_000_000,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d|w)")


def duration_nanoseconds(text: Any) -> int:
    """`1m30s`, `500ms`, `1.5h`, `2d` → nanoseconds; ValueError if malformed."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError("a duration must be a string such as '30s'")
    if isinstance(text, int | float):
        if text == 0:
            return 0
        raise ValueError(f"duration {text!r} has no unit")
    body = text.strip()
    sign = -1 if body.startswith("-") else 1
    body = body.lstrip("+-")
    if body == "0":
        return 0
    total, position = 0, 0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if not match:
            unitless = re.fullmatch(r"[\d.]+", body[position:])
            reason = "has no unit" if unitless else "is not a duration"
            raise ValueError(f"{text!r} {reason}")
        number, unit = match.groups()
        whole, _, fraction = number.partition(".")
        scale = _DURATION_UNITS[unit]
        total += int(whole or "0") * scale
        if fraction:
            total += int(fraction) * scale // 10 ** len(fraction)
        position = match.end()
    if not body:
        raise ValueError("empty duration")
    return sign * total


def parse_duration(text: Any) -> float:
    """A Compose duration in seconds (float)."""
    return duration_nanoseconds(text) / 1e9


def _fraction(value: int, digits: int) -> str:
    """value / 10**digits without trailing zeros, as Go prints durations."""
    whole, rest = divmod(value, 10**digits)
    tail = f"{rest:0{digits}d}".rstrip("0")
    return f"{whole}.{tail}" if tail else str(whole)


def format_duration(nanoseconds: int) -> str:
    """The canonical string, as Go's time.Duration prints it: 1m30s, 500ms, 1h0m0s."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    ns = abs(nanoseconds)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_fraction(ns, 3)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_fraction(ns, 6)}ms"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _fraction(rest, 9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def canonical_duration(text: Any) -> str:
    return format_duration(duration_nanoseconds(text))


_BYTES = re.compile(r"(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?")
_BYTE_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_bytes(value: Any) -> int:
    """`512m`, `1g`, `1024k`, `1.5GiB`, `100` → bytes (binary units, as docker does)."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number or a string such as '512m'")
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a size")
    text = value.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    match = _BYTES.fullmatch(text)
    if not match:
        raise ValueError(f"{value!r} is not a size such as '512m' or '1g'")
    number, unit = match.groups()
    return int(float(number) * 1024 ** _BYTE_POWERS[(unit or "").lower()])


def file_mode(value: Any, mark: Mark | None, path: tuple) -> int:
    """A file mode: `0440` (written with a leading zero) and "0440" are octal, as meant."""
    if isinstance(value, LeadingZeroInt):
        return int(value.text.lstrip("+"), 8)
    if isinstance(value, bool):
        raise fail("a file mode must be a number such as 0440", mark, path)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text[2:] if text.startswith("0o") else text, 8)
        except ValueError:
            pass
    raise fail(f"{value!r} is not a file mode", mark, path, hint="write it in octal, e.g. 0440")


def _bytes_at(node: MapNode, key: str, path: tuple) -> int:
    try:
        return parse_bytes(node[key])
    except ValueError as exc:
        raise fail(
            str(exc), node.mark_of(key), path, hint="use a number of bytes or e.g. '512m', '1g'"
        ) from None


# --- the pass ------------------------------------------------------------------------------


def normalize(tree: MapNode, project_dir: str, env: Any = None) -> None:
    """Rewrite every short syntax in tree to its long form; LoadError lists every problem."""
    problems: list[Problem] = []
    _Normalizer(project_dir, env, problems).run(tree)
    if problems:
        raise LoadError(sort_problems(problems))


def sort_problems(problems: list[Problem]) -> list[Problem]:
    """In file order, so a user fixes them top to bottom (unmarked ones last)."""

    def where(problem: Problem) -> tuple:
        mark = problem.mark
        return (0, mark.file, mark.line, mark.col) if mark else (1, "", 0, 0)

    return sorted(problems, key=where)


# Fields (paths inside a service) whose values are durations or byte sizes.
SERVICE_DURATIONS = (
    ("stop_grace_period",),
    ("healthcheck", "interval"),
    ("healthcheck", "timeout"),
    ("healthcheck", "start_period"),
    ("healthcheck", "start_interval"),
    ("deploy", "restart_policy", "delay"),
    ("deploy", "restart_policy", "window"),
    ("deploy", "update_config", "delay"),
    ("deploy", "update_config", "monitor"),
    ("deploy", "rollback_config", "delay"),
    ("deploy", "rollback_config", "monitor"),
)
SERVICE_BYTES = (
    ("mem_limit",),
    ("mem_reservation",),
    ("memswap_limit",),
    ("shm_size",),
    ("build", "shm_size"),
    ("deploy", "resources", "limits", "memory"),
    ("deploy", "resources", "reservations", "memory"),
)
# Service fields that take a string or a list; the long form is the list.
STRING_OR_LIST = ("dns", "dns_search", "tmpfs", "label_file")
# Fields that may share a namespace with another service: `service:NAME`.
NAMESPACE_FIELDS = ("network_mode", "ipc", "pid", "uts", "cgroup")
SERVICE_PREFIX = "service:"
CONTAINER_PREFIX = "container:"


_VARIABLE = re.compile(r"\$\{?[A-Za-z_]")


def unresolved(value: Any) -> bool:
    """A value still holding a ${VARIABLE}: interpolation was turned off (--no-interpolate).

    Such values are left as written, as docker compose does, instead of being
    reported as malformed.
    """
    return isinstance(value, str) and _VARIABLE.search(value) is not None


def env_lookup(env: Any, name: str) -> str | None:
    """A variable of the project environment (an Environment, or a plain mapping)."""
    if env is None:
        return None
    lookup = getattr(env, "lookup", None)
    if callable(lookup):
        return lookup(name)
    getter = getattr(env, "get", None)
    return getter(name) if callable(getter) else None


def looks_remote(context: str) -> bool:
    """A build context that is a URL or git reference, not a local directory."""
    return "://" in context or context.startswith(("git@", "github.com/"))


class _Normalizer:
    def __init__(self, project_dir: str, env: Any, problems: list[Problem]) -> None:
        self.project_dir = project_dir
        self.env = env
        self.problems = problems

    # -- helpers --

    def problem(self, message: str, mark: Mark | None, path: tuple, hint: str | None = None):
        self.problems.append(Problem(message, mark, tuple(path), hint))

    def attempt(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run one item's conversion; a LoadError becomes problems, the result None."""
        try:
            return func(*args)
        except LoadError as error:
            self.problems.extend(error.problems)
            return None

    def to_mapping(
        self,
        parent: MapNode,
        key: str,
        path: tuple,
        *,
        bare: Callable[[str], Any],
    ) -> MapNode | None:
        """`["A=1", "B"]` or `{A: 1}` under parent[key] → a MapNode of strings.

        bare(name) gives the value of an item without '='; mapping values that
        are numbers or booleans become the text docker compose would pass on.
        """
        value = parent.get(key)
        if isinstance(value, SeqNode):
            mapping = MapNode(mark=value.mark)
            for index, item in enumerate(value):
                mark = value.mark_of(index)
                if not isinstance(item, str | int | float) or isinstance(item, bool):
                    self.problem("expected a KEY=VALUE string", mark, (*path, key, index))
                    continue
                name, sep, text = scalar_text(item).partition("=")
                if not name:
                    self.problem(f"missing name in {item!r}", mark, (*path, key, index))
                    continue
                mapping.set(name, text if sep else bare(name), mark, mark)
            parent[key] = mapping
            return mapping
        if isinstance(value, MapNode):
            for name, item in value.items():
                if item is not None and not isinstance(item, dict | list):
                    value[name] = scalar_text(item)
            return value
        return None

    def duration(self, node: MapNode, key: str, path: tuple) -> None:
        if node.get(key) is None:
            return
        try:
            node[key] = canonical_duration(node[key])
        except ValueError as exc:
            if unresolved(node[key]):
                return
            self.problem(
                str(exc), node.mark_of(key), (*path, key), hint="write e.g. '30s', '1m30s', '500ms'"
            )

    def size(self, node: MapNode, key: str, path: tuple) -> None:
        if node.get(key) is None or unresolved(node[key]):
            return
        value = self.attempt(_bytes_at, node, key, (*path, key))
        if value is not None:
            node[key] = value

    def mode(self, node: MapNode, key: str, path: tuple) -> None:
        if node.get(key) is None or unresolved(node[key]):
            return
        value = self.attempt(file_mode, node[key], node.mark_of(key), (*path, key))
        if value is not None:
            node[key] = value

    @staticmethod
    def walk(node: Any, keys: tuple) -> tuple[MapNode | None, str]:
        """The mapping that holds the last key of keys, if the tree has it."""
        for step in keys[:-1]:
            node = node.get(step) if isinstance(node, MapNode) else None
        return (node if isinstance(node, MapNode) else None), keys[-1]

    def host_path_at(self, node: MapNode, key: str) -> None:
        value = node.get(key)
        if isinstance(value, str) and value:
            node[key] = host_path(value, self.project_dir)

    # -- the tree --

    def run(self, tree: MapNode) -> None:
        services = tree.get("services")
        uses_default_network = False
        if isinstance(services, MapNode):
            for name, service in services.items():
                if isinstance(service, MapNode):
                    self.service(service, ("services", name))
                    uses_default_network |= self.default_network(service)
        for section in ("networks", "volumes", "secrets", "configs"):
            self.resources(tree, section)
        if uses_default_network:
            networks = tree.get("networks")
            if not isinstance(networks, MapNode):
                networks = MapNode(mark=tree.mark)
                tree.set("networks", networks, tree.mark, tree.mark)
            if "default" not in networks:
                networks.set("default", MapNode(mark=networks.mark), networks.mark, networks.mark)

    def resources(self, tree: MapNode, section: str) -> None:
        resources = tree.get(section)
        if not isinstance(resources, MapNode):
            return
        for name in list(resources):
            path = (section, name)
            resource = resources[name]
            if resource is None:
                mark = resources.mark_of(name)
                resources[name] = resource = MapNode(mark=mark)
            if not isinstance(resource, MapNode):
                continue
            external = resource.get("external")
            if isinstance(external, MapNode):
                # Legacy `external: {name: x}` is `name: x` plus `external: true`.
                mark = resource.mark_of("external")
                if "name" in external:
                    if "name" in resource and resource["name"] != external["name"]:
                        self.problem(
                            "'name' and 'external.name' disagree",
                            external.mark_of("name"),
                            (*path, "external", "name"),
                            hint="set only 'name' together with 'external: true'",
                        )
                    else:
                        resource.set("name", external["name"], external.key_mark_of("name"), mark)
                resource["external"] = True
            for key in ("labels", "driver_opts"):
                self.to_mapping(resource, key, path, bare=lambda _name: "")
            if section in ("secrets", "configs"):
                self.host_path_at(resource, "file")

    def service(self, service: MapNode, path: tuple) -> None:
        self.ports(service, path)
        self.volumes(service, path)
        self.build(service, path)
        for key in ("command", "entrypoint"):
            self.command(service, key, path)
        self.environment(service, path)
        self.env_files(service, path)
        for key in ("labels", "annotations", "sysctls"):
            self.to_mapping(service, key, path, bare=lambda _name: "")
        self.extra_hosts(service, "extra_hosts", path)
        for key in STRING_OR_LIST:
            self.string_or_list(service, key)
        if isinstance(service.get("label_file"), SeqNode):
            files = service["label_file"]
            for index, item in enumerate(files):
                if isinstance(item, str):
                    files[index] = host_path(item, self.project_dir)
        self.healthcheck(service)
        for keys in SERVICE_DURATIONS:
            node, key = self.walk(service, keys)
            if node is not None:
                self.duration(node, key, (*path, *keys[:-1]))
        for keys in SERVICE_BYTES:
            node, key = self.walk(service, keys)
            if node is not None:
                self.size(node, key, (*path, *keys[:-1]))
        self.blkio(service, path)
        self.ulimits(service, "ulimits", path)
        for kind in ("secrets", "configs"):
            self.file_refs(service, kind, path)
        self.names_to_mapping(service, "networks")
        self.devices(service, path)
        if isinstance(service.get("expose"), SeqNode):
            expose = service["expose"]
            for index, item in enumerate(expose):
                expose[index] = scalar_text(item)
        if service.get("pull_policy") == "if_not_present":
            service["pull_policy"] = "missing"
        self.develop(service)
        self.gpus(service)
        self.names_to_mapping(service, "models")
        self.depends_on(service, path)

    def ports(self, service: MapNode, path: tuple) -> None:
        ports = service.get("ports")
        if not isinstance(ports, SeqNode):
            return
        result = SeqNode(mark=ports.mark)
        for index, item in enumerate(ports):
            if unresolved(item):
                result.add(item, ports.mark_of(index), ports.item_tags[index])
                continue
            entries = self.attempt(parse_port, item, ports.mark_of(index), (*path, "ports", index))
            for entry in entries or ():
                result.add(entry, ports.mark_of(index), ports.item_tags[index])
        service["ports"] = result

    def volumes(self, service: MapNode, path: tuple) -> None:
        volumes = service.get("volumes")
        if not isinstance(volumes, SeqNode):
            return
        for index, item in enumerate(volumes):
            if unresolved(item):
                continue
            where = (*path, "volumes", index)
            long = self.attempt(parse_volume, item, volumes.mark_of(index), self.project_dir, where)
            if long is not None:
                volumes[index] = long

    def build(self, service: MapNode, path: tuple) -> None:
        build = service.get("build")
        if isinstance(build, str):
            mark = service.mark_of("build")
            build = marked_map(mark, {"context": build})
            service["build"] = build
        if not isinstance(build, MapNode):
            return
        path = (*path, "build")
        own = build.mark
        if build.get("context") in (None, ""):
            build.set("context", ".", own, own)
        if isinstance(build["context"], str) and not looks_remote(build["context"]):
            build["context"] = host_path(build["context"], self.project_dir)
        if "dockerfile" not in build and "dockerfile_inline" not in build:
            build.set("dockerfile", "Dockerfile", own, own)
        args = self.to_mapping(build, "args", path, bare=lambda name: env_lookup(self.env, name))
        for name in [n for n, v in (args or {}).items() if v is None]:
            resolved = env_lookup(self.env, name)
            if resolved is None:
                args.pop_entry(name)  # unset: the Dockerfile's own ARG default applies
            else:
                args[name] = resolved
        self.to_mapping(build, "labels", path, bare=lambda _name: "")
        self.to_mapping(build, "additional_contexts", path, bare=lambda _name: "")
        self.extra_hosts(build, "extra_hosts", path)
        self.ulimits(build, "ulimits", path)
        self.string_or_list(build, "tags")
        ssh = build.get("ssh")
        if isinstance(ssh, str):
            build["ssh"] = marked_seq(build.mark_of("ssh"), [ssh])
        self.to_mapping(build, "ssh", path, bare=lambda _name: "")
        self.file_refs(build, "secrets", path)

    def command(self, service: MapNode, key: str, path: tuple) -> None:
        value = service.get(key)
        if not isinstance(value, str):
            return
        import shlex

        mark = service.mark_of(key)
        try:
            words = shlex.split(value)
        except ValueError as exc:
            self.problem(f"cannot split {key} into words: {exc}", mark, (*path, key))
            return
        service[key] = marked_seq(mark, words)

    def environment(self, service: MapNode, path: tuple) -> None:
        environment = self.to_mapping(
            service, "environment", path, bare=lambda name: env_lookup(self.env, name)
        )
        if environment is None:
            return
        for name in environment:
            if name != name.rstrip():
                self.problem(
                    f"environment variable {name!r} is declared with a trailing space",
                    environment.key_mark_of(name),
                    (*path, "environment", name),
                )
            elif environment[name] is None:
                # Bare `NAME`: its value comes from the project environment when set there.
                environment[name] = env_lookup(self.env, name)

    def env_files(self, service: MapNode, path: tuple) -> None:
        value = service.get("env_file")
        if value is None:
            return
        mark = service.mark_of("env_file")
        if isinstance(value, str):
            value = marked_seq(mark, [value])
            service["env_file"] = value
        if not isinstance(value, SeqNode):
            return
        for index, item in enumerate(value):
            item_mark = value.mark_of(index)
            if isinstance(item, str):
                item = marked_map(item_mark, {"path": item})
                value[index] = item
            if not isinstance(item, MapNode) or not isinstance(item.get("path"), str):
                self.problem(
                    "an env_file entry needs a path", item_mark, (*path, "env_file", index)
                )
                continue
            item["path"] = host_path(item["path"], self.project_dir)
            if "required" not in item:
                item.set("required", True, item.mark, item.mark)

    def extra_hosts(self, parent: MapNode, key: str, path: tuple) -> None:
        """host → list of IPs, from `host:ip`, `host=ip`, `host=[::1]` or a mapping."""
        value = parent.get(key)
        if value is None:
            return
        hosts = MapNode(mark=getattr(value, "mark", parent.mark_of(key)))
        entries: list[tuple[Any, Any, Mark | None, Any]] = []
        if isinstance(value, SeqNode):
            for index, item in enumerate(value):
                mark = value.mark_of(index)
                text = scalar_text(item)
                split = next(
                    ((h, ip) for sep in "=:" for h, s, ip in [text.partition(sep)] if s), None
                )
                if split is None:
                    self.problem(
                        f"extra host {text!r} has no IP address",
                        mark,
                        (*path, key, index),
                        hint="write HOST=IP (or HOST:IP)",
                    )
                    continue
                entries.append((split[0], split[1], mark, index))
        elif isinstance(value, MapNode):
            for host, ips in value.items():
                entries.append((host, ips, value.mark_of(host), host))
        else:
            return
        for host, ips, mark, step in entries:
            if not host or ":" in host or "=" in host:
                self.problem(f"bad host name {host!r}", mark, (*path, key, step))
                continue
            if isinstance(ips, list):
                addresses = [scalar_text(ip) for ip in ips]
            else:
                addresses = [] if ips is None else scalar_text(ips).split(",")
            addresses = [a[1:-1] if a.startswith("[") and a.endswith("]") else a for a in addresses]
            if host in hosts:
                hosts[host].extend(addresses)
                hosts[host].item_marks.extend([mark] * len(addresses))
                hosts[host].item_tags.extend([None] * len(addresses))
            else:
                hosts.set(host, marked_seq(mark, addresses), mark, mark)
        parent[key] = hosts

    def string_or_list(self, parent: MapNode, key: str) -> None:
        value = parent.get(key)
        if isinstance(value, str):
            parent[key] = marked_seq(parent.mark_of(key), [value])

    def healthcheck(self, service: MapNode) -> None:
        check = service.get("healthcheck")
        if not isinstance(check, MapNode):
            return
        test = check.get("test")
        if isinstance(test, str):
            check["test"] = marked_seq(check.mark_of("test"), ["CMD-SHELL", test])
        elif isinstance(test, list) and list(test) == ["NONE"] and "disable" not in check:
            check.set("disable", True, check.key_mark_of("test"), check.mark_of("test"))

    def blkio(self, service: MapNode, path: tuple) -> None:
        blkio = service.get("blkio_config")
        if not isinstance(blkio, MapNode):
            return
        for key in ("device_read_bps", "device_write_bps"):
            devices = blkio.get(key)
            if not isinstance(devices, SeqNode):
                continue
            for index, device in enumerate(devices):
                if isinstance(device, MapNode):
                    self.size(device, "rate", (*path, "blkio_config", key, index))

    def ulimits(self, parent: MapNode, key: str, path: tuple) -> None:
        ulimits = parent.get(key)
        if not isinstance(ulimits, MapNode):
            return
        for name, limit in ulimits.items():
            if isinstance(limit, int) and not isinstance(limit, bool):
                mark = ulimits.mark_of(name)
                ulimits[name] = marked_map(mark, {"soft": int(limit), "hard": int(limit)})
            elif not isinstance(limit, MapNode):
                self.problem(
                    "a ulimit is a number or {soft, hard}",
                    ulimits.mark_of(name),
                    (*path, key, name),
                )

    def file_refs(self, service: MapNode, kind: str, path: tuple) -> None:
        """Service secrets/configs: `name` → {source, target}; modes are octal as written."""
        refs = service.get(kind)
        if not isinstance(refs, SeqNode):
            return
        for index, ref in enumerate(refs):
            mark = refs.mark_of(index)
            if isinstance(ref, str):
                ref = marked_map(mark, {"source": ref})
                refs[index] = ref
            if not isinstance(ref, MapNode) or not isinstance(ref.get("source"), str):
                self.problem(f"a {kind[:-1]} reference needs a source", mark, (*path, kind, index))
                continue
            source, target = ref["source"], ref.get("target")
            if kind == "secrets" and (not target or not str(target).startswith("/")):
                # Docker mounts secrets under /run/secrets; a relative target lands there too.
                target = f"/run/secrets/{target or source}"
            elif kind == "configs" and not target:
                target = f"/{source}"
            if target != ref.get("target"):
                ref.set("target", target, ref.mark, ref.mark)
            self.mode(ref, "mode", (*path, kind, index))
            for key in ("uid", "gid"):
                if ref.get(key) is not None:
                    ref[key] = scalar_text(ref[key])

    @staticmethod
    def names_to_mapping(service: MapNode, key: str) -> None:
        """`[a, b]` → `{a: null, b: null}` (networks, models), each key at its item's mark."""
        names = service.get(key)
        if isinstance(names, SeqNode):
            mapping = MapNode(mark=names.mark)
            for index, name in enumerate(names):
                mark = names.mark_of(index)
                mapping.set(scalar_text(name), None, mark, mark)
            service[key] = mapping

    def default_network(self, service: MapNode) -> bool:
        """Attach a service that names no network to `default`; True if it uses it."""
        if "provider" in service:
            return False
        mode = service.get("network_mode")
        if mode is not None:
            return False
        networks = service.get("networks")
        if not networks:
            mark = service.mark
            service.set("networks", marked_map(mark, {"default": None}), mark, mark)
            return True
        return isinstance(networks, MapNode) and "default" in networks

    def devices(self, service: MapNode, path: tuple) -> None:
        devices = service.get("devices")
        if not isinstance(devices, SeqNode):
            return
        for index, device in enumerate(devices):
            if not isinstance(device, str):
                continue
            mark = devices.mark_of(index)
            parts = device.split(":")
            if len(parts) > 3:
                self.problem(
                    f"cannot read device mapping {device!r}",
                    mark,
                    (*path, "devices", index),
                    hint="use the long syntax: {source, target, permissions}",
                )
                continue
            source = parts[0]
            target = parts[1] if len(parts) > 1 and parts[1] else source
            permissions = parts[2] if len(parts) > 2 else "rwm"
            devices[index] = marked_map(
                mark, {"source": source, "target": target, "permissions": permissions}
            )

    def gpus(self, service: MapNode) -> None:
        """`gpus: all` is one request for every GPU; a request without count or ids too."""
        gpus = service.get("gpus")
        if isinstance(gpus, str):
            mark = service.mark_of("gpus")
            service["gpus"] = marked_seq(mark, [{"count": "all"}])
        elif isinstance(gpus, SeqNode):
            for request in gpus:
                if isinstance(request, MapNode) and not {"count", "device_ids"} & set(request):
                    request.set("count", "all", request.mark, request.mark)

    def develop(self, service: MapNode) -> None:
        develop = service.get("develop")
        watch = develop.get("watch") if isinstance(develop, MapNode) else None
        if not isinstance(watch, SeqNode):
            return
        for rule in watch:
            if isinstance(rule, MapNode):
                for key in ("ignore", "include"):
                    self.string_or_list(rule, key)

    def depends_on(self, service: MapNode, path: tuple) -> None:
        """Long-form depends_on, plus the dependencies other fields imply."""
        value = service.get("depends_on")
        mark = service.mark_of("depends_on") if value is not None else service.mark
        depends = MapNode(mark=getattr(value, "mark", mark))
        if isinstance(value, SeqNode):
            for index, name in enumerate(value):
                item_mark = value.mark_of(index)
                depends.set(scalar_text(name), self.dependency(item_mark, {}), item_mark, item_mark)
        elif isinstance(value, MapNode):
            for name, spec in value.items():
                spec_mark = value.mark_of(name)
                if spec is None:
                    spec = MapNode(mark=spec_mark)
                if not isinstance(spec, MapNode):
                    self.problem(
                        "a dependency is a mapping such as {condition: service_started}",
                        spec_mark,
                        (*path, "depends_on", name),
                    )
                    continue
                depends.set(name, self.dependency(spec.mark or spec_mark, spec), None, None)
                depends.copy_marks_from(value, name)
        for name, dep_mark, restart, _kind, _where in implicit_dependencies(service):
            if name not in depends:
                spec = self.dependency(dep_mark, {"restart": restart})
                depends.set(name, spec, dep_mark, dep_mark)
        if depends:
            service.set("depends_on", depends, None, None)
            if value is None:
                service.key_marks["depends_on"] = service.value_marks["depends_on"] = mark

    @staticmethod
    def dependency(mark: Mark | None, spec: dict) -> MapNode:
        node = spec if isinstance(spec, MapNode) else marked_map(mark, spec)
        for key, default in (("condition", "service_started"), ("required", True)):
            if key not in node:
                node.set(key, default, mark, mark)
        if "restart" not in node:
            node.set("restart", False, mark, mark)
        return node


def implicit_dependencies(
    service: MapNode,
) -> list[tuple[str, Mark | None, bool, str, tuple]]:
    """(service, mark, restart, field, path in the service) for each service that a link,
    a `service:x` namespace or volumes_from names."""
    found: list[tuple[str, Mark | None, bool, str, tuple]] = []
    links = service.get("links")
    if isinstance(links, SeqNode):
        for index, link in enumerate(links):
            target = str(link).split(":", 1)[0]
            found.append((target, links.mark_of(index), True, "links", ("links", index)))
    for key in NAMESPACE_FIELDS:
        value = service.get(key)
        if isinstance(value, str) and value.startswith(SERVICE_PREFIX):
            target = value[len(SERVICE_PREFIX) :]
            found.append((target, service.mark_of(key), True, key, (key,)))
    volumes_from = service.get("volumes_from")
    if isinstance(volumes_from, SeqNode):
        for index, entry in enumerate(volumes_from):
            text = str(entry)
            if text.startswith(CONTAINER_PREFIX):
                continue
            target = text.removeprefix(SERVICE_PREFIX).split(":", 1)[0]
            where = ("volumes_from", index)
            found.append((target, volumes_from.mark_of(index), False, "volumes_from", where))
    return found
