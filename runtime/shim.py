"""One small supervisor per container: the shim.

The engine starts it with `launch()`; it detaches (new session, double fork) so it
outlives the command that started it, becomes the child subreaper, runs the OCI
runtime's `create` and `start`, and then:

- reads the container's stdout/stderr (pipes, or the pty master sent over
  --console-socket) into log.jsonl (runtime.logs);
- reaps the container's init (it is reparented to us when the runtime exits) and
  records exit code, signal, OOM kill and finish time in state.json;
- applies the restart policy: after init exits (unless the user stopped or killed it
  through us), waits (docker's backoff, or deploy.restart_policy's fixed delay),
  deletes and re-creates the container from the same bundle, and marks the restart in
  the log; a retry limit counts the restarts, or with a window only those that ended
  within it;
- runs the healthcheck: probes are `<runtime> exec` children of ours, timed by the
  same poll loop (runtime.health decides what their results mean);
- answers a JSON-line control socket, shim.sock: status, kill, stop, wait, resize;
- relays attach.sock: every client gets the output as frames (attach_frame), and with
  stdin open what clients send goes to the container's stdin (a pipe, or the pty
  master); a client's end of input closes the container's stdin when it is "once";
- runs `<runtime> delete` when the container is gone for good, then exits.

Memory matters (one shim per container), so the process runs under `python -S -E -s`
and imports only C-level stdlib modules (`_socket`, `_signal`, `select`: the
`socket` and `signal` wrappers pull in `enum`) and our small modules.
"""

from __future__ import annotations

import _signal
import _socket
import errno
import os
import select
import sys
import time

from runtime.health import OUTPUT_LIMIT, Health, timeout_output
from runtime.logs import LogWriter, format_time
from runtime.state import dumps, loads, proc_stat_fields, process_start_time, update_json

SOCKET_NAME = "shim.sock"
PID_NAME = "shim.pid"
ERROR_NAME = "shim.err"
STATE_NAME = "state.json"
CONSOLE_NAME = "console.sock"
ATTACH_NAME = "attach.sock"
INIT_PID_NAME = "init.pid"
PROBE_PID_NAME = "probe.pid"

SIGKILL = 9
SIGTERM = 15
_SIGNAL_NAMES = {1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 6: "SIGABRT", 9: "SIGKILL"}
_SIGNAL_NAMES.update({10: "SIGUSR1", 12: "SIGUSR2", 15: "SIGTERM", 28: "SIGWINCH"})

# After init exits, output may still come from processes that inherited the pipes
# (no pid namespace); wait this long before `delete --force` ends them.
DRAIN_GRACE = 1.0

# A container started for a client (`composer run`) runs once that client attaches, so no
# output comes before anyone reads it; a client that never comes is waited for this long.
ATTACH_WAIT = 30.0
# Output an attached client has not taken yet, above which the container's output is
# no longer read until it catches up (the container waits for its reader, as with docker).
ATTACH_BACKLOG = 256 * 1024
STREAM_IDS = {"stdout": 1, "stderr": 2}
TIOCSWINSZ = 0x5414

# Restart backoff, as docker's: 100 ms doubling up to a minute, back to 100 ms once a
# run lasted RESTART_RESET seconds.
RESTART_FIRST_DELAY = 0.1
RESTART_MAX_DELAY = 60.0
RESTART_RESET = 10.0
# No daemon means nothing runs at boot: "unless-stopped" differs from "always" only in
# what a daemon does after a host reboot, so here the two behave the same.
RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")


def signal_name(number: int) -> str:
    return _SIGNAL_NAMES.get(number, f"signal {number}")


# ---------------------------------------------------------------- restart policy


def parse_restart_policy(text: str | None) -> tuple[str, int]:
    """(name, max retries; 0 = no limit) from "no", "always", "on-failure[:N]",
    "unless-stopped"; ValueError for anything else."""
    name, _, count = (text or "no").strip().partition(":")
    if name not in RESTART_POLICIES:
        raise ValueError(
            f"unknown restart policy {text!r}: use one of {', '.join(RESTART_POLICIES)}"
        )
    if not count:
        return name, 0
    if name != "on-failure":
        raise ValueError(f"restart policy {name!r} takes no retry count")
    if not count.isdigit():
        raise ValueError(f"restart policy {text!r}: the retry count must be a whole number")
    return name, int(count)


def should_restart(policy: tuple[str, int], exit_code: int, restarts: int, by_user: bool) -> bool:
    """Whether a run that ended with `exit_code`, after `restarts` counted restarts,
    starts again (a retry limit on "always" comes from deploy.restart_policy).

    A stop or kill through the shim ends every policy's loop (there is no daemon that
    would bring an "always" container back later).
    """
    name, max_retries = policy
    if by_user or name == "no":
        return False
    if max_retries and restarts >= max_retries:
        return False
    return exit_code != 0 or name != "on-failure"


def counts_as_attempt(ran_for: float, window: float | None) -> bool:
    """Whether a restarted run that lasted `ran_for` s counts towards the retry limit:
    with a window (deploy.restart_policy.window), only a run that ended within it does,
    and one that outlasted it resets the count, as swarm decides a restart succeeded."""
    return window is None or ran_for < window


def restart_wait(fixed_delay: float | None, previous: float, ran_for: float) -> float:
    """The wait before the next run: deploy.restart_policy.delay when given, else
    docker's backoff (next_backoff)."""
    if fixed_delay is not None:
        return fixed_delay
    return next_backoff(previous, ran_for)


def next_backoff(previous: float, ran_for: float) -> float:
    """The wait before the next restart, given the last wait and how long the run lasted."""
    if ran_for >= RESTART_RESET or previous <= 0:
        return RESTART_FIRST_DELAY
    return min(previous * 2, RESTART_MAX_DELAY)


# ---------------------------------------------------------------- /proc facts


def _status_fields(pid: int) -> dict[str, str]:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def catches_signal(pid: int, sig: int) -> bool:
    """Whether `pid` has a handler for `sig` (bit sig-1 of SigCgt)."""
    return bool(int(_status_fields(pid)["SigCgt"], 16) >> (sig - 1) & 1)


def is_namespace_init(pid: int) -> bool:
    """Whether `pid` is PID 1 of a pid namespace below ours (NSpid ends in 1)."""
    nspids = _status_fields(pid).get("NSpid", "").split()
    return len(nspids) > 1 and nspids[-1] == "1"


