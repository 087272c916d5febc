"""A Compose service, with its image's defaults, as the runtime's ContainerSpec.

Docker's rules for combining the two: an `entrypoint:` in the file drops the
image's CMD unless `command:` is also given; the file's environment is laid
over the image's Env; user names are looked up in the image's /etc/passwd.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from composer.exit_codes import FAILURE as EXIT_FAILURE
from composer.loader.errors import LoadError, Problem
from composer.model import Mount, Project, Service

if TYPE_CHECKING:
    from runtime.oci.spec import ContainerSpec

# tini's static build: bind-mounted into any image, whatever its C library.
TINI = "/usr/bin/tini-static"


class ServiceSpecError(Exception):
    """A service that cannot be turned into a container (e.g. an unknown user)."""


class MissingSourceError(LoadError, ServiceSpecError):
    """Host files the project names are not there: shown like a loader error, with the
    file, line and column that name them; the command failed (exit 1, as docker compose),
    the files themselves loaded."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems, exit_code=EXIT_FAILURE)


def check_host_sources(project: Project, service: Service) -> None:
    """Before a container of service is made: create the missing bind sources the file
    allows to be created, and fail, listing each at its place in the files, for any other
    host path the container needs that does not exist (bind sources, secret and config
    files).

    Docker compose's rule for binds: the short syntax creates a missing source (as
    `create_host_path: true`), so does the long syntax with a `bind:` block that does not
    say otherwise; the long syntax without one, or with `create_host_path: false`, does not.
    """
    positions = project.positions
    problems: list[Problem] = []
    for index, mount in enumerate(service.volumes):
        if mount.type != "bind" or os.path.exists(mount.source or ""):
            continue
        if mount.bind_create_host_path:
            os.makedirs(mount.source or "", exist_ok=True)
            continue
        where = ("services", service.name, "volumes", index)
        problems.append(
            positions.problem(
                f"bind source {mount.source} does not exist",
                where,
                mark_path=(*where, "source"),
                value=mount.source,
                hint="create it, or set bind.create_host_path: true",
            )
        )
    for kind, defined in (("secrets", project.secrets), ("configs", project.configs)):
        for grant in getattr(service, kind):
            resource = defined.get(grant.source)
            if resource is None or not resource.file or os.path.exists(resource.file):
                continue
            problems.append(
                positions.problem(
                    f"{kind[:-1]} file {resource.file} does not exist "
                    f"(service {service.name} uses it)",
                    (kind, grant.source, "file"),
                    value=resource.file,
                )
            )
    if problems:
        raise MissingSourceError(problems)


def check_build_context(project: Project, service: Service) -> None:
    """A local build context must be a directory; else fail at the line that names it."""
    from composer.loader.normalize import looks_remote

    build = service.build
    if build is None or looks_remote(build.context) or os.path.isdir(build.context):
        return
    where = ("services", service.name, "build", "context")
    problem = project.positions.problem(
        f"build context {build.context} is not a directory", where, value=build.context
    )
    raise MissingSourceError([problem])


def command_line(service: Service, image_config: Mapping[str, Any]) -> list[str]:
    entrypoint = (
        list(service.entrypoint)
        if service.entrypoint is not None
        else list(image_config.get("Entrypoint") or [])
    )
    if service.command is not None:
        command = list(service.command)
    elif service.entrypoint is not None:
        command = []  # a new entrypoint drops the image's CMD, as docker does
    else:
        command = list(image_config.get("Cmd") or [])
    args = entrypoint + command
    if not args:
        raise ServiceSpecError(
            f"service {service.name!r}: no command: its image has no CMD or ENTRYPOINT "
            "and the service sets neither"
        )
    return args


def environment(service: Service, image_config: Mapping[str, Any]) -> list[str]:
    merged: dict[str, str] = {}
    for item in image_config.get("Env") or []:
        key, _, value = item.partition("=")
        merged[key] = value
    merged.update({k: v for k, v in service.environment.items() if v is not None})
    return [f"{k}={v}" for k, v in merged.items()]


