"""attach.sock's frames: stream and exact bytes, however the reads split them."""

from __future__ import annotations

from runtime import shim


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
