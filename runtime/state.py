"""The state root on disk (COMPOSER_ROOT), atomic JSON files and advisory locks.

Layout under the root:

    images/  layers/  containers/<id>/  volumes/  networks/  runtimes/<runtime>/

The shim imports this module, so it stays on the standard library's C parts: the
`json` package pulls in `re` (about 1 MiB of resident memory per shim), while the
`_json` accelerator it wraps does the same work without it.
"""

import errno
import os
import sys
import time

TYPE_CHECKING = False  # `typing` and `pathlib` import `re`; the shim needs neither
if TYPE_CHECKING:
    from pathlib import Path

DEFAULT_ROOT = "/var/lib/composer"
ROOT_ENV = "COMPOSER_ROOT"


def state_root(root: str | os.PathLike | None = None) -> "Path":
    """The state root: `root` if given, else $COMPOSER_ROOT, else /var/lib/composer."""
    from pathlib import Path

    return Path(root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def images_dir(root: str | os.PathLike | None = None) -> "Path":
    return state_root(root) / "images"


def layers_dir(root: str | os.PathLike | None = None) -> "Path":
    return state_root(root) / "layers"


def containers_dir(root: str | os.PathLike | None = None) -> "Path":
    return state_root(root) / "containers"


def container_dir(container_id: str, root: str | os.PathLike | None = None) -> "Path":
    if not container_id or "/" in container_id or container_id in (".", ".."):
        raise ValueError(f"invalid container id: {container_id!r}")
    return containers_dir(root) / container_id


def volumes_dir(root: str | os.PathLike | None = None) -> "Path":
    return state_root(root) / "volumes"


def networks_dir(root: str | os.PathLike | None = None) -> "Path":
    return state_root(root) / "networks"


def runtimes_dir(root: str | os.PathLike | None = None) -> "Path":
    """Where each OCI runtime keeps its own state (its --root), one subdirectory each."""
    return state_root(root) / "runtimes"


# ---------------------------------------------------------------- JSON


def _json_codec():
    try:
        import _json
    except ImportError:  # not CPython: the plain module does the same
        import json

        return (lambda obj: json.dumps(obj, sort_keys=True)), json.loads

    def refuse(obj):
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")

    class Options:  # what the C scanner reads from json.JSONDecoder
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = float
        memo: dict = {}

    scan = _json.make_scanner(Options())

    def dumps(obj) -> str:
        # A fresh markers dict per call: the encoder uses it to detect cycles.
        encode = _json.make_encoder(
            {}, refuse, _json.encode_basestring_ascii, None, ": ", ", ", True, False, False
        )
        return "".join(encode(obj, 0))

    def loads(text: str | bytes):
        if isinstance(text, bytes):
            text = text.decode()
        start = len(text) - len(text.lstrip())
        try:
            obj, end = scan(text, start)
            if not text[end:].strip():
                return obj
        except (StopIteration, ValueError, SystemError):
            # The C scanner needs json.decoder loaded to raise its errors (else it
            # raises SystemError); let the full module parse again and explain.
            pass
        import json

        return json.loads(text)

    return dumps, loads


dumps, loads = _json_codec()


def atomic_write_json(path: str | os.PathLike, data, *, durable: bool = True) -> None:
    """Replace `path` with `data` as JSON so readers see the old or the new file, never half.

    The temporary file sits in the same directory (rename is atomic only within one
    filesystem); fsync before rename makes the content durable before the name points
    at it, and fsync of the directory makes the rename itself durable. durable=False
    leaves both fsyncs to a later make_durable(path), e.g. outside a lock.
    """
    path = os.fspath(path)
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    payload = (dumps(data) + "\n").encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    if durable:
        _fsync_path(directory or ".")


def make_durable(path: str | os.PathLike) -> None:
    """What atomic_write_json(durable=False) left: fsync of the file and of its directory."""
    path = os.fspath(path)
    _fsync_path(path)
    _fsync_path(os.path.dirname(path) or ".")


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_MISSING = object()


def read_bytes(path: str | os.PathLike) -> bytes:
    """The whole file, read unbuffered: a file object costs 3 times as much (fstat, ioctl,
    lseeks and its buffer), and the runtime reads some 20 small files a container start."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, 65536)]
        while chunks[-1]:  # proc and cgroup files may come a page at a time
            chunks.append(os.read(fd, 65536))
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_json(path: str | os.PathLike, default=_MISSING):
    """The JSON in `path`; `default` if the file does not exist (FileNotFoundError without)."""
    try:
        return loads(read_bytes(path))
    except FileNotFoundError:
        if default is _MISSING:
            raise
        return default


def update_json(path: str | os.PathLike, changes: dict, purpose: str) -> dict:
    """Merge `changes` into the JSON object in `path` (read-modify-write under a lock).

    Writers that share a file (the engine and a container's shim share state.json)
    serialise on `<path>.lock`, so neither loses the other's fields.
    """
    with Lock(f"{os.fspath(path)}.lock", purpose, timeout=30):
        data = read_json(path, {})
        data.update(changes)
        atomic_write_json(path, data)
        return data


# ---------------------------------------------------------------- locks


class LockBusy(Exception):
    """Another process holds the lock; the message names it."""


class Lock:
    """An exclusive flock on `path`, telling later callers who holds it and why.

    The holder writes its pid, command line, start time and purpose into the lock file,
    so a second caller gets "held by pid 123 (composer up) since ... for <purpose>"
    instead of hanging silently. flock dies with its holder, so a crashed holder never
    leaves a stale lock; the text it leaves is only read while the lock is held.

        with Lock(dir / "lock", "remove container"):          # fail at once if busy
        with Lock(dir / "lock", "pull", timeout=30):          # wait up to 30 s
    """

    def __init__(self, path: str | os.PathLike, purpose: str, timeout: float | None = 0.0) -> None:
        self.path = os.fspath(path)
        self.purpose = purpose
        self.timeout = timeout  # 0: try once; None: wait forever; >0: wait that long
        self._fd: int | None = None

    def acquire(self, timeout: float | object | None = _MISSING) -> "Lock":
        if self._fd is not None:
            raise RuntimeError(f"lock {self.path} already held by this object")
        wait = self.timeout if timeout is _MISSING else timeout
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            self._lock(fd, wait)
            holder = f"pid={os.getpid()}\ncmd={_command_line()}\nsince={_now()}\npurpose={self.purpose}\n"
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def _lock(self, fd: int, wait: float | None) -> None:
        # flock has no timeout of its own; poll with a short, growing pause instead. The
        # cap stays small: holders are often brief (a record write), and a long sleep
        # would keep a waiter idle well after the lock was free.
        import fcntl  # here: an extension module, and `composer-runtime` takes no lock

        if wait is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return
        deadline = time.monotonic() + wait
        pause = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            if deadline is not None and time.monotonic() >= deadline:
                waited = f" after waiting {wait:g}s" if wait else ""
                raise LockBusy(
                    f"cannot {self.purpose}: {self.path} is locked{waited} by {self.holder()}"
                )
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.01)

    def holder(self) -> str:
        """Who holds the lock, as the holder recorded it."""
        try:
            with open(self.path) as f:
                text = f.read()
        except OSError:
            text = ""
        fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        if "pid" not in fields:
            return "another process"
        return (
            f"pid {fields['pid']} ({fields.get('cmd', '?')}) since {fields.get('since', '?')}"
            f" for {fields.get('purpose', '?')}"
        )

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "Lock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def process_start_time(pid: int | None) -> int | None:
    """Clock ticks since boot when pid started (field 22 of /proc/PID/stat): tells a live
    process from a reused pid. None when it is gone, or a zombie (killed, not yet reaped)."""
    fields = proc_stat_fields(pid) if pid else None
    if fields is None or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def proc_stat_fields(pid: int) -> list[bytes] | None:
    """/proc/PID/stat from field 3 (state) on, or None when pid is gone."""
    try:
        stat = read_bytes(f"/proc/{pid}/stat")
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields follow the last ')'.
    return stat[stat.rindex(b")") + 2 :].split()


def pid_alive(pid: int | None, start_time: int | None = None) -> bool:
    """Whether the process runs (zombies count as gone); with start_time, whether it is
    still the same process and not a later one that got the pid."""
    started = process_start_time(pid)
    return started is not None and (start_time is None or started == start_time)


def _command_line() -> str:
    try:
        with open("/proc/self/cmdline", "rb") as f:
            argv = f.read().rstrip(b"\0").split(b"\0")
        return " ".join(a.decode(errors="replace") for a in argv)[:200]
    except OSError:
        return " ".join(sys.argv)[:200]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
