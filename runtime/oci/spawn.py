"""Making the container's processes: `create` (its init) and `exec` (one more process).

Usually `create` clones once: the container's PID 1 is born in its new namespaces and
cgroup (clone3), joins the v1 hierarchies, sets up the root filesystem and the process,
reports ready, then blocks reading exec.fifo until `start` (runtime.oci.container).
Where that cannot be (namespaces joined by path, a user namespace to map, time offsets,
execCPUAffinity.initial; see _clones_directly) it forks twice: stage 1 is born in the
cgroup, joins or unshares the namespaces (the parent maps a new user namespace) and forks
stage 2, the init. Capabilities and the seccomp program (BPF, cached per profile) are
worked out by the parent before any fork.
"""

import os
import sys

from runtime import state as disk
from runtime.oci import linux, syscalls
from runtime.oci.container import (
    EXEC_DONE,
    EXEC_FIFO,
    OCI_VERSION,
    ContainerError,
    _cgroup,
    _destroy_cgroup,
    _dir,
    _forget_cgroup,
    _kill_quietly,
    _load,
    _now,
    _reap,
    _remove_tree,
    _save,
    _write_pid_file,
    delete,
    exec_process_config,
    finish_start,
    has_hooks,
    load_config,
    oci_state,
    status_of,
    wait_exit_code,
)
from runtime.state import process_start_time


