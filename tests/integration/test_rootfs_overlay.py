"""Overlay root filesystems from stored images, on the real kernel."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from images import busybox_image

from runtime.images.rootfs import (
    images_in_use,
    is_mounted,
    layers_in_use,
    prepare_rootfs,
    release_rootfs,
)
from runtime.images.store import ImageStore


@pytest.fixture
def store(tmp_path, monkeypatch) -> ImageStore:
    monkeypatch.setenv("COMPOSER_ROOT", str(tmp_path / "root"))
    return ImageStore()


@pytest.fixture
def containers(store):
    """Container dirs handed out by this fixture are released (unmounted) afterwards."""
    made: list[Path] = []

    def new(name: str) -> Path:
        path = store.state_root / "containers" / name
        made.append(path)
        return path

    yield new
    for path in made:
        release_rootfs(path)
        assert not is_mounted(path / "rootfs")


def tar_of(files: dict[str, bytes | None], opaque: tuple[str, ...] = ()) -> bytes:
    """A layer: name → content, or None for an OCI whiteout of that name."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in opaque:
            tar.addfile(tarfile.TarInfo(f"{directory}/.wh..wh..opq"))
        for name, data in files.items():
            if data is None:
                head, base = os.path.split(name)
                tar.addfile(tarfile.TarInfo(os.path.join(head, ".wh." + base)))
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def image_on(store: ImageStore, base, layers: list[bytes], name: str):
    descriptors, diff_ids = list(base.layers), list(base.diff_ids)
    for data in layers:
        descriptor, diff_id = store.add_layer_from_tar(io.BytesIO(data))
        descriptors.append(descriptor)
        diff_ids.append(diff_id)
    config = dict(base.config)
    config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    store.put_image(None, config, descriptors, name=name)
    return store.resolve(name)


