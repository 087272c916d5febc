"""Creating and removing one container of a service, with everything around it:
root filesystem, volumes, network namespace and addresses, published ports, DNS
records and the files that point the container at them."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from composer import labels as L
from composer.containers import check_host_sources, container_spec
from composer.model import Mount, Project, Service
from composer.ops.backend import Backend
from composer.plan import container_name

# In the container dir, written before anything else: whose it is and what to undo
# (netns, networks) if the command is killed before the engine knows the container.
RECORD = "composer.json"


def container_labels(
    project: Project, service: Service, number: int, image_id: str, oneoff: bool = False
) -> dict[str, str]:
    labels = dict(service.labels)
    labels.update(
        {
            L.PROJECT: project.name,
            L.SERVICE: service.name,
            L.NUMBER: str(number),
            L.CONFIG_HASH: service.config_hash,
            L.IMAGE: image_id,
            L.ONEOFF: str(oneoff),
            L.WORKING_DIR: project.project_dir,
            L.CONFIG_FILES: ",".join(project.config_files),
        }
    )
    return labels


def _volume_name(project: Project, mount: Mount) -> str:
    if mount.source and mount.source in project.volumes:
        return project.volumes[mount.source].name
    if mount.source:
        return mount.source
    return os.urandom(16).hex()  # anonymous: found again by its label, not its name


def stop_timeout(service: Service | None, requested: float | None) -> float:
    """-t if given, else the service's stop_grace_period, else docker's 10 s."""
    if requested is not None:
        return requested
    if service is not None and service.stop_grace_period is not None:
        return service.stop_grace_period
    return 10.0


def restart_policy(service: Service) -> str | None:
    """`restart:`, else deploy.restart_policy in the same words."""
    if service.restart:
        return service.restart
    policy = service.restart_policy
    if policy is None or not policy.condition:
        return None
    if policy.condition == "any":
        return "always"
    if policy.condition == "on-failure":
        return f"on-failure:{policy.max_attempts}" if policy.max_attempts else "on-failure"
    return "no"


def restart_timing(service: Service) -> dict:
    """deploy.restart_policy's delay, window and max_attempts (for any condition) as
    Engine.create takes them; none when `restart:` is set, which keeps docker's backoff."""
    policy = service.restart_policy
    if service.restart or policy is None:
        return {}
    return {
        "restart_delay": policy.delay,
        "restart_window": policy.window,
        "restart_max_attempts": policy.max_attempts or None,
    }


def healthcheck(service: Service, image_config: dict):
    """The service's healthcheck, else the image's HEALTHCHECK (NONE and `disable`
    are the shim's to read)."""
    if service.healthcheck is not None:
        return service.healthcheck
    image_check = image_config.get("Healthcheck") or {}
    test = image_check.get("Test") or []
    if not test:
        return None

    def seconds(key: str) -> float | None:
        value = image_check.get(key)
        return value / 1e9 if value else None  # image configs count nanoseconds

    return {
        "test": list(test),
        "interval": seconds("Interval"),
        "timeout": seconds("Timeout"),
        "start_period": seconds("StartPeriod"),
        "start_interval": seconds("StartInterval"),
        "retries": image_check.get("Retries") or None,
    }


def _network_mode(project: Project, service: Service, backend: Backend) -> tuple[str, str | None]:
    """("bridge"|"none"|"host"|"join", netns path to join)."""
    mode = service.network_mode
    if mode in ("none", "host"):
        return mode, None
    if mode and mode.startswith(("service:", "container:")):
        kind, _, target = mode.partition(":")
        if kind == "service":
            candidates = [
                c
                for c in backend.containers(project.name)
                if (c.get("labels") or {}).get(L.SERVICE) == target and c.get("status") == "running"
            ]
        else:
            candidates = [backend.engine.inspect(target)]
        if not candidates or not candidates[0].get("pid"):
            raise RuntimeError(f"service {service.name}: network_mode {mode}: it is not running")
        return "join", f"/proc/{candidates[0]['pid']}/ns/net"
    return "bridge", None


