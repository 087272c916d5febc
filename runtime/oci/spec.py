"""config.json for an OCI runtime bundle: `runc spec`-like defaults and Docker-like containers.

`build_config(ContainerSpec)` is the engine's one way to describe a container to any runtime
(ours, crun or runc). `validate_config` checks a config against the upstream runtime-spec
schema copy in schemas/oci-runtime-spec/; jsonschema is imported only there.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from runtime.oci import capabilities
from runtime.record import field, record

# The runtime-spec version of the schema copy in schemas/oci-runtime-spec/.
OCI_VERSION = "1.3.0"
# What build_config declares: every field it writes exists in 1.1.0, and older runtimes refuse
# versions they do not know (Debian 12's crun 1.8 stops at "unknown version specified").
PORTABLE_OCI_VERSION = "1.1.0"

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "oci-runtime-spec"

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Where build_config mounts ContainerSpec.init inside the container.
INIT_PATH_IN_CONTAINER = "/sbin/composer-init"

DEFAULT_SHM_SIZE = 64 * 1024 * 1024

# Kernel interfaces that leak host information or allow host-wide changes.
DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
)

DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

DEFAULT_NAMESPACES: tuple[str, ...] = ("pid", "network", "ipc", "uts", "mount", "cgroup")

# Devices every container may use (the runtime creates the nodes; this is the cgroup side),
# as (type, major, minor, access); None is the wildcard.
DEFAULT_DEVICE_RULES: tuple[tuple[str, int | None, int | None, str], ...] = (
    ("c", None, None, "m"),  # mknod of any device; using one still needs a rule below
    ("b", None, None, "m"),
    ("c", 1, 3, "rwm"),  # /dev/null
    ("c", 1, 5, "rwm"),  # /dev/zero
    ("c", 1, 7, "rwm"),  # /dev/full
    ("c", 1, 8, "rwm"),  # /dev/random
    ("c", 1, 9, "rwm"),  # /dev/urandom
    ("c", 5, 0, "rwm"),  # /dev/tty
    ("c", 5, 2, "rwm"),  # /dev/ptmx
    ("c", 136, None, "rwm"),  # /dev/pts/*
    ("c", 10, 200, "rwm"),  # /dev/net/tun
)

# Soft 1024 keeps select()-based programs safe; the hard limit lets servers raise it.
DEFAULT_NOFILE = (1024, 524288)

CPU_PERIOD_US = 100_000


def _default_mounts(
    shm_size: int = DEFAULT_SHM_SIZE, sys_readonly: bool = True, dev_size: str = "65536k"
) -> list[dict]:
    """proc, dev, devpts, shm, mqueue, sysfs, cgroup, in the order they must be mounted."""
    ro = ["ro"] if sys_readonly else ["rw"]
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", f"size={dev_size}"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", *ro],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", *ro],
        },
    ]


def default_spec(
    args: list[str] | None = None, terminal: bool = False, oci_version: str = OCI_VERSION
) -> dict:
    """A minimal config.json like `runc spec`: rootfs "rootfs" read-only, sh, few caps.

    For a bundle that Debian 12's crun must also run, pass oci_version=PORTABLE_OCI_VERSION.
    """
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": oci_version,
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args) if args else ["sh"],
            "env": [DEFAULT_PATH_ENV, "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": list(caps),
                "effective": list(caps),
                "permitted": list(caps),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "composer",
        "mounts": _default_mounts(shm_size=65536 * 1024),
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in DEFAULT_NAMESPACES],
            "maskedPaths": list(DEFAULT_MASKED_PATHS),
            "readonlyPaths": list(DEFAULT_READONLY_PATHS),
        },
    }


# -- what the engine knows about a container ----------------------------------------------------


@record
class Bind:
    """A bind mount from the host (or a volume's directory) into the container."""

    source: str
    target: str
    readonly: bool = False
    # Extra mount options, e.g. "rshared", "nosuid"; propagation defaults to rprivate.
    options: tuple[str, ...] = ()


@record
class Tmpfs:
    """A tmpfs mounted in the container (`tmpfs:` in Compose); always nosuid, nodev, noexec."""

    target: str
    size: int | None = None  # bytes
    mode: int | None = None
    options: tuple[str, ...] = ()


@record
class Device:
    """A host device node made available in the container (`devices:` in Compose)."""

    host_path: str
    container_path: str | None = None  # same as host_path when None
    permissions: str = "rwm"


@record
class Resources:
    """cgroup limits, in Docker's units; None leaves a limit unset."""

    memory: int | None = None  # bytes
    memory_reservation: int | None = None
    memory_swap: int | None = None  # memory + swap, bytes; -1 = unlimited swap
    cpu_shares: int | None = None
    cpu_quota: int | None = None  # µs per period
    cpu_period: int | None = None  # µs
    cpus: float | None = None  # becomes quota/period; cpu_quota wins when both are set
    cpuset: str | None = None
    cpuset_mems: str | None = None
    pids_limit: int | None = None
    blkio_weight: int | None = None


@record(frozen=False)
class ContainerSpec:
    """What the engine knows about one container; build_config turns it into config.json."""

    rootfs: str
    args: list[str] = field(default_factory=lambda: ["sh"])
    env: list[str] = field(default_factory=list)  # "KEY=value"
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)
    umask: int | None = None
    hostname: str | None = None
    domainname: str | None = None
    terminal: bool = False
    readonly_rootfs: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    no_new_privileges: bool = False
    seccomp: str = "default"  # "default" | "unconfined" | path to an OCI/Docker profile JSON
    sysctls: dict[str, str] = field(default_factory=dict)
    # RLIMIT_X (or x, nofile…) -> limit or (soft, hard); replaces the NOFILE default if given.
    rlimits: dict[str, int | tuple[int, int]] | None = None
    oom_score_adj: int | None = None
    shm_size: int | None = None  # bytes
    tmpfs: list[Tmpfs] = field(default_factory=list)
    binds: list[Bind] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    # namespace type -> path of one to join, or "host" to share the host's; others are new.
    namespaces: dict[str, str] = field(default_factory=dict)
    masked_paths: list[str] | None = None  # None: the defaults
    readonly_paths: list[str] | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    hooks: dict[str, list[dict]] = field(default_factory=dict)  # OCI hooks object
    init: str | None = None  # host path of a static init (tini) to run as PID 1
    cgroups_path: str | None = None


