"""Linux capabilities: names and numbers, Docker's default set, and the OCI process sets.

Names are the OCI spelling ("CAP_CHOWN"). The runtime-spec requires unknown names to be
refused, so every conversion raises ValueError naming what it did not know.
"""

TYPE_CHECKING = False  # typing itself costs ~3 ms of every container create
if TYPE_CHECKING:
    from collections.abc import Iterable

# Numbers from linux/capability.h; the kernel never renumbers them.
CAPABILITIES: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

NAMES_BY_NUMBER: dict[int, str] = {number: name for name, number in CAPABILITIES.items()}

# What a Docker container gets without cap_add/cap_drop, in Docker's order.
DOCKER_DEFAULT: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

_CAP_LAST_CAP = "/proc/sys/kernel/cap_last_cap"


def last_cap(path: str = _CAP_LAST_CAP) -> int:
    """Highest capability number the running kernel knows (our table's last if unreadable)."""
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return max(NAMES_BY_NUMBER)


def number(name: str) -> int:
    try:
        return CAPABILITIES[name]
    except KeyError:
        raise ValueError(f"unknown capability {name!r}") from None


def to_mask(names: "Iterable[str]") -> int:
    """Bit mask of OCI capability names; ValueError lists every unknown name."""
    names = list(names)
    unknown = [name for name in names if name not in CAPABILITIES]
    if unknown:
        raise ValueError(f"unknown capabilit{'y' if len(unknown) == 1 else 'ies'}: {unknown}")
    mask = 0
    for name in names:
        mask |= 1 << CAPABILITIES[name]
    return mask


def names(mask: int) -> list[str]:
    """OCI names of the bits set in mask, lowest number first; ValueError on unnamed bits."""
    found = [name for bit, name in sorted(NAMES_BY_NUMBER.items()) if mask >> bit & 1]
    if mask >> (max(NAMES_BY_NUMBER) + 1):
        raise ValueError(f"mask {mask:#x} has bits beyond {NAMES_BY_NUMBER[max(NAMES_BY_NUMBER)]}")
    return found


def all_names(highest: int | None = None) -> list[str]:
    """Every capability the kernel supports (up to cap_last_cap), by number."""
    top = last_cap() if highest is None else highest
    return [name for bit, name in sorted(NAMES_BY_NUMBER.items()) if bit <= top]


def available(status_path: str = "/proc/self/status") -> list[str]:
    """Capabilities this process could hand to a container: the kernel's, minus those missing
    from our own bounding set (a sandboxed engine cannot grant what it lacks)."""
    bounding = None
    try:
        with open(status_path) as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    bounding = int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    everything = all_names()
    if bounding is None:
        return everything
    return [name for name in everything if bounding >> CAPABILITIES[name] & 1]


def normalize(name: str) -> str:
    """User spelling (compose `cap_add: [net_admin]`, "CAP_NET_ADMIN", "ALL") to the OCI one."""
    upper = name.strip().upper()
    if upper == "ALL":
        return "ALL"
    canonical = upper if upper.startswith("CAP_") else "CAP_" + upper
    if canonical not in CAPABILITIES:
        raise ValueError(f"unknown capability {name!r}")
    return canonical


def resolve(
    cap_add: "Iterable[str]" = (),
    cap_drop: "Iterable[str]" = (),
    privileged: bool = False,
    base: "Iterable[str]" = DOCKER_DEFAULT,
) -> list[str]:
    """The container's capability list, Docker's way.

    privileged → every capability we can grant (see available()). Otherwise start from `base` (everything if
    cap_add has "ALL"), remove cap_drop (all of it for "ALL"), then append cap_add: a name in
    both lists is kept, as in Docker.
    """
    everything = available()
    if privileged:
        return everything
    adds = [normalize(n) for n in cap_add]
    drops = [normalize(n) for n in cap_drop]
    start = everything if "ALL" in adds else list(base)
    chosen = [] if "ALL" in drops else [n for n in start if n not in drops]
    for name in adds:
        if name != "ALL" and name not in chosen:
            chosen.append(name)
    return chosen


def process_capabilities(caps: "Iterable[str]") -> dict[str, list[str]]:
    """OCI process.capabilities for a container whose processes hold exactly `caps`.

    Inheritable and ambient stay empty: filling them lets a non-root exec keep capabilities
    across execve, which Docker stopped doing (CVE-2022-24769).
    """
    caps = list(caps)
    to_mask(caps)
    return {
        "bounding": list(caps),
        "effective": list(caps),
        "permitted": list(caps),
        "inheritable": [],
        "ambient": [],
    }
