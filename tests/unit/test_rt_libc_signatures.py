"""libc functions in the syscall seam get their pointer and signature on first use."""

from __future__ import annotations

import os

from runtime.oci import syscalls


def test_a_function_gets_its_signature_when_first_used_and_keeps_it():
    made = []

    def signature():
        made.append("getpid")
        return [], syscalls._Long

    libc = syscalls._Library(syscalls._ctypes.FUNCFLAG_CDECL, {"getpid": signature})
    assert "getpid" not in vars(libc)  # nothing made before the first call
    first = libc.getpid
    assert libc.getpid is first and made == ["getpid"]
    assert first.restype is syscalls._Long and list(first.argtypes) == []
    assert first() == os.getpid()


def test_a_function_without_a_signature_takes_the_defaults():
    libc = syscalls._Library(syscalls._ctypes.FUNCFLAG_CDECL, {})
    assert libc.getppid.restype is syscalls._Int


def test_the_seam_calls_through_the_declared_signatures():
    assert syscalls.prctl(syscalls.PR_GET_NO_NEW_PRIVS) in (0, 1)  # unsigned long arguments
    assert syscalls._libc.prctl.argtypes[1] is syscalls._ULong
    assert syscalls._libc.syscall.restype is syscalls._Long