_NAMESPACE_TYPES = ("pid", "network", "ipc", "uts", "mount", "user", "cgroup", "time")


def default_rlimits() -> dict[str, tuple[int, int]]:
    """NOFILE, its hard limit capped at ours: raising it needs CAP_SYS_RESOURCE, which a
    sandboxed engine may lack, and then every runtime fails to start the container."""
    import resource

    soft, hard = DEFAULT_NOFILE
    own_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if own_hard != resource.RLIM_INFINITY:
        hard = min(hard, own_hard)
    return {"RLIMIT_NOFILE": (min(soft, hard), hard)}


def _rlimits(spec: ContainerSpec) -> list[dict]:
    wanted = default_rlimits() if spec.rlimits is None else spec.rlimits
    out = []
    for name, limit in wanted.items():
        kind = name.upper()
        kind = kind if kind.startswith("RLIMIT_") else "RLIMIT_" + kind
        soft, hard = (limit, limit) if isinstance(limit, int) else limit
        out.append({"type": kind, "soft": soft, "hard": hard})
    return out


def _env(spec: ContainerSpec) -> list[str]:
    env = list(spec.env)
    keys = {item.split("=", 1)[0] for item in env}
    if "PATH" not in keys:
        env.insert(0, DEFAULT_PATH_ENV)
    if spec.hostname and "HOSTNAME" not in keys:
        env.append(f"HOSTNAME={spec.hostname}")
    return env


def _namespaces(spec: ContainerSpec) -> list[dict]:
    unknown = set(spec.namespaces) - set(_NAMESPACE_TYPES)
    if unknown:
        raise ValueError(f"unknown namespace types: {sorted(unknown)}")
    wanted = list(DEFAULT_NAMESPACES) + [t for t in spec.namespaces if t not in DEFAULT_NAMESPACES]
    out = []
    for kind in wanted:
        where = spec.namespaces.get(kind)
        if where == "host":
            continue
        out.append({"type": kind, "path": where} if where else {"type": kind})
    return out


def _device_rule(kind: str, major: int | None, minor: int | None, access: str) -> dict:
    rule: dict[str, Any] = {"allow": True, "type": kind, "access": access}
    if major is not None:
        rule["major"] = major
    if minor is not None:
        rule["minor"] = minor
    return rule


def _device_node(host_path: str, container_path: str | None = None) -> dict:
    st = os.stat(host_path)
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise ValueError(f"{host_path} is not a device node")
    return {
        "path": container_path or host_path,
        "type": kind,
        "major": os.major(st.st_rdev),
        "minor": os.minor(st.st_rdev),
        "fileMode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
    }


