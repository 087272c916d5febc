"""HelperSlot: the one helper process of a kind that a command keeps."""

from __future__ import annotations

from runtime.helper_slot import HelperSlot


class Fake:
    made = 0

    def __init__(self) -> None:
        Fake.made += 1
        self.running, self.closed = True, False

    def alive(self) -> bool:
        return self.running

    def close(self) -> None:
        self.closed, self.running = True, False


def test_one_helper_made_again_only_once_it_has_ended():
    Fake.made = 0
    slot = HelperSlot(Fake)
    slot.start()
    first = slot.current
    slot.start()
    assert slot.current is first and Fake.made == 1
    first.running = False
    slot.start()
    assert slot.current is not first and Fake.made == 2


def test_forgetting_ends_it_but_spares_its_successor():
    slot = HelperSlot(Fake)
    slot.start()
    failed = slot.current
    slot.forget(failed)
    assert failed.closed and slot.current is None
    slot.start()
    successor = slot.current
    slot.forget(failed)  # a late report about the old one
    assert slot.current is successor and not successor.closed


def test_stop_ends_it_and_a_helper_that_cannot_start_leaves_the_slot_empty():
    slot = HelperSlot(Fake)
    slot.start()
    helper = slot.current
    slot.stop()
    assert helper.closed and slot.current is None
    slot.stop()  # nothing to end

    def refused():
        raise OSError("no more processes")

    broken = HelperSlot(refused)
    broken.start()
    assert broken.current is None