def create(
    project: Project,
    service: Service,
    number: int,
    image,
    backend: Backend,
    *,
    name: str | None = None,
    oneoff: bool = False,
    stdin_once: bool = False,
    networks_ready: Callable[[], object] | None = None,
) -> str:
    """Create (not start) container `number` of service; return its id.

    stdin_once: the container's input ends with its first client's (an attached `run`).
    networks_ready: waits until the project's networks exist (up makes them meanwhile).
    """
    from runtime.engine import new_container_id
    from runtime.images.rootfs import prepare_rootfs

    check_host_sources(project, service)  # before anything is made that must be undone
    mode, join_path = _network_mode(project, service, backend)
    container_id = new_container_id()
    directory = backend.container_dir(container_id)
    directory.mkdir(parents=True)
    bridged = mode == "bridge"
    # One write before anything is made, naming all that undo may have to take down
    # (undoing what was never made is a no-op); a write per step cost ~5 ms of fsync each.
    _write_record(
        directory,
        {
            "project": project.name,
            "pid": os.getpid(),
            "netns": str(directory / "netns") if bridged else None,
            "networks": [project.networks[a.name].name for a in _attachments(service)]
            if bridged
            else [],
        },
    )
    name = name or container_name(project, service, number)
    hostname = service.hostname or name
    try:
        rootfs = str(prepare_rootfs(image, directory, backend.store, volatile=True))
        image_config = image.config.get("config") or {}

        def volume_path(mount: Mount) -> str:
            volume = _volume_name(project, mount)
            labels = {L.PROJECT: project.name}
            if not mount.source:
                labels["io.composer.anonymous"] = container_id
            backend.volumes.create(volume, labels=labels)
            if not mount.volume_nocopy:
                backend.volumes.fill_from_image(volume, rootfs, mount.target)
            return backend.volumes.mountpoint(volume)

        namespaces: dict[str, str] = {}
        extra_binds = []
        netns = None
        if mode == "host":
            namespaces["network"] = "host"
        elif mode == "join":
            namespaces["network"] = join_path
        elif mode == "bridge":
            from runtime.network.netns import create_netns

            netns = create_netns(directory / "netns")  # the record names it already
            namespaces["network"] = netns
            extra_binds.extend(_name_files(directory, hostname, bool(_attachments(service))))
        extra_binds.extend(_file_grants(project, service, directory))
        spec = container_spec(
            service,
            image_config,
            rootfs=rootfs,
            hostname=hostname,
            volume_path=volume_path,
            extra_binds=tuple(extra_binds),
            namespaces=namespaces,
        )
        backend.engine.create(
            spec,
            name=name,
            labels=container_labels(project, service, number, image.digest, oneoff),
            stop_signal=service.stop_signal or image_config.get("StopSignal"),
            restart=None if oneoff else restart_policy(service),
            **({} if oneoff else restart_timing(service)),
            stdin_open=service.stdin_open,
            stdin_once=stdin_once,  # `run`: the container's input ends with the user's
            healthcheck=healthcheck(service, image_config),
            container_id=container_id,
        )
        if netns is not None:
            # Wired last: while up is still making a new network's bridge, the rest of
            # the container is made meanwhile.
            if networks_ready is not None:
                networks_ready()
            _wire_network(project, service, container_id, name, hostname, directory, backend)
    except BaseException:
        if (directory / "state.json").exists():
            with contextlib.suppress(Exception):
                backend.engine.remove(container_id, force=True)
        undo(container_id, directory, backend, project.name)
        raise
    return container_id


def ensure_startable(
    project: Project, service: Service, info: dict, backend: Backend, networks_ready=None
) -> None:
    """Remake what a restart of the machine took from a container that was made before it:
    the mount of its root filesystem, and its network namespace with addresses, DNS records
    and published ports. Nothing is done for a container whose mounts are there."""
    from composer.ops.project import OperationError
    from runtime.images.rootfs import is_mounted, prepare_rootfs
    from runtime.network.netns import create_netns, is_netns

    container_id = info["id"]
    directory = backend.container_dir(container_id)
    rootfs = directory / "rootfs"
    if rootfs.is_dir() and not is_mounted(rootfs):
        digest = (info.get("labels") or {}).get(L.IMAGE)
        image = backend.store.resolve(digest) if digest else None
        if image is None:
            raise OperationError(
                f"container {info.get('name')}: its image {digest} is gone; "
                "`up --force-recreate` makes it anew"
            )
        prepare_rootfs(image, directory, backend.store, volatile=True)
    netns = read_record(directory).get("netns")
    if netns and not is_netns(netns):
        create_netns(netns)
        if networks_ready is not None:
            networks_ready()
        hostname = (directory / "hostname").read_text().strip()
        _wire_network(project, service, container_id, info["name"], hostname, directory, backend)


