"""Push an image from the local store to a registry.

    digest = push("busybox:latest", "127.0.0.1:5000/tools/busybox:1", ImageStore())

Blobs first (config and layers, a few in parallel): a HEAD skips what the registry has,
a cross-repository mount reuses a blob the registry holds in another repository of ours,
anything else is uploaded (one PUT, or PATCH chunks when `chunk_size` is given). The
manifest goes last, byte for byte as stored, so its digest is the same on both sides.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from runtime.images.reference import configured_registries, parse_reference
from runtime.images.registry import (
    _AUTO,
    MEDIA_OCI_MANIFEST,
    DigestError,
    RegistryClient,
    RegistryError,
    RegistrySettings,
)
from runtime.state import loads

MAX_PARALLEL = 3


def push(
    name: str,
    reference: str,
    store=None,
    on_progress=None,
    *,
    settings: RegistrySettings | None = None,
    credentials=_AUTO,
    ca_file: str | None = None,
    insecure: bool | None = None,
    chunk_size: int | None = None,
    mount_from: list[str] | tuple[str, ...] = (),
    max_parallel: int = MAX_PARALLEL,
    on_blob=None,
) -> str:
    """Push the stored image `name` as `reference`; the manifest digest.

    `mount_from` names repositories on the same registry that may already hold the blobs
    (the image's own names there follow); the first is offered as the mount source.
    `on_progress(blob_digest, done_bytes, total_bytes)` is called from the upload threads;
    `on_blob(blob_digest, how)` once a blob is there, how in "exists", "mounted", "uploaded".
    """
    from runtime.images.store import ImageNotFound, ImageStore

    store = store if store is not None else ImageStore()
    image = store.resolve(name)
    if image is None:
        raise ImageNotFound(f"no such image: {name}")
    ref = parse_reference(reference)
    if ref.registry is None:
        registries = configured_registries()
        if not registries:
            raise RegistryError(
                f"{reference} names no registry and none is configured "
                "(set COMPOSER_REGISTRIES or the search list in registries.json)"
            )
        ref = ref.with_registry(registries[0])
    manifest_data = store.read_blob(image.digest)
    if ref.digest and ref.digest != image.digest:
        raise DigestError(f"{reference}: the image's manifest is {image.digest}")
    sources = _mount_sources(ref, image, mount_from)
    blobs = [image.config_descriptor, *image.layers]
    client = RegistryClient(
        ref.registry,
        settings=settings,
        credentials=credentials,
        ca_file=ca_file,
        insecure=insecure,
    )
    try:

        def send(descriptor) -> None:
            if client.blob_size(ref.repository, descriptor.digest) is not None:
                if on_progress:
                    on_progress(descriptor.digest, descriptor.size, descriptor.size)
                how = "exists"
            else:
                how = upload(descriptor)
            if on_blob:
                on_blob(descriptor.digest, how)

        def upload(descriptor) -> str:
            return client.upload_blob(
                ref.repository,
                descriptor.digest,
                descriptor.size,
                lambda: store.open_blob(descriptor.digest, descriptor.size),
                mount_from=sources[0] if sources else None,
                chunk_size=chunk_size,
                on_progress=on_progress,
            )

        workers = max(1, min(max_parallel, len(blobs)))
        with ThreadPoolExecutor(workers, thread_name_prefix="push") as pool:
            futures = [pool.submit(send, d) for d in blobs]
            errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error
        media_type = loads(manifest_data).get("mediaType") or MEDIA_OCI_MANIFEST
        return client.put_manifest(
            ref.repository, ref.tag or ref.digest or image.digest, manifest_data, media_type
        )
    finally:
        client.close()


def _mount_sources(ref, image, extra) -> list[str]:
    """Repositories on ref's registry, other than ref's, that may hold the image's blobs."""
    found = [r for r in extra if r != ref.repository]
    for known in image.names:
        try:
            other = parse_reference(known)
        except ValueError:
            continue
        if other.registry == ref.registry and other.repository != ref.repository:
            found.append(other.repository)
    return list(dict.fromkeys(found))
