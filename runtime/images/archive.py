"""Image archives: `docker save` tars and OCI image-layout tars, loaded and saved.

Formats read by `load_archive`:
  - docker, legacy: manifest.json ([{Config, RepoTags, Layers}]) with `<id>/layer.tar`
    members and a `<hex>.json` config;
  - docker, newer: the same manifest.json pointing into an OCI layout in the same tar
    (blobs/sha256/..., index.json, oci-layout);
  - OCI image layout: oci-layout, index.json, blobs/sha256/...; names come from the
    index's org.opencontainers.image.ref.name (or io.containerd.image.name) annotations.

`save_archive` writes the newer docker variant ("docker": manifest.json over an OCI
layout, so both kinds of loader read it) or a plain OCI layout ("oci"). Blobs are copied
byte for byte, so save → load keeps every digest.
"""

from __future__ import annotations

import io
import os
import tarfile
from typing import BinaryIO

from runtime.images.store import (
    INDEX_TYPES,
    MEDIA_DOCKER_FOREIGN_LAYER,
    MEDIA_OCI_CONFIG,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    REF_NAME,
    Image,
    ImageError,
    ImageStore,
    canonical_json,
    digest_hex,
)

CONTAINERD_NAME = "io.containerd.image.name"


class ArchiveError(ImageError):
    pass


# ---------------------------------------------------------------- load


def load_archive(path_or_stream, store: ImageStore | None = None) -> list[Image]:
    """Load every image in a docker-save or OCI-layout tar (plain or gzip); return them."""
    import tempfile

    store = store or ImageStore()
    if isinstance(path_or_stream, (str, os.PathLike)):
        with tarfile.open(path_or_stream, "r:*") as tar:
            return _Loader(tar, store).load()
    # tarfile needs to seek (manifest.json may come last): spool a stream to disk first.
    store.root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=store.root) as spool:
        while chunk := path_or_stream.read(1 << 20):
            spool.write(chunk)
        spool.seek(0)
        with tarfile.open(fileobj=spool, mode="r:*") as tar:
            return _Loader(tar, store).load()


