"""Container lifecycle of the OCI runtime-spec: create, start, state, kill, delete, exec.

State lives in <root>/<id>/: state.json and, while the container is "created", two fifos.
Usually `create` clones once: the container's PID 1 is born in its new namespaces and
cgroup (clone3), joins the v1 hierarchies, sets up the root filesystem and the process,
reports ready, then blocks reading exec.fifo. Where that cannot be (namespaces joined by
path, a user namespace to map, time offsets, execCPUAffinity.initial; see
_clones_directly) it forks twice: stage 1 is born in the cgroup, joins or unshares the
namespaces (the parent maps a new user namespace) and forks stage 2, the init. `start`
writes one byte to exec.fifo and waits on exec.done, which the init holds open until its
execve succeeds (or writes why it failed). Capabilities and the seccomp program (BPF,
cached per profile) are worked out by the parent before any fork.
"""

from __future__ import annotations

import os
import sys
from _signal import SIGKILL  # the C module: `signal` adds enums and 5 ms of start-up

from runtime import state as disk
from runtime.oci import hooks, linux, seccomp_cache, syscalls

DEFAULT_ROOT = "/run/composer-runtime"
OCI_VERSION = "1.0.2"
STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"  # init blocks reading it until `start` writes a byte
EXEC_DONE = "exec.done"  # init holds it open until exec: `start` sees hang-up, or an error


class ContainerError(RuntimeError):
    """An operation the runtime-spec says must fail (bad state, unknown id, bad config)."""


# ---------------------------------------------------------------- parent <-> child channel


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


# ---------------------------------------------------------------- state on disk


def _dir(root: str, container_id: str) -> str:
    if not container_id or "/" in container_id or container_id in (".", ".."):
        raise ContainerError(f"invalid container id {container_id!r}")
    return os.path.join(root, container_id)


def _load(root: str, container_id: str) -> dict:
    try:
        return disk.read_json(os.path.join(_dir(root, container_id), STATE_FILE))
    except FileNotFoundError:
        raise ContainerError(f"container {container_id!r} does not exist") from None


def _save(root: str, record: dict) -> None:
    # Atomic (rename) but not fsync'd: runtime state describes live processes and is
    # meaningless after a reboot, and two fsyncs cost more than the whole create on ext4.
    path = os.path.join(root, record["id"], STATE_FILE)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, disk.dumps(record).encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (boot ticks); None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def _alive(record: dict) -> bool:
    pid = record.get("pid") or 0
    return pid > 0 and process_start_time(pid) == record.get("start_time")


def status_of(root: str, record: dict) -> str:
    if record["status"] == "creating":
        return "creating" if _alive({**record, "pid": record.get("creator", 0)}) else "stopped"
    if not _alive(record):
        return "stopped"
    if os.path.exists(os.path.join(root, record["id"], EXEC_FIFO)):
        return "created"
    if record.get("paused"):
        return "paused"
    return "running"


def oci_state(root: str, record: dict, status: str | None = None) -> dict:
    """The state object of the runtime-spec, as `state` prints and hooks read it."""
    current = status or status_of(root, record)
    out = {
        "ociVersion": record.get("ociVersion", OCI_VERSION),
        "id": record["id"],
        # The spec's state schema has no "paused": a frozen container is still running.
        "status": "running" if current == "paused" else current,
        "bundle": record["bundle"],
        "annotations": record.get("annotations") or {},
    }
    if current != "stopped" and record.get("pid"):
        out["pid"] = record["pid"]
    return out


def state(root: str, container_id: str) -> dict:
    return oci_state(root, _load(root, container_id))


def list_containers(root: str) -> list[dict]:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        try:
            record = _load(root, name)
        except (ContainerError, ValueError, OSError):  # not a container of ours
            continue
        current = status_of(root, record)  # list shows "paused", as runc does
        row = {**oci_state(root, record, current), "status": current}
        found.append({**row, "created": record.get("created", "")})
    return found


# ---------------------------------------------------------------- cgroups (R2's interface)


_opened: dict[tuple, object] = {}  # `run` creates and deletes: the layout is read once


def _cgroup(record_or_config: dict, container_id: str):
    from runtime.oci.cgroups import open_cgroup

    key = ((record_or_config.get("linux") or {}).get("cgroupsPath"), container_id)
    if key not in _opened:
        _opened[key] = open_cgroup(key[0], container_id)
    return _opened[key]


# ---------------------------------------------------------------- create


def load_config(bundle: str) -> dict:
    try:
        config = disk.read_json(os.path.join(bundle, "config.json"))
    except FileNotFoundError:
        raise ContainerError(f"no config.json in bundle {bundle}") from None
    except ValueError as err:
        raise ContainerError(f"config.json: {err}") from None
    if not isinstance(config.get("root"), dict) or not config["root"].get("path"):
        raise ContainerError("config.json: root.path is required")
    process = config.get("process")
    if not isinstance(process, dict) or not process.get("args"):
        raise ContainerError("config.json: process.args is required")
    if not process.get("cwd", "/").startswith("/"):
        raise ContainerError("config.json: process.cwd must be absolute")
    return config