def _lookup(path: str, name: str, field: int) -> tuple[int, int] | None:
    """(id, primary gid) of name in a passwd/group file, or None."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.rstrip("\n").split(":")
                if len(parts) > field and parts[0] == name:
                    gid = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else int(parts[2])
                    return int(parts[2]), gid
    except OSError:
        return None
    return None


def resolve_user(user: str | None, rootfs: str) -> tuple[int, int]:
    """uid and gid for `user[:group]`, names looked up in the container's files."""
    if not user:
        return 0, 0
    name, _, group = user.partition(":")
    if name.isdigit():
        uid, gid = int(name), 0
        found = None
    else:
        found = _lookup(os.path.join(rootfs, "etc/passwd"), name, 3)
        if found is None:
            raise ServiceSpecError(f"user {name!r} is not in the image's /etc/passwd")
        uid, gid = found
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            entry = _lookup(os.path.join(rootfs, "etc/group"), group, 2)
            if entry is None:
                raise ServiceSpecError(f"group {group!r} is not in the image's /etc/group")
            gid = entry[0]
    return uid, gid


def _tmpfs_entry(text: str):
    from runtime.oci.spec import Tmpfs

    target, _, options = text.partition(":")
    size = mode = None
    rest = []
    for option in filter(None, options.split(",")):
        key, _, value = option.partition("=")
        if key == "size":
            from composer.loader.normalize import parse_bytes

            size = parse_bytes(value)
        elif key == "mode":
            mode = int(value, 8)
        else:
            rest.append(option)
    return Tmpfs(target=target, size=size, mode=mode, options=tuple(rest))


def container_spec(
    service: Service,
    image_config: Mapping[str, Any],
    *,
    rootfs: str,
    hostname: str,
    volume_path: Any,
    extra_binds: tuple = (),
    namespaces: Mapping[str, str] | None = None,
) -> ContainerSpec:
    """The ContainerSpec for one container of service (check_host_sources has run).

    volume_path(mount) gives the host directory of a named or anonymous volume.
    extra_binds: generated files (resolv.conf, hosts, secrets …) as runtime Binds.
    """
    from runtime.oci.spec import Bind, ContainerSpec, Device, Resources

    uid, gid = resolve_user(service.user or image_config.get("User"), rootfs)
    binds: list[Bind] = []
    tmpfs = [_tmpfs_entry(text) for text in service.tmpfs]
    for mount in service.volumes:
        binds_or_tmpfs = _mount(mount, volume_path)
        if isinstance(binds_or_tmpfs, Bind):
            binds.append(binds_or_tmpfs)
        elif binds_or_tmpfs is not None:
            tmpfs.append(binds_or_tmpfs)
    binds.extend(extra_binds)
    limits = service.resources.limits
    resources = Resources(
        memory=limits.memory,
        memory_reservation=service.resources.reservations.memory,
        memory_swap=service.resources.memswap_limit,
        cpu_shares=service.resources.cpu_shares,
        cpu_quota=service.resources.cpu_quota,
        cpu_period=service.resources.cpu_period,
        cpus=limits.cpus,
        cpuset=service.resources.cpuset,
        pids_limit=service.pids_limit or limits.pids,
    )
    return ContainerSpec(
        rootfs=rootfs,
        args=command_line(service, image_config),
        env=environment(service, image_config),
        cwd=service.working_dir or image_config.get("WorkingDir") or "/",
        uid=uid,
        gid=gid,
        hostname=service.hostname or hostname,
        domainname=service.domainname,
        terminal=service.tty,
        readonly_rootfs=service.read_only,
        cap_add=list(service.cap_add),
        cap_drop=list(service.cap_drop),
        privileged=service.privileged,
        no_new_privileges="no-new-privileges:true" in service.security_opt
        or "no-new-privileges" in service.security_opt,
        seccomp="unconfined" if "seccomp:unconfined" in service.security_opt else "default",
        sysctls={k: str(v) for k, v in service.sysctls.items()},
        rlimits={u.name: (u.soft, u.hard) for u in service.ulimits.values()} or None,
        oom_score_adj=service.resources.oom_score_adj,
        shm_size=service.shm_size,
        tmpfs=tmpfs,
        binds=binds,
        devices=[Device(d.source, d.target, d.permissions) for d in service.devices],
        resources=resources,
        namespaces=dict(namespaces or {}),
        init=TINI if service.init else None,
    )


def _mount(mount: Mount, volume_path: Any):
    from runtime.oci.spec import Bind

    if mount.type == "bind":
        options = (mount.bind_propagation,) if mount.bind_propagation else ()
        return Bind(mount.source or "", mount.target, mount.read_only, options)
    if mount.type == "volume":
        source = volume_path(mount)
        if mount.volume_subpath:
            source = os.path.join(source, mount.volume_subpath)
        return Bind(source, mount.target, mount.read_only)
    if mount.type == "tmpfs":
        from runtime.oci.spec import Tmpfs

        return Tmpfs(target=mount.target, size=mount.tmpfs_size, mode=mount.tmpfs_mode)
    return None
