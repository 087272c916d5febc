"""Compiled seccomp filters, kept per profile: libseccomp runs once, not at every create.

Compiling the Docker default profile and generating its BPF takes libseccomp 10-20 ms;
the same profile comes with nearly every container. The BPF program libseccomp would load
is exported once into /run/composer-runtime.cache/seccomp/<sha256 of the profile>.bpf and
later creates load it with one seccomp(2) call (runtime.oci.syscalls.seccomp_set_filter).
One cache for every runtime root: a program depends only on the profile and libseccomp,
and /run is emptied at boot.

An entry is a JSON header line, then the raw program. The header names the libseccomp
file that made it (path, size, mtime): an upgraded library makes the entry stale.
"""

from __future__ import annotations

import os

from runtime import state

CACHE_DIR = "/run/composer-runtime.cache/seccomp"

# OCI seccomp flags -> seccomp(2) SECCOMP_FILTER_FLAG_* bits (what libseccomp passes).
KERNEL_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}


class Program:
    """A BPF program ready for seccomp(2): raw sock_filter entries and the flags."""

    def __init__(self, bpf: bytes, flags: int) -> None:
        self.bpf = bpf
        self.flags = flags

    def load(self) -> None:
        from runtime.oci import syscalls

        syscalls.seccomp_set_filter(self.bpf, self.flags)


def kernel_flags(seccomp: dict) -> int:
    bits = 0
    for flag in seccomp.get("flags") or ():
        if flag not in KERNEL_FLAGS:
            raise ValueError(f"seccomp flag {flag!r} is not supported")
        bits |= KERNEL_FLAGS[flag]
    return bits


def program(seccomp: dict, cache_dir: str = CACHE_DIR) -> Program:
    """The profile's program from the cache, compiled and stored there on a miss."""
    flags = kernel_flags(seccomp)
    path = entry_path(seccomp, cache_dir)
    bpf = _read_entry(path)
    if bpf is None:
        bpf, library = _compile(seccomp)
        try:
            _write_entry(cache_dir, path, bpf, library)
        except OSError:
            pass  # a cache that cannot be written costs time, not the container
    return Program(bpf, flags)


def entry_path(seccomp: dict, cache_dir: str = CACHE_DIR) -> str:
    try:
        from _sha256 import sha256  # the C module; hashlib loads OpenSSL's (about 3 ms)
    except ImportError:  # Python 3.12 renamed it
        from hashlib import sha256

    text = state.dumps({"machine": os.uname().machine, "seccomp": seccomp})  # keys sorted
    return os.path.join(cache_dir, sha256(text.encode()).hexdigest() + ".bpf")


def _read_entry(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    header, _, bpf = data.partition(b"\n")
    try:
        made_by = state.loads(header)
        library = os.stat(made_by["library"])
    except (ValueError, KeyError, TypeError, OSError):
        return None
    if (library.st_size, library.st_mtime_ns) != (made_by["size"], made_by["mtime_ns"]):
        return None
    if not bpf or len(bpf) % 8:  # sock_filter entries are 8 bytes
        return None
    return bpf


def _write_entry(directory: str, path: str, bpf: bytes, library: str) -> None:
    made_by = os.stat(library)
    header = {"library": library, "size": made_by.st_size, "mtime_ns": made_by.st_mtime_ns}
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(state.dumps(header).encode() + b"\n" + bpf)
    os.rename(tmp, path)  # concurrent creates write the same bytes: last one wins


def _compile(seccomp: dict) -> tuple[bytes, str]:
    """(the BPF libseccomp would load, the path of the libseccomp that made it)."""
    import ctypes
    import tempfile

    from runtime.oci import seccomp as libseccomp

    with libseccomp.Filter(seccomp) as compiled:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)  # the same handle, our own types
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        with tempfile.TemporaryFile() as out:
            # seccomp.Filter exports only text (PFC); its context is what libseccomp needs
            rc = lib.seccomp_export_bpf(compiled._ctx, out.fileno())
            if rc < 0:
                raise OSError(-rc, f"libseccomp export: {os.strerror(-rc)}")
            out.seek(0)
            bpf = out.read()
    return bpf, _loaded_library("libseccomp.so")


def _loaded_library(name: str) -> str:
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.rstrip("\n").split(maxsplit=5)[-1]
            if os.path.basename(path).startswith(name):
                return path
    raise OSError(f"{name} is not loaded")