def futile_signal_reason(pid: int, sig: int) -> str | None:
    """Why sending `sig` to `pid` cannot stop it, or None if it may.

    The kernel drops a signal sent from outside to a pid namespace's init unless init
    has a handler for it, so waiting out a grace period would only waste it.
    """
    if sig == SIGKILL or not is_namespace_init(pid) or catches_signal(pid, sig):
        return None
    return (
        f"PID 1 of the container does not catch {signal_name(sig)}, and a namespace's "
        "init ignores signals it does not catch: killed at once with SIGKILL"
    )


def grace_expired_reason(sig: int, timeout: float) -> str:
    return f"still running {timeout:g}s after {signal_name(sig)}: killed with SIGKILL"


PF_EXITING = 0x4  # the kernel's task flag, set as soon as a process starts to exit


def is_ending(pid: int) -> bool:
    """Whether `pid` is gone, a zombie, or on its way out (a namespace's init stays in
    its exit while the kernel ends the rest of the namespace)."""
    fields = proc_stat_fields(pid)
    if fields is None:
        return True
    return fields[0] in (b"Z", b"X") or bool(int(fields[6]) & PF_EXITING)


# ---------------------------------------------------------------- client side


class ShimUnreachable(Exception):
    """The shim's control socket does not answer (the shim exited or was killed)."""


def _connect(container_dir: str, timeout: float | None, name: str = SOCKET_NAME) -> _socket.socket:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    path = os.path.join(container_dir, name)
    dir_fd = None
    if len(path) > 100:  # sun_path holds 108 bytes: reach deep dirs through /proc/self/fd
        dir_fd = os.open(container_dir, os.O_PATH | os.O_CLOEXEC)
        path = f"/proc/self/fd/{dir_fd}/{name}"
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise ShimUnreachable(f"no shim answers on {container_dir}/{name}: {e}") from e
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    return sock


