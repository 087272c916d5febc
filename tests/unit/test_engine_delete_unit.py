"""The engine's in-process runtime calls end as the command would, and its wait for a
process to end (a pidfd) tells a live one from one that is gone."""

from __future__ import annotations

import json
import subprocess
import sys

from runtime import engine
from runtime.oci.container import ContainerError
from runtime.state import process_start_time


def _raises(error: BaseException):
    def call() -> None:
        raise error

    return call


def test_success_is_code_zero_and_no_text():
    result = engine._as_command(lambda: None)
    assert (result.returncode, result.stderr) == (0, "")


def test_an_error_reads_as_the_command_prints_it():
    result = engine._as_command(_raises(ContainerError("container 'x' does not exist")))
    assert (result.returncode, result.stderr) == (
        1,
        "composer-runtime: container 'x' does not exist\n",
    )
    result = engine._as_command(_raises(FileNotFoundError(2, "No such file or directory")))
    assert result.stderr == "composer-runtime: [Errno 2] No such file or directory\n"


class Surprise(Exception):
    pass


def test_an_unexpected_exception_is_named_as_a_traceback_would():
    # The command prints any *Error as one line (KeyError too), anything else as a traceback.
    result = engine._as_command(_raises(KeyError("config")))
    assert (result.returncode, result.stderr) == (1, "composer-runtime: 'config'\n")
    result = engine._as_command(_raises(Surprise("boom")))
    assert (result.returncode, result.stderr) == (1, "composer-runtime: Surprise: boom\n")


def test_poststop_hooks_are_found_in_the_bundle(tmp_path):
    assert engine._has_poststop_hooks(str(tmp_path)) is False  # no config: none
    (tmp_path / "config.json").write_text(json.dumps({"hooks": {"poststop": [{"path": "/x"}]}}))
    assert engine._has_poststop_hooks(str(tmp_path)) is True
    (tmp_path / "config.json").write_text(json.dumps({"hooks": {"prestart": [{"path": "/x"}]}}))
    assert engine._has_poststop_hooks(str(tmp_path)) is False
    (tmp_path / "config.json").write_text("{half")
    assert engine._has_poststop_hooks(str(tmp_path)) is True  # the command decides


def test_wait_gone_tells_a_live_process_from_an_ended_one():
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        started = process_start_time(child.pid)
        assert engine._wait_gone(child.pid, started, 0) is False
        child.stdin.close()  # it ends now
        assert engine._wait_gone(child.pid, started, 60) is True
    finally:
        child.kill()
        child.wait()
    assert engine._wait_gone(child.pid, started, 0) is True  # reaped: no such process
    assert engine._wait_gone(None, None, 0) is True


def test_wait_gone_is_not_fooled_by_a_reused_pid():
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        # Another start time: the process recorded is not this one, so it has ended.
        assert engine._wait_gone(child.pid, process_start_time(child.pid) - 1, 0) is True
    finally:
        child.stdin.close()
        child.wait()
