"""Image archives: docker-save (legacy and OCI-inside) and OCI layout tars, both ways."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from images import busybox_image

from runtime.images.archive import ArchiveError, load_archive, save_archive
from runtime.images.store import BlobCorrupted, ImageStore, host_platform


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def source(tmp_path) -> ImageStore:
    return ImageStore(tmp_path / "source")


@pytest.fixture
def target(tmp_path) -> ImageStore:
    return ImageStore(tmp_path / "target")


def layer_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def archive(members: dict[str, bytes | str]) -> bytes:
    """A tar of name → bytes, or name → str for a symlink to that target."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(data, str):
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def fingerprint(image) -> tuple:
    return (image.digest, image.id, [d.digest for d in image.layers], image.diff_ids)


@pytest.mark.parametrize("format", ["docker", "oci"])
def test_round_trip_keeps_digests_and_names(format, source, target, tmp_path):
    image = busybox_image(source)
    source.tag("copy:v1", image.digest)
    path = tmp_path / f"out-{format}.tar"
    save_archive([source.resolve("busybox"), "copy:v1"], path, format=format, store=source)
    loaded = load_archive(path, store=target)
    assert [fingerprint(i) for i in loaded] == [fingerprint(image)]
    assert sorted(target.resolve(image.digest).names) == ["busybox:latest", "copy:v1"]
    assert fingerprint(target.resolve("copy:v1")) == fingerprint(image)


@pytest.mark.parametrize("format", ["docker", "oci"])
def test_round_trip_through_streams(format, source, target):
    image = busybox_image(source, "bb:stream")
    out = io.BytesIO()
    save_archive(["bb:stream"], out, format=format, store=source)
    out.seek(0)
    (loaded,) = load_archive(out, store=target)
    assert fingerprint(loaded) == fingerprint(image)
    assert loaded.name == "bb:stream"


def test_docker_format_layout(source):
    image = busybox_image(source)
    out = io.BytesIO()
    save_archive(["busybox"], out, store=source)
    files = members(out.getvalue())
    (entry,) = json.loads(files["manifest.json"])
    assert entry["RepoTags"] == ["busybox:latest"]
    assert entry["Config"] == f"blobs/sha256/{image.id[7:]}"
    assert entry["Layers"] == [f"blobs/sha256/{image.layers[0].digest[7:]}"]
    assert json.loads(files["repositories"]) == {"busybox": {"latest": image.diff_ids[0][7:]}}
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert sha(data) == "sha256:" + name.rsplit("/", 1)[1]
    # The same images give the same archive bytes.
    again = io.BytesIO()
    save_archive(["busybox"], again, store=source)
    assert again.getvalue() == out.getvalue()


def test_oci_format_has_no_docker_files(source):
    busybox_image(source)
    out = io.BytesIO()
    save_archive(["busybox"], out, format="oci", store=source)
    files = members(out.getvalue())
    assert "manifest.json" not in files and "repositories" not in files
    index = json.loads(files["index.json"])
    (entry,) = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "busybox:latest"


def test_gzip_compressed_archive_loads(source, target, tmp_path):
    image = busybox_image(source)
    out = io.BytesIO()
    save_archive(["busybox"], out, store=source)
    path = tmp_path / "out.tar.gz"
    path.write_bytes(gzip.compress(out.getvalue()))
    (loaded,) = load_archive(path, store=target)
    assert fingerprint(loaded) == fingerprint(image)


def legacy_archive(files: dict[str, bytes], diff_ids: list[str] | None = None) -> bytes:
    layer = layer_tar(files)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids or [sha(layer), sha(layer)]},
    }
    config_raw = json.dumps(config).encode()
    config_name = f"{sha(config_raw)[7:]}.json"
    manifest = [
        {
            "Config": config_name,
            "RepoTags": ["legacy:1"],
            "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
        }
    ]
    return archive(
        {
            config_name: config_raw,
            "aaa/layer.tar": layer,
            "bbb/layer.tar": "../aaa/layer.tar",  # docker links identical layers
            "manifest.json": json.dumps(manifest).encode(),
        }
    )


