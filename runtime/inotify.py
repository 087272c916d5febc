"""Waiting for files in directories to change, through the kernel's inotify (C library).

State files are replaced whole (written aside, renamed in), so a watch of their directory
for created, written, renamed and deleted entries sees every change. Where inotify is
missing or a directory cannot be watched, callers still look again on a timeout.
"""

from __future__ import annotations

import os
import select

# IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
CHANGES = 0x008 | 0x040 | 0x080 | 0x100 | 0x200


class DirectoryWatch:
    """An inotify descriptor (fileno) that becomes readable when a watched directory's
    entries change; `wait` blocks until then or a timeout."""

    def __init__(self, directories=()) -> None:
        import ctypes

        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        self.watched: set[str] = set()
        self.add(directories)

    def fileno(self) -> int:
        return self.fd

    def add(self, directories) -> bool:
        """Watch these too; True if one was not watched before (a change made before it
        was watched is not reported: look again before waiting)."""
        added = False
        for directory in directories:
            if self.fd < 0 or directory in self.watched:
                continue
            if self._libc.inotify_add_watch(self.fd, os.fsencode(directory), CHANGES) >= 0:
                self.watched.add(directory)
                added = True
        return added

    def wait(self, timeout: float) -> bool:
        """Block until a change (True) or `timeout` seconds (False); events are consumed."""
        if self.fd < 0:
            select.select([], [], [], timeout)
            return False
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            self.drain()
        return bool(ready)

    def drain(self) -> None:
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> DirectoryWatch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
