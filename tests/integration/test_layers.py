"""Layer tars: unpack with every file property, OCI whiteouts, refusal of escaping tars.

Device nodes, ownership and trusted.* xattrs need root (CI runs as root).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from runtime.images.layers import (
    OVERLAY_OPAQUE_XATTR,
    LayerError,
    LayerStore,
    UnsafeLayer,
    unpack_layer,
    write_layer_tar,
)
from runtime.images.store import BlobCorrupted, ImageStore


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **fields) -> tuple:
    return (name, kind, data, fields)


def make_tar(*entries: tuple) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data, fields in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = fields.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
            for key, value in fields.items():
                setattr(info, key, value)
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


# ---------------------------------------------------------------- properties


@pytest.fixture
def sample_tree(tmp_path: Path) -> Path:
    """A directory with one of every kind of file and metadata a layer carries."""
    src = tmp_path / "src"
    (src / "dir" / "sub").mkdir(parents=True)
    (src / "dir" / "file").write_bytes(b"content")
    os.chmod(src / "dir" / "file", 0o4755)  # set-uid survives (chmod after chown)
    os.link(src / "dir" / "file", src / "dir" / "hardlink")
    (src / "dir" / "symlink").symlink_to("file")
    (src / "abs-symlink").symlink_to("/etc/hostname")  # a target, never followed
    os.mkfifo(src / "dir" / "fifo")
    os.mknod(src / "dir" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chown(src / "dir" / "sub", 1000, 1001)
    os.chmod(src / "dir" / "sub", 0o700)
    os.setxattr(src / "dir" / "file", "user.note", b"kept")
    os.setxattr(src / "dir" / "file", "trusted.other", b"also kept")
    os.utime(src / "dir" / "file", ns=(1_600_000_000_123_456_789,) * 2)
    os.utime(src / "dir", ns=(1_500_000_000_000_000_000,) * 2)
    return src


def layer_bytes(directory: Path, **options) -> bytes:
    out = io.BytesIO()
    write_layer_tar(directory, out, **options)
    return out.getvalue()


def test_unpack_keeps_every_property(sample_tree, tmp_path):
    data = layer_bytes(sample_tree)
    dest = tmp_path / "layer"
    diff_id = unpack_layer(io.BytesIO(data), dest)
    assert diff_id == sha(data)
    d = dest / "dir"
    assert (d / "file").read_bytes() == b"content"
    file_stat = os.lstat(d / "file")
    assert stat.S_IMODE(file_stat.st_mode) == 0o4755
    assert file_stat.st_mtime_ns == 1_600_000_000 * 10**9  # layers we write keep whole seconds
    assert os.lstat(d / "hardlink").st_ino == file_stat.st_ino
    assert os.readlink(d / "symlink") == "file"
    assert os.readlink(dest / "abs-symlink") == "/etc/hostname"
    assert stat.S_ISFIFO(os.lstat(d / "fifo").st_mode)
    null = os.lstat(d / "null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    sub = os.lstat(d / "sub")
    assert (sub.st_uid, sub.st_gid, stat.S_IMODE(sub.st_mode)) == (1000, 1001, 0o700)
    assert os.getxattr(d / "file", "user.note") == b"kept"
    assert os.getxattr(d / "file", "trusted.other") == b"also kept"
    assert os.lstat(d).st_mtime_ns == 1_500_000_000_000_000_000  # set after its children


@pytest.mark.parametrize("compression", ["gzip", "zstd", None])
def test_every_compression_unpacks_to_the_same_diff_id(compression, sample_tree, tmp_path):
    plain = layer_bytes(sample_tree)
    blob = {
        "gzip": lambda: gzip.compress(plain),
        "zstd": lambda: zstandard.ZstdCompressor().compress(plain),
        None: lambda: plain,
    }[compression]()
    dest = tmp_path / "layer"
    assert unpack_layer(io.BytesIO(blob), dest, compression or "auto") == sha(plain)
    assert (dest / "dir" / "file").read_bytes() == b"content"


def test_declared_compression_must_match(tmp_path):
    blob = gzip.compress(make_tar(entry("a")))
    with pytest.raises(LayerError, match="gzip"):
        unpack_layer(io.BytesIO(blob), tmp_path / "layer", "zstd")
    assert leftovers(tmp_path) == []


def test_wrong_diff_id_leaves_nothing(tmp_path):
    data = make_tar(entry("a", data=b"x"))
    with pytest.raises(LayerError, match="expected diff_id"):
        unpack_layer(io.BytesIO(data), tmp_path / "layer", expected_diff_id=sha(b"other"))
    assert leftovers(tmp_path) == []


def test_pax_sub_second_mtimes_are_exact(tmp_path):
    data = make_tar(entry("f", data=b"x", pax_headers={"mtime": "1600000000.123456789"}))
    unpack_layer(io.BytesIO(data), tmp_path / "layer")
    assert os.lstat(tmp_path / "layer" / "f").st_mtime_ns == 1_600_000_000_123_456_789


def test_later_entries_replace_earlier_ones(tmp_path):
    data = make_tar(
        entry("a", data=b"first"),
        entry("a", tarfile.SYMTYPE, linkname="b"),
        entry("d", tarfile.DIRTYPE, mode=0o700),
        entry("d", tarfile.DIRTYPE, mode=0o750),
    )
    unpack_layer(io.BytesIO(data), tmp_path / "layer")
    assert os.readlink(tmp_path / "layer" / "a") == "b"
    assert stat.S_IMODE(os.lstat(tmp_path / "layer" / "d").st_mode) == 0o750


def test_parents_missing_from_the_tar_are_made(tmp_path):
    unpack_layer(io.BytesIO(make_tar(entry("./x/y/z", data=b"deep"))), tmp_path / "layer")
    assert (tmp_path / "layer" / "x" / "y" / "z").read_bytes() == b"deep"
    assert stat.S_IMODE(os.lstat(tmp_path / "layer" / "x").st_mode) == 0o755


def test_a_symlinked_parent_inside_the_layer_is_followed(tmp_path):
    data = make_tar(
        entry("usr/lib", tarfile.DIRTYPE),
        entry("lib", tarfile.SYMTYPE, linkname="usr/lib"),
        entry("lib/libx.so", data=b"elf"),
    )
    unpack_layer(io.BytesIO(data), tmp_path / "layer")
    assert (tmp_path / "layer" / "usr" / "lib" / "libx.so").read_bytes() == b"elf"
    assert os.path.islink(tmp_path / "layer" / "lib")


# ---------------------------------------------------------------- whiteouts


def test_oci_whiteouts_become_overlay_whiteouts(tmp_path):
    data = make_tar(
        entry("etc", tarfile.DIRTYPE),
        entry("etc/.wh.removed"),
        entry("opaque", tarfile.DIRTYPE),
        entry("opaque/.wh..wh..opq"),
        entry("opaque/new", data=b"n"),
        entry("gone/.wh..wh.plnk"),  # aufs metadata: ignored
    )
    dest = tmp_path / "layer"
    unpack_layer(io.BytesIO(data), dest)
    removed = os.lstat(dest / "etc" / "removed")
    assert stat.S_ISCHR(removed.st_mode) and removed.st_rdev == 0
    assert os.getxattr(dest / "opaque", OVERLAY_OPAQUE_XATTR) == b"y"
    assert (dest / "opaque" / "new").read_bytes() == b"n"
    assert not (dest / "etc" / ".wh.removed").exists()
    assert not (dest / "opaque" / ".wh..wh..opq").exists()
    assert os.listdir(dest / "gone") == []


def test_overlay_upper_whiteouts_become_oci_whiteouts(tmp_path):
    upper = tmp_path / "upper"
    (upper / "opaque").mkdir(parents=True)
    os.setxattr(upper / "opaque", OVERLAY_OPAQUE_XATTR, b"y")
    os.mknod(upper / "deleted", stat.S_IFCHR, os.makedev(0, 0))
    data = layer_bytes(upper, overlay_upper=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"opaque", "opaque/.wh..wh..opq", ".wh.deleted"}
    assert "SCHILY.xattr." + OVERLAY_OPAQUE_XATTR not in members["opaque"].pax_headers
    # And back again.
    unpack_layer(io.BytesIO(data), tmp_path / "again")
    assert os.lstat(tmp_path / "again" / "deleted").st_rdev == 0
    assert os.getxattr(tmp_path / "again" / "opaque", OVERLAY_OPAQUE_XATTR) == b"y"


def test_layer_tar_is_reproducible_with_clamped_mtime(sample_tree):
    first = layer_bytes(sample_tree, mtime=1_000_000)
    os.utime(sample_tree / "dir" / "file")  # now: clamped away
    assert layer_bytes(sample_tree, mtime=1_000_000) == first


def test_overlay_xattrs_in_a_tar_are_dropped(tmp_path):
    headers = {
        "SCHILY.xattr.trusted.overlay.redirect": "/elsewhere",
        "SCHILY.xattr.trusted.overlay.opaque": "y",
        "SCHILY.xattr.user.kept": "yes",
    }
    data = make_tar(entry("d", tarfile.DIRTYPE, pax_headers=headers))
    unpack_layer(io.BytesIO(data), tmp_path / "layer")
    assert os.listxattr(tmp_path / "layer" / "d") == ["user.kept"]


# ---------------------------------------------------------------- refused tars


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    victim = tmp_path / "outside"
    victim.mkdir()
    (victim / "secret").write_text("untouched")
    return victim


def refused(tmp_path: Path, outside: Path, data: bytes, match: str) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with pytest.raises(UnsafeLayer, match=match):
        unpack_layer(io.BytesIO(data), workspace / "layer")
    assert leftovers(workspace) == []  # no half-written layer, no temporary dir
    assert leftovers(outside) == ["secret"]
    assert (outside / "secret").read_text() == "untouched"


def test_refuses_dotdot(tmp_path, outside):
    data = make_tar(entry("ok", data=b"1"), entry("../outside/evil", data=b"x"))
    refused(tmp_path, outside, data, r"'\.\.'")


def test_refuses_dotdot_in_the_middle(tmp_path, outside):
    refused(tmp_path, outside, make_tar(entry("a/../../outside/evil", data=b"x")), r"'\.\.'")


def test_refuses_absolute_paths(tmp_path, outside):
    refused(tmp_path, outside, make_tar(entry(f"{outside}/evil", data=b"x")), "absolute")


def test_refuses_writing_through_a_symlink_to_outside(tmp_path, outside):
    data = make_tar(
        entry("link", tarfile.SYMTYPE, linkname=str(outside)),
        entry("link/evil", data=b"x"),
    )
    refused(tmp_path, outside, data, "symlink leading outside")


def test_refuses_writing_through_a_relative_symlink_to_outside(tmp_path, outside):
    data = make_tar(
        entry("a", tarfile.DIRTYPE),
        entry("a/up", tarfile.SYMTYPE, linkname="../../../outside"),
        entry("a/up/secret", data=b"overwritten"),
    )
    refused(tmp_path, outside, data, "symlink leading outside")


def test_refuses_whiteouts_through_a_symlink_to_outside(tmp_path, outside):
    data = make_tar(
        entry("link", tarfile.SYMTYPE, linkname=str(outside)),
        entry("link/.wh.secret"),
    )
    refused(tmp_path, outside, data, "symlink leading outside")


def test_refuses_hardlinks_to_outside(tmp_path, outside):
    data = make_tar(entry("steal", tarfile.LNKTYPE, linkname="../outside/secret"))
    refused(tmp_path, outside, data, r"'\.\.'")


def test_refuses_absolute_hardlinks(tmp_path, outside):
    data = make_tar(entry("steal", tarfile.LNKTYPE, linkname=str(outside / "secret")))
    refused(tmp_path, outside, data, "absolute")


def test_refuses_hardlinks_through_a_symlinked_parent(tmp_path, outside):
    data = make_tar(
        entry("link", tarfile.SYMTYPE, linkname=str(outside)),
        entry("steal", tarfile.LNKTYPE, linkname="link/secret"),
    )
    refused(tmp_path, outside, data, "symlink leading outside")


def test_hardlink_to_a_missing_target_is_an_error(tmp_path):
    with pytest.raises(LayerError, match="not in this layer"):
        unpack_layer(
            io.BytesIO(make_tar(entry("l", tarfile.LNKTYPE, linkname="nope"))), tmp_path / "x"
        )
    assert leftovers(tmp_path) == []


def test_truncated_tar_is_an_error(tmp_path):
    data = make_tar(entry("big", data=b"x" * 10_000))
    with pytest.raises(LayerError, match="broken"):
        unpack_layer(io.BytesIO(data[:5000]), tmp_path / "x")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("compress", [gzip.compress, zstandard.ZstdCompressor().compress])
def test_truncated_compressed_layer_is_an_error(compress, tmp_path):
    blob = compress(make_tar(entry("big", data=os.urandom(100_000))))
    with pytest.raises(LayerError, match="broken"):
        unpack_layer(io.BytesIO(blob[: len(blob) // 2]), tmp_path / "x")
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------- the layer cache


@pytest.fixture
def store(tmp_path, monkeypatch) -> ImageStore:
    monkeypatch.setenv("COMPOSER_ROOT", str(tmp_path / "root"))
    return ImageStore()


def test_layer_store_unpacks_once(store, sample_tree):
    descriptor, diff_id = store.add_layer_from_tar(io.BytesIO(layer_bytes(sample_tree)))
    layers = LayerStore(store.state_root)
    with store.open_blob(descriptor.digest) as blob:
        path = layers.ensure_unpacked(diff_id, blob)
    inode = os.lstat(path / "dir" / "file").st_ino
    with store.open_blob(descriptor.digest) as blob:
        assert layers.ensure_unpacked(diff_id, blob) == path
    assert os.lstat(path / "dir" / "file").st_ino == inode
    assert layers.list() == [diff_id]
    short = layers.short_name(diff_id)
    assert len(short) == 12
    assert (layers.dir / "l" / short).resolve() == path.resolve()
    assert layers.prune(keep={diff_id}) == []
    assert layers.prune(keep=set()) == [diff_id]
    assert not path.exists() and not (layers.dir / "l" / short).is_symlink()


def test_concurrent_unpacks_of_one_layer_unpack_it_once(store, sample_tree):
    import multiprocessing

    descriptor, diff_id = store.add_layer_from_tar(io.BytesIO(layer_bytes(sample_tree)))
    context = multiprocessing.get_context("fork")
    with context.Pool(4) as pool:
        paths = pool.starmap(
            _unpack_in_child, [(str(store.state_root), descriptor.digest, diff_id)] * 8
        )
    assert set(paths) == {str(store.layers.path(diff_id))}
    assert store.layers.list() == [diff_id]
    assert [p.name for p in store.layers.dir.iterdir() if p.name.startswith(".unpack")] == []


def _unpack_in_child(root: str, digest: str, diff_id: str) -> str:
    child_store = ImageStore(root)
    with child_store.open_blob(digest) as blob:
        return str(child_store.layers.ensure_unpacked(diff_id, blob))


def test_layer_store_refuses_a_corrupted_blob(store):
    descriptor, diff_id = store.add_layer_from_tar(io.BytesIO(make_tar(entry("a", data=b"1"))))
    path = store.blob_path(descriptor.digest)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        f.write(b"\x01")
    with pytest.raises((BlobCorrupted, LayerError)), store.open_blob(descriptor.digest) as blob:
        store.layers.ensure_unpacked(diff_id, blob)
    assert store.layers.list() == []
    assert [p for p in store.layers.dir.iterdir() if p.name.startswith(".unpack")] == []
