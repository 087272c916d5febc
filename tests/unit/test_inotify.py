"""runtime.inotify: a wait that a replaced state file ends at once, and a timeout otherwise."""

from __future__ import annotations

import os
import threading
import time

from runtime.inotify import DirectoryWatch
from runtime.state import atomic_write_json


def test_a_replaced_file_wakes_the_wait(tmp_path):
    with DirectoryWatch() as watch:
        assert watch.add([str(tmp_path)]) is True
        assert watch.add([str(tmp_path)]) is False  # already watched
        assert watch.wait(0.01) is False
        writer = threading.Timer(0.05, atomic_write_json, (tmp_path / "state.json", {"a": 1}))
        writer.start()
        began = time.monotonic()
        assert watch.wait(30) is True
        assert time.monotonic() - began < 30
        writer.join()
        watch.drain()  # the write's later events (it is a create, a write and a rename)
        assert watch.wait(0.01) is False


def test_a_directory_that_cannot_be_watched_is_left_out(tmp_path):
    with DirectoryWatch([str(tmp_path / "missing")]) as watch:
        assert watch.watched == set()
        assert watch.wait(0.01) is False


def test_close_releases_the_descriptor(tmp_path):
    watch = DirectoryWatch([str(tmp_path)])
    fd = watch.fileno()
    watch.close()
    assert watch.fileno() == -1
    assert not os.path.exists(f"/proc/self/fd/{fd}") or os.readlink(f"/proc/self/fd/{fd}") != (
        "anon_inode:inotify"
    )
