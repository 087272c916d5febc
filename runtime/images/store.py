"""The local image store: an OCI image layout under $COMPOSER_ROOT/images.

    images/oci-layout            {"imageLayoutVersion": "1.0.0"}
    images/index.json            one descriptor per (manifest, name); names in the
                                 org.opencontainers.image.ref.name annotation, as the
                                 full normalized reference ("busybox:latest")
    images/blobs/sha256/<hex>    content-addressed blobs, written atomically

An image without a name keeps an index entry with no name ("dangling"), so it is
listed and kept until `prune`. Unpacked layers live beside it in $COMPOSER_ROOT/layers
(see layers.py); rootfs.py stacks them with overlayfs.

The image commands' engine side (`inspect`, `history`, `tag`, `rm`, `prune`) are
plain functions at the end of this module.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import IO, BinaryIO

from runtime.record import field, record
from runtime.state import Lock, atomic_write_json, images_dir, read_json, state_root

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
MEDIA_OCTET = "application/octet-stream"

MANIFEST_TYPES = (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)
INDEX_TYPES = (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST)
LAYER_MEDIA_BY_COMPRESSION = {
    None: MEDIA_OCI_LAYER,
    "gzip": MEDIA_OCI_LAYER_GZIP,
    "zstd": MEDIA_OCI_LAYER_ZSTD,
}

REF_NAME = "org.opencontainers.image.ref.name"
CHUNK = 1 << 20
# prune spares unreferenced blobs younger than this: a pull or build in another process
# writes its blobs before the manifest that references them.
PRUNE_MIN_AGE = 600.0


class ImageError(Exception):
    """An image operation failed; the message says what and why."""


class ImageNotFound(ImageError, LookupError):
    pass


class BlobCorrupted(ImageError):
    """A blob's content does not match its digest (or size)."""


def digest_hex(digest: str) -> str:
    """The hex part of a sha256 digest, refusing anything else (digests become paths)."""
    algorithm, _, hexpart = digest.partition(":")
    if algorithm != "sha256" or len(hexpart) != 64 or hexpart.strip("0123456789abcdef"):
        raise ImageError(f"unsupported or malformed digest {digest!r} (want sha256:<64 hex>)")
    return hexpart


@record(frozen=False)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict | None = None
    platform: dict | None = None
    urls: list | None = None

    def to_dict(self) -> dict:
        out: dict = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = dict(self.platform)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Descriptor:
        return cls(
            media_type=data.get("mediaType", MEDIA_OCTET),
            digest=data["digest"],
            size=int(data.get("size", -1)),
            annotations=data.get("annotations") or None,
            platform=data.get("platform") or None,
            urls=data.get("urls") or None,
        )


@record(frozen=False)
class Image:
    name: str | None  # the name it was resolved by (None for a digest lookup of a dangling one)
    digest: str  # manifest digest
    manifest: dict
    config: dict  # the OCI image config (architecture, os, config, rootfs, history)
    layers: list[Descriptor] = field(default_factory=list)
    diff_ids: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # every name this manifest carries
    # The digest index.json lists: a multi-platform index's, or the manifest's own.
    listed_digest: str | None = None

    @property
    def id(self) -> str:
        """The config digest, which is what `docker images` shows as IMAGE ID."""
        return self.manifest["config"]["digest"]

    @property
    def config_descriptor(self) -> Descriptor:
        return Descriptor.from_dict(self.manifest["config"])

    @property
    def size(self) -> int:
        """Bytes of the stored (compressed) layers."""
        return sum(max(layer.size, 0) for layer in self.layers)

    @property
    def created(self) -> str | None:
        return self.config.get("created")


def host_platform() -> dict:
    """The OCI platform of this machine: {"os": "linux", "architecture": "amd64", ...}."""
    import platform

    machine = platform.machine().lower()
    arch, variant = {
        "x86_64": ("amd64", None),
        "amd64": ("amd64", None),
        "aarch64": ("arm64", None),
        "arm64": ("arm64", None),
        "armv7l": ("arm", "v7"),
        "armv6l": ("arm", "v6"),
        "i686": ("386", None),
        "i386": ("386", None),
        "ppc64le": ("ppc64le", None),
        "s390x": ("s390x", None),
        "riscv64": ("riscv64", None),
    }.get(machine, (machine, None))
    out = {"os": "linux", "architecture": arch}
    if variant:
        out["variant"] = variant
    return out


