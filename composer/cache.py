"""The user's cache directory, and files in it that only their owner may have written.

What we read back from here is trusted (executed, or replayed as a command's
output), so a file that someone else owns or may write is ignored.
"""

from __future__ import annotations

import os


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "composer")


def read_private(path: str) -> bytes | None:
    """The file's bytes, or None if absent, unreadable, or not safely ours."""
    try:
        with open(path, "rb") as fh:
            info = os.fstat(fh.fileno())
            if info.st_uid != os.geteuid() or info.st_mode & 0o022:
                return None
            return fh.read()
    except OSError:
        return None


def write_private(path: str, data: bytes) -> bool:
    """Replace path with data atomically (0600, directory 0700); False if that failed."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        return True
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
