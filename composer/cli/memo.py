"""`composer config` replayed: the same inputs give the same output without loading again.

`config` is a pure function of what it reads: the command line, the working
directory, the environment variables it looked at, the files it opened, the
paths it probed (composer/loader/inputs.py) and our own code. A record keeps
all of them with the output; when every one is as it was, the recorded stdout, stderr and exit
status are the answer, and the imports and parsing (most of the command's
time) are skipped. That matters for a command that scripts, editors and hooks
run many times a day.

A record compares contents (each variable's value, a digest of each file opened,
the kind of each path probed, the names in each directory listed), not timestamps, so an edit within
one clock tick is not missed. Our own code and the installed packages are
compared by size and mtime, as Python's own bytecode cache does. Never recorded,
so always run: output to a terminal (colour, width), stdin input (`-f -`),
`-o FILE`, and failures other than invalid input. COMPOSER_CONFIG_CACHE=0
turns the memo off.
"""

from __future__ import annotations

import marshal
import os
import stat
import sys
from collections.abc import MutableMapping

from composer.digest import sha256

FORMAT = "composer-config-memo-1"
MAX_RECORDS = 64
RECORDED_EXIT_CODES = (0, 15)  # success, invalid configuration (composer.exit_codes)

# composer/ and schemas/ sit side by side; both are code to us.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_CODE_DIRS = (os.path.join(_ROOT, "composer"), os.path.join(_ROOT, "schemas"))
_CODE_SUFFIXES = (".py", ".pyc", ".so", ".json", ".pth")
_KERNEL_PREFIXES = ("/proc/", "/sys/", "/dev/")


def usable() -> bool:
    """Whether this run may be answered from, or recorded into, the memo."""
    if os.environ.get("COMPOSER_CONFIG_CACHE") == "0":
        return False
    return not (sys.stdout.isatty() or sys.stderr.isatty())


def replay(path: str) -> int | None:
    """Write the output recorded at path and return its exit status, or None to run the command."""
    from composer.cache import read_private

    data = read_private(path)
    try:
        record = marshal.loads(data) if data else None
        fmt, inputs, out, err, code = record  # type: ignore[misc]
    except (EOFError, ValueError, TypeError):
        return None
    if fmt != FORMAT or any(_fingerprint(kind, path) != seen for kind, path, seen in inputs):
        return None
    try:
        sys.stderr.write(err)
        sys.stdout.write(out)
        sys.stdout.flush()
    except BrokenPipeError:  # `composer config | head`, as the command itself behaves
        sys.stderr.close()
        return 0
    return code


class Recorder:
    """Watches one run of the command, and records it if it was a replayable `config`."""

    def __init__(self, path: str) -> None:
        from composer.cache import cache_dir
        from composer.loader import inputs

        self.path = path
        self.opened: list[str] = []
        self.listed: list[str] = []
        self.probes = inputs.record()
        self.environ = _RecordingEnviron(os.environ)
        os.environ = self.environ  # type: ignore[assignment]  # noqa: B003 - a view, not a new env
        self.ignored = (cache_dir() + os.sep, *(d + os.sep for d in _CODE_DIRS))
        self.prefixes = {sys.prefix + os.sep, sys.base_prefix + os.sep}
        self.import_dirs = {os.path.abspath(d) for d in sys.path}
        self.active = True
        self.out = _Capture(sys.stdout)
        self.err = _Capture(sys.stderr)
        sys.stdout, sys.stderr = self.out, self.err  # type: ignore[assignment]
        sys.addaudithook(self._audit)

    def _audit(self, event: str, args: tuple) -> None:
        if not self.active:
            return
        if event == "open":
            path = args[0]
            if isinstance(path, (str, bytes)) and not _is_code(self, os.fsdecode(path)):
                self.opened.append(os.fsdecode(path))
        elif event in ("os.listdir", "os.scandir") and isinstance(args[0], (str, bytes)):
            path = os.fsdecode(args[0])
            if not _is_code(self, path, directory=True):
                self.listed.append(path)

    def finish(self, code: int) -> None:
        """Stop watching; record the run if the config command ran and may be replayed."""
        self.active = False
        sys.stdout, sys.stderr = self.out.stream, self.err.stream
        os.environ = self.environ.real  # type: ignore[assignment]  # noqa: B003
        replayable = _config_ran.replayable and not self.environ.written
        if not replayable or code not in RECORDED_EXIT_CODES:
            return
        seen = [("file", p) for p in self.opened] + [("dir", p) for p in self.listed]
        seen += self.probes
        inputs = [
            (kind, path, _fingerprint(kind, path))
            for kind, path in dict.fromkeys((k, os.path.abspath(p)) for k, p in seen)
        ]
        if self.environ.everything:
            inputs.append(("environ", "", _fingerprint("environ", "")))
        else:
            inputs += [(kind, name, _fingerprint(kind, name)) for kind, name in self.environ.read]
        record = (FORMAT, inputs, "".join(self.out.parts), "".join(self.err.parts), code)
        from composer.cache import write_private

        if write_private(self.path, marshal.dumps(record)):
            _prune(os.path.dirname(self.path))


