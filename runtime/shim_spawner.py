"""Shims forked from a helper process that has already imported them.

Each shim used to start a fresh interpreter (`python -S -E -s -c ...`, 10-12 ms of CPU in
start-up and imports), and `composer up` of ten services is CPU-bound on two cores. A command
that starts containers (up, start, restart, run) calls `enable()` first thing, and its first
shim launch starts the spawner (`prestart()` starts one at once): under the shim's
interpreter flags, it imports what a shim imports on its way to a running container, and
waits. shim.launch() sends it the options, the ready pipe and the shim's stderr
(SCM_RIGHTS); the spawner forks a child that makes itself what subprocess.Popen made of the
intermediate process (own session, stdin and stdout /dev/null, stderr the error file, no other
descriptors, the caller's environment, the container dir as cwd) and runs shim.main, which
forks the shim and exits.

A shim's memory is a target (under 10 MiB), and a forked shim keeps what the spawner loaded:
this module uses only what the shim imports anyway (_socket, not socket; _thread, not
threading), and preloads the shim's start path with the runtime's create and start, which
the shim forks for each run (~0.6 MiB of RSS, mostly shared, for ~4 ms of CPU a container).

launch() returns False when nothing was started (no spawner, or one started for another
state root, namespace or cgroup than the caller's now, or gone): the shim then starts the old
way. The child writes MARK to the ready pipe before anything else, so a pipe that ends empty
means no child was forked (the spawner died first) and starting the old way cannot make a
second shim.
"""

from __future__ import annotations

import _socket
import _thread
import os
import sys
import time

from runtime.helper_slot import PACKAGE_PARENT, HelperSlot, start_process
from runtime.state import dumps, loads

IDLE_SECONDS = 60.0  # a spawner nobody asks for a while leaves; later shims start the old way
REAP_SECONDS = 0.005  # how often a forked child that has not exited yet is looked for
MAX_REQUEST = 1 << 18  # options and environment: a few KiB
MARK = b" "  # a forked child's first write; the ready message is JSON, which skips blanks
# What places a process: a child of the caller would be where its thread is now.
_PLACES = ("cgroup", "ipc", "mnt", "net", "pid_for_children", "user", "uts")
_FD_SIZE = 4

_on_first_launch = False  # enable()d: the first launch starts one
_first_launch_guard = _thread.allocate_lock()


def enable() -> None:
    """Have the first shim launched from now on start a spawner, and it and the later ones
    forked by it. What a command that may start containers calls first thing: a spawner
    started with the command would take a core from the command's own start-up, and
    a command with nothing to start (an up with all running) would pay for it."""
    global _on_first_launch
    _on_first_launch = True


def expect_launches() -> None:
    """The command is about to make containers it will start: an enable()d spawner starts
    now, while they are prepared, instead of holding up the first launch (~20 ms)."""
    if _on_first_launch:
        with _first_launch_guard:
            if _on_first_launch:  # once: one that has ended is not replaced
                prestart()


def prestart() -> None:
    """Start the spawner now, so that it has imported the shim when the first one is due."""
    global _on_first_launch
    _on_first_launch = False
    slot.start()


def stop() -> None:
    """End the spawner: when the command is done (it also ends on its own when this process
    exits, or after IDLE_SECONDS without a request). Shims it started are not its children."""
    global _on_first_launch
    _on_first_launch = False
    slot.stop()


def launch(options: dict, ready_w: int, errors_fd: int, timeout: float = 60) -> bool:
    """Have the spawner start the shim for shim.launch's `options`, with the ready pipe's write
    end and the shim's stderr (both stay the caller's to close).

    False: nothing was started; start it another way. True: the request went out, and the
    ready pipe tells the rest (it ends empty only if no child was forked).
    """
    expect_launches()
    spawner = slot.current
    if spawner is None or not spawner.serves(options["dir"]):
        return False
    try:
        return spawner.launch(options, ready_w, errors_fd, timeout)
    except _Gone:
        slot.forget(spawner)  # it may or may not have forked: the ready pipe tells
        return True
    except BaseException:
        slot.forget(spawner)  # its reply would be taken for the next request's
        raise


class _Gone(Exception):
    """The spawner did not answer: it exited or is stuck."""


class _Spawner:
    def __init__(self) -> None:

        from runtime import shim
        from runtime.state import state_root

        self.root = str(state_root())
        self.place = _place()
        self.process, self.sock = start_process(
            [
                sys.executable,
                *shim.INTERPRETER_FLAGS,
                "-c",
                _boot(shim.ENTRY),
                PACKAGE_PARENT,
                "{fd}",
                self.root,  # named, so a search for leftovers by root finds its shims
            ],
            cwd="/",  # holds no directory of the caller's busy
        )
        self.lock = _thread.allocate_lock()  # one request and its reply at a time
        self.owner = os.getpid()  # a forked child of ours would share the socket

    def alive(self) -> bool:
        return self.process.poll() is None

    def serves(self, container_dir: str) -> bool:
        """Whether a shim it forks is what Popen would start now: for a container under its
        root (which its command line names) and where the calling thread is."""
        return (
            container_dir.startswith(self.root + os.sep)
            and os.getpid() == self.owner
            and self.place == _place()
        )

    def launch(self, options: dict, ready_w: int, errors_fd: int, timeout: float) -> bool:
        request = dumps({"options": options, "env": dict(os.environ)}).encode()
        fds = ready_w.to_bytes(_FD_SIZE, sys.byteorder) + errors_fd.to_bytes(
            _FD_SIZE, sys.byteorder
        )
        with self.lock:
            self.sock.settimeout(timeout)
            try:
                # SEQPACKET: a send that fails has queued nothing.
                self.sock.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
            except OSError:
                slot.forget(self)
                return False
            try:
                reply = self.sock.recv(MAX_REQUEST)
            except OSError:  # a timeout too: a stuck spawner is killed by slot.forget
                reply = b""
        if not reply:
            raise _Gone
        answer = loads(reply)
        return bool(answer["ok"])  # not ok: it could not fork, nothing was started

    def close(self) -> None:
        """Kill it: between requests it holds nothing a kill would lose (forked children are
        on their own, and a child it has not reaped yet goes to the subreaper)."""
        self.sock.close()
        if self.process.returncode is None:
            self.process.kill()
            self.process.wait()