def run_in(rootfs: Path, script: str) -> str:
    done = subprocess.run(
        [shutil.which("chroot"), str(rootfs), "/bin/sh", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/bin"},
    )
    return done.stdout


def test_busybox_rootfs_runs_and_writes_go_to_the_upper_dir(store, containers):
    image = busybox_image(store)
    container = containers("c1")
    rootfs = prepare_rootfs(image, container, store)
    assert is_mounted(rootfs)
    assert run_in(rootfs, "echo hi > /tmp/x; cat /etc/hostname; rm /etc/passwd") == "busybox\n"
    assert (container / "upper" / "tmp" / "x").read_text() == "hi\n"
    whiteout = os.lstat(container / "upper" / "etc" / "passwd")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
    lower = store.layers.path(image.diff_ids[0])
    assert (lower / "etc" / "passwd").exists() and not (lower / "tmp" / "x").exists()
    assert prepare_rootfs(image, container, store) == rootfs  # already mounted: same mount
    assert layers_in_use(store.state_root) == set(image.diff_ids)
    assert images_in_use(store.state_root) == {image.digest}
    release_rootfs(container)
    assert not is_mounted(rootfs)
    assert sorted(p.name for p in container.iterdir()) == []
    assert layers_in_use(store.state_root) == set()


def _mount_options(path: Path) -> str:
    with open("/proc/self/mountinfo") as f:
        return next(line.split(" - ")[1] for line in f if line.split()[4] == str(path))


@pytest.mark.parametrize("layers", [1, 150])  # 150: the short-link mount from a child
def test_a_volatile_rootfs_skips_syncs_and_is_released_whole(store, containers, layers):
    base = busybox_image(store)
    image = base
    if layers > 1:
        extra = [tar_of({f"layers/{n:03d}": b"x"}) for n in range(layers - 1)]
        image = image_on(store, base, extra, "deep:1")
    container = containers("v")
    rootfs = prepare_rootfs(image, container, store, volatile=True)
    assert "volatile" in _mount_options(rootfs)
    assert run_in(rootfs, "echo hi > /tmp/x; cat /tmp/x") == "hi\n"
    assert (container / "upper" / "tmp" / "x").read_text() == "hi\n"
    release_rootfs(container)
    assert not is_mounted(rootfs)
    assert sorted(p.name for p in container.iterdir()) == []  # work/incompat/volatile too


def test_two_containers_share_the_unpacked_layer(store, containers):
    image = busybox_image(store)
    a = prepare_rootfs(image, containers("a"), store)
    b = prepare_rootfs(image, containers("b"), store)
    run_in(a, "echo only-a > /only")
    assert not (b / "only").exists()
    assert os.stat(a / "bin" / "busybox").st_ino == os.stat(b / "bin" / "busybox").st_ino
    assert store.layers.list() == image.diff_ids


def test_whiteouts_and_opaque_dirs_hide_lower_layers(store, containers):
    base = busybox_image(store)
    image = image_on(
        store,
        base,
        [
            tar_of({"data/keep": b"1", "data/drop": b"2", "cfg/old": b"old"}),
            tar_of({"data/drop": None, "cfg/new": b"new"}, opaque=("cfg",)),
        ],
        "layered:1",
    )
    rootfs = prepare_rootfs(image, containers("w"), store)
    assert sorted(os.listdir(rootfs / "data")) == ["keep"]
    assert sorted(os.listdir(rootfs / "cfg")) == ["new"]
    assert run_in(rootfs, "cat /data/keep /cfg/new") == "1new"


def test_image_with_150_layers_mounts(store, containers):
    base = busybox_image(store)
    layers = [tar_of({f"layers/{n:03d}": str(n).encode()}) for n in range(149)]
    image = image_on(store, base, layers, "deep:1")
    assert len(image.layers) == 150
    long_form = ":".join(str(store.layers.path(d)) for d in image.diff_ids)
    assert len(long_form) > os.sysconf("SC_PAGE_SIZE")  # absolute paths would not fit
    rootfs = prepare_rootfs(image, containers("deep"), store)
    assert len(os.listdir(rootfs / "layers")) == 149
    assert run_in(rootfs, "cat /layers/000 /layers/148") == "0148"


def test_prune_spares_layers_under_a_container(store, containers):
    image = busybox_image(store)
    container = containers("p")
    prepare_rootfs(image, container, store)
    store.remove("busybox")
    removed = store.prune(min_age=0)
    assert removed["images"] == [] and removed["layers"] == []
    assert store.layers.has(image.diff_ids[0])
    release_rootfs(container)
    removed = store.prune(min_age=0)
    assert removed["layers"] == image.diff_ids
    assert store.layers.list() == []


def test_committed_upper_dir_replays_deletions(store, containers):
    base = busybox_image(store)
    container = containers("build")
    rootfs = prepare_rootfs(base, container, store)
    run_in(rootfs, "rm -r /etc/hostname /home; mkdir -p /app; echo x > /app/f")
    descriptor, diff_id = store.commit_layer_dir(container / "upper", overlay_upper=True)
    config = dict(base.config)
    config["rootfs"] = {"type": "layers", "diff_ids": [*base.diff_ids, diff_id]}
    store.put_image(None, config, [*base.layers, descriptor], name="committed:1")
    child = prepare_rootfs(store.resolve("committed:1"), containers("child"), store)
    assert not (child / "etc" / "hostname").exists()
    assert not (child / "home").exists()
    assert (child / "app" / "f").read_text() == "x\n"
    assert (child / "etc" / "passwd").exists()


def test_rm_refuses_an_image_under_a_container(store, containers):
    from runtime.images import store as images

    image = busybox_image(store)
    container = containers("in-use")
    prepare_rootfs(image, container, store)
    with pytest.raises(images.ImageError, match="used by a container"):
        images.rm(["busybox"], store=store)
    assert store.resolve("busybox") is not None
    store.tag("second:1", image.digest)
    assert images.rm(["busybox"], store=store) == ["busybox:latest"]  # another name remains
    assert images.rm(["second:1"], force=True, store=store) == ["second:1", image.digest]
    assert images.prune(store=store, min_age=0)["layers"] == []  # the container still needs it
    release_rootfs(container)
    assert images.prune(store=store, min_age=0)["layers"] == image.diff_ids


def test_paths_with_spaces_commas_and_colons(tmp_path, monkeypatch):
    root = tmp_path / "odd root, with: marks"
    monkeypatch.setenv("COMPOSER_ROOT", str(root))
    store = ImageStore()
    image = busybox_image(store)
    container = root / "containers" / "c, d: e"
    try:
        rootfs = prepare_rootfs(image, container, store)
        assert is_mounted(rootfs)
        assert run_in(rootfs, "echo ok > /f; cat /f") == "ok\n"
        assert (container / "upper" / "f").exists()
    finally:
        release_rootfs(container, root)
    assert not is_mounted(container / "rootfs")
