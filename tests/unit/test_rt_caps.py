"""Bounding set drop with a fake below the syscall seam: caps left out are dropped without
being read first; caps asked for are read, and refused when this process lacks them."""

from __future__ import annotations

import errno

import pytest

from runtime.oci import linux
from runtime.oci import syscalls as real


class FakePrctl:
    def __init__(self, held: int, can_setpcap: bool = True) -> None:
        self.held = held
        self.can_setpcap = can_setpcap
        self.calls: list[tuple[int, int]] = []

    def prctl(self, option: int, cap: int = 0, *_rest) -> int:
        self.calls.append((option, cap))
        if option == real.PR_CAPBSET_READ:
            return (self.held >> cap) & 1
        if not self.can_setpcap:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        self.held &= ~(1 << cap)
        return 0


def test_unwanted_caps_are_dropped_and_only_wanted_ones_read():
    fake = FakePrctl(held=0b1111)
    linux.drop_bounding(0b0101, 3, fake)
    assert fake.held == 0b0101
    reads = [cap for option, cap in fake.calls if option == real.PR_CAPBSET_READ]
    drops = [cap for option, cap in fake.calls if option == real.PR_CAPBSET_DROP]
    assert reads == [0, 2] and drops == [1, 3]


def test_a_wanted_cap_that_is_not_held_is_refused():
    with pytest.raises(linux.ConfigError, match="cannot be granted"):
        linux.drop_bounding(0b0011, 3, FakePrctl(held=0b0001))


def test_without_setpcap_only_a_held_unwanted_cap_is_an_error():
    linux.drop_bounding(0b0001, 1, FakePrctl(held=0b0001, can_setpcap=False))  # cap 1 not held
    with pytest.raises(PermissionError):
        linux.drop_bounding(0b0001, 1, FakePrctl(held=0b0011, can_setpcap=False))
