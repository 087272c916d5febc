"""The init (stage 2) and stage 1 share the create's channel: the init's "ready" can come
before the "pid" stage 1 sends once it has forked the init. The create must still learn
the init's pid (it recorded pid 0 and `start` then found the container 'stopped')."""

from __future__ import annotations

import os

from runtime.oci import spawn


class _Scripted:
    def __init__(self, messages):
        self.messages = list(messages)

    def recv(self):
        return self.messages.pop(0) if self.messages else None

    def send(self, message):
        raise AssertionError(f"nothing to answer here: {message}")


def test_ready_before_the_pid_message_waits_for_the_pid():
    me = os.getpid()  # a live pid, so its start time can be read
    record: dict = {}
    channel = _Scripted([{"type": "ready"}, {"type": "pid", "pid": me}])
    assert spawn._supervise_create(channel, {}, record, stage1=1) == me
    assert record["pid"] == me and record["start_time"] is not None


def test_pid_then_ready_is_unchanged():
    me = os.getpid()
    record: dict = {}
    channel = _Scripted([{"type": "pid", "pid": me}, {"type": "ready"}])
    assert spawn._supervise_create(channel, {}, record, stage1=1) == me
