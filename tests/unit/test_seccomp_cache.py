"""Compiled seccomp programs kept per profile (libseccomp runs on a miss only)."""

from __future__ import annotations

import pytest

from runtime.oci import seccomp_cache

PROFILE = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "flags": ["SECCOMP_FILTER_FLAG_LOG"],
    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
}


def _entries(cache_dir):
    return list(cache_dir.iterdir())


def test_a_miss_compiles_and_stores_then_a_hit_reads(tmp_path, monkeypatch):
    first = seccomp_cache.program(PROFILE, str(tmp_path))
    assert first.bpf and len(first.bpf) % 8 == 0 and first.flags == 2
    assert len(_entries(tmp_path)) == 1

    def no_compile(_seccomp):
        raise AssertionError("compiled again")

    monkeypatch.setattr(seccomp_cache, "_compile", no_compile)
    again = seccomp_cache.program(PROFILE, str(tmp_path))
    assert (again.bpf, again.flags) == (first.bpf, first.flags)
    other = {**PROFILE, "defaultAction": "SCMP_ACT_LOG"}
    with pytest.raises(AssertionError, match="compiled again"):
        seccomp_cache.program(other, str(tmp_path))  # another profile: another entry


def test_an_entry_of_another_libseccomp_is_stale(tmp_path):
    compiled = seccomp_cache.program(PROFILE, str(tmp_path))
    [entry] = _entries(tmp_path)
    header, _, bpf = entry.read_bytes().partition(b"\n")
    entry.write_bytes(header.replace(b'"size": ', b'"size": 1') + b"\n" + b"junk")
    assert seccomp_cache.program(PROFILE, str(tmp_path)).bpf == compiled.bpf
    assert entry.read_bytes().partition(b"\n")[2] == bpf  # rewritten


def test_unknown_flags_are_refused():
    with pytest.raises(ValueError, match="NOPE"):
        seccomp_cache.kernel_flags({"flags": ["SECCOMP_FILTER_FLAG_NOPE"]})