class _ConfigRan:
    """Set by the config command: whether what it did may be replayed."""

    replayable = False


_config_ran = _ConfigRan()


def config_ran(replayable: bool) -> None:
    _config_ran.replayable = replayable


class _Capture:
    """A text stream that keeps a copy of what is written to it."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return self.stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


class _RecordingEnviron(MutableMapping):
    """os.environ, noting each name read; iterating it reads everything."""

    def __init__(self, real) -> None:
        self.real = real
        self.read: dict[tuple[str, str], None] = {}
        self.everything = False
        self.written = False

    def __getitem__(self, name: str) -> str:
        self.read[("variable", name)] = None
        return self.real[name]

    def __iter__(self):
        self.everything = True
        return iter(self.real)

    def __len__(self) -> int:
        self.everything = True
        return len(self.real)

    def __setitem__(self, name: str, value: str) -> None:
        self.written = True
        self.real[name] = value

    def __delitem__(self, name: str) -> None:
        self.written = True
        del self.real[name]

    def copy(self) -> dict[str, str]:
        self.everything = True
        return dict(self.real)


def _is_code(recorder: Recorder, path: str, directory: bool = False) -> bool:
    """Whether path is ours or the interpreter's (the record path covers those), or the kernel's."""
    path = os.path.abspath(path)
    if path.startswith(recorder.ignored) or path.startswith(_KERNEL_PREFIXES):
        return True
    if directory:  # the import system lists sys.path directories
        under = (path + os.sep).startswith(tuple(recorder.prefixes))
        return under or path in recorder.import_dirs
    return path.endswith(_CODE_SUFFIXES) and path.startswith(tuple(recorder.prefixes))


def _fingerprint(kind: str, path: str) -> bytes:
    if kind == "variable":
        value = os.environ.get(path)
        return b"unset" if value is None else b"=" + value.encode("utf-8", "surrogateescape")
    if kind == "environ":
        everything = "\0".join(sorted(f"{k}={v}" for k, v in os.environ.items()))
        return sha256(everything.encode("utf-8", "surrogateescape")).digest()
    try:
        if kind == "file":
            with open(path, "rb") as fh:
                return sha256(fh.read()).digest()
        if kind == "dir":
            return sha256("\0".join(sorted(os.listdir(path))).encode()).digest()
        mode = os.stat(path).st_mode
        return b"file" if stat.S_ISREG(mode) else b"dir" if stat.S_ISDIR(mode) else b"other"
    except FileNotFoundError:
        return b"missing"
    except OSError as exc:
        return f"error {exc.errno}".encode()


def record_path(argv: list[str]) -> str:
    """Where the run of argv here, now, is recorded: everything but file contents is in its name."""
    from composer.cache import cache_dir

    pieces = [FORMAT, _code_stamp(), os.getcwd(), str(os.geteuid()), *argv]
    digest = sha256()
    for piece in pieces:
        encoded = piece.encode("utf-8", "surrogateescape")
        digest.update(b"%d:" % len(encoded) + encoded)
    return os.path.join(cache_dir(), "config-memo", digest.hexdigest() + ".bin")


def _code_stamp() -> str:
    """Our code, the interpreter and the installed packages, by size and mtime."""
    parts = [sys.version, sys.executable]
    for directory in sys.path:
        try:
            parts.append(f"{directory}:{os.stat(directory or '.').st_mtime_ns}")
        except OSError:
            pass
    for directory in _CODE_DIRS:
        _stamp_tree(directory, parts)
    return "\n".join(parts)


def _stamp_tree(directory: str, parts: list[str]) -> None:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if entry.name != "__pycache__":
                _stamp_tree(entry.path, parts)
        elif entry.name.endswith((".py", ".json")):
            info = entry.stat()
            parts.append(f"{entry.path}:{info.st_size}:{info.st_mtime_ns}")


def _prune(directory: str) -> None:
    """Keep the newest MAX_RECORDS records."""
    try:
        entries = [e for e in os.scandir(directory) if e.name.endswith(".bin")]
        if len(entries) <= MAX_RECORDS:
            return
        entries.sort(key=lambda e: e.stat().st_mtime_ns)
        for entry in entries[: len(entries) - MAX_RECORDS]:
            os.unlink(entry.path)
    except OSError:
        pass
