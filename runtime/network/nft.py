"""Our nftables rules: one table (`inet composer`) rebuilt whole from the network records.

A state root other than the default gets a table of its own (`composer_<hash>`), so runs
with different roots in one network namespace never replace each other's rules.

The table is replaced in one `nft -f -` transaction (declare, delete, define), so the kernel
never holds half a ruleset, and removing everything of ours is one `delete table`; the host's
other tables are never read or changed. `ruleset()` is pure, so the rules are unit-tested as
text; `apply()` and `list_table()` drive nftables (libnftables in this process, or the nft
binary where the library does not load).

What the table does:
- forward: internal networks talk only within their own bridge; other networks are isolated
  from each other (a project cannot reach another) except through published ports; traffic
  to and from our bridges is accepted.
- nat: published ports are DNAT'ed for traffic from outside and other containers
  (prerouting) and from the host itself, 127.0.0.1 included (output); the source is
  masqueraded when it came from loopback or from the container's own network (hairpin),
  and non-internal subnets are masqueraded on the way out.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Iterable

from runtime.record import record

TABLE = "composer"
FAMILY = "inet"


def table_for_root(root: str, default_root: str = "/var/lib/composer") -> str:
    """`composer` for the default state root; a table of its own for any other root, so
    runs with different roots (tests) never replace each other's rules."""
    import hashlib
    import os

    if os.path.realpath(root) == os.path.realpath(default_root):
        return TABLE
    return f"{TABLE}_{hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:10]}"


class NftError(Exception):
    pass


@record
class NetworkRules:
    bridge: str
    subnets: tuple[str, ...]  # CIDRs, IPv4 and IPv6
    internal: bool = False


@record
class PortRule:
    protocol: str  # tcp | udp
    host_port: int
    container_ip: str
    container_port: int
    bridge: str
    host_ip: str = ""  # "" (or 0.0.0.0 / ::) for every local address


def _q(name: str) -> str:
    return f'"{name}"'


def _set(names: Iterable[str]) -> str:
    names = list(names)
    return _q(names[0]) if len(names) == 1 else "{ " + ", ".join(map(_q, names)) + " }"


def _family(address: str) -> str:
    return "ip6" if ipaddress.ip_address(address).version == 6 else "ip"


def _port_rule(port: PortRule) -> str:
    if port.protocol not in ("tcp", "udp"):
        raise NftError(f"unsupported protocol {port.protocol!r}")
    family = _family(port.container_ip)
    match = []
    if port.host_ip and not ipaddress.ip_address(port.host_ip).is_unspecified:
        if _family(port.host_ip) != family:
            raise NftError(f"host IP {port.host_ip} and {port.container_ip} differ in family")
        match.append(f"{family} daddr {port.host_ip}")
    else:
        match.append(f"meta nfproto {'ipv6' if family == 'ip6' else 'ipv4'}")
    target = (
        f"[{port.container_ip}]:{port.container_port}"
        if family == "ip6"
        else f"{port.container_ip}:{port.container_port}"
    )
    return f"{' '.join(match)} {port.protocol} dport {port.host_port} dnat {family} to {target}"


def ruleset(
    networks: Iterable[NetworkRules], ports: Iterable[PortRule] = (), table: str = TABLE
) -> str:
    """The whole table as nft script text (no delete: `apply` wraps it)."""
    networks = sorted(networks, key=lambda n: n.bridge)
    ports = list(ports)
    bridges = [n.bridge for n in networks]
    forward = ["type filter hook forward priority filter; policy accept;"]
    for n in networks:
        if n.internal:
            forward.append(f"iifname {_q(n.bridge)} oifname != {_q(n.bridge)} drop")
            forward.append(f"oifname {_q(n.bridge)} iifname != {_q(n.bridge)} drop")
    if bridges:
        forward.append("ct state established,related accept")
        forward.append("ct status dnat accept")
        for n in networks:
            others = [b for b in bridges if b != n.bridge]
            if others and not n.internal:
                forward.append(f"iifname {_q(n.bridge)} oifname {_set(others)} drop")
        forward.append(f"iifname {_set(bridges)} accept")
        forward.append(f"oifname {_set(bridges)} accept")

    postrouting = ["type nat hook postrouting priority srcnat; policy accept;"]
    for n in networks:
        br = _q(n.bridge)
        postrouting.append(f"oifname {br} ip saddr 127.0.0.0/8 masquerade")
        for subnet in n.subnets:
            fam = "ip6" if ipaddress.ip_network(subnet).version == 6 else "ip"
            postrouting.append(f"oifname {br} ct status dnat {fam} saddr {subnet} masquerade")
            if not n.internal:
                postrouting.append(f"{fam} saddr {subnet} oifname != {br} masquerade")

    published = [_port_rule(p) for p in sorted(ports, key=_port_key)]
    chains = {
        "forward": forward,
        "prerouting": [
            "type nat hook prerouting priority dstnat; policy accept;",
            "fib daddr type local jump published",
        ],
        "output": [
            "type nat hook output priority -100; policy accept;",
            "fib daddr type local jump published",
        ],
        "published": published,
        "postrouting": postrouting,
    }
    lines = [f"table {FAMILY} {table} {{"]
    # `published` first: a jump needs its target chain declared.
    for name in ("published", "forward", "prerouting", "output", "postrouting"):
        lines.append(f"\tchain {name} {{")
        lines.extend(f"\t\t{rule}" for rule in chains[name])
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _port_key(p: PortRule) -> tuple:
    return (p.protocol, p.host_port, p.host_ip, p.container_ip, p.container_port)