def request(container_dir: str | os.PathLike, message: dict, timeout: float | None = 30) -> dict:
    """Send one command to a container's shim and return its reply.

    Commands: {"cmd": "status"}, {"cmd": "kill", "signal": 9},
    {"cmd": "stop", "signal": 15 | None, "timeout": 10}, {"cmd": "wait"},
    {"cmd": "resize", "rows": 24, "cols": 80} (the container's terminal), and for a held
    run {"cmd": "release"} (start it; replies with its fields) and {"cmd": "discard"}.
    stop, wait and discard reply once the container has exited and been deleted.
    """
    sock = _connect(os.fspath(container_dir), timeout)
    try:
        sock.sendall((dumps(message) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ShimUnreachable("the shim closed the connection without an answer")
            data += chunk
    except TimeoutError:
        raise
    except OSError as e:
        raise ShimUnreachable(f"lost the shim: {e}") from e
    finally:
        sock.close()
    return loads(data)


def connect_attach(container_dir: str | os.PathLike) -> _socket.socket:
    """A blocking connection to the container's attach.sock: send input on it (shutdown
    for end of input), read output frames from it (FrameReader) until it closes."""
    return _connect(os.fspath(container_dir), None, ATTACH_NAME)


def attach_frame(stream: str, data: bytes) -> bytes:
    """One piece of output as attach.sock sends it: stream id (1 stdout, 2 stderr),
    4-byte big-endian length, the bytes."""
    return bytes((STREAM_IDS[stream],)) + len(data).to_bytes(4, "big") + data


class FrameReader:
    """Splits what attach.sock sends back into (stream, bytes) pieces."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        self.buffer += data
        pieces = []
        while len(self.buffer) >= 5:
            size = int.from_bytes(self.buffer[1:5], "big")
            if len(self.buffer) < 5 + size:
                break
            stream = "stderr" if self.buffer[0] == STREAM_IDS["stderr"] else "stdout"
            pieces.append((stream, self.buffer[5 : 5 + size]))
            self.buffer = self.buffer[5 + size :]
        return pieces


# How a shim's interpreter starts, from a new process or from the spawner
# (runtime/shim_spawner.py): no site, no environment variables, no user site.
INTERPRETER_FLAGS = ("-S", "-E", "-s")
# The call every shim's command line holds, either way: how runtime.engine knows one.
ENTRY = "from runtime.shim import main; main("


def launch(options: dict, timeout: float = 60) -> dict:
    """Start a detached shim for one container; return its ready message.

    options: id, dir (the container dir), runtime (argv list), runtime_root, bundle,
    terminal, stop_signal, cgroups_path, restart (a policy string), restart_delay and
    restart_window (seconds or None), restart_max_attempts (a limit for any policy, or
    None), stdin_open, stdin_once (input ends with the first client's), start_on_attach
    (the run is created, and started when a client attaches or after ATTACH_WAIT),
    hold_for (a pid: the run is created and waits for that process's "release" request;
    if it ends or sends "discard" first, the run is undone and the container is left
    created, as before the launch), healthcheck (runtime.health.normalize's settings, or
    None). Returns {"pid", "shim_pid", ...} once the container runs (or waits for its
    client, or is held), or raises RuntimeError with the runtime's complaint.

    The shim is forked by the spawner when this process runs one that can start it
    (shim_spawner.prestart), else it starts in a new interpreter.
    """
    ready = _start(options, timeout, spawner=sys.modules.get("runtime.shim_spawner"))
    if ready is None:  # the spawner was gone before it forked: nothing was started
        ready = _start(options, timeout, spawner=None)
    if not ready.strip():
        err = os.path.join(options["dir"], ERROR_NAME)
        try:
            with open(err) as f:
                detail = f.read().strip() or "no detail"
        except FileNotFoundError:
            detail = "no detail"
        raise RuntimeError(f"the shim exited before the container started: {detail}")
    message = loads(ready)
    if not message.get("ok"):
        raise RuntimeError(message.get("error", "container failed to start"))
    return message


def _start(options: dict, timeout: float, spawner) -> bytes | None:
    """What the shim wrote on the ready pipe until it closed it; None when the spawner
    took the request but started nothing (the pipe ended empty)."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    intermediate = spawned = None
    try:
        try:
            # The shim's own stderr: whatever kills it before it can report (even an import).
            errors = open(os.path.join(options["dir"], ERROR_NAME), "wb")  # noqa: SIM115
            try:
                if spawner is not None:
                    spawned = spawner.launch(options, ready_w, errors.fileno(), timeout)
                if not spawned:
                    intermediate = _new_intermediate(options, ready_w, errors)
            finally:
                errors.close()
        finally:
            os.close(ready_w)
        if intermediate is not None:
            intermediate.wait(timeout)  # it forks the real shim and exits at once
        ready = _read_ready(ready_r, timeout)
    finally:
        os.close(ready_r)
    return None if spawned and not ready else ready


def _new_intermediate(options: dict, ready_w: int, errors):
    """A new interpreter that runs main, which forks the shim and returns: its Popen."""
    import subprocess

    from runtime.helper_slot import PACKAGE_PARENT

    bootstrap = f"import sys; sys.path.insert(0, {PACKAGE_PARENT!r}); {ENTRY}sys.argv[1:])"
    return subprocess.Popen(
        [
            sys.executable,
            *INTERPRETER_FLAGS,
            "-c",
            bootstrap,
            dumps({**options, "ready_fd": ready_w}),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=errors,
        pass_fds=(ready_w,),
        start_new_session=True,
        cwd=options["dir"],
    )


def _read_ready(fd: int, timeout: float) -> bytes:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            raise TimeoutError(f"the shim did not report within {timeout:g}s")
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk


# ---------------------------------------------------------------- the shim process


class Shim:
    def __init__(self, options: dict) -> None:
        self.id = options["id"]
        self.dir = options["dir"]
        self.runtime = list(options["runtime"])
        self.runtime_root = options["runtime_root"]
        self.bundle = options["bundle"]
        self.terminal = bool(options.get("terminal"))
        self.stop_signal = int(options.get("stop_signal") or SIGTERM)
        self.cgroups_path = options.get("cgroups_path")
        self.state_path = os.path.join(self.dir, STATE_NAME)
        self.log = LogWriter(os.path.join(self.dir, "log.jsonl"))

        self.init_pid = 0
        self.exit: dict | None = None  # filled when init is reaped
        self.streams: dict[int, str] = {}  # fd -> "stdout" | "stderr"
        self.clients: dict[int, tuple[_socket.socket, bytearray]] = {}
        self.waiters: list[_socket.socket] = []
        self.kill_deadline: float | None = None  # stop: when to escalate to SIGKILL
        self.stop_info: dict = {}
        self.memory_cgroup: str | None = None
        self.poller = select.poll()
        self.deleted = False  # the runtime's delete ran for the current run

        name, max_retries = parse_restart_policy(options.get("restart"))
        self.restart_policy = (name, options.get("restart_max_attempts") or max_retries)
        self.restart_delay = options.get("restart_delay")  # None: docker's backoff
        self.restart_window = options.get("restart_window")
        self.restart_count = 0
        self.attempts = 0  # restarts that count towards the limit (see counts_as_attempt)
        self.backoff = 0.0
        self.restart_at: float | None = None  # when the next run starts, if one will
        self.by_user = False  # this run's end was asked for (stop or kill through us)
        self.run_started = 0.0

        settings = options.get("healthcheck")
        self.health = Health(settings) if settings else None
        self.next_probe_at: float | None = None
        self.probe: dict | None = None  # the probe running now

        self.stdin_open = bool(options.get("stdin_open"))
        self.stdin_once = bool(options.get("stdin_once"))
        self.start_on_attach = bool(options.get("start_on_attach"))
        self.holder = options.get("hold_for")  # the first run waits for its release
        self.hold_fd = -1  # the holder's pidfd: readable once it has ended
        self.discarded = False  # the held run was undone: the container is created again
        self.stdin_fd = -1  # where input goes: a pipe's write end, or the pty master
        self.stdin_pending = bytearray()  # input the container has not taken yet
        self.stdin_ended = False  # a client's input ended and the container was told
        self.attached: dict[int, Attached] = {}
        self.stdin_registered = False  # the stdin pipe is polled (for POLLOUT)
        # With start_on_attach, the first run waits for its client until then.
        self.start_deadline: float | None = None

    # -- runtime commands

    def _spawn(self, args: list[str], stdio: tuple[int, int, int]) -> int:
        if is_composer_runtime(self.runtime):
            return fork_composer_runtime(["--root", self.runtime_root, *args], stdio)
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(stdio)]
        argv = [*self.runtime, "--root", self.runtime_root, *args]
        # Python ignores SIGPIPE and SIGXFSZ; ignored signals survive exec, so reset them.
        return os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions, setsigdef=(13, 25))

    def _run(self, args: list[str], stdio: tuple[int, int, int]) -> int:
        _, status = os.waitpid(self._spawn(args, stdio), 0)
        return os.waitstatus_to_exitcode(status)

    def _run_captured(self, args: list[str]) -> tuple[int, str]:
        """Run a runtime command with its output captured (it is small: an error at most)."""
        r, w = os.pipe2(os.O_CLOEXEC)
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            pid = self._spawn(args, (null, w, w))
        finally:
            os.close(w)
            os.close(null)
        out = _read_all(r)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), out.decode(errors="replace").strip()

    # -- start

    def start(self) -> dict:
        """Create and start a run; its fields for state.json. With start_on_attach the
        first run is only created: it starts when its client attaches (start_deferred)."""
        self._create()
        if self.holder:
            holder, self.holder = self.holder, None  # the first run only
            try:
                self.hold_fd = os.pidfd_open(holder)
            except ProcessLookupError:
                self._run_captured(["delete", "--force", self.id])
                self._close_stdin()
                raise StartFailed(f"pid {holder}, which held it, has ended") from None
            return {**self._run_fields(), "status": "created", "held": True}
        if self.start_on_attach:
            self.start_on_attach = False  # the first run only: restarts start at once
            self.start_deadline = time.monotonic() + ATTACH_WAIT
            return {**self._run_fields(), "awaiting_attach": True}
        return self._start_created()

    def _create(self) -> None:
        pid_file = os.path.join(self.dir, INIT_PID_NAME)
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        create = ["create", "--bundle", self.bundle, "--pid-file", pid_file]
        stdin = null
        if self.stdin_open and not self.terminal:
            stdin, self.stdin_fd = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(self.stdin_fd, False)
        if self.terminal:
            console, console_path = self._console_listener()
            try:
                create += ["--console-socket", console_path]
                err_r, err_w = os.pipe2(os.O_CLOEXEC)
                code = self._run([*create, self.id], (null, err_w, err_w))
                os.close(err_w)
                complaint = _read_all(err_r)
                if code == 0:
                    try:
                        master = receive_terminal(console)
                        self.streams[master] = "stdout"
                        if self.stdin_open:
                            os.set_blocking(master, False)
                            self.stdin_fd = master
                    except OSError as e:
                        self._run_captured(["delete", "--force", self.id])
                        raise StartFailed(f"no terminal from {self.runtime[-1]}: {e}") from None
            finally:
                console.close()
                _unlink(CONSOLE_NAME)
        else:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            code = self._run([*create, self.id], (stdin, out_w, err_w))
            os.close(out_w)
            os.close(err_w)
            if stdin != null:
                os.close(stdin)  # the container holds the read end now
            if code == 0:
                self.streams = {out_r: "stdout", err_r: "stderr"}
                complaint = b""
            else:  # the runtime's own complaint went to the container's stderr
                complaint = _read_all(out_r) + _read_all(err_r)
        os.close(null)
        if code != 0:
            self._close_stdin()
            raise StartFailed(f"{self.runtime[-1]} create: {_tail(complaint)} (exit {code})")

        with open(pid_file) as f:
            self.init_pid = int(f.read().strip())
        self.memory_cgroup = _memory_cgroup(self.init_pid)

    def _start_created(self) -> dict:
        if is_composer_runtime(self.runtime):
            code, complaint = self._start_here()
        else:
            code, complaint = self._run_captured(["start", self.id])
        if code != 0:
            self._run_captured(["delete", "--force", self.id])
            self._close_stdin()
            raise StartFailed(
                f"{self.runtime[-1]} start: {_tail(complaint.encode())} (exit {code})"
            )
        return {
            **self._run_fields(),
            "started_at": format_time(time.time_ns()),
            **self._began_run(),
        }

    def _start_here(self) -> tuple[int, str]:
        """Our runtime's `start`, in this process: it only writes the byte the init waits
        for and waits for its exec (a forked command cost ~2 ms more, mostly copying us)."""
        from runtime.oci import container

        try:
            container.start(container.runtime_root(self.runtime_root), self.id)
        except Exception as e:  # as the command would report it
            return 1, str(e)
        return 0, ""

    def _run_fields(self) -> dict:
        return {
            "status": "running",
            "pid": self.init_pid,
            "pid_start_time": process_start_time(self.init_pid),
            "shim_pid": os.getpid(),
            "shim_start_time": process_start_time(os.getpid()),
        }

    def start_deferred(self) -> dict | None:
        """Start the created first run (its client is here, ATTACH_WAIT passed, or its
        holder released it); its fields, or None if it ended or failed to start."""
        self.start_deadline = None
        self._unhold()
        if self.exit is not None:
            return None  # ended (stopped or killed) before it started
        try:
            running = self._start_created()
        except StartFailed as e:
            self.log.note(str(e))
            self.exit = {"status": "exited", "exit_code": None, "start_error": str(e)}
            self.deleted = True
            update_json(self.state_path, self.exit, "record a failed start")
            return None
        running = {**running, "awaiting_attach": False, "held": False}
        update_json(self.state_path, running, "record the start")
        return running

    def _unhold(self) -> None:
        if self.hold_fd >= 0:
            self.poller.unregister(self.hold_fd)
            os.close(self.hold_fd)
            self.hold_fd = -1

    def discard(self) -> None:
        """Undo the held run (its holder ended or let go): the init waiting in the
        runtime's create is ended and the container is created again, as before launch."""
        self._unhold()
        if self.exit is not None:
            return
        self.discarded = True
        self.restart_at = None
        self._run_captured(["delete", "--force", self.id])  # kills the waiting init
        self.deleted = True

    def _console_listener(self) -> tuple[_socket.socket, str]:
        listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        _unlink(CONSOLE_NAME)
        listener.bind(CONSOLE_NAME)  # relative: our cwd is the container dir
        listener.listen(1)
        path = os.path.join(self.dir, CONSOLE_NAME)
        if len(path) > 100:  # the runtime needs a short absolute path: go through our cwd
            path = f"/proc/{os.getpid()}/cwd/{CONSOLE_NAME}"
        return listener, path

    # -- the loop

    def serve(self, listener: _socket.socket, wake_fd: int, attach: _socket.socket) -> None:
        poller = self.poller
        self._watch_streams()
        poller.register(listener.fileno(), select.POLLIN)
        poller.register(attach.fileno(), select.POLLIN)
        poller.register(wake_fd, select.POLLIN)
        if self.hold_fd >= 0:
            poller.register(self.hold_fd, select.POLLIN)
        self.reap()  # init may have exited before the SIGCHLD handler was in place
        drain_deadline = None
        while True:
            run_over = False
            if self.start_deadline is not None and time.monotonic() >= self.start_deadline:
                self.start_deferred()
            if self.exit is not None:
                now = time.monotonic()
                if drain_deadline is None:
                    drain_deadline = now + DRAIN_GRACE
                run_over = not self.streams or (self.deleted and now >= drain_deadline)
                if not run_over and now >= drain_deadline and not self.deleted:
                    # Leftover processes hold the pipes: delete --force ends them.
                    self._run_captured(["delete", "--force", self.id])
                    self.deleted = True
                    drain_deadline = now + DRAIN_GRACE
                if run_over and self._backlog() and not self.waiters:
                    pass  # attached clients take the rest of the output first
                elif run_over:
                    self._end_attachments()  # attached clients see the run end
                    if self.restart_at is None:
                        break
                    if now >= self.restart_at:
                        if not self._restart():
                            break
                        drain_deadline = None
                        continue
            self._tend_probe()
            try:
                events = poller.poll(self._poll_timeout(None if run_over else drain_deadline))
            except InterruptedError:
                continue
            for fd, event in events:
                if fd == self.stdin_fd and (event & select.POLLOUT or fd not in self.streams):
                    self._flush_stdin()  # a pipe reports only POLLOUT, or POLLERR if gone
                    if fd not in self.streams or not event & ~select.POLLOUT:
                        continue
                if fd in self.attached:
                    self._attached_event(fd, event)
                elif fd == wake_fd:
                    _read_available(wake_fd)
                    self.reap()
                elif fd == self.hold_fd:
                    self.discard()  # the holder ended without releasing it
                elif fd == listener.fileno():
                    self._accept(listener, poller)
                elif fd == attach.fileno():
                    self._accept_attach(attach)
                elif fd in self.streams:
                    self._read_stream(fd, poller)
                elif fd in self.clients:
                    self._read_client(fd, poller)
                elif self.probe and fd == self.probe["fd"]:
                    self._read_probe()
            self._check_kill_deadline()
            self._check_probe_deadline()
        self.finish(listener, attach)

    def _watch_streams(self) -> None:
        for fd in self.streams:
            self.poller.register(fd, select.POLLIN)
        self._update_polling()

    def _poll_timeout(self, drain_deadline: float | None) -> int | None:
        deadlines = [self.kill_deadline, drain_deadline, self.start_deadline]
        if self.exit is None:
            deadlines.append(self.next_probe_at)
        elif drain_deadline is None and not self._backlog():
            # The run is over: only the backoff is left (after the clients' backlog).
            deadlines.append(self.restart_at)
        if self.probe:
            deadlines.append(self.probe["deadline"])
        deadlines = [d for d in deadlines if d is not None]
        if not deadlines:
            return None
        return max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)

    def _read_stream(self, fd: int, poller) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return  # a pty master made non-blocking for input
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: the pty's other side closed
                raise
            data = b""
        stream = self.streams[fd]
        if data:
            self.log.write(stream, data)
            self._send_attached(stream, data)
            return
        self._close_stream(fd)

    def _close_stream(self, fd: int) -> None:
        if fd == self.stdin_fd:  # the pty master: input and output end together
            self.stdin_fd = -1
            self.stdin_pending.clear()
        self.log.flush_partial(self.streams.pop(fd))
        self.poller.unregister(fd)
        os.close(fd)

    # -- attach.sock and the container's stdin

    def _accept_attach(self, listener: _socket.socket) -> None:
        try:
            fd, _ = listener._accept()
        except BlockingIOError:
            return
        client = Attached(_socket.socket(fileno=fd))
        client.sock.setblocking(False)
        self.attached[fd] = client
        self.poller.register(fd, 0)
        self._update_polling()
        if self.start_deadline is not None:
            self.start_deferred()

    def _attached_event(self, fd: int, event: int) -> None:
        client = self.attached[fd]
        if event & select.POLLOUT:
            self._send_backlog(fd)
        if fd not in self.attached:
            return
        if event & select.POLLIN:
            self._read_attached(fd)  # input, or its end; a hangup shows again next poll
        elif event & (select.POLLHUP | select.POLLERR):
            self._drop_attached(fd)
        elif not client.backlog and not event & select.POLLOUT:
            self._drop_attached(fd)  # POLLNVAL: not ours to understand

    def _read_attached(self, fd: int) -> None:
        client = self.attached[fd]
        try:
            data = client.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            if self.stdin_fd >= 0 and not self.stdin_ended:
                self.stdin_pending += data
                self._flush_stdin()
            return
        # Its input ended; it may still read output, so it stays until it hangs up.
        self._input_ended(client)
        self._update_polling()

    def _input_ended(self, client: Attached) -> None:
        if client.input_done:
            return
        client.input_done = True
        if self.stdin_once and not self.stdin_ended:
            self.stdin_ended = True
            if self.terminal:
                self.stdin_pending += b"\x04"  # end of input, as a terminal's ^D says it
            self._flush_stdin()

    def _flush_stdin(self) -> None:
        """Write pending input; what the container does not take yet waits for POLLOUT,
        and meanwhile no client's input is read (the clients wait, not our memory)."""
        fd = self.stdin_fd
        if fd < 0:
            self.stdin_pending.clear()
            return
        try:
            while self.stdin_pending:
                del self.stdin_pending[: os.write(fd, self.stdin_pending)]
        except BlockingIOError:
            pass
        except OSError:  # the container closed its stdin (or exited): input goes nowhere
            self.stdin_pending.clear()
        if not self.stdin_pending and self.stdin_ended and fd not in self.streams:
            self._close_stdin()  # end of input: the pipe's reader sees end-of-file
        self._update_polling()

    def _close_stdin(self) -> None:
        """Close the stdin pipe's write end (a pty master is closed as an output stream)."""
        fd, self.stdin_fd = self.stdin_fd, -1
        self.stdin_pending.clear()
        if fd >= 0 and fd not in self.streams:
            if self.stdin_registered:
                self.poller.unregister(fd)
                self.stdin_registered = False
            os.close(fd)

    def _send_attached(self, stream: str, data: bytes) -> None:
        if not self.attached:
            return
        frame = attach_frame(stream, data)
        for fd, client in list(self.attached.items()):
            client.backlog += frame
            self._send_backlog(fd, update=False)
        self._update_polling()

    def _send_backlog(self, fd: int, update: bool = True) -> None:
        client = self.attached[fd]
        try:
            while client.backlog:
                del client.backlog[: client.sock.send(client.backlog)]
        except BlockingIOError:
            pass
        except OSError:  # gone: it can read the rest from the log
            self._drop_attached(fd)
            return
        if update:
            self._update_polling()

    def _backlog(self) -> int:
        return max((len(c.backlog) for c in self.attached.values()), default=0)

    def _update_polling(self) -> None:
        """What to wait for, from the state: output unless a client is behind, input
        while the container takes it, each client's backlog."""
        paused = self._backlog() > ATTACH_BACKLOG
        for fd in self.streams:
            mask = 0 if paused else select.POLLIN
            if fd == self.stdin_fd and self.stdin_pending:
                mask |= select.POLLOUT
            self.poller.modify(fd, mask)
        if self.stdin_fd >= 0 and self.stdin_fd not in self.streams:
            if self.stdin_pending and not self.stdin_registered:
                self.poller.register(self.stdin_fd, select.POLLOUT)
            elif not self.stdin_pending and self.stdin_registered:
                self.poller.unregister(self.stdin_fd)
            self.stdin_registered = bool(self.stdin_pending)
        takes_input = self.stdin_fd >= 0 and not self.stdin_ended and not self.stdin_pending
        for fd, client in self.attached.items():
            mask = select.POLLIN if takes_input and not client.input_done else 0
            self.poller.modify(fd, mask | (select.POLLOUT if client.backlog else 0))

    def _drop_attached(self, fd: int) -> None:
        client = self.attached.pop(fd)
        self.poller.unregister(fd)
        client.sock.close()
        self._input_ended(client)  # a client that vanished mid-input ended it too
        self._update_polling()

    def _end_attachments(self) -> None:
        for fd in list(self.attached):
            self._drop_attached(fd)
        self._close_stdin()

    def resize(self, rows: int, cols: int) -> None:
        """Set the container's terminal size (the kernel sends its process SIGWINCH)."""
        master = next((fd for fd in self.streams if self.terminal), -1)
        if master < 0:
            raise ValueError("the container has no terminal")
        set_terminal_size(master, rows, cols)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.init_pid and self.exit is None:
                self._record_exit(status)
            elif self.probe and pid == self.probe["pid"]:
                self._probe_exited(status)

    def _record_exit(self, status: int) -> None:
        if self.discarded:  # never started: nothing ran, nothing to record
            self.exit = {"status": "created"}
            update_json(self.state_path, _UNDONE_RUN, "record the discarded run")
            return
        code = os.waitstatus_to_exitcode(status)
        signal = -code if code < 0 else None
        exit_code = 128 + signal if signal else code
        if self.probe:
            self._abandon_probe()
        self.next_probe_at = None
        # Decided now and written with the exit, so nobody reads "exited" while a
        # restart is still coming.
        ran_for = time.monotonic() - self.run_started
        if self.restart_count:  # this run was a restart: did it hold?
            counted = counts_as_attempt(ran_for, self.restart_window)
            self.attempts = self.attempts + 1 if counted else 0
        restart = should_restart(self.restart_policy, exit_code, self.attempts, self.by_user)
        if restart:
            self.backoff = restart_wait(self.restart_delay, self.backoff, ran_for)
            self.restart_at = time.monotonic() + self.backoff
        self.exit = {
            "status": "restarting" if restart else "exited",
            "exit_code": exit_code,
            "signal": signal,
            "finished_at": format_time(time.time_ns()),
            "oom_killed": self._oom_kills() > 0,
            **self.stop_info,
        }
        self.kill_deadline = None
        # Recorded before delete: if the shim dies now, the exit is not lost.
        update_json(self.state_path, self.exit, "record the container's exit")

    # -- restarts

    def _began_run(self) -> dict:
        """Note a run's start; the restart and health fields for state.json."""
        self.run_started = time.monotonic()
        fields: dict = {"restart_count": self.restart_count}
        if self.health:
            self.health.restarted(self.run_started)
            self.next_probe_at = self.run_started  # the first probe runs at once
            fields["health"] = self.health.as_dict()
        return fields

    def _restart(self) -> bool:
        """Delete the ended run and start a new one; False if it cannot start."""
        for fd in list(self.streams):  # held by leftovers that delete --force just ended
            self._close_stream(fd)
        self._close_stdin()  # each run gets a new stdin
        if not self.deleted:
            self._run_captured(["delete", "--force", self.id])
            self.deleted = True
        self.restart_at = None
        self.restart_count += 1
        self._log_boundary()
        previous, self.exit = self.exit, None
        self.by_user = False
        self.stop_info = {}
        try:
            running = self.start()
        except StartFailed as e:
            self.exit = {**previous, "status": "exited"}
            self.log.note(f"restart {self.restart_count} failed: {e}")
            update_json(
                self.state_path,
                {"status": "exited", "start_error": str(e), "restart_count": self.restart_count},
                "record a failed restart",
            )
            return False
        self.deleted = False
        self._watch_streams()
        update_json(self.state_path, running, "record the restart")
        return True

    def _log_boundary(self) -> None:
        """A record with no text that marks where a restart begins in the log."""
        previous = self.exit or {}
        record = {
            "log": "",
            "stream": "stdout",
            "time": format_time(time.time_ns()),
            "boundary": "restart",
            "restart_count": self.restart_count,
            "previous_exit_code": previous.get("exit_code"),
        }
        line = (dumps(record) + "\n").encode()
        view = memoryview(line)
        while view:
            view = view[os.write(self.log.fd, view) :]

    # -- healthcheck probes

    def _tend_probe(self) -> None:
        if self.health is None or self.exit is not None or self.probe is not None:
            return
        if self.next_probe_at is None or time.monotonic() < self.next_probe_at:
            return
        settings = self.health.settings
        began = time.monotonic()
        start = format_time(time.time_ns())
        pid_file = os.path.join(self.dir, PROBE_PID_NAME)
        _unlink(pid_file)
        r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.set_blocking(w, True)
            exec_args = ["exec", "--pid-file", pid_file, self.id, *settings["argv"]]
            pid = self._spawn(exec_args, (null, w, w))
        except OSError as e:
            os.close(r)
            self._record_probe(began, start, -1, f"cannot run the probe: {e}")
            return
        finally:
            os.close(w)
            os.close(null)
        self.probe = {
            "pid": pid,
            "fd": r,
            "began": began,
            "start": start,
            "deadline": began + settings["timeout"],
            "output": bytearray(),
        }
        self.next_probe_at = None
        self.poller.register(r, select.POLLIN)

    def _read_probe(self) -> None:
        probe = self.probe
        try:
            data = os.read(probe["fd"], 65536)
        except BlockingIOError:
            return
        if not data:  # the probe's end comes from its exit status, not from EOF
            self.poller.unregister(probe["fd"])
            os.close(probe["fd"])
            probe["fd"] = -1
            return
        room = OUTPUT_LIMIT - len(probe["output"])
        if room > 0:
            probe["output"] += data[:room]

    def _probe_exited(self, status: int) -> None:
        probe = self.probe
        if probe["fd"] >= 0:
            try:
                while chunk := os.read(probe["fd"], 65536):  # what it wrote before exiting
                    probe["output"] += chunk[: max(0, OUTPUT_LIMIT - len(probe["output"]))]
            except BlockingIOError:
                pass
        self._release_probe()
        output = probe["output"].decode(errors="replace")
        code = os.waitstatus_to_exitcode(status)
        if code != 0 and is_ending(self.init_pid):
            # It failed because the run is ending: no verdict on health, and the exit
            # being reaped next stops the probes (until then, the usual pace).
            self.next_probe_at = time.monotonic() + self.health.settings["interval"]
            return
        self._record_probe(probe["began"], probe["start"], code, output)

    def _check_probe_deadline(self) -> None:
        probe = self.probe
        if probe is None or time.monotonic() < probe["deadline"]:
            return
        self._abandon_probe()
        timeout = self.health.settings["timeout"]
        self._record_probe(probe["began"], probe["start"], -1, timeout_output(timeout))

    def _abandon_probe(self) -> None:
        """Kill the running probe: the process in the container, then the runtime's exec.

        Both are reaped later (the exec'd process is reparented to us, the subreaper).
        """
        try:
            with open(os.path.join(self.dir, PROBE_PID_NAME)) as f:
                inner = int(f.read().strip() or 0)
        except (OSError, ValueError):
            inner = 0  # the runtime had not started it yet
        for pid in (inner, self.probe["pid"]):
            if pid > 0:
                try:
                    os.kill(pid, SIGKILL)
                except ProcessLookupError:
                    pass
        self._release_probe()

    def _release_probe(self) -> None:
        probe, self.probe = self.probe, None
        if probe["fd"] >= 0:
            self.poller.unregister(probe["fd"])
            os.close(probe["fd"])
        _unlink(os.path.join(self.dir, PROBE_PID_NAME))

    def _record_probe(self, began: float, start: str, exit_code: int, output: str) -> None:
        entry = {
            "start": start,
            "end": format_time(time.time_ns()),
            "exit_code": exit_code,
            "output": output,
        }
        self.health.record(entry, began)
        if self.exit is None:
            self.next_probe_at = time.monotonic() + self.health.next_delay(time.monotonic())
        update_json(self.state_path, {"health": self.health.as_dict()}, "record a health probe")

    def _oom_kills(self) -> int:
        from runtime.oci.cgroups import open_cgroup  # only now: most shims never need it

        try:
            return open_cgroup(self.memory_cgroup or self.cgroups_path, self.id).oom_kills()
        except Exception as e:  # no memory controller to ask: say so, do not crash
            self.log.note(f"could not read the OOM kill count: {e}")
            return 0

    # -- control socket

    def _accept(self, listener: _socket.socket, poller) -> None:
        try:
            fd, _ = listener._accept()  # _socket's accept: a bare fd, close-on-exec
        except BlockingIOError:
            return
        sock = _socket.socket(fileno=fd)
        sock.setblocking(False)
        self.clients[sock.fileno()] = (sock, bytearray())
        poller.register(sock.fileno(), select.POLLIN)

    def _read_client(self, fd: int, poller) -> None:
        sock, buf = self.clients[fd]
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            buf += chunk
        if b"\n" not in buf and chunk:
            return
        poller.unregister(fd)
        del self.clients[fd]
        if b"\n" not in buf:
            sock.close()
            return
        try:
            message = loads(bytes(buf[: buf.index(b"\n")]))
            reply = self.handle(message, sock)
        except (ValueError, KeyError, TypeError, OSError) as e:
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        if reply is not None:
            _reply(sock, reply)

    def handle(self, message: dict, sock: _socket.socket) -> dict | None:
        cmd = message.get("cmd")
        if cmd == "status":
            return {
                "ok": True,
                "pid": self.init_pid,
                "shim_pid": os.getpid(),
                **(self.exit or {"status": "created" if self.hold_fd >= 0 else "running"}),
            }
        if cmd in ("kill", "stop"):
            # Asked for from outside: this run's end is the user's, so no restart follows
            # (like podman; any kill counts, even one the container survives).
            self.by_user = True
            self.restart_at = None
        if cmd == "kill":
            if self.exit is None:
                os.kill(self.init_pid, int(message.get("signal") or SIGKILL))
            return {"ok": True}
        if cmd == "stop":
            if self.exit is None:
                self.stop(message.get("signal"), message.get("timeout"))
            self.waiters.append(sock)
            return None
        if cmd == "wait":
            self.waiters.append(sock)
            return None
        if cmd == "release":
            if self.hold_fd < 0 and self.exit is None:
                return {"ok": False, "error": "the container is not held"}
            running = self.start_deferred()
            if running is None:
                error = (self.exit or {}).get("start_error") or "the container has exited"
                return {"ok": False, "error": error}
            return {"ok": True, **running}
        if cmd == "discard":
            self.discard()
            self.waiters.append(sock)  # answered once the shim is done
            return None
        if cmd == "resize":
            self.resize(message["rows"], message["cols"])
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    def stop(self, sig: int | None, timeout: float | None) -> None:
        sig = int(sig or self.stop_signal)
        timeout = 10.0 if timeout is None else float(timeout)
        reason = futile_signal_reason(self.init_pid, sig)
        if reason:
            self.log.note(reason)
            self.stop_info = {"stop_reason": reason, "killed": True}
            os.kill(self.init_pid, SIGKILL)
            return
        self.stop_info.setdefault("killed", False)
        os.kill(self.init_pid, sig)
        deadline = time.monotonic() + timeout
        if self.kill_deadline is None or deadline < self.kill_deadline:
            self.kill_deadline = deadline
            self.stop_info["stop_timeout"] = timeout
            self.stop_info["stop_signal_sent"] = sig

    def _check_kill_deadline(self) -> None:
        if self.kill_deadline is None or time.monotonic() < self.kill_deadline:
            return
        self.kill_deadline = None
        if self.exit is None:
            sig = self.stop_info.get("stop_signal_sent", self.stop_signal)
            reason = grace_expired_reason(sig, self.stop_info.get("stop_timeout", 0))
            self.log.note(reason)
            self.stop_info.update(stop_reason=reason, killed=True)
            os.kill(self.init_pid, SIGKILL)

    # -- end

    def finish(self, listener: _socket.socket, attach: _socket.socket) -> None:
        self._end_attachments()
        attach.close()
        _unlink(ATTACH_NAME)
        self.log.close()
        if not self.deleted:
            code, complaint = self._run_captured(["delete", "--force", self.id])
            if code != 0:
                update_json(self.state_path, {"delete_error": complaint}, "record delete error")
        final = {"shim_exited": True, "status": "created" if self.discarded else "exited"}
        final.update(self.stop_info)
        state = update_json(self.state_path, final, "shim done")
        reply = {"ok": True, **{k: state.get(k) for k in _EXIT_FIELDS}}
        # Requests that arrived while we were finishing get the final answer too; the
        # socket goes first, so whoever gets an answer no longer finds it.
        late = [(sock, bytes(buf)) for sock, buf in self.clients.values()]
        while True:
            try:
                fd, _ = listener._accept()
            except OSError:
                break
            late.append((_socket.socket(fileno=fd), b""))
        listener.close()
        _unlink(SOCKET_NAME)
        for sock in self.waiters:
            _reply(sock, reply)
        for sock, buf in late:
            _reply(sock, _late_answer(sock, buf, reply))