def _wire_network(
    project: Project,
    service: Service,
    container_id: str,
    name: str,
    hostname: str,
    directory: Path,
    backend: Backend,
) -> None:
    """Addresses, DNS records and published ports; /etc/resolv.conf and /etc/hosts are
    written into the files _name_files made (in place: the bundle binds them)."""
    from runtime.network import dns, dns_records

    netns = str(directory / "netns")
    first = None
    addresses: list[str] = []
    for index, attachment in enumerate(_attachments(service)):
        network = project.networks[attachment.name]
        aliases = [service.name, *attachment.aliases]
        result = backend.networks.attach(
            container_id,
            netns,
            network.name,
            ipv4=attachment.ipv4_address,
            ipv6=attachment.ipv6_address,
            mac=attachment.mac_address or service.mac_address,
            ifname=attachment.interface_name or f"eth{index}",
            aliases=aliases,
            priority=attachment.priority,
        )
        ips = [ip for ip in (result.ipv4, result.ipv6) if ip]
        addresses.extend(ips)
        dns_records.add_container(
            project.name,
            network.name,
            container_id,
            name,
            service.name,
            ips,
            aliases,
            hostname,
            dns=list(service.dns),
            root=backend.root,
        )
        if first is None:
            first = (network, result)
    if first and service.ports:
        backend.networks.publish(
            container_id, first[0].name, service.ports, service=f"{project.name}/{service.name}"
        )
    if first:
        # The bridge's address: the name server listens there even on internal networks,
        # where the container has no default route (the attachment has no gateway).
        gateway = backend.networks.inspect(first[0].name).gateway.split("/")[0]
        (directory / "resolv.conf").write_text(
            dns.resolv_conf(
                gateway, list(service.dns), list(service.dns_search), list(service.dns_opt)
            )
        )
        extra = {host: ips[0] for host, ips in service.extra_hosts.items() if ips}
        (directory / "hosts").write_text(dns.hosts_file(hostname, addresses, extra, gateway))


def _name_files(directory: Path, hostname: str, networked: bool) -> list:
    """/etc/hostname of a bridged container and, when it has networks, /etc/resolv.conf
    and /etc/hosts: binds of files in its directory, the last two filled in (in place)
    when it is wired."""
    from runtime.oci.spec import Bind

    (directory / "hostname").write_text(hostname + "\n")
    binds = [Bind(str(directory / "hostname"), "/etc/hostname")]
    if networked:
        for name in ("resolv.conf", "hosts"):
            (directory / name).touch()
        binds[:0] = [
            Bind(str(directory / "resolv.conf"), "/etc/resolv.conf"),
            Bind(str(directory / "hosts"), "/etc/hosts"),
        ]
    return binds


def _attachments(service: Service) -> list:
    """The service's networks in the order its interfaces get them (eth0 first)."""
    return sorted(service.networks.values(), key=lambda n: (-n.priority, n.name))


def _file_grants(project: Project, service: Service, directory: Path) -> list:
    """Secrets and configs as read-only files at their targets: a file source is bound
    as it is; content (inline or from the environment) is written with mode/uid/gid."""
    from runtime.oci.spec import Bind

    binds = []
    for kind, defined, default_mode in (
        ("secrets", project.secrets, 0o444),
        ("configs", project.configs, 0o444),
    ):
        for grant in getattr(service, kind):
            resource = defined[grant.source]
            if resource.file:
                source = resource.file
            else:
                folder = directory / kind
                folder.mkdir(mode=0o700, exist_ok=True)
                source = folder / grant.source
                source.write_text(resource.content or "")
                os.chmod(source, grant.mode if grant.mode is not None else default_mode)
                uid = int(grant.uid) if grant.uid and str(grant.uid).isdigit() else 0
                gid = int(grant.gid) if grant.gid and str(grant.gid).isdigit() else 0
                os.chown(source, uid, gid)
            binds.append(Bind(str(source), grant.target, readonly=True))
    return binds


