"""The OCI image layout store: blobs, manifests, names, lookup, garbage collection."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from images import busybox_image, busybox_tar

from runtime.images import store as store_module
from runtime.images.store import (
    MEDIA_OCI_INDEX,
    BlobCorrupted,
    ImageError,
    ImageNotFound,
    ImageStore,
)


@pytest.fixture
def store(tmp_path, monkeypatch) -> ImageStore:
    monkeypatch.setenv("COMPOSER_ROOT", str(tmp_path / "root"))
    return ImageStore()


def small_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_layout_follows_the_oci_image_layout(store):
    busybox_image(store)
    root = store.root
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((root / "index.json").read_text())
    assert index["schemaVersion"] == 2 and index["mediaType"] == MEDIA_OCI_INDEX
    (entry,) = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "busybox:latest"
    blob = root / "blobs" / "sha256" / entry["digest"].split(":")[1]
    assert sha(blob.read_bytes()) == entry["digest"]
    assert blob.stat().st_size == entry["size"]


def test_put_blob_bytes_file_and_path_give_one_blob(store, tmp_path):
    data = os.urandom(3 * (1 << 20) + 5)  # several read chunks
    path = tmp_path / "data"
    path.write_bytes(data)
    a = store.put_blob(data, "application/x-test")
    b = store.put_blob(io.BytesIO(data))
    c = store.put_blob(path, expected_digest=sha(data))
    assert a.digest == b.digest == c.digest == sha(data)
    assert a.size == len(data) and a.media_type == "application/x-test"
    assert store.has_blob(a.digest)
    assert store.read_blob(a.digest) == data
    assert [p.name for p in store.blob_path(a.digest).parent.iterdir()] == [a.digest[7:]]


def test_put_blob_refuses_a_wrong_digest_and_leaves_nothing(store):
    wrong = sha(b"other")
    with pytest.raises(BlobCorrupted, match="expected"):
        store.put_blob(b"data", expected_digest=wrong)
    assert not store.has_blob(sha(b"data")) and not store.has_blob(wrong)
    assert list(store.blob_path(wrong).parent.iterdir()) == []


def test_malformed_digests_never_become_paths(store):
    for bad in ("sha256:../../etc/passwd", "md5:abcd", "sha256:" + "A" * 64):
        with pytest.raises(ImageError, match="digest"):
            store.blob_path(bad)


def test_open_blob_detects_corruption(store):
    descriptor = store.put_blob(b"x" * 100_000)
    path = store.blob_path(descriptor.digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"y" * 100_000)
    with pytest.raises(BlobCorrupted, match="corrupted"), store.open_blob(descriptor.digest) as f:
        f.read()


def test_layers_keep_or_change_compression(store):
    plain = small_tar({"a.txt": b"hello"})
    gz = gzip.compress(plain, mtime=0)
    stored, diff_id = store.add_layer_from_tar(io.BytesIO(gz), compression="gzip")
    assert diff_id == sha(plain)
    assert stored.digest == sha(gz)  # already gzip: stored byte for byte
    assert stored.media_type.endswith("tar+gzip")
    as_plain, diff_plain = store.add_layer_from_tar(io.BytesIO(gz), compression=None)
    assert as_plain.digest == sha(plain) and diff_plain == diff_id
    as_zstd, diff_zstd = store.add_layer_from_tar(io.BytesIO(plain), compression="zstd")
    assert diff_zstd == diff_id and as_zstd.media_type.endswith("tar+zstd")
    assert store.read_blob(as_zstd.digest)[:4] == b"\x28\xb5\x2f\xfd"
    # gzip of the same tar twice: same bytes, so rebuilt layers keep their digest.
    again, _ = store.add_layer_from_tar(io.BytesIO(plain), compression="gzip")
    again2, _ = store.add_layer_from_tar(io.BytesIO(plain), compression="gzip")
    assert again.digest == again2.digest


def test_truncated_gzip_layer_is_refused_and_not_stored(store):
    from runtime.images.layers import LayerError

    blob = gzip.compress(small_tar({"a": os.urandom(50_000)}))
    with pytest.raises(LayerError, match="broken gzip"):
        store.add_layer_from_tar(io.BytesIO(blob[:-100]))
    assert [p.name for p in store.blob_path("sha256:" + "0" * 64).parent.iterdir()] == []


def test_multi_member_gzip_diff_id(store):
    plain = small_tar({"a": b"1" * 5000, "b": b"2"})
    two_members = gzip.compress(plain[:3000], mtime=0) + gzip.compress(plain[3000:], mtime=0)
    _, diff_id = store.add_layer_from_tar(io.BytesIO(two_members), compression=None)
    assert diff_id == sha(plain)


def test_import_rootfs_tar_makes_a_one_layer_image(store):
    image = busybox_image(store)
    assert image.name == "busybox:latest" and image.names == ["busybox:latest"]
    assert len(image.layers) == 1 and len(image.diff_ids) == 1
    assert image.config["config"]["Cmd"] == ["sh"]
    assert image.config["rootfs"] == {"type": "layers", "diff_ids": image.diff_ids}
    assert image.config["os"] == "linux" and image.config["architecture"]
    assert image.manifest["config"]["digest"] == image.id
    assert store.diff_id_of(image.layers[0]) == image.diff_ids[0]


def test_import_rootfs_tar_diff_id_is_the_tar_digest(store):
    tar = busybox_tar()
    image = store.import_rootfs_tar(io.BytesIO(gzip.compress(tar)), "bb:gz", {"Cmd": ["true"]})
    assert image.diff_ids == [sha(tar)]
    assert image.config["config"]["Env"][0].startswith("PATH=")


def test_put_image_computes_missing_diff_ids(store):
    plain = small_tar({"f": b"data"})
    layer, diff_id = store.add_layer_from_tar(io.BytesIO(plain))
    digest = store.put_image({"annotations": {"x": "y"}}, {"config": {}}, [layer], name="t:1")
    image = store.resolve("t:1")
    assert image.digest == digest and image.diff_ids == [diff_id]
    assert image.manifest["annotations"] == {"x": "y"}


def test_put_manifest_refuses_missing_blobs(store):
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "x", "digest": sha(b"nope"), "size": 4},
        "layers": [],
    }
    with pytest.raises(ImageError, match="not in the store"):
        store.put_manifest(json.dumps(manifest).encode())


def test_put_manifest_keeps_bytes(store):
    config = store.put_blob(b'{"rootfs":{"type":"layers","diff_ids":[]}}')
    raw = (
        b'{\n   "schemaVersion": 2,\n   "config": {"mediaType": "application/vnd.oci.image'
        b'.config.v1+json", "digest": "'
        + config.digest.encode()
        + b'", "size": '
        + str(config.size).encode()
        + b'},\n   "layers": []\n}'
    )
    descriptor = store.put_manifest(raw)
    assert descriptor.digest == sha(raw)
    assert store.resolve(descriptor.digest).names == []


def test_resolve_by_name_digest_id_and_prefix(store):
    image = busybox_image(store)
    assert store.resolve("busybox").digest == image.digest  # :latest implied
    assert store.resolve(image.digest).digest == image.digest
    assert store.resolve(image.id).digest == image.digest
    assert store.resolve(image.id[7:19]).digest == image.digest
    assert store.resolve(f"busybox@{image.digest}").digest == image.digest
    assert store.resolve("busybox:other") is None
    assert store.resolve("sha256:" + "0" * 64) is None
    assert store.resolve("Not A Name") is None


def test_tag_moves_a_name_and_untag_leaves_a_dangling_image(store):
    first = busybox_image(store, "app:1")
    second_layer, _ = store.add_layer_from_tar(io.BytesIO(small_tar({"x": b"x"})))
    second = store.put_image(None, {"config": {}}, [second_layer], name="app:2")
    store.tag("app:latest", first.digest)
    assert sorted(store.resolve("app:1").names) == ["app:1", "app:latest"]
    store.tag("app:latest", second)
    assert store.resolve("app:latest").digest == second
    store.untag("app:1")
    names = sorted((i.name or "<none>", i.digest) for i in store.list_images())
    assert names == sorted([("<none>", first.digest), ("app:2", second), ("app:latest", second)])
    with pytest.raises(ImageNotFound):
        store.untag("app:1")


def test_remove_and_prune_free_blobs(store):
    image = busybox_image(store)
    keep = busybox_image(store, "other:1")  # another import: its own created time and config
    assert store.remove("busybox") == ["busybox:latest", image.digest]
    assert store.resolve("busybox") is None
    # Young unreferenced blobs survive a default prune (another process may be writing).
    assert store.prune()["blobs"] == []
    removed = store.prune(min_age=0)
    assert image.digest in removed["blobs"] and image.id in removed["blobs"]
    assert not store.has_blob(image.digest)
    assert store.has_blob(keep.digest) and store.has_blob(keep.layers[0].digest)
    assert store.resolve("other:1").digest == keep.digest


def test_prune_keeps_foreign_files_and_fresh_temporaries(store):
    busybox_image(store)
    blobs = store.blob_path("sha256:" + "0" * 64).parent
    (blobs / "notes.txt").write_text("not a blob")
    fresh, stale = blobs / ".tmp-1-fresh", blobs / ".tmp-2-stale"
    fresh.write_bytes(b"being written")
    stale.write_bytes(b"abandoned")
    os.utime(stale, (0, 0))
    store.prune(min_age=0)
    assert (blobs / "notes.txt").exists() and fresh.exists() and not stale.exists()


def test_remove_by_id_removes_every_name(store):
    image = busybox_image(store)
    store.tag("copy:1", image.digest)
    assert sorted(store.remove(image.id[7:19])) == ["busybox:latest", "copy:1"]
    assert store.list_images() == []


def test_prune_drops_dangling_images(store):
    image = busybox_image(store)
    store.untag("busybox")
    removed = store.prune(min_age=0)
    assert removed["images"] == [image.digest]
    assert store.list_images() == []
    assert list(store.blob_path(image.digest).parent.iterdir()) == []


def test_concurrent_tags_lose_no_update(store):
    import multiprocessing

    image = busybox_image(store)
    context = multiprocessing.get_context("fork")
    names = [f"n{i}:t" for i in range(16)]
    with context.Pool(4) as pool:
        pool.starmap(_tag_in_child, [(str(store.state_root), n, image.digest) for n in names])
    assert sorted(store.resolve(image.digest).names) == sorted([*names, "busybox:latest"])


def _tag_in_child(root: str, name: str, digest: str) -> None:
    ImageStore(root).tag(name, digest)


# ---------------------------------------------------------------- image commands


def test_inspect_uses_docker_field_names(store):
    image = busybox_image(store)
    store.tag("localhost:5000/team/bb:1", image.digest)
    info = store_module.inspect("busybox", store=store)
    assert info["Id"] == image.id and info["Digest"] == image.digest
    assert info["RepoTags"] == ["busybox:latest", "localhost:5000/team/bb:1"]
    assert info["RepoDigests"] == [
        f"busybox@{image.digest}",
        f"localhost:5000/team/bb@{image.digest}",
    ]
    assert info["Config"]["Cmd"] == ["sh"]
    assert info["RootFS"] == {"Type": "layers", "Layers": image.diff_ids}
    assert info["Size"] == image.layers[0].size > 0
    assert info["Os"] == "linux"
    json.dumps(info)  # the machine form is plain JSON
    with pytest.raises(ImageNotFound):
        store_module.inspect("nope", store=store)


def test_history_pairs_steps_with_layers_newest_first(store):
    one, d1 = store.add_layer_from_tar(io.BytesIO(small_tar({"a": b"1"})))
    two, d2 = store.add_layer_from_tar(io.BytesIO(small_tar({"b": b"2"})))
    config = {
        "config": {},
        "history": [
            {"created": "2024-01-01T00:00:00Z", "created_by": "ADD a /"},
            {"created_by": "ENV X=1", "empty_layer": True},
            {"created_by": "RUN make b", "comment": "built"},
        ],
    }
    store.put_image(None, config, [one, two], name="hist:1")
    steps = store_module.history("hist:1", store=store)
    assert [s["CreatedBy"] for s in steps] == ["RUN make b", "ENV X=1", "ADD a /"]
    assert [s["Layer"] for s in steps] == [d2, None, d1]
    assert [s["EmptyLayer"] for s in steps] == [False, True, False]
    assert steps[0]["Comment"] == "built" and steps[2]["Created"] == "2024-01-01T00:00:00Z"
    assert steps[0]["Size"] == two.size and steps[1]["Size"] == 0


def test_tag_rm_and_prune_commands(store):
    image = busybox_image(store)
    assert store_module.tag("busybox", "mine:2", store=store) == "mine:2"
    assert store.resolve("mine:2").digest == image.digest
    assert store_module.rm(["busybox"], store=store) == ["busybox:latest"]
    assert store.resolve("mine:2") is not None
    other = busybox_image(store, "other:1")
    result = store_module.prune(all_unused=True, store=store, min_age=0)
    assert sorted(result["images"]) == sorted(["mine:2", image.digest, "other:1", other.digest])
    assert store.list_images() == []
    assert image.id in result["blobs"] and other.id in result["blobs"]
    with pytest.raises(ImageNotFound):
        store_module.rm(["mine:2"], store=store)
