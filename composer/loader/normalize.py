"""Short syntax → long form, in place, keeping every mark.

After this pass each service field has one shape (ports and volumes are lists
of mappings, environment and labels are mappings, durations and byte sizes are
canonical…), so later passes and the model read one form only. Nodes built
here from a short string carry that string's mark, so an error about
`services.web.ports[0].published` still points at the line the user wrote.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
from collections.abc import Callable
from typing import Any

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
    elif isinstance(target, bool) or not isinstance(target, int):
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
    expanded = os.path.expanduser(source)
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

Lookup = Callable[[str], "str | None"]


def normalize(tree: MapNode, project_dir: str, env: Any = None) -> None:
    """Rewrite every short syntax in tree to its long form; LoadError lists every problem."""
    problems: list[Problem] = []
    _Normalizer(project_dir, env, problems).run(tree)
    if problems:
        raise LoadError(problems)


class _Normalizer:
    def __init__(self, project_dir: str, env: Any, problems: list[Problem]) -> None:
        self.project_dir = project_dir
        self.env = env
        self.problems = problems

    def run(self, tree: MapNode) -> None:
        services = tree.get("services")
        if isinstance(services, MapNode):
            for name, service in services.items():
                if isinstance(service, MapNode):
                    self.service(service, ("services", name))

    def attempt(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run one item's conversion; a LoadError becomes problems, the result None."""
        try:
            return func(*args)
        except LoadError as error:
            self.problems.extend(error.problems)
            return None

    def service(self, service: MapNode, path: tuple) -> None:
        self.ports(service, path)
        self.volumes(service, path)

    def ports(self, service: MapNode, path: tuple) -> None:
        ports = service.get("ports")
        if not isinstance(ports, SeqNode):
            return
        result = SeqNode(mark=ports.mark)
        for index, item in enumerate(ports):
            entries = self.attempt(parse_port, item, ports.mark_of(index), (*path, "ports", index))
            for entry in entries or ():
                result.add(entry, ports.mark_of(index), ports.item_tags[index])
        service["ports"] = result

    def volumes(self, service: MapNode, path: tuple) -> None:
        volumes = service.get("volumes")
        if not isinstance(volumes, SeqNode):
            return
        for index, item in enumerate(volumes):
            where = (*path, "volumes", index)
            long = self.attempt(parse_volume, item, volumes.mark_of(index), self.project_dir, where)
            if long is not None:
                volumes[index] = long