def lifecycle_hooks(service: Service, kind: str) -> list[dict]:
    """post_start or pre_stop hooks as {argv, user, env, cwd, privileged}."""
    import shlex

    hooks = []
    for hook in service.options.get(kind) or ():
        command = hook.get("command")
        argv = shlex.split(command) if isinstance(command, str) else list(command or ())
        env = hook.get("environment") or {}
        if not isinstance(env, dict):
            env = dict(item.split("=", 1) for item in env if "=" in item)
        hooks.append(
            {
                "argv": argv,
                "user": hook.get("user"),
                "env": dict(env),
                "cwd": hook.get("working_dir"),
                "privileged": bool(hook.get("privileged")),
            }
        )
    return hooks


def run_hooks(backend: Backend, container_id: str, service: Service, kind: str) -> None:
    """Run the service's post_start / pre_stop hooks in the container, in order."""
    import subprocess

    from composer.ops.project import OperationError

    for hook in lifecycle_hooks(service, kind):
        code = backend.engine.exec(
            container_id,
            hook["argv"],
            env=hook["env"] or None,
            user=hook["user"],
            cwd=hook["cwd"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if code != 0:
            raise OperationError(
                f"service {service.name}: {kind} hook `{' '.join(hook['argv'])}` exited "
                f"with code {code}"
            )


def _write_record(directory: Path, record: dict) -> None:
    from runtime.state import atomic_write_json

    # Not fsynced: it guides the undo of a killed command, whose namespaces and mounts a
    # crash of the machine takes down anyway (the network records' sweep does the rest).
    atomic_write_json(directory / RECORD, record, durable=False)


def read_record(directory: Path) -> dict:
    try:
        return json.loads((directory / RECORD).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def being_created(directory: Path) -> bool:
    """True while the command creating this container is still alive."""
    from runtime.state import pid_alive

    if (directory / "state.json").exists():
        return False
    return pid_alive(read_record(directory).get("pid"))


def undo(container_id: str, directory: Path, backend: Backend, project: str) -> None:
    """Everything around a container that is not the engine's: ports, addresses, DNS,
    its network namespace, its root filesystem. Idempotent."""
    from runtime.network import dns_records
    from runtime.network.netns import remove_netns

    record = read_record(directory)
    if record.get("netns"):
        with contextlib.suppress(Exception):
            backend.networks.unpublish(container_id)
        for network in record.get("networks", []):
            with contextlib.suppress(Exception):
                # The veths end with the namespace, unpinned just below.
                backend.networks.detach(container_id, network, namespace_going=True)
        dns_records.remove_container(project, container_id, root=backend.root)
        remove_netns(record["netns"])
    (directory / RECORD).unlink(missing_ok=True)
    if (directory / "rootfs").is_dir():
        from runtime.images.rootfs import release_rootfs

        release_rootfs(directory, backend.root)
    if directory.exists() and not (directory / "state.json").exists():
        import shutil

        shutil.rmtree(directory, ignore_errors=True)


def remove(
    info: dict,
    backend: Backend,
    *,
    timeout: float | None = None,
    volumes: bool = False,
    service: Service | None = None,
) -> str | None:
    """Stop (if running) and remove a container and everything composer made for it;
    return how the stop went when it was not the plain signal-and-exit."""
    stop_reason = stop_and_release(info, backend, timeout=timeout, service=service)
    delete(info, backend, volumes=volumes)
    return stop_reason


def stop_and_release(
    info: dict, backend: Backend, *, timeout: float | None = None, service: Service | None = None
) -> str | None:
    """The first half of `remove`: stop the container and take back what composer made
    for it (addresses, ports, DNS records, namespace, root filesystem). After it the
    container holds nothing of its networks, which may then go."""
    container_id = info["id"]
    stop_reason = None
    if info.get("status") == "running":
        if service is not None:
            with contextlib.suppress(Exception):  # a failing pre_stop must not block removal
                run_hooks(backend, container_id, service, "pre_stop")
        reply = backend.engine.stop(container_id, timeout=stop_timeout(service, timeout))
        stop_reason = (reply or {}).get("stop_reason")
    project = (info.get("labels") or {}).get(L.PROJECT, "")
    undo(container_id, backend.container_dir(container_id), backend, project)
    return stop_reason


def delete(info: dict, backend: Backend, *, volumes: bool = False) -> None:
    """The second half of `remove`: the engine deletes the container (and with
    volumes=True its anonymous volumes go too)."""
    container_id = info["id"]
    backend.engine.remove(container_id, force=True)
    if volumes:
        for record in backend.volumes.list({"io.composer.anonymous": container_id}):
            backend.volumes.remove(record["name"])
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(backend.container_dir(container_id))