def create(
    root: str,
    container_id: str,
    bundle: str,
    pid_file: str | None = None,
    console_socket: str | int | None = None,
    preserve_fds: int = 0,
) -> int:
    """Set up the container and leave its process waiting for `start`; return its pid.

    `console_socket`: path of a unix socket to send the pty master to, or the fd of a
    connected one. `preserve_fds`: the caller's fds 3 .. 3+N-1 stay open in the container.
    """
    return create_container(root, container_id, bundle, pid_file, console_socket, preserve_fds)[
        "pid"
    ]


def create_container(
    root: str,
    container_id: str,
    bundle: str,
    pid_file: str | None = None,
    console_socket: str | int | None = None,
    preserve_fds: int = 0,
    config: dict | None = None,
) -> dict:
    """`create`, returning the container's record (state.json) for an at-once `start`.

    `config`: the bundle's config.json when the caller has read it already.
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
    if not new_flags & syscalls.CLONE_NEWNS and "mount" not in dict(joins):
        # pivot_root in the runtime's own mount namespace would move the host's root
        raise ContainerError("config.json: linux.namespaces needs a mount namespace")
    if config["process"].get("terminal") and not console_socket:
        raise ContainerError("process.terminal needs --console-socket")

    os.makedirs(root, mode=0o700, exist_ok=True)
    state_dir = _dir(root, container_id)
    try:
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
    _save(root, record)
    cgroup = None
    pid = 0
    try:
        for name in (EXEC_FIFO, EXEC_DONE):
            os.mkfifo(os.path.join(state_dir, name), 0o600)
        cgroup = _cgroup(config, container_id)
        cgroup.create()
        for warning in cgroup.apply(
            linux_cfg.get("resources") or {}, linux_cfg.get("devices") or []
        ):
            print(f"composer-runtime: warning: {warning}", file=sys.stderr)
        spawn_args = (config, bundle, record, joins, new_flags, masks, seccomp_program, state_dir)
        pid = _spawn(*spawn_args, console_socket, cgroup, preserve_fds)
    except BaseException:
        # Best effort: the error that brought us here is the one to report.
        if pid:
            _kill_quietly(pid)
        if cgroup is not None:
            try:
                _destroy_cgroup(cgroup)
            except Exception as err:
                print(f"composer-runtime: warning: cleanup: {err}", file=sys.stderr)
        _remove_tree(state_dir)
        raise
    record.update(status="created", pid=pid, start_time=process_start_time(pid))
    record.pop("creator")
    _save(root, record)
    if pid_file:
        try:
            _write_pid_file(pid_file, pid)
        except OSError:
            delete(root, container_id, force=True)  # a caller without the pid cannot manage it
            raise
    return record


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
):
    # O_RDWR: opening never blocks, and the init is reader and writer of its own fifos.
    fifo_fds = tuple(
        os.open(os.path.join(state_dir, name), os.O_RDWR | os.O_CLOEXEC)
        for name in (EXEC_FIFO, EXEC_DONE)
    )
    console_fd = _connect(console_socket) if console_socket else -1
    parent, child = _pipe_pair()
    init = (config, bundle, new_flags, masks, seccomp_program, fifo_fds, console_fd)
    init += (cgroup.dirs(), keep_fds)
    stage1 = 0
    cloned = _clone_init(cgroup, new_flags) if _clones_directly(config, joins, new_flags) else None
    if cloned is not None:
        pid, to_join = cloned
        if pid == 0:
            parent.close()
            _run_child(child, _direct_init, to_join, init)
        record.update(pid=pid, start_time=process_start_time(pid))
    else:
        stage1, to_join = _fork_into(cgroup)
        if stage1 == 0:
            parent.close()
            _run_child(child, _stage1, to_join, joins, init)
    child.close()
    for fd in fifo_fds:
        os.close(fd)
    if console_fd >= 0:
        os.close(console_fd)
    ready = False
    try:
        pid = _supervise_create(parent, config, record, stage1)
        ready = True
    finally:
        parent.close()
        if stage1:
            _reap(stage1)
        elif not ready:  # our own child: end it here, the caller cannot know its pid
            _kill_quietly(record["pid"])
            _reap(record["pid"])
    return pid


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
    """Stage 1's remaining work for a cloned init (see _clones_directly), then stage 2."""
    _join_cgroup(to_join)
    if init[2] & syscalls.CLONE_NEWCGROUP:
        syscalls.unshare(syscalls.CLONE_NEWCGROUP)
    linux.write_oom_score_adj(init[0]["process"].get("oomScoreAdj"))
    _stage2(channel, False, *init)


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
            while not pid:  # stage 2 may speak before stage 1 reported its pid
                early = parent.recv() or {"type": "error", "message": "init exited"}
                if early["type"] != "pid":
                    raise ContainerError(early.get("message", f"unexpected {early['type']}"))
                pid = early["pid"]
                record.update(pid=pid, start_time=process_start_time(pid))
            hook_state = {**oci_state("", record, "creating"), "pid": pid}
            try:
                for stage in ("prestart", "createRuntime"):
                    hooks.run_hooks(config, stage, hook_state)
            except hooks.HookError as err:
                raise ContainerError(str(err)) from None
            parent.send({"type": "ack", "state": hook_state})
        elif kind == "ready":
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
    keep_fds,
) -> None:
    """The container's init: becomes the user program after `start`."""
    process = config["process"]
    linux_cfg = config.get("linux") or {}
    callers_umask = os.umask(0o022)  # our mount points and nodes get sane modes
    if not process.get("terminal"):
        os.setsid()
    linux.preload_modules(process, config)
    rootfs = linux.prepare_rootfs(config, bundle, new_flags, in_user_ns, cgroup_dirs=cgroup_dirs)
    hook_state = None
    if hooks.has_hooks(config, "prestart", "createRuntime", "createContainer", "startContainer"):
        channel.send({"type": "hooks"})
        reply = channel.recv() or {}
        if reply.get("type") != "ack":
            raise ContainerError("create aborted")
        hook_state = reply["state"]
        hooks.run_hooks(config, "createContainer", hook_state)
    linux.pivot_into(rootfs, linux_cfg.get("rootfsPropagation"))
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
    linux.executable_of(process)  # a missing program fails create, as with runc and crun
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
            hooks.run_hooks(config, "startContainer", {**hook_state, "status": "created"})
        linux.exec_process(process, keep_fds)
    except BaseException as err:  # `start` is listening on the done fifo
        os.write(done_fd, _describe(err).encode()[:4000])
        os._exit(1)