def _late_answer(sock: _socket.socket, buf: bytes, final: dict) -> dict:
    try:
        sock.setblocking(True)
        sock.settimeout(1)
        while b"\n" not in buf and (chunk := sock.recv(65536)):
            buf += chunk
        cmd = loads(buf[: buf.index(b"\n")]).get("cmd")
    except (OSError, ValueError):
        return final
    if cmd in ("wait", "stop", "status"):
        return final
    return {**final, "ok": False, "error": "the container has exited"}


# What a discarded held run leaves in state.json: the container as it was before launch.
_UNDONE_RUN = {
    "status": "created",
    "held": False,
    "pid": None,
    "pid_start_time": None,
    "started_at": None,
}

_EXIT_FIELDS = (
    "status",
    "exit_code",
    "signal",
    "oom_killed",
    "finished_at",
    "killed",
    "stop_reason",
)


class StartFailed(Exception):
    pass


class Attached:
    """A client of attach.sock: its connection, the output it has yet to take, and
    whether its input has ended."""

    __slots__ = ("backlog", "input_done", "sock")

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.backlog = bytearray()
        self.input_done = False


def _reply(sock: _socket.socket, reply: dict) -> None:
    try:
        sock.setblocking(True)
        sock.settimeout(5)
        sock.sendall((dumps(reply) + "\n").encode())
    except OSError:
        pass  # the client gave up waiting; the state file has the answer
    finally:
        sock.close()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _read_available(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _tail(complaint: bytes, limit: int = 2000) -> str:
    text = complaint.decode(errors="replace").strip()
    return text[-limit:] or "no message"


def set_terminal_size(fd: int, rows: int, cols: int) -> None:
    """TIOCSWINSZ on a pty (either side): the process on it gets SIGWINCH."""
    import fcntl  # only here: most shims never resize

    size = int(rows).to_bytes(2, sys.byteorder) + int(cols).to_bytes(2, sys.byteorder)
    fcntl.ioctl(fd, TIOCSWINSZ, size + bytes(4))  # and two unused pixel sizes


def receive_terminal(listener: _socket.socket, timeout: float = 10) -> int:
    """The pty master a runtime sends over --console-socket (SCM_RIGHTS); OSError if none."""
    listener.settimeout(timeout)
    fd, _ = listener._accept()
    conn = _socket.socket(fileno=fd)
    try:
        conn.settimeout(timeout)
        _, ancillary, _, _ = conn.recvmsg(4096, _socket.CMSG_SPACE(4 * 4))
    finally:
        conn.close()
    fds = []
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [
                int.from_bytes(data[i : i + 4], sys.byteorder) for i in range(0, len(data) - 3, 4)
            ]
    if not fds:
        raise ConnectionError("the runtime sent no terminal over the console socket")
    for extra in fds[1:]:
        os.close(extra)
    os.set_inheritable(fds[0], False)
    return fds[0]


def _memory_cgroup(pid: int) -> str | None:
    """The memory cgroup the runtime put `pid` in (v1 `memory` line, else the v2 line).

    Read from /proc rather than config.json: it is where the runtime really put it.
    """
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    unified = None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
        if controllers == "":
            unified = path
    return unified


def is_composer_runtime(runtime: list[str]) -> bool:
    """Our own runtime, as runtime.engine.runtime_command names it (its console script, or
    `python -m runtime.cli`): its commands can run in a fork of this process."""
    return os.path.basename(runtime[0]) == "composer-runtime" or runtime[1:] == [
        "-m",
        "runtime.cli",
    ]


def fork_composer_runtime(args: list[str], stdio: tuple[int, int, int]) -> int:
    """`composer-runtime ARGS` in a forked child with `stdio` as its 0, 1, 2; its pid.

    The same code the command runs, without a new interpreter (10-15 ms a command, and
    `start` is two commands). The child drops what exec would have: our signal wakeup,
    handlers, and close-on-exec fds (the ready pipe, sockets, logs).
    """
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        _signal.set_wakeup_fd(-1)
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        # Fresh streams on the new 1 and 2, as a new interpreter would have.
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            try:
                if fd > 2 and not os.get_inheritable(fd):
                    os.close(fd)
            except OSError:
                pass  # the fd listdir itself used
        from runtime.cli import main

        code = main(args)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def _wakeup_pipe() -> int:
    r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    _signal.signal(_signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd fires
    _signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    return r


def _detach() -> None:
    # The engine started us in a new session; fork once more so we are not its child
    # (it reaps the intermediate at once) and not a session leader (no controlling tty).
    if os.fork() > 0:
        os._exit(0)


def main(argv: list[str]) -> None:
    options = loads(argv[0])
    ready_fd = int(options["ready_fd"])
    os.set_inheritable(ready_fd, False)
    _detach()
    os.chdir(options["dir"])

    def report(message: dict) -> None:
        nonlocal ready_fd
        if ready_fd >= 0:
            os.write(ready_fd, (dumps(message) + "\n").encode())
            os.close(ready_fd)
            ready_fd = -1

    try:
        from runtime.oci import syscalls

        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
        with open(PID_NAME, "w") as f:
            f.write(f"{os.getpid()}\n")
        _unlink(SOCKET_NAME)
        listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        listener.bind(SOCKET_NAME)  # relative to the container dir: no sun_path limit
        listener.listen(16)
        listener.setblocking(False)
        _unlink(ATTACH_NAME)
        attach = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        attach.bind(ATTACH_NAME)
        attach.listen(16)
        attach.setblocking(False)
        failure = None
        try:
            wake_fd = _wakeup_pipe()
            shim = Shim(options)
            try:
                running = shim.start()
            except StartFailed as e:
                failure = str(e)
                update_json(STATE_NAME, {"status": "created", "start_error": failure}, "failed")
            else:
                update_json(STATE_NAME, {**running, "shim_exited": False}, "record the start")
                report({"ok": True, **running})
                shim.serve(listener, wake_fd, attach)
        finally:
            listener.close()
            attach.close()
            _unlink(SOCKET_NAME)
            _unlink(ATTACH_NAME)
        if os.path.getsize(ERROR_NAME) == 0:
            _unlink(ERROR_NAME)  # nothing went wrong: no empty file left behind
        if failure:
            report({"ok": False, "error": failure})  # last: nothing of ours is left behind
    except BaseException as e:
        import traceback

        traceback.print_exc()  # stderr is shim.err
        report({"ok": False, "error": f"shim failed: {type(e).__name__}: {e}"})
        raise SystemExit(1) from None
