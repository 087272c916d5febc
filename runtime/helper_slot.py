"""The one helper process of a kind a command keeps (the netlink helper, the shim spawner):
made on demand, made again once it has ended, forgotten when it fails, ended by stop().

A helper has alive() and close(). Its users do the work themselves whenever the slot is
empty. Only _thread is imported: the shim spawner's children are shims, whose memory counts.
"""

from __future__ import annotations

import _socket
import _thread
import os

# The directory holding runtime/: first on the import path of the processes we start with
# `python -c` (helpers, shims), so they import this very code.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_process(argv, **popen_options):
    """(process, our socket): `argv` run with the other end of a SOCK_SEQPACKET socketpair,
    whose descriptor number replaces "{fd}" in argv; stdin and stdout are /dev/null."""
    import subprocess

    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    try:
        process = subprocess.Popen(
            [str(theirs.fileno()) if arg == "{fd}" else arg for arg in argv],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            **popen_options,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return process, ours


class HelperSlot:
    def __init__(self, make) -> None:
        self._make = make  # () -> a new helper; OSError if it cannot be started
        self.current = None
        self._guard = _thread.allocate_lock()

    def start(self) -> None:
        """Make the helper unless one is running; if it cannot be made, the slot stays empty."""
        with self._guard:
            if self.current is None or not self.current.alive():
                try:
                    self.current = self._make()
                except OSError:
                    self.current = None

    def forget(self, helper) -> None:
        """Empty the slot of a helper that failed (unless another took its place); end it."""
        with self._guard:
            if self.current is helper:
                self.current = None
        helper.close()

    def stop(self) -> None:
        """End the helper: when the command is done."""
        with self._guard:
            helper, self.current = self.current, None
        if helper is not None:
            helper.close()
