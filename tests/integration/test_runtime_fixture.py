"""The shared busybox bundle runs under crun, so other tests can rely on it."""

from __future__ import annotations

from rootfs import read_config, write_config


def test_busybox_bundle_runs_under_crun(busybox_bundle, crun):
    config = read_config(busybox_bundle)
    config["process"]["args"] = ["sh", "-c", "echo hi from $(hostname); id -u"]
    write_config(busybox_bundle, config)
    result = crun("run", "--bundle", str(busybox_bundle), crun.new_id())
    assert result.stdout.split() == ["hi", "from", config["hostname"], "0"]
