"""The shim runs composer-runtime's commands in a fork of itself (no new interpreter)."""

from __future__ import annotations

import os
import sys

import pytest

from runtime import shim


@pytest.mark.parametrize(
    ("runtime", "ours"),
    [
        (["/venv/bin/composer-runtime"], True),
        ([sys.executable, "-m", "runtime.cli"], True),
        (["/usr/bin/crun"], False),
        (["/usr/sbin/runc"], False),
    ],
)
def test_only_our_runtime_runs_in_a_fork(runtime, ours):
    assert shim.is_composer_runtime(runtime) is ours


def _run(args, monkeypatch, probe) -> tuple[int, str]:
    import runtime.cli

    monkeypatch.setattr(runtime.cli, "main", probe)  # the fork imports it after forking
    r, w = os.pipe2(os.O_CLOEXEC)
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        pid = shim.fork_composer_runtime(args, (null, w, w))
    finally:
        os.close(w)
        os.close(null)
    with os.fdopen(r) as out:
        text = out.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), text


def test_the_fork_gets_stdio_and_args_and_drops_what_exec_would(monkeypatch):
    private = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    passed = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(passed, True)  # an exec would keep it too

    def probe(args):
        import _signal

        fds = sorted(int(name) for name in os.listdir("/proc/self/fd"))
        print(args, private in fds, passed in fds, _signal.set_wakeup_fd(-1))
        return 7

    try:
        code, text = _run(["--root", "/r", "state", "c1"], monkeypatch, probe)
    finally:
        os.close(private)
        os.close(passed)
    assert code == 7
    assert text.strip() == "['--root', '/r', 'state', 'c1'] False True -1"


def test_a_crash_in_the_fork_is_a_failure_with_its_traceback(monkeypatch):
    def probe(_args):
        raise KeyError("boom")

    code, text = _run([], monkeypatch, probe)
    assert code == 1 and "KeyError: 'boom'" in text


def test_real_command_reports_like_the_cli(tmp_path):
    r, w = os.pipe2(os.O_CLOEXEC)
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    pid = shim.fork_composer_runtime(["--root", str(tmp_path), "state", "nope"], (null, w, w))
    os.close(w)
    os.close(null)
    with os.fdopen(r) as out:
        text = out.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1
    assert "'nope' does not exist" in text
