"""The loader's view of the file system beyond the files it opens.

Whether a file exists decides what a load reads (compose.override.yaml, .env),
and `~user` is looked up in the password database, so these are inputs just
like file contents. Every such probe goes through here, so that `composer
config`'s memo (composer/cli/memo.py) can record them; files opened from Python
it sees through the interpreter's audit hook, the environment through os.environ.
"""

from __future__ import annotations

import os

# (kind, path) of each probe since recording began, or None when nobody records:
# "path" (what kind of thing is there), "file" (its contents).
_probes: list[tuple[str, str]] | None = None

PASSWORD_DATABASE = "/etc/passwd"


def record() -> list[tuple[str, str]]:
    """Start recording probes; the returned list fills as the load runs."""
    global _probes
    _probes = []
    return _probes


def isfile(path: str) -> bool:
    if _probes is not None:
        _probes.append(("path", path))
    return os.path.isfile(path)


def isdir(path: str) -> bool:
    if _probes is not None:
        _probes.append(("path", path))
    return os.path.isdir(path)


def expanduser(path: str) -> str:
    """os.path.expanduser; `~user`, or `~` without HOME, reads the password database in C."""
    if _probes is not None and path.startswith("~"):
        named_user = path != "~" and not path.startswith("~/")
        if named_user or "HOME" not in os.environ:
            _probes.append(("file", PASSWORD_DATABASE))
    return os.path.expanduser(path)
