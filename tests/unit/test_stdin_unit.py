"""Attaching without a kernel: attach.sock's frames (stream and exact bytes, however the
reads split them) and the detach keys."""

from __future__ import annotations

import pytest

from composer.cli.container_cmds import detach_key_bytes
from runtime import shim
from runtime.engine import DetachKeys


def test_frames_carry_the_stream_and_exact_bytes():
    frame = shim.attach_frame("stderr", b"\x00\xffx")
    assert frame == b"\x02\x00\x00\x00\x03\x00\xffx"
    reader = shim.FrameReader()
    assert reader.feed(frame[:4]) == []
    assert reader.feed(frame[4:] + shim.attach_frame("stdout", b"y")) == [
        ("stderr", b"\x00\xffx"),
        ("stdout", b"y"),
    ]


def test_frames_survive_being_split_anywhere():
    frames = shim.attach_frame("stdout", b"abc") + shim.attach_frame("stderr", b"")
    frames += shim.attach_frame("stderr", b"x" * 70000)
    reader, pieces = shim.FrameReader(), []
    for i in range(0, len(frames), 7):
        pieces += reader.feed(frames[i : i + 7])
    assert pieces == [("stdout", b"abc"), ("stderr", b""), ("stderr", b"x" * 70000)]
    assert reader.buffer == b""


def test_detach_keys_are_found_across_reads_and_never_sent():
    keys = DetachKeys(b"\x10\x11")
    assert keys.scan(b"ab") == (b"ab", False)
    assert keys.scan(b"c\x10") == (b"c", False)  # maybe the start: held back
    assert keys.scan(b"x") == (b"\x10x", False)  # it was not: sent after all
    assert keys.scan(b"\x10") == (b"", False)
    assert keys.scan(b"\x11rest") == (b"", True)
    held = DetachKeys(b"\x10\x11")
    assert held.scan(b"end\x10") == (b"end", False)
    assert held.scan(b"") == (b"\x10", False)  # end of input releases what was held
    assert DetachKeys(None).scan(b"\x10\x11") == (b"\x10\x11", False)


def test_detach_keys_option_as_docker_spells_it():
    assert detach_key_bytes("ctrl-p,ctrl-q") == b"\x10\x11"
    assert detach_key_bytes("ctrl-@,a,ctrl-_") == b"\x00a\x1f"
    with pytest.raises(SystemExit, match="not a key"):
        detach_key_bytes("ctrl-pq")
