"""Container lifecycle of the OCI runtime-spec: state, start, kill, delete, pause, ps.

State lives in <root>/<id>/: state.json and, while the container is "created", two fifos.
The init (made by `create`, in runtime.oci.spawn) blocks reading exec.fifo; `start`
writes one byte there and waits on exec.done, which the init holds open until its execve
succeeds (or writes why it failed). `run` mostly hands its init two pipes instead
(see runtime.cli.cmd_run): it starts the container itself, never seen "created".

Making processes (create, exec) lives in runtime.oci.spawn with the namespace and
syscall modules it needs: the other commands start without loading them.
"""

import os
import sys
from _signal import SIGKILL  # the C module: `signal` adds enums and 5 ms of start-up

from runtime import state as disk

DEFAULT_ROOT = "/run/composer-runtime"
OCI_VERSION = "1.0.2"
STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"  # init blocks reading it until `start` writes a byte
EXEC_DONE = "exec.done"  # init holds it open until exec: `start` sees hang-up, or an error


class ContainerError(RuntimeError):
    """An operation the runtime-spec says must fail (bad state, unknown id, bad config)."""


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


def _save(root: str, record: dict, exchange=None) -> None:
    """Atomic (rename) but not fsync'd: runtime state describes live processes and is
    meaningless after a reboot, and two fsyncs cost more than the whole create on ext4.

    `exchange` (syscalls.rename_exchange) swaps the new file in for an existing one and
    drops the old: ext4 starts writing a file renamed over another at once (auto_da_alloc),
    and delete's unlink of it then waits for that write (1-5 ms of a `run`).
    """
    path = os.path.join(root, record["id"], STATE_FILE)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, disk.dumps(record).encode())
    finally:
        os.close(fd)
    if exchange is None:
        os.rename(tmp, path)
        return
    exchange(tmp, path)
    os.unlink(tmp)  # the old record, never flushed: dropped without a wait


def _alive(record: dict) -> bool:
    return disk.pid_alive(record.get("pid"), record.get("start_time") or -1)


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


def _forget_cgroup(config: dict, container_id: str) -> None:
    """After delete or a failed create: a later container of that id starts afresh."""
    _opened.pop(((config.get("linux") or {}).get("cgroupsPath"), container_id), None)


# ---------------------------------------------------------------- create


def has_hooks(config: dict, *stages: str) -> bool:
    """Asked before runtime.oci.hooks is imported: most configs have no hooks."""
    hooks = config.get("hooks") or {}
    return any(hooks.get(stage) for stage in stages)


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
    from runtime.oci import spawn

    record = spawn.create_container(
        root, container_id, bundle, pid_file, console_socket, preserve_fds
    )
    return record["pid"]


# ---------------------------------------------------------------- start, kill, delete


def start(root: str, container_id: str, record: dict | None = None) -> None:
    """Let the created container's process exec. `record`: what `create_container` just
    returned, in the same process (its state needs no second look)."""
    if record is None:
        record = _load(root, container_id)
        current = status_of(root, record)
        if current != "created":
            raise ContainerError(f"container {container_id!r} is {current}, not created")
    finish_start(
        root, record, release(root, container_id), os.path.join(root, container_id, EXEC_DONE)
    )


def release(root: str, container_id: str) -> int:
    """Write the byte the init waits for; returns the fd of exec.done for `finish_start`."""
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
    except BaseException:
        _close_done(done_fd, done)
        raise
    finally:
        os.close(fd)
    return done_fd


def finish_start(root: str, record: dict, done_fd: int, done: str | None = None) -> None:
    """Wait until the released init has exec'd (or says why not), then poststart hooks.
    `done`: the exec.done fifo, removed here (`run` uses a pipe: None)."""
    container_id = record["id"]
    try:
        failure = _wait_exec(done_fd)
    finally:
        os.close(done_fd)
        if done:
            os.unlink(done)
    if failure:
        raise ContainerError(f"container {container_id!r} failed to start: {failure}")
    config = record["config"]
    if has_hooks(config, "poststart"):
        from runtime.oci import hooks

        hooks.run_hooks(config, "poststart", oci_state(root, record, "running"))


def _close_done(done_fd: int, done: str) -> None:
    os.close(done_fd)
    os.unlink(done)


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


def delete(
    root: str,
    container_id: str,
    force: bool = False,
    record: dict | None = None,
    warn=None,
) -> None:
    """`record`: the container's, as this process created it (`run`): no second read.
    `warn(text)` takes the warnings (default: printed to stderr, as the command does)."""
    state_dir = _dir(root, container_id)
    if not os.path.isdir(state_dir):
        raise ContainerError(f"container {container_id!r} does not exist")
    if record is None:
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
    cgroup.remove_parents(record.get("cgroup_parents") or [])
    if "rootfs" in record:  # mounts made in the runtime's mount namespace
        from runtime.oci.linux import mounts_made, unmount_all

        for warning in unmount_all(mounts_made(record)):
            if warn is None:
                print(f"composer-runtime: warning: {warning}", file=sys.stderr)
            else:
                warn(warning)
    _remove_tree(state_dir)
    _forget_cgroup(config, container_id)
    if has_hooks(config, "poststop"):
        from runtime.oci import hooks

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
    if cgroup.remove_if_empty():  # the usual end: nothing left to kill or walk (~2.5 ms)
        return
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
    try:  # mostly state.json alone (start took the fifos): no listing
        os.unlink(os.path.join(path, STATE_FILE))
        os.rmdir(path)
        return
    except OSError:
        pass  # more files, or not even that one
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