def canonical_json(obj) -> bytes:
    """How we serialise manifests and configs we create (digests depend on the bytes)."""
    import json

    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class _VerifyingReader(io.RawIOBase):
    """Reads a blob file and raises BlobCorrupted at its end if the bytes do not match."""

    def __init__(self, path: Path, digest: str, size: int | None = None) -> None:
        import hashlib

        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._digest = digest
        self._size = size
        self._hash = hashlib.sha256()
        self._count = 0
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._file.readinto(buffer)
        if n:
            self._hash.update(memoryview(buffer)[:n])
            self._count += n
        elif not self._checked:
            self._checked = True
            actual = "sha256:" + self._hash.hexdigest()
            if actual != self._digest or (
                self._size not in (None, -1) and self._count != self._size
            ):
                raise BlobCorrupted(
                    f"blob {self._digest} is corrupted: read {self._count} bytes hashing to {actual}"
                )
        return n

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


def _open_source(source) -> tuple[BinaryIO, bool]:
    """(file object, whether we opened it and must close it)."""
    if isinstance(source, (str, os.PathLike)):
        return open(source, "rb"), True
    return source, False


class ImageStore:
    """An OCI image layout plus the unpacked-layer cache next to it.

    Every write is atomic (temporary file, fsync, rename) and the index is changed under
    a lock, so concurrent processes see either the old or the new state.
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.state_root = state_root(root)
        self.root = images_dir(self.state_root)
        self._blobs = self.root / "blobs" / "sha256"
        self._index_path = self.root / "index.json"
        self._layout_ready = False
        self._layer_store = None

    # ------------------------------------------------------------ layout

    def _ensure_layout(self) -> None:
        if self._layout_ready:
            return
        self._blobs.mkdir(parents=True, exist_ok=True)
        layout = self.root / "oci-layout"
        if not layout.exists():
            atomic_write_json(layout, {"imageLayoutVersion": "1.0.0"})
        if not self._index_path.exists():
            with self._index_lock():
                if not self._index_path.exists():
                    atomic_write_json(self._index_path, self._empty_index())
        self._layout_ready = True

    @staticmethod
    def _empty_index() -> dict:
        return {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": []}

    def _index_lock(self) -> Lock:
        self.root.mkdir(parents=True, exist_ok=True)
        return Lock(self.root / "index.lock", "change the image index", timeout=60)

    def _read_index(self) -> dict:
        return read_json(self._index_path, None) or self._empty_index()

    @property
    def layers(self):
        """The LayerStore holding unpacked layers (layers.py)."""
        if self._layer_store is None:
            from runtime.images.layers import LayerStore

            self._layer_store = LayerStore(self.state_root)
        return self._layer_store

    # ------------------------------------------------------------ blobs

    def blob_path(self, digest: str) -> Path:
        return self._blobs / digest_hex(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def put_blob(
        self,
        data: bytes | bytearray | memoryview | IO[bytes] | str | os.PathLike,
        media_type: str | None = None,
        expected_digest: str | None = None,
        expected_size: int | None = None,
    ) -> Descriptor:
        """Store `data` (bytes, a binary file object or a path), streamed and sha256-checked.

        With `expected_digest`, a mismatch raises BlobCorrupted and stores nothing.
        """
        import hashlib

        self._ensure_layout()
        if expected_digest is not None:
            digest_hex(expected_digest)
        tmp = self._blobs / f".tmp-{os.getpid()}-{os.urandom(6).hex()}"
        hasher = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "xb") as out:
                if isinstance(data, (bytes, bytearray, memoryview)):
                    hasher.update(data)
                    out.write(data)
                    size = len(data)
                else:
                    source, opened = _open_source(data)
                    try:
                        while chunk := source.read(CHUNK):
                            hasher.update(chunk)
                            out.write(chunk)
                            size += len(chunk)
                    finally:
                        if opened:
                            source.close()
                out.flush()
                os.fsync(out.fileno())
            digest = "sha256:" + hasher.hexdigest()
            if expected_digest is not None and digest != expected_digest:
                raise BlobCorrupted(f"content hashes to {digest}, expected {expected_digest}")
            if expected_size is not None and size != expected_size:
                raise BlobCorrupted(f"{digest}: {size} bytes, expected {expected_size}")
            os.chmod(tmp, 0o444)
            os.rename(tmp, self._blobs / digest_hex(digest))
        finally:
            if tmp.exists():
                tmp.unlink()
        return Descriptor(media_type or MEDIA_OCTET, digest, size)

    def open_blob(self, digest: str, size: int | None = None) -> BinaryIO:
        """A reader for the blob that raises BlobCorrupted at the end if its bytes are wrong."""
        path = self.blob_path(digest)
        if not path.is_file():
            raise ImageNotFound(f"blob {digest} is not in the store")
        return io.BufferedReader(_VerifyingReader(path, digest, size), CHUNK)

    def read_blob(self, digest: str) -> bytes:
        with self.open_blob(digest) as f:
            return f.read()

    def read_json_blob(self, digest: str) -> dict:
        import json

        try:
            return json.loads(self.read_blob(digest))
        except ValueError as e:
            raise ImageError(f"blob {digest} is not valid JSON: {e}") from e

    # ------------------------------------------------------------ layers

    def add_layer_from_tar(
        self, path_or_stream, compression: str | None = "gzip"
    ) -> tuple[Descriptor, str]:
        """Store a layer tar; return (blob descriptor, diff_id).

        The input may be plain, gzip or zstd (detected from its first bytes); `compression`
        is how the blob is stored ("gzip", "zstd" or None). Input already in that
        compression is stored byte for byte, so its digest is kept.
        """
        from runtime.images import layers

        source, opened = _open_source(path_or_stream)
        try:
            blob_tmp = self._blobs / f".tmp-{os.getpid()}-{os.urandom(6).hex()}"
            self._ensure_layout()
            try:
                with open(blob_tmp, "xb") as out:
                    digest, size, diff_id = layers.recompress(source, out, compression)
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(blob_tmp, 0o444)
                os.rename(blob_tmp, self._blobs / digest_hex(digest))
            finally:
                if blob_tmp.exists():
                    blob_tmp.unlink()
        finally:
            if opened:
                source.close()
        return Descriptor(LAYER_MEDIA_BY_COMPRESSION[compression], digest, size), diff_id

    def commit_layer_dir(
        self,
        directory: str | os.PathLike,
        compression: str | None = "gzip",
        overlay_upper: bool = False,
        mtime: int | None = None,
    ) -> tuple[Descriptor, str]:
        """Store the files under `directory` as one layer; return (descriptor, diff_id).

        With `overlay_upper`, `directory` is an overlayfs upper dir: its whiteouts (char
        0:0 devices, opaque xattrs) become OCI whiteouts. `mtime` clamps file times for
        reproducible layers.
        """
        import tempfile

        from runtime.images import layers

        self._ensure_layout()
        with tempfile.TemporaryFile(dir=self._blobs) as tar:
            layers.write_layer_tar(directory, tar, overlay_upper=overlay_upper, mtime=mtime)
            tar.seek(0)
            return self.add_layer_from_tar(tar, compression)

    def diff_id_of(self, layer: Descriptor) -> str:
        """The digest of a layer blob's uncompressed tar (reads the whole blob)."""
        from runtime.images import layers

        with self.open_blob(layer.digest) as f:
            return layers.recompress(f, None, "discard")[2]

    # ------------------------------------------------------------ images

    def put_manifest(
        self, raw: bytes, media_type: str | None = None, listed: bool = True
    ) -> Descriptor:
        """Store a manifest's bytes as they are (a pulled digest must not change) and list
        it in the index without a name until `tag` names it. Its blobs must be stored.

        `listed=False` stores only the blob: a platform manifest under a stored index."""
        import json

        try:
            manifest = json.loads(raw)
        except ValueError as e:
            raise ImageError(f"manifest is not valid JSON: {e}") from e
        media_type = media_type or manifest.get("mediaType") or MEDIA_OCI_MANIFEST
        if media_type in MANIFEST_TYPES:
            needed = [manifest["config"], *manifest.get("layers", [])]
            missing = [
                d["digest"]
                for d in needed
                if not self.has_blob(d["digest"])
                and d.get("mediaType") != MEDIA_DOCKER_FOREIGN_LAYER
            ]
            if missing:
                raise ImageError(f"manifest references blobs not in the store: {missing}")
        elif media_type not in INDEX_TYPES:
            raise ImageError(f"unsupported manifest media type {media_type!r}")
        descriptor = self.put_blob(raw, media_type)
        if not listed:
            return descriptor
        with self._index_lock():
            index = self._read_index()
            if not any(m["digest"] == descriptor.digest for m in index["manifests"]):
                index["manifests"].append(descriptor.to_dict())
                atomic_write_json(self._index_path, index)
        return descriptor

    def put_image(
        self,
        manifest: dict | None,
        config: dict,
        layer_descriptors: list[Descriptor],
        name: str | None = None,
    ) -> str:
        """Store `config` and a manifest over `layer_descriptors`; return the manifest digest.

        `manifest` supplies extra fields (annotations); config and layers are filled in.
        A config without rootfs.diff_ids gets them computed from the layer blobs.
        """
        config = dict(config)
        rootfs = config.get("rootfs") or {}
        if len(rootfs.get("diff_ids") or []) != len(layer_descriptors):
            if rootfs.get("diff_ids"):
                raise ImageError("config rootfs.diff_ids and the layers differ in number")
            config["rootfs"] = {
                "type": "layers",
                "diff_ids": [self.diff_id_of(d) for d in layer_descriptors],
            }
        platform = host_platform()
        config.setdefault("architecture", platform["architecture"])
        config.setdefault("os", platform["os"])
        config_desc = self.put_blob(canonical_json(config), MEDIA_OCI_CONFIG)
        body = dict(manifest or {})
        body["schemaVersion"] = 2
        body["mediaType"] = MEDIA_OCI_MANIFEST
        body["config"] = config_desc.to_dict()
        body["layers"] = [d.to_dict() for d in layer_descriptors]
        digest = self.put_manifest(canonical_json(body), MEDIA_OCI_MANIFEST).digest
        if name:
            self.tag(name, digest)
        return digest

    def import_rootfs_tar(
        self,
        tar,
        name: str | None,
        config: dict | None = None,
        compression: str | None = "gzip",
    ) -> Image:
        """A one-layer image from a root filesystem tar (path or stream, any compression).

        `config` is either a whole image config (has a "config" key) or only its runtime
        part (Env, Cmd, Entrypoint, WorkingDir, User, ...).
        """
        descriptor, diff_id = self.add_layer_from_tar(tar, compression)
        if config and ("config" in config or "rootfs" in config or "architecture" in config):
            image_config = dict(config)
        else:
            image_config = {"config": dict(config or {})}
        image_config.setdefault("created", _now_rfc3339())
        image_config["config"] = dict(image_config.get("config") or {})
        image_config["config"].setdefault(
            "Env", ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        )
        image_config["rootfs"] = {"type": "layers", "diff_ids": [diff_id]}
        image_config["history"] = [
            *image_config.get("history", []),
            {"created": image_config["created"], "created_by": "composer import"},
        ]
        digest = self.put_image(None, image_config, [descriptor], name=name)
        image = self.resolve(name) if name else self.resolve(digest)
        assert image is not None
        return image

    # ------------------------------------------------------------ names

    def tag(self, name: str, manifest_digest: str) -> str:
        """Point `name` at a stored manifest (moving it off any other); return the name."""
        from runtime.images.reference import normalize

        name = normalize(name)
        digest_hex(manifest_digest)
        with self._index_lock():
            index = self._read_index()
            entry = next((m for m in index["manifests"] if m["digest"] == manifest_digest), None)
            if entry is None:
                if not self.has_blob(manifest_digest):
                    raise ImageNotFound(f"no image with digest {manifest_digest}")
                entry = self._descriptor_for_blob(manifest_digest).to_dict()
            kept = [m for m in index["manifests"] if _ref_name(m) != name]
            # The unnamed entry for this manifest is replaced by the named one.
            kept = [m for m in kept if not (m["digest"] == manifest_digest and not _ref_name(m))]
            named = dict(entry)
            named["annotations"] = {**(entry.get("annotations") or {}), REF_NAME: name}
            kept.append(named)
            before = {m["digest"] for m in index["manifests"] if _ref_name(m) == name}
            index["manifests"] = _keep_dangling(
                kept, before - {manifest_digest}, index["manifests"]
            )
            atomic_write_json(self._index_path, index)
        return name

    def _descriptor_for_blob(self, digest: str) -> Descriptor:
        manifest = self.read_json_blob(digest)
        media_type = manifest.get("mediaType") or MEDIA_OCI_MANIFEST
        return Descriptor(media_type, digest, self.blob_path(digest).stat().st_size)

    def untag(self, name: str) -> str:
        """Remove a name; the image stays (unnamed, "dangling") if no other name has it."""
        from runtime.images.reference import normalize

        name = normalize(name)
        with self._index_lock():
            index = self._read_index()
            dropped = {m["digest"] for m in index["manifests"] if _ref_name(m) == name}
            if not dropped:
                raise ImageNotFound(f"no image named {name}")
            kept = [m for m in index["manifests"] if _ref_name(m) != name]
            index["manifests"] = _keep_dangling(kept, dropped, index["manifests"])
            atomic_write_json(self._index_path, index)
        return name

    def remove(self, name: str) -> list[str]:
        """Remove an image (by name: that name; by digest or id: every name of it).

        The manifest leaves the index once no name refers to it; its blobs and unpacked
        layers go at the next `prune`. Returns the names removed (the digest if none).
        """
        image = self.resolve(name)
        if image is None:
            raise ImageNotFound(f"no such image: {name}")
        by_name = image.name is not None and not _looks_like_id(name)
        listed = image.listed_digest or image.digest
        with self._index_lock():
            index = self._read_index()
            if by_name:
                removed = [image.name]
                kept = [m for m in index["manifests"] if _ref_name(m) != image.name]
                if not any(m["digest"] == listed for m in kept):
                    removed.append(listed)
            else:
                removed = [
                    _ref_name(m) or m["digest"] for m in index["manifests"] if m["digest"] == listed
                ]
                kept = [m for m in index["manifests"] if m["digest"] != listed]
            index["manifests"] = kept
            atomic_write_json(self._index_path, index)
        return removed

    # ------------------------------------------------------------ lookup

    def _entries(self) -> list[dict]:
        return self._read_index()["manifests"]

    def resolve(self, name: str) -> Image | None:
        """The image a name, `name@digest`, manifest digest, config id or unique id prefix
        (at least 6 hex digits) refers to; None if the store has none."""
        entries = self._entries()
        if name.startswith("sha256:") or _looks_like_id(name):
            found = self._resolve_id(name.removeprefix("sha256:"), entries)
            if found is not None:
                return found
            if name.startswith("sha256:"):
                return None
        from runtime.images.reference import ReferenceError, parse_reference

        try:
            ref = parse_reference(name)
        except ReferenceError:
            return None
        if ref.digest:
            if not self.has_blob(ref.digest):
                return None
            tagged = [m for m in entries if m["digest"] == ref.digest]
            return self._load(ref.digest, _ref_name(tagged[0]) if tagged else None, entries)
        wanted = str(ref)
        for entry in entries:
            if _ref_name(entry) == wanted:
                return self._load(entry["digest"], wanted, entries)
        return None

    def _resolve_id(self, prefix: str, entries: list[dict]) -> Image | None:
        prefix = prefix.lower()
        matches: dict[str, str | None] = {}
        for entry in entries:
            digest = entry["digest"]
            image = self._load(digest, _ref_name(entry), entries)
            for candidate in (digest, image.digest, image.id):
                if candidate.removeprefix("sha256:").startswith(prefix):
                    matches.setdefault(digest, _ref_name(entry))
        if len(matches) > 1:
            raise ImageError(f"id prefix {prefix} is ambiguous: {sorted(matches)}")
        if not matches:
            return None
        digest, ref_name = next(iter(matches.items()))
        return self._load(digest, ref_name, entries)

    def _load(self, digest: str, name: str | None, entries: list[dict]) -> Image:
        listed = digest
        manifest = self.read_json_blob(digest)
        media_type = manifest.get("mediaType")
        if media_type in INDEX_TYPES or (media_type is None and "manifests" in manifest):
            child = _pick_platform(manifest.get("manifests", []), host_platform())
            if child is None or not self.has_blob(child["digest"]):
                raise ImageError(f"{name or digest}: no manifest for this platform in the store")
            digest, manifest = child["digest"], self.read_json_blob(child["digest"])
        config = self.read_json_blob(manifest["config"]["digest"])
        layers = [Descriptor.from_dict(d) for d in manifest.get("layers", [])]
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        names = [_ref_name(m) for m in entries if m["digest"] == listed and _ref_name(m)]
        return Image(name, digest, manifest, config, layers, diff_ids, names, listed)

    def list_images(self) -> list[Image]:
        """Every stored image: one entry per name, plus one per unnamed manifest."""
        entries = self._entries()
        return [self._load(m["digest"], _ref_name(m), entries) for m in entries]

    # ------------------------------------------------------------ garbage

    def prune(self, dangling: bool = True, min_age: float = PRUNE_MIN_AGE) -> dict[str, list[str]]:
        """Drop unnamed images (with `dangling`), then blobs no manifest in the index refers
        to (older than `min_age` seconds) and unpacked layers no image or container uses.
        Returns {"images": [...], "blobs": [...], "layers": [...]} of what went."""
        self._ensure_layout()
        removed: dict[str, list[str]] = {"images": [], "blobs": [], "layers": []}
        with self._index_lock():
            index = self._read_index()
            if dangling:
                gone = [m for m in index["manifests"] if not _ref_name(m)]
                in_use = self._images_in_use()
                gone = [m for m in gone if m["digest"] not in in_use]
                if gone:
                    removed["images"] = [m["digest"] for m in gone]
                    index["manifests"] = [m for m in index["manifests"] if m not in gone]
                    atomic_write_json(self._index_path, index)
            keep_blobs: set[str] = set()
            keep_layers: set[str] = set()
            for entry in index["manifests"]:
                self._mark(entry["digest"], keep_blobs, keep_layers)
            now = time.time()
            for path in self._blobs.iterdir():
                if len(path.name) != 64 or path.name.strip("0123456789abcdef"):
                    _remove_abandoned_tmp(path, now)
                    continue
                digest = "sha256:" + path.name
                if digest in keep_blobs:
                    continue
                try:
                    if now - path.stat().st_mtime < min_age:
                        continue
                    path.unlink()
                except FileNotFoundError:
                    continue
                removed["blobs"].append(digest)
            removed["layers"] = self.layers.prune(keep_layers)
        return removed

    def _mark(self, digest: str, blobs: set[str], layers: set[str]) -> None:
        blobs.add(digest)
        try:
            manifest = self.read_json_blob(digest)
        except (ImageError, OSError):
            return
        for child in manifest.get("manifests", []):
            if self.has_blob(child["digest"]):
                self._mark(child["digest"], blobs, layers)
        if "config" in manifest:
            blobs.add(manifest["config"]["digest"])
            try:
                config = self.read_json_blob(manifest["config"]["digest"])
                layers.update((config.get("rootfs") or {}).get("diff_ids") or [])
            except (ImageError, OSError):
                pass
        blobs.update(d["digest"] for d in manifest.get("layers", []))

    def _images_in_use(self) -> set[str]:
        from runtime.images.rootfs import images_in_use

        return images_in_use(self.state_root)