slot = HelperSlot(_Spawner)  # shims start the old way while it is empty


def _place() -> tuple | None:
    try:
        inodes = tuple(os.stat(f"/proc/thread-self/ns/{name}").st_ino for name in _PLACES)
        fd = os.open("/proc/thread-self/cgroup", os.O_RDONLY | os.O_CLOEXEC)
        try:
            return inodes, os.read(fd, 65536)
        finally:
            os.close(fd)
    except OSError:
        return None  # unknowable: matches nothing, so the shim starts the old way


def _boot(entry: str) -> str:
    # argv[1] goes first on sys.path (the directory holding runtime/), argv[2] is the socket;
    # serve() returns only in a forked child, which goes on as the shim's bootstrap does.
    return (
        "import sys; sys.path.insert(0, sys.argv[1]); from runtime import shim_spawner; "
        f"argv = shim_spawner.serve(int(sys.argv[2])); {entry}argv)"
    )


# ---------------------------------------------------------------- the spawner process


def _preload() -> None:
    """What a shim imports on its start path (python -X importtime on a shim), and what the
    runtime commands it forks (create, start) import: ~4 ms of CPU a container, for ~0.6 MiB
    more in each shim's RSS (shared with the others' until written: PSS grows far less)."""
    import _sha256  # noqa: F401  seccomp_cache's key
    import fcntl  # noqa: F401  runtime.state's locks

    import runtime.cli
    import runtime.shim  # noqa: F401
    from runtime.oci import (  # noqa: F401
        capabilities,
        cgroup_limits,  # a service with resource limits
        cgroups,
        hooks,
        linux,
        seccomp_cache,  # every container with Docker's profile
        spawn,
        syscalls,
    )


def serve(fd: int) -> list[str]:
    """The spawner's loop, until EOF, IDLE_SECONDS without a request or a kill. Returns only
    in a forked child: shim.main's argv."""
    import gc

    gc.disable()  # nothing to collect while importing
    _preload()
    gc.freeze()  # what is loaded now stays put in the children's collections
    for standard in (0, 1, 2):  # a caller without stderr: received fds must not land there
        try:
            os.fstat(standard)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != standard:
                os.dup2(null, standard)
                os.close(null)
    sock = _socket.socket(fileno=fd)
    children: list[int] = []
    idle_until = time.monotonic() + IDLE_SECONDS
    while True:
        children = [pid for pid in children if not _reaped(pid)]
        idle_left = idle_until - time.monotonic()
        if not children and idle_left <= 0:
            break
        sock.settimeout(REAP_SECONDS if children else idle_left)
        try:
            message, ancillary, flags, _ = sock.recvmsg(
                MAX_REQUEST, _socket.CMSG_SPACE(2 * _FD_SIZE), _socket.MSG_CMSG_CLOEXEC
            )
        except TimeoutError:
            continue
        except OSError:
            break
        fds = _received_fds(ancillary)
        if not message:
            _close_all(fds)
            break  # EOF: the caller is done
        idle_until = time.monotonic() + IDLE_SECONDS
        try:
            if flags & (_socket.MSG_TRUNC | _socket.MSG_CTRUNC) or len(fds) != 2:
                raise ValueError("malformed request")
            request = loads(message)
            pid = os.fork()
        except Exception as e:  # nothing was started: the caller starts it the old way
            _close_all(fds)
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        else:
            if pid == 0:
                return _become_intermediate(sock, request, *fds)
            _close_all(fds)  # the child's now: the caller reads the pipe's end from it
            children.append(pid)
            reply = {"ok": True, "pid": pid}
        try:
            sock.send(dumps(reply).encode())
        except OSError:
            break
    sock.close()
    for pid in children:
        _reaped(pid, 0)
    raise SystemExit(0)


def _become_intermediate(sock, request: dict, ready_fd: int, errors_fd: int) -> list[str]:
    """In the forked child: what Popen set up for the intermediate, then shim.main's argv."""
    import gc

    try:
        os.write(ready_fd, MARK)  # first: from here on the caller waits for this child
        sock.close()
        os.dup2(errors_fd, 2)
        os.closerange(3, ready_fd)  # errors_fd, now 2, with the rest
        os.closerange(ready_fd + 1, os.sysconf("SC_OPEN_MAX"))
        os.setsid()
        options = request["options"]
        os.chdir(options["dir"])
        os.environ.clear()
        os.environ.update(request["env"])
        gc.enable()
        return [dumps({**options, "ready_fd": ready_fd})]
    except BaseException:
        try:
            import traceback

            traceback.print_exc()  # to the error file once dup2 has run
        finally:
            os._exit(1)


def _received_fds(ancillary: list) -> list[int]:
    fds = []
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            whole = len(data) - len(data) % _FD_SIZE
            fds += [
                int.from_bytes(data[i : i + _FD_SIZE], sys.byteorder)
                for i in range(0, whole, _FD_SIZE)
            ]
    return fds


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _reaped(pid: int, options: int = os.WNOHANG) -> bool:
    try:
        return os.waitpid(pid, options)[0] != 0
    except ChildProcessError:
        return True
