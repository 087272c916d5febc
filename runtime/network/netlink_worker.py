"""Bridge and veth requests run in a helper process that a command starts before it needs it.

pyroute2's messages take ~30 ms of CPU to import (its whole package ~0.1 s), then a fraction of
a millisecond per request on top of the kernel's work. A command that will wire containers (up,
create, start, run, down) calls `prestart()` first thing: the helper imports them on another
core while the command loads the project, and then runs bridge.py's netlink functions for it, one request at a time
(they are quick; the command's own threads keep the GIL for everything else).

Every bridge function is idempotent, so when the helper is missing, fails to start or dies,
the request is simply run in this process.
"""

from __future__ import annotations

import gc
import os
import socket
import sys
import threading

from runtime.helper_slot import PACKAGE_PARENT, HelperSlot, start_process

# bridge.py's functions that talk netlink; the others read procfs and stay here.
REMOTE = frozenset({"ensure_bridge", "delete_link", "attach_veth"})
IDLE_SECONDS = 30.0  # a helper nobody asks for a while leaves; the next request runs here
MAX_MESSAGE = 1 << 16  # requests and replies are a few hundred bytes


def prestart() -> None:
    """Start the helper now, so that pyroute2 is imported by the time it is needed."""
    slot.start()


def stop() -> None:
    """End the helper: when the command is done (it also ends on its own when this process
    exits, or after IDLE_SECONDS without a request)."""
    slot.stop()


def call(function: str, *args, **kwargs):
    """bridge.`function`(*args, **kwargs), in the helper when one is running."""
    from runtime.network import bridge

    worker = slot.current
    if function in REMOTE and worker is not None and worker.netns == _netns_inode():
        try:
            return worker.call(function, args, kwargs)
        except _Gone:
            slot.forget(worker)  # idempotent: run it here instead
    return getattr(bridge, function)(*args, **kwargs)


class _Gone(Exception):
    """The helper exited before it answered."""


class _Worker:
    def __init__(self) -> None:
        self.process, self.sock = start_process(
            [
                sys.executable,
                *("-S", "-E", "-s"),  # no site processing: the path comes from us
                "-c",
                _BOOT,
                os.pathsep.join([PACKAGE_PARENT, *sys.path]),
                "{fd}",
            ]
        )
        self.lock = threading.Lock()  # one request on the socket at a time
        # The helper works in the namespace it was started in (a test may enter others).
        self.netns = _netns_inode()
        self.answered = 0

    def alive(self) -> bool:
        return self.process.poll() is None

    def call(self, function: str, args: tuple, kwargs: dict):
        import pickle  # here: every command imports this module, few ask the helper

        request = pickle.dumps((function, args, kwargs))
        with self.lock:
            try:
                self.sock.sendall(request)
                reply = self.sock.recv(MAX_MESSAGE)
            except OSError:
                reply = b""
            if not reply:
                self.process.poll()  # reaped, so no zombie is left behind
                raise _Gone
        ok, value = pickle.loads(reply)
        self.answered += 1
        if ok:
            return value
        raise value

    def close(self) -> None:
        """Only between requests: it may still be importing, which is not worth waiting
        for, and it holds nothing that a kill would lose."""
        self.sock.close()
        self.process.kill()
        self.process.wait()


slot = HelperSlot(_Worker)  # requests run in this process while it is empty


def _netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


# The helper's entry: argv[1] is its sys.path (ours, behind the directory holding runtime/):
# it imports pyroute2 from where we would. argv[2] is the socket's descriptor.
_BOOT = (
    "import os, sys; sys.path[:] = sys.argv[1].split(os.pathsep); "
    "from runtime.network import netlink_worker; netlink_worker.serve(int(sys.argv[2]))"
)


def _import_messages_alone() -> None:
    """pyroute2's package __init__ imports every subsystem it has (IPRoute on asyncio, NDB,
    conntrack, WireGuard ...), two thirds of its import time, and this process needs its
    rtnetlink messages only: the package's module is made without running its __init__."""
    import importlib.util

    from runtime.network import rtnl

    if "pyroute2" not in sys.modules:
        spec = importlib.util.find_spec("pyroute2")
        if spec is not None:
            sys.modules["pyroute2"] = importlib.util.module_from_spec(spec)
    rtnl.preload()


def serve(fd: int) -> None:
    """The helper's loop: answer (ok, value or exception) for each request until EOF."""
    import pickle

    from runtime.network import bridge

    sock = socket.socket(fileno=fd)
    gc.disable()  # a short-lived process: collections would only slow its imports
    _import_messages_alone()
    sock.settimeout(IDLE_SECONDS)
    while True:
        try:
            request = sock.recv(MAX_MESSAGE)
        except (TimeoutError, OSError):
            return
        if not request:
            return
        function, args, kwargs = pickle.loads(request)
        try:
            if function not in REMOTE:
                raise ValueError(f"not a netlink request: {function}")
            reply = (True, getattr(bridge, function)(*args, **kwargs))
        except Exception as e:  # handed to the caller, who raises it
            reply = (False, e)
        try:
            data = pickle.dumps(reply)
        except Exception as e:
            data = pickle.dumps((False, bridge.BridgeError(f"{function}: {reply[1]!r} ({e})")))
        sock.sendall(data)