def _remove_abandoned_tmp(path: Path, now: float) -> None:
    """A blob write killed midway leaves .tmp-*; one an hour old has no writer left."""
    try:
        if path.name.startswith(".tmp-") and now - path.stat().st_mtime > 3600:
            path.unlink()
    except FileNotFoundError:
        pass


def _ref_name(entry: dict) -> str | None:
    return (entry.get("annotations") or {}).get(REF_NAME)


def _keep_dangling(kept: list[dict], digests: set[str], before: list[dict]) -> list[dict]:
    """Add an unnamed entry for each of `digests` that lost its last name."""
    out = list(kept)
    for digest in digests:
        if not any(m["digest"] == digest for m in out):
            entry = dict(next(m for m in before if m["digest"] == digest))
            entry.pop("annotations", None)
            out.append(entry)
    return out


def _looks_like_id(text: str) -> bool:
    bare = text.removeprefix("sha256:")
    return 6 <= len(bare) <= 64 and not bare.strip("0123456789abcdef")


def _pick_platform(children: list[dict], want: dict) -> dict | None:
    for child in children:
        platform = child.get("platform") or {}
        if platform.get("os") != want["os"] or platform.get("architecture") != want["architecture"]:
            continue
        if want.get("variant") and platform.get("variant") not in (None, want["variant"]):
            continue
        return child
    return None


