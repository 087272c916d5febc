from __future__ import annotations

import pytest

from runtime.oci import capabilities as caps


def test_table_covers_every_number_from_chown_to_checkpoint_restore():
    assert caps.CAPABILITIES["CAP_CHOWN"] == 0
    assert caps.CAPABILITIES["CAP_SYS_ADMIN"] == 21
    assert caps.CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40
    assert sorted(caps.CAPABILITIES.values()) == list(range(41))


def test_docker_default_is_the_14_docker_grants():
    assert len(caps.DOCKER_DEFAULT) == 14
    assert set(caps.DOCKER_DEFAULT) == {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    }


def test_mask_and_names_round_trip():
    mask = caps.to_mask(["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"])
    assert mask == (1 << 0) | (1 << 5) | (1 << 21)
    assert caps.names(mask) == ["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"]
    assert caps.to_mask([]) == 0
    assert caps.names(0) == []


def test_unknown_names_are_refused_and_named():
    with pytest.raises(ValueError, match="CAP_NOT_A_THING"):
        caps.to_mask(["CAP_CHOWN", "CAP_NOT_A_THING"])
    # OCI names are exact: the short spelling belongs to normalize()
    with pytest.raises(ValueError, match="chown"):
        caps.to_mask(["chown"])
    with pytest.raises(ValueError):
        caps.number("CAP_BOGUS")


def test_names_refuses_bits_past_the_table():
    with pytest.raises(ValueError):
        caps.names(1 << 41)


def test_last_cap_reads_proc_and_falls_back(tmp_path):
    f = tmp_path / "cap_last_cap"
    f.write_text("37\n")
    assert caps.last_cap(str(f)) == 37
    assert caps.last_cap(str(tmp_path / "missing")) == 40
    with open("/proc/sys/kernel/cap_last_cap") as real:
        assert caps.last_cap() == int(real.read())


def test_all_names_stops_at_the_kernels_last_cap():
    assert caps.all_names(highest=37)[-1] == "CAP_AUDIT_READ"
    assert len(caps.all_names(highest=37)) == 38
    assert len(caps.all_names(highest=40)) == 41


def test_normalize_accepts_compose_spellings():
    assert caps.normalize("net_admin") == "CAP_NET_ADMIN"
    assert caps.normalize("CAP_SYS_ADMIN") == "CAP_SYS_ADMIN"
    assert caps.normalize(" all ") == "ALL"
    with pytest.raises(ValueError, match="frobnicate"):
        caps.normalize("frobnicate")


def test_resolve_default_add_drop():
    assert caps.resolve() == list(caps.DOCKER_DEFAULT)
    got = caps.resolve(cap_add=["NET_ADMIN"], cap_drop=["MKNOD", "CAP_NET_RAW"])
    assert "CAP_NET_ADMIN" in got
    assert "CAP_MKNOD" not in got and "CAP_NET_RAW" not in got
    assert len(got) == 13


def test_resolve_drop_all_keeps_only_adds():
    assert caps.resolve(cap_add=["chown"], cap_drop=["ALL"]) == ["CAP_CHOWN"]
    assert caps.resolve(cap_drop=["ALL"]) == []


def test_resolve_add_all_then_drop():
    got = caps.resolve(cap_add=["ALL"], cap_drop=["SYS_ADMIN"])
    assert "CAP_SYS_ADMIN" not in got
    assert len(got) == len(caps.available()) - 1


def test_resolve_add_wins_over_drop_like_docker():
    assert "CAP_KILL" in caps.resolve(cap_add=["KILL"], cap_drop=["KILL"])


def test_resolve_privileged_is_every_capability_we_can_grant():
    assert caps.resolve(privileged=True, cap_drop=["CHOWN"]) == caps.available()


def test_available_is_the_kernels_set_within_our_bounding_set(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapBnd:\t000001fffeffffff\n")  # all but CAP_SYS_RESOURCE
    got = caps.available(str(status))
    assert "CAP_SYS_RESOURCE" not in got
    assert len(got) == len(caps.all_names()) - 1
    assert caps.available(str(tmp_path / "missing")) == caps.all_names()
    with open("/proc/self/status") as f:
        bounding = int(next(x for x in f if x.startswith("CapBnd:")).split()[1], 16)
    assert caps.to_mask(caps.available()) == bounding & caps.to_mask(caps.all_names())


def test_resolve_refuses_unknown():
    with pytest.raises(ValueError, match="CAP_WIZARDRY"):
        caps.resolve(cap_add=["CAP_WIZARDRY"])


def test_process_capabilities_leaves_inheritable_and_ambient_empty():
    sets = caps.process_capabilities(["CAP_CHOWN", "CAP_KILL"])
    for kind in ("bounding", "effective", "permitted"):
        assert sets[kind] == ["CAP_CHOWN", "CAP_KILL"]
    assert sets["inheritable"] == [] and sets["ambient"] == []
    with pytest.raises(ValueError):
        caps.process_capabilities(["CAP_NOPE"])