def _nft(script: str | None, *args: str) -> str:
    """Run an nft command: `script` (what `nft -f -` reads) or the words in args; its
    output. -j (JSON) and -c (check only) are flags. In this process through libnftables
    when it loads (half the time of running the nft binary, ~10 ms), else the binary."""
    code, out, err = _libnftables(script, args) if _library() else _binary(script, args)
    if code != 0:
        raise NftError(f"nft {' '.join(args)} failed: {err.strip()}")
    return out


def _binary(script: str | None, args: tuple[str, ...]) -> tuple[int, str, str]:
    import subprocess

    result = subprocess.run(
        ["nft", *args, *(("-f", "-") if script is not None else ())],
        input=script,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.returncode, result.stdout, result.stderr


_JSON_OUTPUT = 1 << 4  # NFT_CTX_OUTPUT_JSON of libnftables.h
_LIBRARY: list = []  # [the loaded library or None], once per process
_ONE_AT_A_TIME = threading.Lock()  # the library does not promise thread safety


def _library():
    if not _LIBRARY:
        import ctypes

        try:
            lib = ctypes.CDLL("libnftables.so.1")
        except OSError:
            lib = None
        else:
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint]
            for name in ("nft_ctx_free", "nft_ctx_buffer_output", "nft_ctx_buffer_error"):
                getattr(lib, name).argtypes = [ctypes.c_void_p]
            lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
            lib.nft_ctx_set_dry_run.argtypes = [ctypes.c_void_p, ctypes.c_bool]
            for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
                getattr(lib, name).argtypes = [ctypes.c_void_p]
                getattr(lib, name).restype = ctypes.c_char_p
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        _LIBRARY.append(lib)
    return _LIBRARY[0]


def _libnftables(script: str | None, args: tuple[str, ...]) -> tuple[int, str, str]:
    lib = _library()
    words = [a for a in args if a not in ("-j", "-c")]
    with _ONE_AT_A_TIME:
        return _run_in(lib, script if script is not None else " ".join(words), args)


def _run_in(lib, command: str, args: tuple[str, ...]) -> tuple[int, str, str]:
    ctx = lib.nft_ctx_new(0)
    try:
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        if "-j" in args:
            lib.nft_ctx_output_set_flags(ctx, _JSON_OUTPUT)
        if "-c" in args:
            lib.nft_ctx_set_dry_run(ctx, True)
        code = lib.nft_run_cmd_from_buffer(ctx, command.encode())
        out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
        err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
    finally:
        lib.nft_ctx_free(ctx)
    return code, out, err


def apply(
    networks: Iterable[NetworkRules], ports: Iterable[PortRule] = (), table: str = TABLE
) -> None:
    """Replace our table atomically; with no networks, remove it."""
    networks = list(networks)
    if not networks:
        remove_table(table)
        return
    header = f"table {FAMILY} {table}\ndelete table {FAMILY} {table}\n"
    _nft(header + ruleset(networks, ports, table))


def remove_table(table: str = TABLE) -> None:
    """Delete our table if it exists (one delete removes every rule of ours)."""
    _nft(f"table {FAMILY} {table}\ndelete table {FAMILY} {table}\n")


def list_table(table: str = TABLE) -> dict | None:
    """Our table as `nft -j` JSON, or None when it does not exist."""
    try:
        return json.loads(_nft(None, "-j", "list", "table", FAMILY, table))
    except NftError as e:
        if "No such file" in str(e):
            return None
        raise


def parse_published(document: dict) -> set[tuple[str, str, int]]:
    """(protocol, host IP or "", host port) of each DNAT rule in an `nft -j list chain`."""
    found = set()
    for item in document.get("nftables", []):
        rule = item.get("rule")
        if not rule:
            continue
        protocol, host_ip, port = None, "", None
        for expr in rule.get("expr", []):
            match = expr.get("match", {})
            payload = match.get("left", {}).get("payload", {})
            if payload.get("field") == "dport":
                protocol, port = payload.get("protocol"), match.get("right")
            elif payload.get("field") == "daddr":
                host_ip = str(match.get("right"))
        if protocol and isinstance(port, int):
            found.add((protocol, host_ip, port))
    return found


def published_elsewhere(own_table: str) -> set[tuple[str, str, int]]:
    """Host ports DNAT'ed by our tables of other state roots in this network namespace:
    nothing listens on them, so only the rules tell they are taken."""
    tables = json.loads(_nft(None, "-j", "list", "tables", FAMILY))
    found: set[tuple[str, str, int]] = set()
    for item in tables.get("nftables", []):
        name = item.get("table", {}).get("name", "")
        if name != own_table and (name == TABLE or name.startswith(f"{TABLE}_")):
            try:
                chain = _nft(None, "-j", "list", "chain", FAMILY, name, "published")
            except NftError:  # removed meanwhile
                continue
            found |= parse_published(json.loads(chain))
    return found


def check(script: str) -> None:
    """Let nft parse `script` without applying it (`nft -c`)."""
    _nft(script, "-c")