# ---------------------------------------------------------------- image commands


def _store(store: ImageStore | None) -> ImageStore:
    return store if store is not None else ImageStore()


def _require(store: ImageStore, name: str) -> Image:
    image = store.resolve(name)
    if image is None:
        raise ImageNotFound(f"no such image: {name}")
    return image


def inspect(name: str, store: ImageStore | None = None) -> dict:
    """What `image inspect` shows, in docker's field names."""
    store = _store(store)
    image = _require(store, name)
    config = image.config
    repo_digests = sorted({f"{n.rsplit(':', 1)[0]}@{image.digest}" for n in image.names})
    return {
        "Id": image.id,
        "Digest": image.digest,
        "RepoTags": sorted(image.names),
        "RepoDigests": repo_digests,
        "Created": config.get("created"),
        "Author": config.get("author", ""),
        "Architecture": config.get("architecture"),
        "Variant": config.get("variant"),
        "Os": config.get("os"),
        "Config": config.get("config") or {},
        "RootFS": {"Type": "layers", "Layers": list(image.diff_ids)},
        "Size": image.size,
        "MediaType": image.manifest.get("mediaType"),
        "Layers": [layer.to_dict() for layer in image.layers],
        "Annotations": image.manifest.get("annotations") or {},
    }


def history(name: str, store: ImageStore | None = None) -> list[dict]:
    """The image's build steps, newest first; each non-empty step names its layer."""
    store = _store(store)
    image = _require(store, name)
    steps = image.config.get("history") or [{} for _ in image.layers]
    layers = iter(zip(image.layers, image.diff_ids, strict=False))
    out = []
    for step in steps:
        empty = bool(step.get("empty_layer"))
        layer = None if empty else next(layers, None)
        out.append(
            {
                "Layer": layer[1] if layer else None,
                "Created": step.get("created"),
                "CreatedBy": step.get("created_by", ""),
                "Comment": step.get("comment", ""),
                "Size": layer[0].size if layer else 0,  # stored (compressed) bytes
                "EmptyLayer": empty,
            }
        )
    return list(reversed(out))


