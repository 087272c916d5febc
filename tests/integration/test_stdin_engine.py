"""A container's stdin through the shim's attach.sock (Engine.attach), under every runtime:
input piped in, its end closing the container's stdin, and output framed per stream."""

from __future__ import annotations

import os
import threading

import test_engine

from runtime import shim
from runtime.oci.spec import ContainerSpec

engine = test_engine.engine
rootfs = test_engine.rootfs


def _pipe_with(data: bytes) -> int:
    """A pipe's read end that yields `data` and then end-of-file."""
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    return r


def _collect(fd: int, into: list) -> threading.Thread:
    def read() -> None:
        while chunk := os.read(fd, 65536):
            into.append(chunk)
        os.close(fd)

    thread = threading.Thread(target=read)
    thread.start()
    return thread


def test_piped_input_reaches_the_container_and_its_end_closes_stdin(engine, rootfs):
    script = "cat; echo to-stderr >&2; exit 3"
    spec = ContainerSpec(rootfs=str(rootfs), args=["sh", "-c", script])
    cid = engine.create(spec, stdin_open=True, stdin_once=True)
    started = engine.start(cid, on_attach=True)
    assert started["awaiting_attach"] is True  # nothing runs before its client is there
    assert engine.inspect(cid).get("started_at") is None
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    out, err = [], []
    readers = [_collect(out_r, out), _collect(err_r, err)]
    stdin = _pipe_with(b"hello\nno newline at the end")
    try:
        engine.attach(cid, stdin=stdin, stdout=out_w, stderr=err_w)
    finally:
        os.close(stdin)
        os.close(out_w)
        os.close(err_w)
        for thread in readers:
            thread.join(60)
    # cat only ends once its stdin does: the exit proves the end of input got through.
    assert engine.wait(cid, timeout=60) == 3
    assert b"".join(out) == b"hello\nno newline at the end"
    assert b"".join(err) == b"to-stderr\n"
    logged = [(r["stream"], r["log"]) for r in engine.logs(cid)]
    assert ("stderr", "to-stderr\n") in logged  # the log keeps everything too
    assert engine.inspect(cid)["awaiting_attach"] is False
    # A start by hand, nobody to attach: it runs at once (cat then waits for input).
    assert "awaiting_attach" not in engine.start(cid)
    assert engine.inspect(cid)["started_at"] is not None
    engine.kill(cid)
    assert engine.wait(cid, timeout=60) == 137


def test_without_stdin_open_input_is_not_read(engine, rootfs):
    spec = ContainerSpec(rootfs=str(rootfs), args=["sh", "-c", "cat; echo done; exec sleep 1000"])
    cid = engine.create(spec)
    engine.start(cid)
    out_r, out_w = os.pipe()
    out: list = []
    reader = _collect(out_r, out)
    r, w = os.pipe()  # never closed: attach must neither read it nor wait for its end
    os.write(w, b"unread")
    attaching = threading.Thread(target=engine.attach, args=(cid, r, out_w, out_w))
    attaching.start()
    try:
        test_engine.wait_for_log(engine, cid, "done\n")  # /dev/null was cat's stdin
        engine.kill(cid)
        attaching.join(60)
        assert not attaching.is_alive()  # the run's end ended it
        assert os.read(r, 100) == b"unread"
    finally:
        os.close(out_w)
        reader.join(60)
        os.close(r)
        os.close(w)
    assert engine.wait(cid, timeout=60) == 137
    # Output that came before attaching is in the log only.
    assert b"".join(out) in (b"", b"done\n")


def test_open_stdin_outlives_a_client_and_takes_the_next(engine, rootfs):
    # stdin_open without once (a `stdin_open: true` service): a client leaving does not
    # close the container's stdin, and the next client's input arrives too.
    script = "while read line; do echo got $line; done; echo stdin-closed"
    spec = ContainerSpec(rootfs=str(rootfs), args=["sh", "-c", script])
    cid = engine.create(spec, stdin_open=True)
    assert "awaiting_attach" not in engine.start(cid)
    directory = engine.inspect(cid)["dir"]
    for word in ("first", "second"):
        sock = shim.connect_attach(directory)
        try:
            sock.sendall(f"{word}\n".encode())
            sock.shutdown(1)  # SHUT_WR: this client's input ends here
            frames, seen = shim.FrameReader(), b""
            while f"got {word}\n".encode() not in seen:
                chunk = sock.recv(65536)
                assert chunk, f"the shim hung up before echoing {word}"
                seen += b"".join(data for _, data in frames.feed(chunk))
        finally:
            sock.close()
    assert engine.inspect(cid)["status"] == "running"
    engine.stop(cid, timeout=0)
    lines = [r["log"] for r in engine.logs(cid) if not r["log"].startswith("[composer-shim]")]
    assert lines == ["got first\n", "got second\n"]


def test_a_reader_that_falls_behind_holds_the_output_back_and_loses_none(engine, rootfs):
    # 8 MB is far more than the shim keeps for a client plus what the pipes and the
    # socket hold, so while nobody reads, the container must wait: its last line, on
    # stderr after the rest, cannot have come. Then everything arrives, in order.
    script = "head -c 8000000 /dev/zero; echo done >&2"
    spec = ContainerSpec(rootfs=str(rootfs), args=["sh", "-c", script])
    cid = engine.create(spec, stdin_open=True, stdin_once=True)
    engine.start(cid, on_attach=True)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    stdin = _pipe_with(b"")
    attaching = threading.Thread(target=engine.attach, args=(cid, stdin, out_w, err_w))
    attaching.start()
    try:
        test_engine.wait_for_log(engine, cid, "\0" * 16 * 1024)  # it has begun
        os.read(out_r, 1)  # (the attach thread has begun writing to us)
        for _ in range(50):
            assert all(r["stream"] == "stdout" for r in engine.logs(cid))
            assert engine.inspect(cid)["status"] == "running"
        out, err = [], []
        readers = [_collect(out_r, out), _collect(err_r, err)]
        attaching.join(120)
        assert not attaching.is_alive()
    finally:
        os.close(out_w)
        os.close(err_w)
        os.close(stdin)
    for thread in readers:
        thread.join(60)
    assert engine.wait(cid, timeout=60) == 0
    assert len(b"".join(out)) == 8000000 - 1 and set(b"".join(out)) == {0}
    assert b"".join(err) == b"done\n"
