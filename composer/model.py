"""The project model: frozen, plain data built from the normalized loader tree.

Everything here is immutable (frozen slotted dataclasses, tuples, FrozenMap),
so a Project can be shared, compared and hashed. Durations are seconds
(float), sizes bytes (int), file modes ints. Fields the engine does not model
one by one stay available, frozen, in Service.options.

Also here: service_config_hash, the fingerprint of a service's configuration
that decides whether a running container must be recreated.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from composer.digest import sha256_hex
from composer.loader.errors import LoadError, Problem, display_name
from composer.loader.nodes import MapNode, locate, to_plain
from composer.loader.normalize import (
    env_lookup,
    parse_bytes,
    parse_duration,
    sort_problems,
    unresolved,
)
from composer.loader.positions import NO_POSITIONS, SourcePositions
from runtime.record import field, field_names, record

K = TypeVar("K")
V = TypeVar("V")


class FrozenMap(Mapping[K, V]):
    """An immutable, hashable mapping that keeps insertion order (file order)."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[K, V] | Any = ()) -> None:
        self._data: dict[K, V] = dict(data)
        self._hash: int | None = None

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


EMPTY: FrozenMap = FrozenMap()


def freeze(value: Any) -> Any:
    """Deep-freeze plain data: mappings → FrozenMap, lists → tuple."""
    if isinstance(value, Mapping):
        return FrozenMap({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


# --- the model ------------------------------------------------------------------------------


@record
class Port:
    """A published or exposed port of a service (long form)."""

    target: int
    published: str | None = None  # "8080", a range "8000-8010", or None for a random port
    host_ip: str | None = None
    protocol: str = "tcp"
    mode: str = "ingress"
    name: str | None = None
    app_protocol: str | None = None

    def published_range(self) -> tuple[int, int] | None:
        """(first, last) host port, or None when the engine picks one."""
        if not self.published:
            return None
        first, _, last = self.published.partition("-")
        return int(first), int(last or first)


@record
class Mount:
    """A service mount: bind (host path), volume (named or anonymous) or tmpfs."""

    type: str  # bind, volume, tmpfs (npipe, cluster, image are carried but not run)
    target: str
    source: str | None = None  # absolute host path for bind; volume key for volume
    read_only: bool = False
    consistency: str | None = None
    bind_propagation: str | None = None
    bind_create_host_path: bool = False
    bind_selinux: str | None = None
    volume_nocopy: bool = False
    volume_subpath: str | None = None
    tmpfs_size: int | None = None
    tmpfs_mode: int | None = None


@record
class ServiceNetwork:
    """How a service joins one network."""

    name: str  # the key under top-level networks
    aliases: tuple[str, ...] = ()
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    mac_address: str | None = None
    link_local_ips: tuple[str, ...] = ()
    priority: int = 0
    gw_priority: int = 0
    interface_name: str | None = None
    driver_opts: FrozenMap = EMPTY


@record
class IpamPool:
    """One address pool of a network's IPAM configuration."""

    subnet: str | None = None
    ip_range: str | None = None
    gateway: str | None = None
    aux_addresses: FrozenMap = EMPTY


@record
class Network:
    """A top-level network."""

    key: str  # as written in the file
    name: str  # the real name: `name:`, else the key if external, else <project>_<key>
    driver: str | None = None
    driver_opts: FrozenMap = EMPTY
    external: bool = False
    internal: bool = False
    attachable: bool = False
    enable_ipv4: bool | None = None
    enable_ipv6: bool | None = None
    ipam_driver: str | None = None
    ipam_pools: tuple[IpamPool, ...] = ()
    ipam_options: FrozenMap = EMPTY
    labels: FrozenMap = EMPTY


@record
class Volume:
    """A top-level named volume."""

    key: str
    name: str
    driver: str | None = None
    driver_opts: FrozenMap = EMPTY
    external: bool = False
    labels: FrozenMap = EMPTY


@record
class Secret:
    """A top-level secret; exactly one of file, environment, content says where it is."""

    key: str
    name: str
    file: str | None = None
    environment: str | None = None
    content: str | None = None  # given inline, or read from `environment` at load
    external: bool = False
    labels: FrozenMap = EMPTY


@record
class Config:
    """A top-level config; like Secret."""

    key: str
    name: str
    file: str | None = None
    environment: str | None = None
    content: str | None = None
    external: bool = False
    labels: FrozenMap = EMPTY


@record
class FileReference:
    """A service's use of a secret or config: which one, and where it appears."""

    source: str
    target: str
    uid: str | None = None
    gid: str | None = None
    mode: int | None = None


@record
class Healthcheck:
    """How the engine probes a service; durations in seconds."""

    test: tuple[str, ...] = ()
    interval: float | None = None  # seconds
    timeout: float | None = None
    start_period: float | None = None
    start_interval: float | None = None
    retries: int | None = None
    disable: bool = False


@record
class DependsOn:
    """One service a service needs before it starts."""

    service: str
    condition: str = "service_started"
    required: bool = True
    restart: bool = False


@record
class Ulimit:
    """A resource limit (setrlimit) of the container's processes."""

    name: str
    soft: int
    hard: int


@record
class Build:
    """How to build a service's image."""

    context: str
    dockerfile: str | None = "Dockerfile"
    dockerfile_inline: str | None = None
    args: FrozenMap = EMPTY  # name → value (None: declared, no value)
    target: str | None = None
    labels: FrozenMap = EMPTY
    network: str | None = None
    shm_size: int | None = None
    extra_hosts: FrozenMap = EMPTY
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    no_cache: bool = False
    pull: bool = False
    platforms: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    secrets: tuple[FileReference, ...] = ()
    additional_contexts: FrozenMap = EMPTY
    ulimits: FrozenMap = EMPTY  # name → Ulimit
    privileged: bool = False


@record
class Limits:
    """CPU, memory and process limits (or reservations)."""

    cpus: float | None = None
    memory: int | None = None  # bytes
    pids: int | None = None


@record
class Resources:
    """Effective limits: deploy.resources, or the older service keys (mem_limit, cpus…)."""

    limits: Limits = Limits()
    reservations: Limits = Limits()
    memswap_limit: int | None = None
    mem_swappiness: int | None = None
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpuset: str | None = None
    oom_kill_disable: bool = False
    oom_score_adj: int | None = None


@record
class Logging:
    """The log driver and its options."""

    driver: str | None = None
    options: FrozenMap = EMPTY


@record
class RestartPolicy:
    """deploy.restart_policy; `restart:` is kept as written on Service.restart."""

    condition: str | None = None
    delay: float | None = None
    max_attempts: int | None = None
    window: float | None = None


@record
class Device:
    """A host device made available in the container."""

    source: str
    target: str
    permissions: str = "rwm"


@record
class Service:
    """One service, with everything the engine needs to run its containers."""

    name: str
    image: str | None = None
    build: Build | None = None
    command: tuple[str, ...] | None = None  # None: the image's default
    entrypoint: tuple[str, ...] | None = None
    environment: FrozenMap = EMPTY  # resolved: env_file(s), then environment:
    env_files: tuple[str, ...] = ()
    labels: FrozenMap = EMPTY
    annotations: FrozenMap = EMPTY
    ports: tuple[Port, ...] = ()
    expose: tuple[str, ...] = ()
    volumes: tuple[Mount, ...] = ()
    tmpfs: tuple[str, ...] = ()
    volumes_from: tuple[str, ...] = ()
    networks: FrozenMap = EMPTY  # key → ServiceNetwork
    network_mode: str | None = None
    links: tuple[str, ...] = ()
    external_links: tuple[str, ...] = ()
    depends_on: FrozenMap = EMPTY  # service → DependsOn (implicit ones included)
    healthcheck: Healthcheck | None = None
    restart: str | None = None
    restart_policy: RestartPolicy | None = None
    scale: int = 1
    container_name: str | None = None
    hostname: str | None = None
    domainname: str | None = None
    user: str | None = None
    working_dir: str | None = None
    stop_signal: str | None = None
    stop_grace_period: float | None = None
    tty: bool = False
    stdin_open: bool = False
    privileged: bool = False
    read_only: bool = False
    init: bool | None = None
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    group_add: tuple[str, ...] = ()
    sysctls: FrozenMap = EMPTY
    ulimits: FrozenMap = EMPTY  # name → Ulimit
    extra_hosts: FrozenMap = EMPTY  # host → tuple of IPs
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_opt: tuple[str, ...] = ()
    devices: tuple[Device, ...] = ()
    ipc: str | None = None
    pid: str | None = None
    uts: str | None = None
    cgroup: str | None = None
    cgroup_parent: str | None = None
    userns_mode: str | None = None
    shm_size: int | None = None
    pids_limit: int | None = None
    resources: Resources = Resources()
    logging: Logging | None = None
    secrets: tuple[FileReference, ...] = ()
    configs: tuple[FileReference, ...] = ()
    pull_policy: str | None = None
    profiles: tuple[str, ...] = ()
    platform: str | None = None
    runtime: str | None = None
    mac_address: str | None = None
    # Every other key of the service (deploy details, develop, x-* extensions…), frozen.
    options: FrozenMap = EMPTY
    config_hash: str = field(default="", compare=False)


@record
class Project:
    """A loaded Compose project."""

    name: str
    project_dir: str
    config_files: tuple[str, ...]
    services: FrozenMap = EMPTY  # name → Service, in file order
    networks: FrozenMap = EMPTY  # key → Network
    volumes: FrozenMap = EMPTY  # key → Volume
    secrets: FrozenMap = EMPTY  # key → Secret
    configs: FrozenMap = EMPTY  # key → Config
    extensions: FrozenMap = EMPTY  # top-level x-* keys
    # Where each key was written (composer.loader.positions), for errors found at `up`.
    positions: SourcePositions = field(default=NO_POSITIONS, compare=False)

    def service_names(self) -> tuple[str, ...]:
        return tuple(self.services)

    def service(self, name: str) -> Service:
        return self.services[name]


# --- the config hash ----------------------------------------------------------------------

# What may change without recreating a container (as docker compose decides).
HASH_EXCLUDED = ("build", "pull_policy", "scale", "depends_on", "profiles")


def canonical_json(value: Any) -> str:
    """Key-sorted, compact JSON of plain data; the same config gives the same text."""

    def plain(item: Any) -> Any:
        if isinstance(item, Mapping):
            return {str(k): plain(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [plain(v) for v in item]
        if isinstance(item, float) and item.is_integer():
            return int(item)
        return item

    return json.dumps(
        plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )


def service_config_hash(service: Service | Mapping[str, Any]) -> str:
    """sha256 of the normalized service, without what does not need a new container.

    Takes a Service (its hash was computed when the model was built, from the
    normalized tree with the environment resolved) or a normalized service tree.
    """
    if isinstance(service, Service):
        return service.config_hash
    data = {k: v for k, v in to_plain(dict(service)).items() if k not in HASH_EXCLUDED}
    deploy = data.get("deploy")
    if isinstance(deploy, dict) and "replicas" in deploy:
        data["deploy"] = {k: v for k, v in deploy.items() if k != "replicas"}
        if not data["deploy"]:
            del data["deploy"]
    return sha256_hex(canonical_json(data).encode())


# --- building the model from the tree ----------------------------------------------------------


def build_project(
    tree: MapNode,
    *,
    name: str,
    project_dir: str,
    config_files: list[str] | tuple[str, ...] = (),
    env: Any = None,
) -> Project:
    """The frozen Project of a normalized, checked tree.

    env (an Environment, anything with lookup(name)) resolves variables inside
    env_file files and the values of secrets/configs given by `environment:`.
    Raises LoadError for every problem found (e.g. a missing required env_file).
    """
    return _ModelBuilder(tree, name, project_dir, env).project(tuple(config_files))


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _text_map(value: Any) -> FrozenMap:
    if not isinstance(value, Mapping):
        return EMPTY
    return FrozenMap({str(k): None if v is None else str(v) for k, v in value.items()})


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


# Service keys the model has a field for; everything else goes to Service.options.
_MODELED = frozenset(name for name in field_names(Service)) | {
    "env_file",  # → env_files and environment
    "label_file",  # → labels
    "cpus",  # → resources
    "mem_limit",
    "mem_reservation",
    "memswap_limit",
    "mem_swappiness",
    "cpu_shares",
    "cpu_quota",
    "cpu_period",
    "cpuset",
    "oom_kill_disable",
    "oom_score_adj",
}


class _ModelBuilder:
    def __init__(self, tree: MapNode, name: str, project_dir: str, env: Any) -> None:
        self.tree = tree
        self.name = name
        self.project_dir = project_dir
        self.env = env
        self.problems: list[Problem] = []

    def problem(self, message: str, path: tuple, hint: str | None = None) -> None:
        self.problems.append(Problem(message, locate(self.tree, path), path, hint))

    def convert(self, path: tuple, value: Any, kind: Any, what: str) -> Any:
        """kind(value), or a Problem at path's mark when the value does not fit."""
        if value is None or unresolved(value):
            return None
        try:
            if kind is bool:
                if isinstance(value, bool):
                    return value
                text = str(value).strip().lower()
                if text in ("true", "false"):
                    return text == "true"
                raise ValueError(value)
            if kind is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return kind(value)
        except (TypeError, ValueError):
            self.problem(f"{value!r} is not {what}", path)
            return None

    def seconds(self, path: tuple, value: Any) -> float | None:
        if value is None or unresolved(value):
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.problem(str(exc), path, "write e.g. '30s', '1m30s'")
            return None

    def size(self, path: tuple, value: Any) -> int | None:
        if value is None or unresolved(value):
            return None
        try:
            return parse_bytes(value)
        except ValueError as exc:
            self.problem(str(exc), path)
            return None

    # -- project --

    def project(self, config_files: tuple[str, ...]) -> Project:
        tree = self.tree
        services = tree.get("services") or {}
        built: dict[str, Service] = {}
        for name, service in services.items():
            if isinstance(service, Mapping):
                built[name] = self.service(name, service)
        networks = self.resources("networks", self.network)
        if "default" not in networks and any("default" in s.networks for s in built.values()):
            networks["default"] = Network("default", f"{self.name}_default")
        project = Project(
            name=self.name,
            project_dir=self.project_dir,
            config_files=config_files,
            services=FrozenMap(built),
            networks=FrozenMap(networks),
            volumes=FrozenMap(self.resources("volumes", self.volume)),
            secrets=FrozenMap(self.resources("secrets", self.file_object(Secret))),
            configs=FrozenMap(self.resources("configs", self.file_object(Config))),
            extensions=freeze({k: to_plain(v) for k, v in tree.items() if str(k).startswith("x-")}),
            positions=SourcePositions(tree),
        )
        if self.problems:
            raise LoadError(sort_problems(self.problems))
        return project

    def resources(self, section: str, build: Any) -> dict[str, Any]:
        found = self.tree.get(section) or {}
        return {key: build(key, spec or {}, (section, key)) for key, spec in found.items()}

    def resource_name(self, key: str, spec: Mapping) -> str:
        if spec.get("name"):
            return str(spec["name"])
        return key if spec.get("external") else f"{self.name}_{key}"

    def network(self, key: str, spec: Mapping, path: tuple) -> Network:
        ipam = spec.get("ipam") or {}
        pools = tuple(
            IpamPool(
                subnet=_opt_str(pool.get("subnet")),
                ip_range=_opt_str(pool.get("ip_range")),
                gateway=_opt_str(pool.get("gateway")),
                aux_addresses=_text_map(pool.get("aux_addresses")),
            )
            for pool in ipam.get("config") or ()
            if isinstance(pool, Mapping)
        )
        return Network(
            key=key,
            name=self.resource_name(key, spec),
            driver=_opt_str(spec.get("driver")),
            driver_opts=_text_map(spec.get("driver_opts")),
            external=bool(spec.get("external")),
            internal=bool(spec.get("internal")),
            attachable=bool(spec.get("attachable")),
            enable_ipv4=spec.get("enable_ipv4"),
            enable_ipv6=spec.get("enable_ipv6"),
            ipam_driver=_opt_str(ipam.get("driver")),
            ipam_pools=pools,
            ipam_options=_text_map(ipam.get("options")),
            labels=_text_map(spec.get("labels")),
        )

    def volume(self, key: str, spec: Mapping, path: tuple) -> Volume:
        return Volume(
            key=key,
            name=self.resource_name(key, spec),
            driver=_opt_str(spec.get("driver")),
            driver_opts=_text_map(spec.get("driver_opts")),
            external=bool(spec.get("external")),
            labels=_text_map(spec.get("labels")),
        )

    def file_object(self, kind: type) -> Any:
        def build(key: str, spec: Mapping, path: tuple) -> Any:
            variable = _opt_str(spec.get("environment"))
            content = _opt_str(spec.get("content"))
            if variable is not None and content is None:
                content = env_lookup(self.env, variable)
            return kind(
                key=key,
                name=self.resource_name(key, spec),
                file=_opt_str(spec.get("file")),
                environment=variable,
                content=content,
                external=bool(spec.get("external")),
                labels=_text_map(spec.get("labels")),
            )

        return build

    # -- services --

    def service(self, name: str, spec: Mapping) -> Service:
        path = ("services", name)
        environment = self.environment(spec, path)
        hashed = dict(spec)
        hashed.pop("env_file", None)  # its content is in the resolved environment
        hashed["environment"] = dict(environment)
        deploy = spec.get("deploy") or {}
        scale = spec.get("scale", deploy.get("replicas"))
        return Service(
            name=name,
            image=_opt_str(spec.get("image")),
            build=self.build(spec.get("build"), (*path, "build")),
            command=_strings(spec["command"]) if spec.get("command") is not None else None,
            entrypoint=(
                _strings(spec["entrypoint"]) if spec.get("entrypoint") is not None else None
            ),
            environment=environment,
            env_files=tuple(
                str(item["path"]) for item in spec.get("env_file") or () if "path" in item
            ),
            labels=self.labels(spec, path),
            annotations=_text_map(spec.get("annotations")),
            ports=tuple(
                self.port(p, (*path, "ports", i))
                for i, p in enumerate(spec.get("ports") or ())
                if isinstance(p, Mapping)  # else a ${VAR} left by --no-interpolate
            ),
            expose=_strings(spec.get("expose")),
            volumes=tuple(
                self.mount(m, (*path, "volumes", i))
                for i, m in enumerate(spec.get("volumes") or ())
                if isinstance(m, Mapping)
            ),
            tmpfs=_strings(spec.get("tmpfs")),
            volumes_from=_strings(spec.get("volumes_from")),
            networks=FrozenMap(
                {
                    key: self.service_network(key, value or {}, (*path, "networks", key))
                    for key, value in (spec.get("networks") or {}).items()
                }
            ),
            network_mode=_opt_str(spec.get("network_mode")),
            links=_strings(spec.get("links")),
            external_links=_strings(spec.get("external_links")),
            depends_on=FrozenMap(
                {
                    key: DependsOn(
                        service=key,
                        condition=str(dep.get("condition", "service_started")),
                        required=bool(dep.get("required", True)),
                        restart=bool(dep.get("restart", False)),
                    )
                    for key, dep in (spec.get("depends_on") or {}).items()
                }
            ),
            healthcheck=self.healthcheck(spec.get("healthcheck"), (*path, "healthcheck")),
            restart=_opt_str(spec.get("restart")),
            restart_policy=self.restart_policy(deploy.get("restart_policy"), path),
            scale=self.replicas(scale, path),
            container_name=_opt_str(spec.get("container_name")),
            hostname=_opt_str(spec.get("hostname")),
            domainname=_opt_str(spec.get("domainname")),
            user=_opt_str(spec.get("user")),
            working_dir=_opt_str(spec.get("working_dir")),
            stop_signal=_opt_str(spec.get("stop_signal")),
            stop_grace_period=self.seconds(
                (*path, "stop_grace_period"), spec.get("stop_grace_period")
            ),
            tty=bool(spec.get("tty")),
            stdin_open=bool(spec.get("stdin_open")),
            privileged=bool(spec.get("privileged")),
            read_only=bool(spec.get("read_only")),
            init=spec.get("init"),
            cap_add=_strings(spec.get("cap_add")),
            cap_drop=_strings(spec.get("cap_drop")),
            security_opt=_strings(spec.get("security_opt")),
            group_add=_strings(spec.get("group_add")),
            sysctls=_text_map(spec.get("sysctls")),
            ulimits=self.ulimits(spec.get("ulimits"), (*path, "ulimits")),
            extra_hosts=self.extra_hosts(spec.get("extra_hosts")),
            dns=_strings(spec.get("dns")),
            dns_search=_strings(spec.get("dns_search")),
            dns_opt=_strings(spec.get("dns_opt")),
            devices=tuple(
                Device(
                    str(d["source"]),
                    str(d.get("target") or d["source"]),
                    d.get("permissions", "rwm"),
                )
                for d in spec.get("devices") or ()
                if isinstance(d, Mapping) and "source" in d
            ),
            ipc=_opt_str(spec.get("ipc")),
            pid=_opt_str(spec.get("pid")),
            uts=_opt_str(spec.get("uts")),
            cgroup=_opt_str(spec.get("cgroup")),
            cgroup_parent=_opt_str(spec.get("cgroup_parent")),
            userns_mode=_opt_str(spec.get("userns_mode")),
            shm_size=self.size((*path, "shm_size"), spec.get("shm_size")),
            pids_limit=self.convert((*path, "pids_limit"), spec.get("pids_limit"), int, "a number"),
            resources=self.resources_of(spec, path),
            logging=self.logging(spec.get("logging")),
            secrets=self.file_refs(spec.get("secrets")),
            configs=self.file_refs(spec.get("configs")),
            pull_policy=_opt_str(spec.get("pull_policy")),
            profiles=_strings(spec.get("profiles")),
            platform=_opt_str(spec.get("platform")),
            runtime=_opt_str(spec.get("runtime")),
            mac_address=_opt_str(spec.get("mac_address")),
            options=freeze({k: to_plain(v) for k, v in spec.items() if k not in _MODELED}),
            config_hash=service_config_hash(hashed),
        )

    def replicas(self, scale: Any, path: tuple) -> int:
        where = (*path, "scale") if "scale" in self.tree["services"][path[1]] else None
        count = self.convert(where or (*path, "deploy", "replicas"), scale, int, "a number")
        return 1 if count is None else count

    def environment(self, spec: Mapping, path: tuple) -> FrozenMap:
        """env_file(s) in order (later wins), then `environment:` (wins; None unsets)."""
        values: dict[str, str | None] = {}
        declared = spec.get("environment") or {}

        def lookup(variable: str) -> str | None:
            # The project environment first, then the service's own values (as compose).
            found = env_lookup(self.env, variable)
            if found is None and declared.get(variable) is not None:
                found = str(declared[variable])
            return found

        for index, entry in enumerate(spec.get("env_file") or ()):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("path"), str):
                continue
            values.update(
                self.read_variables(
                    entry["path"],
                    (*path, "env_file", index),
                    required=entry.get("required", True) is not False,
                    raw=entry.get("format") == "raw",
                    lookup=lookup,
                )
            )
        for key, value in declared.items():
            values[str(key)] = None if value is None else str(value)
        return FrozenMap({k: v for k, v in values.items() if v is not None})

    def labels(self, spec: Mapping, path: tuple) -> FrozenMap:
        """label_file(s) in order, then `labels:` (wins)."""
        values: dict[str, str] = {}
        for index, file_path in enumerate(spec.get("label_file") or ()):
            values.update(
                self.read_variables(
                    str(file_path),
                    (*path, "label_file", index),
                    required=True,
                    raw=False,
                    lookup=values.get,
                )
            )
        values.update(_text_map(spec.get("labels")))
        return FrozenMap(values)

    def read_variables(
        self, file_path: str, where: tuple, *, required: bool, raw: bool, lookup: Any
    ) -> dict[str, str]:
        """KEY=VALUE lines of an env or label file; problems are recorded, not raised."""
        from composer.loader.dotenv import parse_dotenv

        try:
            with open(file_path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            if required:
                self.problem(
                    f"{file_path} not found", where, "create it, or mark it `required: false`"
                )
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            self.problem(f"cannot read {file_path}: {exc}", where)
            return {}
        if raw:
            return _raw_env(text)
        try:
            parsed = parse_dotenv(text, display_name(file_path), lookup)
        except LoadError as error:
            self.problems.extend(error.problems)
            return {}
        return {key: item.value for key, item in parsed.items()}

    def port(self, spec: Mapping, path: tuple) -> Port:
        return Port(
            target=self.convert((*path, "target"), spec.get("target"), int, "a port") or 0,
            published=_opt_str(spec.get("published")) or None,
            host_ip=_opt_str(spec.get("host_ip")) or None,
            protocol=str(spec.get("protocol") or "tcp"),
            mode=str(spec.get("mode") or "ingress"),
            name=_opt_str(spec.get("name")),
            app_protocol=_opt_str(spec.get("app_protocol")),
        )

    def mount(self, spec: Mapping, path: tuple) -> Mount:
        bind = spec.get("bind") or {}
        volume = spec.get("volume") or {}
        tmpfs = spec.get("tmpfs") or {}
        return Mount(
            type=str(spec.get("type") or "volume"),
            target=str(spec.get("target") or ""),
            source=_opt_str(spec.get("source")) or None,
            read_only=bool(spec.get("read_only")),
            consistency=_opt_str(spec.get("consistency")),
            bind_propagation=_opt_str(bind.get("propagation")),
            bind_create_host_path=bool(bind.get("create_host_path")),
            bind_selinux=_opt_str(bind.get("selinux")),
            volume_nocopy=bool(volume.get("nocopy")),
            volume_subpath=_opt_str(volume.get("subpath")),
            tmpfs_size=self.size((*path, "tmpfs", "size"), tmpfs.get("size")),
            tmpfs_mode=self.convert((*path, "tmpfs", "mode"), tmpfs.get("mode"), int, "a mode"),
        )

    def service_network(self, key: str, spec: Mapping, path: tuple) -> ServiceNetwork:
        return ServiceNetwork(
            name=key,
            aliases=_strings(spec.get("aliases")),
            ipv4_address=_opt_str(spec.get("ipv4_address")),
            ipv6_address=_opt_str(spec.get("ipv6_address")),
            mac_address=_opt_str(spec.get("mac_address")),
            link_local_ips=_strings(spec.get("link_local_ips")),
            priority=self.convert((*path, "priority"), spec.get("priority"), int, "a number") or 0,
            gw_priority=self.convert(
                (*path, "gw_priority"), spec.get("gw_priority"), int, "a number"
            )
            or 0,
            interface_name=_opt_str(spec.get("interface_name")),
            driver_opts=_text_map(spec.get("driver_opts")),
        )

    def healthcheck(self, spec: Any, path: tuple) -> Healthcheck | None:
        if not isinstance(spec, Mapping):
            return None
        test = _strings(spec.get("test"))
        disable = bool(spec.get("disable")) or test == ("NONE",)
        return Healthcheck(
            test=test,
            interval=self.seconds((*path, "interval"), spec.get("interval")),
            timeout=self.seconds((*path, "timeout"), spec.get("timeout")),
            start_period=self.seconds((*path, "start_period"), spec.get("start_period")),
            start_interval=self.seconds((*path, "start_interval"), spec.get("start_interval")),
            retries=self.convert((*path, "retries"), spec.get("retries"), int, "a number"),
            disable=disable,
        )

    def restart_policy(self, spec: Any, path: tuple) -> RestartPolicy | None:
        if not isinstance(spec, Mapping):
            return None
        where = (*path, "deploy", "restart_policy")
        return RestartPolicy(
            condition=_opt_str(spec.get("condition")),
            delay=self.seconds((*where, "delay"), spec.get("delay")),
            max_attempts=self.convert(
                (*where, "max_attempts"), spec.get("max_attempts"), int, "a number"
            ),
            window=self.seconds((*where, "window"), spec.get("window")),
        )

    def build(self, spec: Any, path: tuple) -> Build | None:
        if not isinstance(spec, Mapping):
            return None
        return Build(
            context=str(spec.get("context") or self.project_dir),
            dockerfile=_opt_str(spec.get("dockerfile")),
            dockerfile_inline=_opt_str(spec.get("dockerfile_inline")),
            args=_text_map(spec.get("args")),
            target=_opt_str(spec.get("target")),
            labels=_text_map(spec.get("labels")),
            network=_opt_str(spec.get("network")),
            shm_size=self.size((*path, "shm_size"), spec.get("shm_size")),
            extra_hosts=self.extra_hosts(spec.get("extra_hosts")),
            cache_from=_strings(spec.get("cache_from")),
            cache_to=_strings(spec.get("cache_to")),
            no_cache=bool(spec.get("no_cache")),
            pull=bool(spec.get("pull")),
            platforms=_strings(spec.get("platforms")),
            tags=_strings(spec.get("tags")),
            secrets=self.file_refs(spec.get("secrets")),
            additional_contexts=_text_map(spec.get("additional_contexts")),
            ulimits=self.ulimits(spec.get("ulimits"), (*path, "ulimits")),
            privileged=bool(spec.get("privileged")),
        )

    def ulimits(self, spec: Any, path: tuple) -> FrozenMap:
        if not isinstance(spec, Mapping):
            return EMPTY
        limits = {}
        for name, limit in spec.items():
            if isinstance(limit, Mapping):
                soft = self.convert((*path, name, "soft"), limit.get("soft"), int, "a number")
                hard = self.convert((*path, name, "hard"), limit.get("hard"), int, "a number")
            else:
                soft = hard = self.convert((*path, name), limit, int, "a number")
            if soft is not None and hard is not None:
                limits[name] = Ulimit(name, soft, hard)
        return FrozenMap(limits)

    @staticmethod
    def extra_hosts(spec: Any) -> FrozenMap:
        if not isinstance(spec, Mapping):
            return EMPTY
        return FrozenMap({str(host): _strings(ips) for host, ips in spec.items()})

    @staticmethod
    def file_refs(spec: Any) -> tuple[FileReference, ...]:
        refs = []
        for ref in spec or ():
            if not isinstance(ref, Mapping) or "source" not in ref:
                continue
            refs.append(
                FileReference(
                    source=str(ref["source"]),
                    target=str(ref.get("target") or ref["source"]),
                    uid=_opt_str(ref.get("uid")),
                    gid=_opt_str(ref.get("gid")),
                    mode=ref.get("mode") if isinstance(ref.get("mode"), int) else None,
                )
            )
        return tuple(refs)

    @staticmethod
    def logging(spec: Any) -> Logging | None:
        if not isinstance(spec, Mapping):
            return None
        return Logging(_opt_str(spec.get("driver")), _text_map(spec.get("options")))

    def resources_of(self, spec: Mapping, path: tuple) -> Resources:
        deploy = spec.get("deploy") or {}
        resources = deploy.get("resources") or {}
        where = (*path, "deploy", "resources")

        def limits(kind: str, cpus_key: str, memory_key: str) -> Limits:
            given = resources.get(kind) or {}
            cpus = spec.get(cpus_key) if cpus_key else None
            cpus_path = (*path, cpus_key)
            if given.get("cpus") is not None:
                cpus, cpus_path = given["cpus"], (*where, kind, "cpus")
            memory = spec.get(memory_key)
            memory_path = (*path, memory_key)
            if given.get("memory") is not None:
                memory, memory_path = given["memory"], (*where, kind, "memory")
            pids = given.get("pids") if kind == "limits" else None
            return Limits(
                cpus=self.convert(cpus_path, cpus, float, "a number of CPUs"),
                memory=self.size(memory_path, memory),
                pids=self.convert((*where, kind, "pids"), pids, int, "a number"),
            )

        return Resources(
            limits=limits("limits", "cpus", "mem_limit"),
            reservations=limits("reservations", "", "mem_reservation"),
            memswap_limit=self.size((*path, "memswap_limit"), spec.get("memswap_limit")),
            mem_swappiness=self.convert(
                (*path, "mem_swappiness"), spec.get("mem_swappiness"), int, "a number"
            ),
            cpu_shares=self.convert((*path, "cpu_shares"), spec.get("cpu_shares"), int, "a number"),
            cpu_quota=self.convert((*path, "cpu_quota"), spec.get("cpu_quota"), int, "a number"),
            cpu_period=self.convert((*path, "cpu_period"), spec.get("cpu_period"), int, "a number"),
            cpuset=_opt_str(spec.get("cpuset")),
            oom_kill_disable=bool(spec.get("oom_kill_disable")),
            oom_score_adj=self.convert(
                (*path, "oom_score_adj"), spec.get("oom_score_adj"), int, "a number"
            ),
        )


def _raw_env(text: str) -> dict[str, str]:
    """`format: raw` env files: KEY=VALUE taken literally, no quotes or interpolation."""
    values = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value
    return values