def tag(source: str, target: str, store: ImageStore | None = None) -> str:
    """Give the image `source` refers to the name `target`; return the normalized name."""
    store = _store(store)
    image = _require(store, source)
    return store.tag(target, image.listed_digest or image.digest)


def rm(names: list[str], force: bool = False, store: ImageStore | None = None) -> list[str]:
    """Remove images (`image rm`); refuses one a container uses unless `force`.

    Returns the names and digests removed. Space comes back at the next prune.
    """
    from runtime.images.rootfs import images_in_use

    store = _store(store)
    in_use = images_in_use(store.state_root)
    removed: list[str] = []
    for name in names:
        image = _require(store, name)
        last_name = len(image.names) <= 1 or _looks_like_id(name)
        if {image.digest, image.listed_digest} & in_use and last_name and not force:
            raise ImageError(f"image {name} is used by a container (remove it, or force)")
        removed += store.remove(name)
    return removed


def prune(
    all_unused: bool = False, store: ImageStore | None = None, min_age: float = PRUNE_MIN_AGE
) -> dict[str, list[str]]:
    """`image prune`: unnamed images (every image no container uses, with `all_unused`),
    then unreferenced blobs and unpacked layers."""
    from runtime.images.rootfs import images_in_use

    store = _store(store)
    removed_images: list[str] = []
    if all_unused:
        in_use = images_in_use(store.state_root)
        for image in store.list_images():
            if not {image.digest, image.listed_digest} & in_use and image.name:
                removed_images += store.remove(image.name)
    result = store.prune(dangling=True, min_age=min_age)
    result["images"] = removed_images + result["images"]
    return result