class _Loader:
    def __init__(self, tar: tarfile.TarFile, store: ImageStore) -> None:
        self.tar = tar
        self.store = store
        self.members = {_clean(m.name): m for m in tar.getmembers()}

    def load(self) -> list[Image]:
        docker_manifest = self.json("manifest.json") if "manifest.json" in self.members else None
        if "index.json" in self.members:
            return self.load_layout(docker_manifest or [])
        if docker_manifest is not None:
            return [self.load_legacy(entry) for entry in docker_manifest]
        raise ArchiveError("not an image archive: no manifest.json or index.json inside")

    # -- members

    def open(self, name: str) -> BinaryIO:
        member = self.members.get(_clean(name))
        if member is None:
            raise ArchiveError(f"archive has no {name!r}")
        f = self.tar.extractfile(member)  # follows symlinks and hardlinks inside the tar
        if f is None:
            raise ArchiveError(f"{name!r} in the archive is not a file")
        return f

    def json(self, name: str):
        import json

        try:
            return json.loads(self.open(name).read())
        except ValueError as e:
            raise ArchiveError(f"{name} in the archive is not valid JSON: {e}") from e

    def blob(self, descriptor: dict) -> None:
        """Copy one blob of the layout into the store, checking its digest and size."""
        digest = descriptor["digest"]
        if self.store.has_blob(digest):
            return
        name = f"blobs/sha256/{digest_hex(digest)}"
        if name not in self.members and descriptor.get("mediaType") == MEDIA_DOCKER_FOREIGN_LAYER:
            return  # foreign layers are fetched from their URLs, never archived
        self.store.put_blob(
            self.open(name), expected_digest=digest, expected_size=descriptor.get("size")
        )

    # -- OCI layout (plain, or inside a newer docker save)

    def load_layout(self, docker_manifest: list[dict]) -> list[Image]:
        index = self.json("index.json")
        tags_by_config: dict[str, list[str]] = {}
        for entry in docker_manifest:
            config_hex = os.path.basename(entry.get("Config", "")).removesuffix(".json")
            tags_by_config.setdefault(f"sha256:{config_hex}", []).extend(
                entry.get("RepoTags") or []
            )
        loaded: dict[str, list[str]] = {}
        for descriptor in index.get("manifests", []):
            digest = descriptor["digest"]
            config_digests = self.import_manifest(descriptor)
            names = loaded.setdefault(digest, [])
            for config_digest in config_digests:
                names += tags_by_config.get(config_digest, [])
            name = _annotated_name(descriptor.get("annotations") or {})
            if name:
                names.append(name)
        return self.finish(loaded)

    def import_manifest(self, descriptor: dict, listed: bool = True) -> list[str]:
        """Store a manifest (or index) with its blobs; return the config digests under it."""
        self.blob(descriptor)
        raw = self.store.read_blob(descriptor["digest"])
        manifest = _parse(raw, descriptor["digest"])
        media_type = manifest.get("mediaType") or descriptor.get("mediaType")
        configs: list[str] = []
        if media_type in INDEX_TYPES or "manifests" in manifest:
            for child in manifest.get("manifests", []):
                if f"blobs/sha256/{digest_hex(child['digest'])}" in self.members:
                    configs += self.import_manifest(child, listed=False)
        else:
            self.blob(manifest["config"])
            for layer in manifest.get("layers", []):
                self.blob(layer)
            configs.append(manifest["config"]["digest"])
        self.store.put_manifest(raw, media_type, listed=listed)
        return configs

    # -- legacy docker save

    def load_legacy(self, entry: dict) -> Image:
        from runtime.images.store import Descriptor

        config_raw = self.open(entry["Config"]).read()
        config = _parse(config_raw, entry["Config"])
        config_desc = self.store.put_blob(config_raw, MEDIA_OCI_CONFIG)
        layers: list[Descriptor] = []
        diff_ids = []
        for name in entry.get("Layers", []):
            descriptor, diff_id = self.store.add_layer_from_tar(self.open(name), "gzip")
            layers.append(descriptor)
            diff_ids.append(diff_id)
        expected = (config.get("rootfs") or {}).get("diff_ids") or []
        if expected != diff_ids:
            raise ArchiveError(
                f"{entry['Config']}: layer contents do not match the config's rootfs.diff_ids"
            )
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": config_desc.to_dict(),
            "layers": [d.to_dict() for d in layers],
        }
        digest = self.store.put_manifest(canonical_json(manifest), MEDIA_OCI_MANIFEST).digest
        return self.finish({digest: list(entry.get("RepoTags") or [])})[0]

    def finish(self, loaded: dict[str, list[str]]) -> list[Image]:
        images = []
        for digest, names in loaded.items():
            unique = list(dict.fromkeys(names))
            for name in unique:
                self.store.tag(name, digest)
            image = self.store.resolve(unique[0] if unique else digest)
            if image is None:
                raise ArchiveError(f"loaded image {digest} cannot be resolved")
            images.append(image)
        return images


def _clean(name: str) -> str:
    return os.path.normpath(name).lstrip("/") if name not in ("", ".") else name