# What the container gets its own of: pseudo-filesystems, its console, and /dev/ptmx, which
# the runtime-spec makes a link to the container's pts/ptmx.
_HOST_DEV_SKIP = {
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
    "/dev/hugepages",
    "/dev/console",
    "/dev/ptmx",
}


def host_devices(dev: str = "/dev") -> list[dict]:
    """Every character and block device under the host's /dev (what privileged gets)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(dev):
        dirnames[:] = sorted(d for d in dirnames if os.path.join(dirpath, d) not in _HOST_DEV_SKIP)
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if path in _HOST_DEV_SKIP:
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue  # vanished while walking
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                found.append(_device_node(path))
    return found


def _resources(spec: ContainerSpec, device_rules: list[dict]) -> dict:
    r = spec.resources
    out: dict[str, Any] = {"devices": device_rules}
    memory = {}
    if r.memory is not None:
        memory["limit"] = r.memory
    if r.memory_reservation is not None:
        memory["reservation"] = r.memory_reservation
    if r.memory_swap is not None:
        memory["swap"] = r.memory_swap
    elif r.memory is not None:
        memory["swap"] = 2 * r.memory  # Docker: as much swap as memory unless told
    if memory:
        out["memory"] = memory
    cpu: dict[str, Any] = {}
    if r.cpu_shares is not None:
        cpu["shares"] = r.cpu_shares
    if r.cpu_quota is not None:
        cpu["quota"] = r.cpu_quota
        cpu["period"] = r.cpu_period or CPU_PERIOD_US
    elif r.cpus is not None:
        period = r.cpu_period or CPU_PERIOD_US
        cpu["period"] = period
        cpu["quota"] = round(r.cpus * period)
    elif r.cpu_period is not None:
        cpu["period"] = r.cpu_period
    if r.cpuset is not None:
        cpu["cpus"] = r.cpuset
    if r.cpuset_mems is not None:
        cpu["mems"] = r.cpuset_mems
    if cpu:
        out["cpu"] = cpu
    if r.pids_limit is not None:
        out["pids"] = {"limit": r.pids_limit}
    if r.blkio_weight is not None:
        out["blockIO"] = {"weight": r.blkio_weight}
    return out


def _propagation_given(options: tuple[str, ...]) -> bool:
    return any(o.lstrip("r") in ("private", "shared", "slave", "unbindable") for o in options)


def _user_mounts(spec: ContainerSpec) -> list[dict]:
    mounts = []
    for t in spec.tmpfs:
        options = ["nosuid", "nodev", "noexec", *t.options]
        if t.size is not None:
            options.append(f"size={t.size}")
        if t.mode is not None:
            options.append(f"mode={t.mode:o}")
        mounts.append(
            {"destination": t.target, "type": "tmpfs", "source": "tmpfs", "options": options}
        )
    for b in spec.binds:
        readonly = b.readonly or "ro" in b.options
        extra = [o for o in b.options if o not in ("ro", "rw")]
        options = ["rbind", "ro" if readonly else "rw", *extra]
        if not _propagation_given(b.options):
            options.append("rprivate")
        mounts.append(
            {"destination": b.target, "type": "bind", "source": b.source, "options": options}
        )
    if spec.init:
        mounts.append(
            {
                "destination": INIT_PATH_IN_CONTAINER,
                "type": "bind",
                "source": spec.init,
                "options": ["bind", "ro", "nosuid", "nodev"],
            }
        )
    # Parents before children, whatever order they were given in.
    mounts.sort(key=lambda m: len(Path(m["destination"]).parts))
    return mounts


def _seccomp(spec: ContainerSpec, caps: list[str]) -> dict | None:
    if spec.privileged or spec.seccomp == "unconfined":
        return None
    if spec.seccomp == "default":
        from runtime.oci import seccomp

        return seccomp.docker_default_profile(caps=caps)
    import json

    from runtime.oci import seccomp

    with open(spec.seccomp) as f:
        return seccomp.resolve_profile(json.load(f), caps=caps)


def build_config(spec: ContainerSpec, oci_version: str = PORTABLE_OCI_VERSION) -> dict:
    """The complete config.json for `spec`, Docker's defaults filled in."""
    caps = capabilities.resolve(spec.cap_add, spec.cap_drop, spec.privileged)

    args = list(spec.args)
    if spec.init:
        args = [INIT_PATH_IN_CONTAINER, "--", *args]
    user: dict[str, Any] = {"uid": spec.uid, "gid": spec.gid}
    if spec.additional_gids:
        user["additionalGids"] = list(spec.additional_gids)
    if spec.umask is not None:
        user["umask"] = spec.umask
    process: dict[str, Any] = {
        "terminal": spec.terminal,
        "user": user,
        "args": args,
        "env": _env(spec),
        "cwd": spec.cwd,
        "capabilities": capabilities.process_capabilities(caps),
        "rlimits": _rlimits(spec),
        "noNewPrivileges": spec.no_new_privileges,
    }
    if spec.oom_score_adj is not None:
        process["oomScoreAdj"] = spec.oom_score_adj

    user_mounts = _user_mounts(spec)
    taken = {m["destination"] for m in user_mounts}
    defaults = _default_mounts(
        shm_size=spec.shm_size or DEFAULT_SHM_SIZE, sys_readonly=not spec.privileged
    )
    mounts = [m for m in defaults if m["destination"] not in taken] + user_mounts

    device_nodes = [_device_node(d.host_path, d.container_path) for d in spec.devices]
    if spec.privileged:
        device_nodes = host_devices() + device_nodes
        device_rules = [{"allow": True, "access": "rwm"}]
    else:
        device_rules = [{"allow": False, "access": "rwm"}]
        device_rules += [_device_rule(*rule) for rule in DEFAULT_DEVICE_RULES]
        for wanted, node in zip(spec.devices, device_nodes, strict=True):
            device_rules.append(
                _device_rule(node["type"], node["major"], node["minor"], wanted.permissions)
            )

    linux: dict[str, Any] = {
        "namespaces": _namespaces(spec),
        "resources": _resources(spec, device_rules),
    }
    if device_nodes:
        linux["devices"] = device_nodes
    if spec.cgroups_path:
        linux["cgroupsPath"] = spec.cgroups_path
    if spec.sysctls:
        linux["sysctl"] = dict(spec.sysctls)
    if spec.privileged:
        masked, readonly = [], []
    else:
        masked = list(DEFAULT_MASKED_PATHS if spec.masked_paths is None else spec.masked_paths)
        readonly = list(
            DEFAULT_READONLY_PATHS if spec.readonly_paths is None else spec.readonly_paths
        )
    linux["maskedPaths"] = masked
    linux["readonlyPaths"] = readonly
    seccomp_profile = _seccomp(spec, caps)
    if seccomp_profile is not None:
        linux["seccomp"] = seccomp_profile

    config: dict[str, Any] = {
        "ociVersion": oci_version,
        "process": process,
        "root": {"path": spec.rootfs, "readonly": spec.readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
    }
    if spec.hostname:
        config["hostname"] = spec.hostname
    if spec.domainname:
        config["domainname"] = spec.domainname
    if spec.annotations:
        config["annotations"] = dict(spec.annotations)
    if spec.hooks:
        config["hooks"] = {stage: list(hooks) for stage, hooks in spec.hooks.items()}
    return config


# -- validation -----------------------------------------------------------------------------------

_validators: dict[Path, Any] = {}


def _validator(schema_dir: Path):
    if schema_dir in _validators:
        return _validators[schema_dir]
    import json

    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    # The schema files refer to each other by bare file name ("defs.json#/…"), so each is
    # registered under its name and the root is reached through a reference to its name.
    resources = []
    for path in sorted(schema_dir.glob("*.json")):
        contents = json.loads(path.read_text())
        resources.append((path.name, Resource.from_contents(contents, DRAFT4)))
    registry = Registry().with_resources(resources)
    validator = jsonschema.Draft4Validator({"$ref": "config-schema.json"}, registry=registry)
    _validators[schema_dir] = validator
    return validator


def validate_config(config: dict, schema_dir: Path = SCHEMA_DIR) -> list[str]:
    """Problems with `config` as "<json path>: <message>"; empty when it is valid.

    Beyond the schema, capability names must be known ones: the runtime-spec requires
    runtimes to refuse unknown capabilities, so a config carrying one cannot run.
    """
    errors = [
        f"{error.json_path}: {error.message}"
        for error in sorted(_validator(schema_dir).iter_errors(config), key=lambda e: e.json_path)
    ]
    caps = (config.get("process") or {}).get("capabilities") or {}
    if isinstance(caps, dict):
        for kind, names in sorted(caps.items()):
            if not isinstance(names, list):
                continue
            for name in names:
                if isinstance(name, str) and name not in capabilities.CAPABILITIES:
                    errors.append(f"$.process.capabilities.{kind}: unknown capability {name!r}")
    return errors