class _Channel:
    """JSON lines over a pair of pipes: messages from the container's stages and replies."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd, self.write_fd = read_fd, write_fd
        self._buffer = b""

    def send(self, message: dict) -> None:
        data = (disk.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(self.write_fd, data) :]

    def recv(self) -> dict | None:
        while b"\n" not in self._buffer:
            chunk = os.read(self.read_fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return disk.loads(line)

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def _pipe_pair() -> tuple[_Channel, _Channel]:
    """(parent end, child end)."""
    down_r, down_w = os.pipe()
    up_r, up_w = os.pipe()
    return _Channel(up_r, down_w), _Channel(down_r, up_w)


def create_container(
    root: str,
    container_id: str,
    bundle: str,
    pid_file: str | None = None,
    console_socket: str | int | None = None,
    preserve_fds: int = 0,
    config: dict | None = None,
    start: bool = False,
) -> dict:
    """Set up the container, its process waiting for `start`; return its record (state.json)
    for an at-once `start`. `console_socket`: a unix socket path or a connected fd for the
    pty master; `preserve_fds`: the caller's fds 3 .. 3+N-1 stay open in the container.

    `config`: the bundle's config.json when the caller has read it already. `start`: start
    it too (`run`): the init is let go first and execs while its record is written.
    """
    bundle = os.path.abspath(bundle)
    if config is None:
        config = load_config(bundle)
    linux_cfg = config.get("linux") or {}
    try:
        linux.check_config(config)
        joins, new_flags = linux.namespace_plan(linux_cfg.get("namespaces") or [])
        caps = config["process"].get("capabilities")
        masks = linux.capability_masks(caps) if caps is not None else None
        seccomp_program = _seccomp_program(linux_cfg.get("seccomp"))
    except ValueError as err:
        raise ContainerError(f"config.json: {err}") from None
    if config["process"].get("terminal") and not console_socket:
        raise ContainerError("process.terminal needs --console-socket")

    state_dir = _dir(root, container_id)
    try:
        try:
            os.mkdir(state_dir, 0o700)
        except FileNotFoundError:  # the first container under this root
            os.makedirs(root, mode=0o700, exist_ok=True)
            os.mkdir(state_dir, 0o700)
    except FileExistsError:
        raise ContainerError(f"container {container_id!r} already exists") from None
    record = {
        "ociVersion": config.get("ociVersion", OCI_VERSION),
        "id": container_id,
        "status": "creating",
        "bundle": bundle,
        "annotations": config.get("annotations") or {},
        "creator": os.getpid(),
        "start_time": process_start_time(os.getpid()),
        "created": _now(),
        "config": config,
    }
    # runtime-spec: no mount namespace listed means the runtime's: the init mounts below
    # the rootfs right here and chroots. What was mounted there before is recorded first,
    # so that delete finds what this create made even if it never finished.
    host_mounts = not own_mount_namespace(config)
    if host_mounts:
        rootfs = os.path.realpath(os.path.join(bundle, config["root"]["path"]))
        record.update(rootfs=rootfs, mounts_before=linux.mounts_below(rootfs))
    _save(root, record)
    cgroup = None
    pid = 0
    done_read = -1  # `start`: our end of the pipe that stands in for exec.done
    try:
        cgroup = _cgroup(config, container_id)  # made by _spawn
        spawn_args = (config, bundle, record, joins, new_flags, masks, seccomp_program, state_dir)
        pid, done_read = _spawn(*spawn_args, console_socket, cgroup, preserve_fds, start)
        if cgroup.made_parents:  # parents of a nested cgroupsPath: delete removes them too
            record["cgroup_parents"] = cgroup.made_parents
        if host_mounts:
            record["mounts"] = linux.mounts_made(record)
    except BaseException:
        # Best effort: the error that brought us here is the one to report.
        if done_read >= 0:
            os.close(done_read)
        if pid:
            _kill_quietly(pid)
        if host_mounts:
            for warning in linux.unmount_all(linux.mounts_made(record)):
                print(f"composer-runtime: warning: cleanup: {warning}", file=sys.stderr)
        if cgroup is not None:
            _forget_cgroup(config, container_id)
            try:
                _destroy_cgroup(cgroup)
                cgroup.remove_parents(cgroup.made_parents)
            except Exception as err:
                print(f"composer-runtime: warning: cleanup: {err}", file=sys.stderr)
        _remove_tree(state_dir)
        raise
    if record.get("pid") != pid:  # stage 1 forked it: not read yet
        record.update(pid=pid, start_time=process_start_time(pid))
    record["status"] = "created"
    record.pop("creator")
    if start:
        _save_and_start(root, record, done_read)
        return record
    _save(root, record, syscalls.rename_exchange)
    if pid_file:
        try:
            _write_pid_file(pid_file, pid)
        except OSError:
            delete(root, container_id, force=True)  # a caller without the pid cannot manage it
            raise
    return record


def _save_and_start(root: str, record: dict, done_read: int) -> None:
    """`run`: the init, released already, execs while its record is written; then wait for
    the exec. No fifo ever existed, so from outside the container goes from creating to
    running, as `start` right after `create` looks."""
    try:
        _save(root, record, syscalls.rename_exchange)
    except BaseException:
        os.close(done_read)
        delete(root, record["id"], force=True, record=record)
        raise
    try:
        finish_start(root, record, done_read)
    except BaseException:
        delete(root, record["id"], force=True, record=record)
        raise


def _init_fds(state_dir: str, start: bool) -> tuple[tuple[int, int], tuple[int, ...]]:
    """(the init's exec.fifo and exec.done ends, ours to keep). `start` (run): pipes
    instead, the byte that lets the init exec already in the first, so it goes on from
    "ready" to its program without a round trip through us; ours is exec.done's end.
    Else the fifos of runtime.oci.container, opened O_RDWR: opening never blocks, and
    the init is reader and writer of its own fifos."""
    if start:
        exec_read, exec_write = os.pipe()
        try:
            os.write(exec_write, b"0")
        finally:
            os.close(exec_write)
        done_read, done_write = os.pipe()
        return (exec_read, done_write), (done_read,)
    fds = []
    for name in (EXEC_FIFO, EXEC_DONE):
        path = os.path.join(state_dir, name)
        os.mkfifo(path, 0o600)
        fds.append(os.open(path, os.O_RDWR | os.O_CLOEXEC))
    return (fds[0], fds[1]), ()


def own_mount_namespace(config: dict) -> bool:
    """Whether the container gets a mount namespace (new or joined), not the runtime's."""
    namespaces = (config.get("linux") or {}).get("namespaces") or ()
    return any(entry.get("type") == "mount" for entry in namespaces)


def _spawn(
    config,
    bundle,
    record,
    joins,
    new_flags,
    masks,
    seccomp_program,
    state_dir,
    console_socket,
    cgroup,
    keep_fds,
    start=False,
):
    """Make the init (see the module's docstring) and wait until it is ready. Returns its
    pid and, with `start`, our end of its exec.done pipe (else -1)."""
    fifo_fds, ours = _init_fds(state_dir, start)
    console_fd = -1
    channels: tuple = ()
    stage1 = 0
    try:
        console_fd = _connect(console_socket) if console_socket else -1
        parent, child = channels = _pipe_pair()
        init = (config, bundle, new_flags, masks, seccomp_program, fifo_fds, console_fd)
        # A mount namespace joined by path may show other mounts than ours
        mountinfo = None if any(kind == "mount" for kind, _ in joins) else cgroup.layout.mountinfo
        init += (cgroup.dirs(), mountinfo, keep_fds)
        cloned = None
        if _clones_directly(config, joins, new_flags):
            if cgroup.layout.unified:  # the one the init is born in; the rest comes after
                cgroup.create(cgroup.layout.unified)
            cloned = _clone_init(cgroup, new_flags)
        if cloned is not None:
            pid, to_join = cloned
            if pid == 0:
                _close_in_child(parent, ours)
                _run_child(child, _direct_init, to_join, init)
            record.update(pid=pid, start_time=process_start_time(pid))
        else:
            _finish_cgroup(cgroup, config)
            stage1, to_join = _fork_into(cgroup)
            if stage1 == 0:
                _close_in_child(parent, ours)
                _run_child(child, _stage1, to_join, joins, init)
    except BaseException:  # no init was made: every fd here is still ours alone
        for fd in (*fifo_fds, *ours, console_fd):
            if fd >= 0:
                os.close(fd)
        for channel in channels:
            channel.close()
        raise
    child.close()
    for fd in fifo_fds:
        os.close(fd)
    if console_fd >= 0:
        os.close(console_fd)
    ready = False
    try:
        if cloned is not None:  # the init mounts meanwhile; it joins once told
            _finish_cgroup(cgroup, config)
            try:
                parent.send({"type": "cgroup"})
            except BrokenPipeError:
                pass  # the init failed already: _supervise_create reads why
        pid = _supervise_create(parent, config, record, stage1)
        ready = True
    finally:
        parent.close()
        if not ready:
            for fd in ours:
                os.close(fd)
        if stage1:
            _reap(stage1)
        elif not ready:  # our own child: end it here, the caller cannot know its pid
            _kill_quietly(record["pid"])
            _reap(record["pid"])
    return pid, ours[0] if ours else -1


def _finish_cgroup(cgroup, config: dict) -> None:
    """The cgroup's directories and settings, all before the init joins: v1 device rules
    start from "deny all", and an init joining in between would see its mknod refused."""
    cgroup.create()
    linux_cfg = config.get("linux") or {}
    for warning in cgroup.apply(linux_cfg.get("resources") or {}, linux_cfg.get("devices") or []):
        print(f"composer-runtime: warning: {warning}", file=sys.stderr)


def _close_in_child(parent: _Channel, ours) -> None:
    # The init keeps none of our ends: a pipe end of ours held by it would never close.
    parent.close()
    for fd in ours:
        os.close(fd)


def _clones_directly(config: dict, joins: list, new_flags: int) -> bool:
    """Whether the init can be cloned straight into its namespaces, without stage 1.

    Stage 1 is needed to join namespaces by path, to have a user namespace mapped before
    the others are made, to write time offsets before the first process enters, and to
    run on execCPUAffinity.initial before joining the cgroup.
    """
    if joins or new_flags & (syscalls.CLONE_NEWUSER | syscalls.CLONE_NEWTIME):
        return False
    return not (config["process"].get("execCPUAffinity") or {}).get("initial")


def _clone_init(cgroup, new_flags: int) -> tuple[int, list[tuple[str, str]]] | None:
    """clone3 the init into its new namespaces (and cgroup2 directory): one fork, not two,
    and no pid message. None where clone3 cannot: stage 1 does it the long way."""
    from runtime.oci.cgroups import UNIFIED

    unified = cgroup.paths.get(UNIFIED)
    left = [(d, "cgroup.procs" if d == unified else "tasks") for d in cgroup.dirs()]
    fd = os.open(unified, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if unified else -1
    try:  # a cgroup namespace must wait until every hierarchy is joined: its root is there
        pid = syscalls.clone3(new_flags & ~syscalls.CLONE_NEWCGROUP, fd)
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)
    return pid, [entry for entry in left if entry[0] != unified]


def _direct_init(channel, to_join, init) -> None:
    """Stage 1's remaining work for a cloned init (see _clones_directly), then stage 2.

    The init is born in the cgroup2 directory only: while the parent makes and sets up the
    rest of the cgroup, it mounts what does not need it, then joins when told (the first
    cgroup mount needs it, for the cgroup namespace's root; before any fork, for pids)."""

    def enter_cgroup() -> None:
        if (channel.recv() or {}).get("type") != "cgroup":
            raise ContainerError("create aborted")
        _join_cgroup(to_join)
        if init[2] & syscalls.CLONE_NEWCGROUP:
            syscalls.unshare(syscalls.CLONE_NEWCGROUP)
        linux.write_oom_score_adj(init[0]["process"].get("oomScoreAdj"))

    _stage2(channel, False, *init, enter_cgroup=enter_cgroup)


def _fork_into(cgroup) -> tuple[int, list[tuple[str, str]]]:
    """Fork a child that joins `cgroup` without the cost of a cgroup move.

    Moving a process into a cgroup takes a lock whose first use waits for an RCU grace
    period (5-15 ms here). A child born in the cgroup2 directory (clone3 with
    CLONE_INTO_CGROUP) or moving its single self into a v1 "tasks" file skips it. Returns
    (pid, the (directory, file) the child still writes "0" to; see _join_cgroup).
    """
    from runtime.oci.cgroups import UNIFIED

    unified = cgroup.paths.get(UNIFIED)
    left = [(d, "cgroup.procs" if d == unified else "tasks") for d in cgroup.dirs()]
    if unified:
        fd = os.open(unified, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            pid = syscalls.clone_into_cgroup(fd)
            return pid, [entry for entry in left if entry[0] != unified]
        except OSError:
            pass  # a kernel without clone3 into cgroups: fork, the child moves itself
        finally:
            os.close(fd)
    return os.fork(), left


def _join_cgroup(to_join: list[tuple[str, str]]) -> None:
    for directory, name in to_join:  # raw fds: a file object each is 11 of them too many
        fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


def _supervise_create(parent: _Channel, config, record, stage1) -> int:
    """Answer the stages: map user ids, run runtime-side hooks, wait until ready."""
    pid = record.get("pid") or 0  # known already when the init was cloned directly
    while True:
        message = parent.recv()
        if message is None:
            raise ContainerError("container init exited during create")
        kind = message["type"]
        if kind == "error":
            raise ContainerError(message["message"])
        if kind == "stage1":
            _write_id_maps(stage1, config["linux"])
            parent.send({"type": "ack"})
        elif kind == "pid":
            pid = message["pid"]
            record.update(pid=pid, start_time=process_start_time(pid))
        elif kind == "hooks":
            from runtime.oci import hooks

            pid = pid or _stage1_pid(parent, record)
            # runtime-spec runtime.md: "creating" is lifecycle step 2, these hooks are steps
            # 3-5, and "created" is "after step 2", before the user program: so "created"
            # (as crun and runtime-tools; runc says "creating").
            hook_state = {**oci_state("", record, "created"), "pid": pid}
            try:
                for stage in ("prestart", "createRuntime"):
                    hooks.run_hooks(config, stage, hook_state)
            except hooks.HookError as err:
                raise ContainerError(str(err)) from None
            parent.send({"type": "ack", "state": hook_state})
        elif kind == "ready":
            # Stage 2 shares stage 1's channel: its "ready" can overtake the "pid" that
            # stage 1 sends after forking it (a descheduled stage 1 on a busy machine).
            return pid or _stage1_pid(parent, record)


def _stage1_pid(parent: _Channel, record: dict) -> int:
    """Wait for stage 1's "pid" message (stage 2 spoke first); record the init's pid."""
    early = parent.recv() or {"type": "error", "message": "init exited"}
    if early["type"] != "pid":
        raise ContainerError(early.get("message", f"unexpected {early['type']}"))
    pid = early["pid"]
    record.update(pid=pid, start_time=process_start_time(pid))
    return pid


def _write_id_maps(pid: int, linux_cfg: dict) -> None:
    for name, key in (("uid_map", "uidMappings"), ("gid_map", "gidMappings")):
        mappings = linux_cfg.get(key) or []
        if mappings:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(linux.id_map_text(mappings))


def _run_child(channel: _Channel, stage, *args) -> None:
    """Run a forked stage; report any failure to the parent; never return."""
    code = 1
    try:
        stage(channel, *args)
        code = 0
    except BaseException as err:
        try:
            channel.send({"type": "error", "message": _describe(err)})
        except BaseException:  # after `create` returned nobody listens: say it on stderr
            os.write(2, f"composer-runtime: container init: {_describe(err)}\n".encode())
    finally:
        os._exit(code)


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename:
        return f"{err.strerror or err}: {os.fsdecode(err.filename)}"
    return str(err) or type(err).__name__


def _stage1(channel, to_join, joins, init) -> None:
    config, _bundle, new_flags = init[:3]
    linux.set_cpu_affinity(config["process"], "initial")
    _join_cgroup(to_join)  # first: later we may have no rights on the host's cgroups
    # Here too: lowering it needs CAP_SYS_RESOURCE of the host, gone in a user namespace.
    linux.write_oom_score_adj(config["process"].get("oomScoreAdj"))
    linux.join_namespaces(joins)
    if new_flags & syscalls.CLONE_NEWUSER:
        syscalls.unshare(syscalls.CLONE_NEWUSER)
        channel.send({"type": "stage1"})  # the parent writes our uid/gid maps
        if (channel.recv() or {}).get("type") != "ack":
            raise ContainerError("create aborted")
    in_user_ns = bool(new_flags & syscalls.CLONE_NEWUSER) or any(j[0] == "user" for j in joins)
    if in_user_ns:
        syscalls.setresgid(0, 0, 0)
        syscalls.setresuid(0, 0, 0)
    syscalls.unshare(new_flags & ~syscalls.CLONE_NEWUSER)
    if new_flags & syscalls.CLONE_NEWTIME:
        linux.write_time_offsets((config.get("linux") or {}).get("timeOffsets"))
    pid = os.fork()
    if pid == 0:
        _run_child(channel, _stage2, in_user_ns, *init)
    channel.send({"type": "pid", "pid": pid})


def _stage2(
    channel,
    in_user_ns,
    config,
    bundle,
    new_flags,
    masks,
    seccomp_program,
    fifo_fds,
    console_fd,
    cgroup_dirs,
    mountinfo,
    keep_fds,
    enter_cgroup=None,
) -> None:
    """The container's init: becomes the user program after `start`. `mountinfo`: the
    runtime's, which a new mount namespace starts as a copy of (None: read it here).
    `enter_cgroup`: joins the cgroup, once, before anything that needs it."""
    process = config["process"]
    linux_cfg = config.get("linux") or {}
    callers_umask = os.umask(0o022)  # our mount points and nodes get sane modes
    if not process.get("terminal"):
        os.setsid()
    linux.preload_modules(process, config)
    own_mount_ns = own_mount_namespace(config)
    pending = [enter_cgroup] if enter_cgroup else []

    def cgroup_joined() -> None:
        while pending:
            pending.pop()()

    rootfs = linux.prepare_rootfs(
        config,
        bundle,
        new_flags,
        in_user_ns,
        cgroup_dirs=cgroup_dirs,
        own_mount_ns=own_mount_ns,
        mountinfo=mountinfo,
        before_cgroup_mount=cgroup_joined,
    )
    cgroup_joined()  # no cgroup mount: now, before hooks see the init
    hook_state = None
    if has_hooks(config, "prestart", "createRuntime", "createContainer", "startContainer"):
        from runtime.oci import hooks  # now: startContainer runs after pivot_root

        channel.send({"type": "hooks"})
        reply = channel.recv() or {}
        if reply.get("type") != "ack":
            raise ContainerError("create aborted")
        hook_state = reply["state"]
        hooks.run_hooks(config, "createContainer", hook_state)
    enter_root = linux.pivot_into if own_mount_ns else linux.chroot_into
    enter_root(rootfs, linux_cfg.get("rootfsPropagation"))
    if process.get("terminal"):
        linux.setup_terminal(console_fd, console=True, size=process.get("consoleSize"))
    # sysctls before the read-only paths: /proc/sys is usually one of them
    # A uts namespace joined by path is the container's own too (runtime-spec, namespaces).
    joined_uts = any(
        ns.get("type") == "uts" and ns.get("path") for ns in linux_cfg.get("namespaces") or ()
    )
    linux.set_identity(config, bool(new_flags & syscalls.CLONE_NEWUTS) or joined_uts)
    linux.finish_rootfs(config)
    linux.set_process_attributes(process, linux_cfg)
    linux.set_exec_labels(process)
    no_new_privs = bool(process.get("noNewPrivileges"))
    if seccomp_program and not no_new_privs:  # without no_new_privs loading needs CAP_SYS_ADMIN
        seccomp_program.load()
    linux.set_user_and_capabilities(process.get("user") or {}, masks, linux.last_cap())
    if no_new_privs:
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
    if seccomp_program and no_new_privs:
        seccomp_program.load()
    os.chdir(process.get("cwd", "/"))
    # runtime-spec: without user.umask the caller's umask stays (runc and crun force 022)
    os.umask((process.get("user") or {}).get("umask", callers_umask))
    linux.reset_signals()
    program = linux.executable_of(process)  # a missing one fails create, as runc and crun
    channel.send({"type": "ready"})
    channel.close()
    if console_fd >= 0:
        os.close(console_fd)
    exec_fd, done_fd = fifo_fds
    if os.read(exec_fd, 1) != b"0":  # `start` writes one byte
        os._exit(1)
    os.close(exec_fd)
    try:
        if hook_state is not None:
            hooks.run_hooks(config, "startContainer", hook_state)
        linux.exec_process(process, keep_fds, program)
    except BaseException as err:  # `start` is listening on the done fifo
        os.write(done_fd, _describe(err).encode()[:4000])
        os._exit(1)


def _seccomp_program(seccomp_cfg: dict | None):
    """The filter as BPF, made before any fork (cached per profile, see
    runtime.oci.seccomp_cache); the init loads it after pivot_root, as late as allowed."""
    if not seccomp_cfg:
        return None
    from runtime.oci import seccomp_cache

    return seccomp_cache.program(seccomp_cfg)


def _connect(path: str | int) -> int:
    if isinstance(path, int):  # connected already: our own copy, closed after the fork
        return os.dup(path)
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as err:
        sock.close()
        raise ContainerError(f"console socket {path}: {err.strerror}") from None
    return sock.detach()


def exec_in(
    root: str,
    container_id: str,
    process: dict,
    merge: bool = True,
    extra_caps: list[str] | tuple[str, ...] = (),
    console_socket: str | None = None,
    detach: bool = False,
    pid_file: str | None = None,
    preserve_fds: int = 0,
) -> int:
    """Run `process` inside the container; its exit code (or 0 when detached)."""
    record = _load(root, container_id)
    current = status_of(root, record)
    if current not in ("created", "running"):
        raise ContainerError(f"container {container_id!r} is {current}: cannot exec")
    config = record["config"]
    process = exec_process_config(config["process"], process, extra_caps) if merge else process
    if not process.get("args"):
        raise ContainerError("exec: process.args is required")
    if process.get("terminal") and not console_socket:
        raise ContainerError("exec with a terminal needs --console-socket")
    caps = process.get("capabilities")
    try:
        linux.check_lsm_labels(process, {})
        masks = linux.capability_masks(caps) if caps is not None else None
    except ValueError as err:
        raise ContainerError(str(err)) from None
    try:
        seccomp_program = _seccomp_program((config.get("linux") or {}).get("seccomp"))
    except ValueError as err:
        raise ContainerError(f"config.json: {err}") from None
    linux.preload_modules(process, config)
    ns_fds = _container_namespaces(record["pid"], config)
    root_fd = -1
    if not own_mount_namespace(config):  # the init's chroot is the way in
        root_fd = os.open(f"/proc/{record['pid']}/root", os.O_PATH | os.O_CLOEXEC)
    cgroup = _cgroup(config, container_id)
    if not detach:
        become_subreaper()
    console_fd = _connect(console_socket) if console_socket else -1
    parent, child = _pipe_pair()
    first, to_join = _fork_into(cgroup)
    if first == 0:
        parent.close()
        setup = (process, masks, seccomp_program, console_fd, preserve_fds)
        _run_child(child, _exec_stage1, to_join, root_fd, ns_fds, setup)
    child.close()
    for fd in [*ns_fds, console_fd, root_fd]:
        if fd >= 0:
            os.close(fd)
    pid = 0
    try:
        while True:
            message = parent.recv()
            if message is None:  # both stages gone or exec'd
                break
            if message["type"] == "error":
                raise ContainerError(f"exec: {message['message']}")
            if message["type"] == "pid":
                pid = message["pid"]
    except BaseException:
        if pid:
            _kill_quietly(pid)
        raise
    finally:
        parent.close()
        _reap(first)
    if not pid:
        raise ContainerError("exec: the process could not be started")
    if pid_file:
        _write_pid_file(pid_file, pid)
    if detach:
        return 0
    return wait_exit_code(pid)


def _container_namespaces(pid: int, config: dict) -> list[int]:
    """Open fds of the init's namespaces that differ from ours, the user namespace first."""
    kinds = [entry["type"] for entry in (config.get("linux") or {}).get("namespaces") or []]
    kinds.sort(key=lambda kind: kind != "user")
    fds = []
    for kind in kinds:
        name = linux.NAMESPACES[kind][1]
        theirs = f"/proc/{pid}/ns/{name}"
        if os.stat(theirs).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
            continue  # setns into our own user namespace fails; the rest is a no-op
        fds.append(os.open(theirs, os.O_RDONLY | os.O_CLOEXEC))
    return fds


def _exec_stage1(channel, to_join, root_fd, ns_fds, setup) -> None:
    linux.set_cpu_affinity(setup[0], "initial")
    _join_cgroup(to_join)
    if root_fd >= 0:
        os.fchdir(root_fd)
        syscalls.chroot(".")
    for fd in ns_fds:
        syscalls.setns(fd, 0)
    pid = os.fork()  # a joined pid namespace applies to children only
    if pid == 0:
        _run_child(channel, _exec_stage2, *setup)
    channel.send({"type": "pid", "pid": pid})


def _exec_stage2(channel, process, masks, seccomp_program, console_fd, keep_fds) -> None:
    if process.get("terminal"):
        linux.setup_terminal(console_fd, size=process.get("consoleSize"))
    elif console_fd >= 0:
        os.close(console_fd)
    linux.set_process_attributes(process, None)
    linux.set_exec_labels(process)
    no_new_privs = bool(process.get("noNewPrivileges"))
    if seccomp_program and not no_new_privs:
        seccomp_program.load()
    linux.set_user_and_capabilities(process.get("user") or {}, masks, linux.last_cap())
    if no_new_privs:
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
    if seccomp_program and no_new_privs:
        seccomp_program.load()
    os.chdir(process.get("cwd", "/"))
    umask = (process.get("user") or {}).get("umask")
    if umask is not None:
        os.umask(umask)
    linux.reset_signals()
    linux.exec_process(process, keep_fds)  # success closes the channel: the parent reads EOF


def become_subreaper() -> None:
    """Orphaned container processes then come to us, so `run` and `exec` can wait on them."""
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