def _parse(raw: bytes, what: str) -> dict:
    import json

    try:
        data = json.loads(raw)
    except ValueError as e:
        raise ArchiveError(f"{what} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ArchiveError(f"{what} is not a JSON object")
    return data


def _annotated_name(annotations: dict) -> str | None:
    """A full image name from index annotations; a bare tag ("latest") names nothing."""
    from runtime.images.reference import ReferenceError, normalize

    for key in (CONTAINERD_NAME, REF_NAME):
        value = annotations.get(key)
        if value and (":" in value or "/" in value or "@" in value):
            try:
                return normalize(value)
            except ReferenceError:
                continue
    return None


# ---------------------------------------------------------------- save


def save_archive(
    images: list[Image | str],
    dest: str | os.PathLike | BinaryIO,
    format: str = "docker",
    store: ImageStore | None = None,
) -> None:
    """Write `images` (Images or names) to `dest` (path or stream) as a tar archive.

    "docker": manifest.json + repositories over an OCI layout (what newer docker save
    writes; older docker load reads it too). "oci": only the OCI image layout.
    """
    if format not in ("docker", "oci"):
        raise ArchiveError(f"unknown archive format {format!r} (docker or oci)")
    store = store or ImageStore()
    resolved = []
    for item in images:
        image = store.resolve(item) if isinstance(item, str) else item
        if image is None:
            raise ArchiveError(f"no such image: {item}")
        resolved.append((image, [item] if isinstance(item, str) and _is_name(item) else None))
    if isinstance(dest, (str, os.PathLike)):
        tmp = f"{os.fspath(dest)}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as out:
                _write(resolved, out, format, store)
            os.rename(tmp, dest)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    else:
        _write(resolved, dest, format, store)


def _is_name(text: str) -> bool:
    from runtime.images.store import _looks_like_id

    return not text.startswith("sha256:") and not _looks_like_id(text) and "@" not in text


def _write(
    resolved: list[tuple[Image, list[str] | None]], out: BinaryIO, format: str, store
) -> None:
    from runtime.images.reference import normalize

    blobs: dict[str, int] = {}  # digest → size, in the order first needed
    index_entries = []
    docker_manifest = []
    for image, asked in resolved:
        names = [normalize(n) for n in asked] if asked else sorted(image.names)
        blobs.setdefault(image.digest, store.blob_path(image.digest).stat().st_size)
        blobs.setdefault(image.id, store.blob_path(image.id).stat().st_size)
        for layer in image.layers:
            if layer.media_type != MEDIA_DOCKER_FOREIGN_LAYER or store.has_blob(layer.digest):
                blobs.setdefault(layer.digest, store.blob_path(layer.digest).stat().st_size)
        media_type = image.manifest.get("mediaType") or MEDIA_OCI_MANIFEST
        base = {"mediaType": media_type, "digest": image.digest, "size": blobs[image.digest]}
        for name in names or [None]:
            entry = dict(base)
            if name:
                entry["annotations"] = {REF_NAME: name, CONTAINERD_NAME: name}
            index_entries.append(entry)
        docker_manifest.append(
            {
                "Config": f"blobs/sha256/{digest_hex(image.id)}",
                "RepoTags": names,
                "Layers": [f"blobs/sha256/{digest_hex(d.digest)}" for d in image.layers],
            }
        )
    index = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": index_entries}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_dir(tar, "blobs")
        _add_dir(tar, "blobs/sha256")
        for digest, size in blobs.items():
            info = _info(f"blobs/sha256/{digest_hex(digest)}", size)
            with store.open_blob(digest) as blob:
                tar.addfile(info, blob)
                blob.read()  # the verifying reader checks the digest at its end
        _add_bytes(tar, "index.json", canonical_json(index))
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        if format == "docker":
            _add_bytes(tar, "manifest.json", canonical_json(docker_manifest))
            _add_bytes(
                tar, "repositories", canonical_json(_repositories(resolved, docker_manifest))
            )


def _repositories(resolved, docker_manifest) -> dict:
    """The legacy `repositories` file: repository → tag → top layer's diff_id hex."""
    out: dict[str, dict[str, str]] = {}
    for (image, _), entry in zip(resolved, docker_manifest, strict=True):
        if not image.diff_ids:
            continue
        for name in entry["RepoTags"]:
            repository, _, tag = name.rpartition(":")
            out.setdefault(repository, {})[tag] = digest_hex(image.diff_ids[-1])
    return out


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0  # archives of the same images are the same bytes
    info.uname = info.gname = ""
    return info


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = _info(name, 0)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))