def test_legacy_docker_save_loads(target):
    data = legacy_archive({"hello": b"world"})
    (image,) = load_archive(io.BytesIO(data), store=target)
    assert image.name == "legacy:1"
    config_raw = next(
        v
        for k, v in members(data).items()
        if k.endswith(".json") and "/" not in k and k != "manifest.json"
    )
    assert image.id == sha(config_raw)  # the config is kept byte for byte: same image id
    assert image.diff_ids == [sha(layer_tar({"hello": b"world"}))] * 2
    assert [target.diff_id_of(d) for d in image.layers] == image.diff_ids
    assert image.config["config"]["Cmd"] == ["sh"]


def test_legacy_archive_with_wrong_diff_ids_is_refused(target):
    data = legacy_archive({"a": b"1"}, diff_ids=[sha(b"x"), sha(b"y")])
    with pytest.raises(ArchiveError, match="diff_ids"):
        load_archive(io.BytesIO(data), store=target)
    assert target.list_images() == []


def test_corrupted_blob_is_refused(source, target):
    image = busybox_image(source)
    out = io.BytesIO()
    save_archive(["busybox"], out, format="oci", store=source)
    files = members(out.getvalue())
    layer_name = f"blobs/sha256/{image.layers[0].digest[7:]}"
    files[layer_name] = files[layer_name][:-1] + bytes([files[layer_name][-1] ^ 1])
    with pytest.raises(BlobCorrupted):
        load_archive(io.BytesIO(archive(files)), store=target)
    assert target.list_images() == []
    assert not target.has_blob(image.layers[0].digest)


def test_bare_tag_annotation_leaves_the_image_unnamed(source, target):
    image = busybox_image(source)
    out = io.BytesIO()
    save_archive(["busybox"], out, format="oci", store=source)
    files = members(out.getvalue())
    index = json.loads(files["index.json"])
    index["manifests"][0]["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
    files["index.json"] = json.dumps(index).encode()
    (loaded,) = load_archive(io.BytesIO(archive(files)), store=target)
    assert loaded.name is None and loaded.digest == image.digest
    assert [i.name for i in target.list_images()] == [None]


def test_multi_platform_index_resolves_to_this_machine(source, target):
    image = busybox_image(source)
    out = io.BytesIO()
    save_archive(["busybox"], out, format="oci", store=source)
    files = members(out.getvalue())
    platform_index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:" + "1" * 64,  # another platform, not in the archive
                "size": 10,
                "platform": {"os": "linux", "architecture": "not-this-one"},
            },
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": image.digest,
                "size": source.blob_path(image.digest).stat().st_size,
                "platform": host_platform(),
            },
        ],
    }
    raw = json.dumps(platform_index).encode()
    files[f"blobs/sha256/{sha(raw)[7:]}"] = raw
    files["index.json"] = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "digest": sha(raw),
                    "size": len(raw),
                    "annotations": {"org.opencontainers.image.ref.name": "multi:1"},
                }
            ],
        }
    ).encode()
    (loaded,) = load_archive(io.BytesIO(archive(files)), store=target)
    assert loaded.name == "multi:1" and loaded.names == ["multi:1"]
    assert loaded.digest == image.digest and loaded.diff_ids == image.diff_ids
    assert loaded.listed_digest == sha(raw)
    assert target.resolve(image.digest[:19]).listed_digest == sha(raw)
    assert target.remove("multi:1") == ["multi:1", sha(raw)]
    assert target.list_images() == []


def test_not_an_archive(target):
    with pytest.raises(ArchiveError, match="not an image archive"):
        load_archive(io.BytesIO(archive({"hello.txt": b"hi"})), store=target)


def test_save_unknown_image_or_format(source, tmp_path):
    with pytest.raises(ArchiveError, match="no such image"):
        save_archive(["missing:1"], tmp_path / "x.tar", store=source)
    with pytest.raises(ArchiveError, match="format"):
        save_archive([], tmp_path / "x.tar", format="zip", store=source)
    assert list(tmp_path.glob("x.tar*")) == []
