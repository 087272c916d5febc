"""stdin through `composer run`, `exec -i` and `attach`, end to end: busybox services on
the real kernel, input piped in or typed on a real terminal (a pty we drive)."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time

from tests.compose_helpers import COMPOSER

SERVICES = """
services:
  tool:
    image: busybox:latest
    command: ["sh"]
  reader:
    image: busybox:latest
    stdin_open: true
    command: ["sh", "-c", "while read line; do echo got $$line; done; echo input-ended"]
  console:
    image: busybox:latest
    stdin_open: true
    tty: true
    command: ["sh"]
"""


def _composer(project, *args: str, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("capture_output", True)
    return subprocess.run(
        [*COMPOSER, *args], cwd=project.directory, env=project.env, timeout=120, **kwargs
    )


def test_run_pipes_stdin_and_its_end_ends_the_command(project):
    project.write(SERVICES)
    piped = _composer(project, "run", "--rm", "-T", "tool", "cat", input=b"hi\n")
    assert (piped.returncode, piped.stdout) == (0, b"hi\n"), piped.stderr
    # Binary input, no newline at the end, and both output streams kept apart.
    data = bytes(range(256)) * 300
    script = "cat; echo done >&2; exit 4"
    both = _composer(project, "run", "--rm", "-T", "tool", "sh", "-c", script, input=data)
    assert both.returncode == 4
    assert both.stdout == data and both.stderr.endswith(b"done\n")


def test_run_of_a_terminal_service_without_a_terminal_keeps_piped_bytes(project):
    project.write(SERVICES)
    data = b"line\r\n\x03\x04no end"  # bytes a terminal would echo, translate or act on
    result = _composer(project, "run", "--rm", "console", "cat", input=data)
    assert (result.returncode, result.stdout) == (0, data), result.stderr


def test_run_with_stdin_at_its_end_already(project):
    project.write(SERVICES)
    with open(os.devnull, "rb") as null:
        result = _composer(project, "run", "--rm", "tool", "sh", "-c", "cat; echo ok", stdin=null)
    assert (result.returncode, result.stdout) == (0, b"ok\n"), result.stderr


def test_exec_interactive_passes_stdin(project):
    project.write(SERVICES)
    project.run("up", "-d", "reader")
    piped = _composer(project, "exec", "-i", "-T", "reader", "tr", "a-z", "A-Z", input=b"up\n")
    assert (piped.returncode, piped.stdout) == (0, b"UP\n"), piped.stderr


def test_attach_feeds_an_open_stdin_until_the_service_stops(project):
    project.write(SERVICES)
    project.run("up", "-d", "reader")
    attach = subprocess.Popen(
        [*COMPOSER, "attach", "reader"],
        cwd=project.directory,
        env=project.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        attach.stdin.write(b"one\n")
        attach.stdin.close()  # our input ends; the service's stdin stays open
        project.wait_for_log("reader", "got one")
        assert attach.poll() is None  # still attached: the output has not ended
        assert [row["State"] for row in project.ps()] == ["running"]
        project.run("stop", "-t", "1", "reader")
        attach.wait(60)
        out, err = attach.stdout.read(), attach.stderr.read()
    finally:
        if attach.poll() is None:
            attach.kill()
            attach.wait()
    assert out == b"got one\n", err
    # The service's exit code: its PID 1 sh catches no SIGTERM, so stop SIGKILLs it.
    assert attach.returncode == 137
    assert "input-ended" not in project.logs("reader")


class Terminal:
    """A pty whose slave is the controlling terminal of a `composer` process."""

    def __init__(self, project, *args: str, rows: int, cols: int) -> None:
        self.master, slave = os.openpty()
        self.resize(rows, cols)
        self.proc = subprocess.Popen(
            [*COMPOSER, *args],
            cwd=project.directory,
            env={**project.env, "TERM": "xterm"},
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.output = b""

    def resize(self, rows: int, cols: int) -> None:
        # On the master: the kernel sends SIGWINCH to the terminal's foreground process.
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {text!r}; the terminal showed {self.output!r}"
            if select.select([self.master], [], [], left)[0]:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: every holder of the slave is gone
                    chunk = b""
                assert chunk, f"the terminal closed before {text!r}: {self.output!r}"
                self.output += chunk

    def close(self) -> int:
        try:
            return self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            os.close(self.master)


def test_run_on_a_terminal_gets_a_terminal_of_our_size_that_follows_ours(project):
    project.write(SERVICES)
    term = Terminal(project, "run", "--rm", "tool", "sh", rows=31, cols=97)
    try:
        term.expect("/ # ")  # the shell's prompt: no line of output has ended yet
        term.type("tty; stty size; echo mark-$((6*7))\n")
        term.expect("mark-42")  # the command's output, not the echo of what we typed
        assert b"/dev/pts/" in term.output and b"31 97" in term.output
        saved = termios.tcgetattr(term.master)
        term.resize(40, 120)
        term.type("stty size; echo mark-$((6*8))\n")
        term.expect("mark-48")
        assert b"40 120" in term.output.split(b"mark-42")[-1]
        term.type("exit 5\n")
        assert term.proc.wait(60) == 5
        after = termios.tcgetattr(term.master)
    finally:
        term.close()
    # Raw while attached (our terminal neither echoes nor edits lines), restored after.
    assert not saved[3] & (termios.ECHO | termios.ICANON)
    assert after[3] & termios.ECHO and after[3] & termios.ICANON


def test_exec_on_a_terminal_follows_our_size(project):
    project.write(SERVICES)
    project.run("up", "-d", "reader")
    term = Terminal(project, "exec", "reader", "sh", rows=25, cols=81)
    try:
        term.expect("# ")
        term.type("stty size; echo mark-$((6*7))\n")
        term.expect("mark-42")
        assert b"25 81" in term.output
        term.resize(50, 132)
        term.type("stty size; echo mark-$((6*8))\n")
        term.expect("mark-48")
        assert b"50 132" in term.output.split(b"mark-42")[-1]
        term.type("exit 6\n")
        assert term.proc.wait(60) == 6
    finally:
        term.close()


def test_attach_to_a_terminal_service_and_detach_with_the_keys(project):
    project.write(SERVICES)
    project.run("up", "-d", "console")
    term = Terminal(project, "attach", "console", rows=24, cols=80)
    try:
        term.type("KEPT=yes; echo attached-$((40+2))\n")
        term.expect("attached-42")
        term.type("\x10\x11")  # ctrl-p ctrl-q: docker's detach keys
        assert term.proc.wait(60) == 0
    finally:
        term.close()
    assert [row["State"] for row in project.ps()] == ["running"]  # it runs on
    again = Terminal(project, "attach", "--detach-keys", "ctrl-x", "console", rows=24, cols=80)
    try:
        again.type("echo again-$KEPT-$((40+3))\n")
        again.expect("again-yes-43")  # the same shell: its terminal outlived our first visit
        again.type("exit 3\n")
        assert again.proc.wait(60) == 3  # the service ended: its exit code is ours
    finally:
        again.close()


def test_run_detached_keeps_the_services_open_stdin_for_a_later_attach(project):
    from runtime.engine import Engine

    project.write(SERVICES)
    name = project.run("run", "-d", "reader").stdout.strip()
    engine = Engine(project.root)
    state = engine.inspect(name)
    assert state["stdin_open"] and not state["stdin_once"]
    feed_r, feed_w = os.pipe()
    out_r, out_w = os.pipe()
    os.write(feed_w, b"later\n\x10\x11")  # a line, then the keys that detach
    os.close(feed_w)
    detached = engine.attach(
        name, stdin=feed_r, stdout=out_w, stderr=out_w, detach_keys=b"\x10\x11"
    )
    os.close(feed_r)
    assert detached
    os.close(out_w)
    deadline = time.monotonic() + 20
    while "got later" not in project.logs("reader"):
        assert time.monotonic() < deadline, project.logs("reader")
        time.sleep(0.1)
    assert engine.inspect(name)["status"] == "running"
    assert "input-ended" not in project.logs("reader")
    os.close(out_r)
    project.run("rm", "-f", "-s")