def _seccomp_program(seccomp_cfg: dict | None):
    """The filter as BPF, made before any fork (cached per profile, see
    runtime.oci.seccomp_cache); the init loads it after pivot_root, as late as allowed."""
    if not seccomp_cfg:
        return None
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


# ---------------------------------------------------------------- start, kill, delete


def start(root: str, container_id: str, record: dict | None = None) -> None:
    """Let the created container's process exec. `record`: what `create_container` just
    returned, in the same process (its state needs no second look)."""
    if record is None:
        record = _load(root, container_id)
        current = status_of(root, record)
        if current != "created":
            raise ContainerError(f"container {container_id!r} is {current}, not created")
    fifo = os.path.join(root, container_id, EXEC_FIFO)
    done = os.path.join(root, container_id, EXEC_DONE)
    try:
        # Non-blocking opens: a missing reader or writer is an error, not a hang.
        done_fd = os.open(done, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise ContainerError(f"container {container_id!r} cannot start: {err.strerror}") from None
    os.set_blocking(done_fd, True)  # reads now wait for the init's text or its exec
    try:
        os.unlink(fifo)  # first: a second `start` must find no fifo
        os.write(fd, b"0")
        os.close(fd)
        failure = _wait_exec(done_fd)
    finally:
        os.close(done_fd)
        os.unlink(done)
    if failure:
        raise ContainerError(f"container {container_id!r} failed to start: {failure}")
    config = record["config"]
    if hooks.has_hooks(config, "poststart"):
        hooks.run_hooks(config, "poststart", oci_state(root, record, "running"))


def _wait_exec(done_fd: int) -> str:
    """Block until the init has exec'd (its end of the fifo closes); its error text if not."""
    message = b""
    while chunk := os.read(done_fd, 4096):  # b"": hang-up, every writer is gone
        message += chunk
    return message.decode(errors="replace")


def parse_signal(value: str | int) -> int:
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    import signal

    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ContainerError(f"unknown signal {value!r}") from None


def kill(root: str, container_id: str, sig: int, all_processes: bool = False) -> None:
    record = _load(root, container_id)
    current = status_of(root, record)
    if current not in ("created", "running", "paused"):
        raise ContainerError(f"container {container_id!r} is {current}: nothing to signal")
    if all_processes:
        _cgroup(record["config"], container_id).kill_all(sig)
    else:
        os.kill(record["pid"], sig)


def delete(root: str, container_id: str, force: bool = False) -> None:
    state_dir = _dir(root, container_id)
    if not os.path.isdir(state_dir):
        raise ContainerError(f"container {container_id!r} does not exist")
    try:
        record = _load(root, container_id)
    except ValueError:  # a half-written create: nothing to keep
        _remove_tree(state_dir)
        return
    current = status_of(root, record)
    if current != "stopped":
        if not force:
            raise ContainerError(
                f"container {container_id!r} is {current}, not stopped (use --force)"
            )
        _stop(record)
    config = record["config"]
    cgroup = _cgroup(config, container_id)
    _destroy_cgroup(cgroup)
    _remove_tree(state_dir)
    if hooks.has_hooks(config, "poststop"):
        hooks.run_hooks(config, "poststop", oci_state(root, record, "stopped"))


def _stop(record: dict) -> None:
    """SIGKILL the container's processes and wait until its init is gone."""
    import time

    try:
        cgroup = _cgroup(record["config"], record["id"])
        if record.get("paused"):
            cgroup.thaw()
        cgroup.kill_all(SIGKILL)
    except Exception:  # the init's own pid is killed below in any case
        pass
    pid = record.get("pid") or record.get("creator") or 0
    if _alive(record) and pid > 0:
        _kill_quietly(pid)
    deadline = time.monotonic() + 10
    while _alive(record) and time.monotonic() < deadline:
        time.sleep(0.002)
    if pid > 0:
        try:  # a directly cloned init is our child when `create` ran in this process
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def _destroy_cgroup(cgroup) -> None:
    cgroup.kill_all(SIGKILL)
    cgroup.destroy()


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, SIGKILL)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _remove_tree(path: str) -> None:
    """The state directory holds only files (state, fifos): no need for shutil."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(path, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def _write_pid_file(path: str, pid: int) -> None:
    path = os.path.abspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _now() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---------------------------------------------------------------- exec


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
        masks = linux.capability_masks(caps) if caps is not None else None
    except ValueError as err:
        raise ContainerError(str(err)) from None
    try:
        seccomp_program = _seccomp_program((config.get("linux") or {}).get("seccomp"))
    except ValueError as err:
        raise ContainerError(f"config.json: {err}") from None
    linux.preload_modules(process, config)
    ns_fds = _container_namespaces(record["pid"], config)
    cgroup = _cgroup(config, container_id)
    if not detach:
        become_subreaper()
    console_fd = _connect(console_socket) if console_socket else -1
    parent, child = _pipe_pair()
    first, to_join = _fork_into(cgroup)
    if first == 0:
        parent.close()
        setup = (process, masks, seccomp_program, console_fd, preserve_fds)
        _run_child(child, _exec_stage1, to_join, ns_fds, setup)
    child.close()
    for fd in [*ns_fds, console_fd]:
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


def exec_process_config(base: dict, override: dict, extra_caps=()) -> dict:
    """The container's process settings with exec's args, env, cwd, user and terminal."""
    merged = {key: value for key, value in base.items() if key not in ("args", "terminal")}
    merged["args"] = list(override.get("args") or [])
    merged["terminal"] = bool(override.get("terminal"))
    merged["env"] = list(base.get("env") or []) + list(override.get("env") or [])
    for key in ("cwd", "user", "noNewPrivileges", "capabilities"):
        if key in override:
            merged[key] = override[key]
    if extra_caps:
        caps = {kind: list(names) for kind, names in (merged.get("capabilities") or {}).items()}
        for kind in ("bounding", "effective", "permitted"):
            caps[kind] = sorted(set(caps.get(kind) or []) | set(extra_caps))
        merged["capabilities"] = caps
    return merged


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


def _exec_stage1(channel, to_join, ns_fds, setup) -> None:
    linux.set_cpu_affinity(setup[0], "initial")
    _join_cgroup(to_join)
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


# ---------------------------------------------------------------- pause, ps, wait


def pause(root: str, container_id: str) -> None:
    record = _load(root, container_id)
    current = status_of(root, record)
    if current != "running":  # a created init frozen would hang `start`
        raise ContainerError(f"container {container_id!r} is {current}: cannot pause")
    _cgroup(record["config"], container_id).freeze()
    record["paused"] = True
    _save(root, record)


def resume(root: str, container_id: str) -> None:
    record = _load(root, container_id)
    if status_of(root, record) != "paused":
        raise ContainerError(f"container {container_id!r} is not paused")
    _cgroup(record["config"], container_id).thaw()
    record["paused"] = False
    _save(root, record)


def processes(root: str, container_id: str) -> list[int]:
    record = _load(root, container_id)
    return sorted(_cgroup(record["config"], container_id).pids())


def become_subreaper() -> None:
    """Orphaned container processes then come to us, so `run` and `exec` can wait on them."""
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)


def wait_exit_code(pid: int) -> int:
    """Reap `pid` (and any orphan before it); shell-style status: code, or 128+signal."""
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if reaped == pid:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)


def runtime_root(value: str | None) -> str:
    return os.path.abspath(value or DEFAULT_ROOT)
