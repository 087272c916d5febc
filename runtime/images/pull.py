"""Pull an image from a registry into the local store.

    image = pull("127.0.0.1:5000/tools/busybox:1", ImageStore(), on_progress=bar.update)

Order of work: the manifest (an index or list is narrowed to this machine's platform),
the config, then the layers in parallel (a few threads), then the manifest goes into the
store and the name onto it, so a half-done pull never leaves a name on missing blobs.
Every byte is checked against its digest. A layer download that breaks off continues
with Range, in this pull or the next: partial layers wait in images/ingest/.

A short name (no registry part) is tried in the registries the user configured, in
order; with none configured it is an error (the Debian bootstrap is the caller's
fallback). Mirrors configured for a registry are tried before the registry itself.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runtime.images.auth import AuthError
from runtime.images.reference import Reference, configured_registries, parse_reference
from runtime.images.registry import (
    _AUTO,
    INDEX_TYPES,
    MANIFEST_TYPES,
    DigestError,
    NotFound,
    RegistryClient,
    RegistryError,
    RegistrySettings,
)

MAX_PARALLEL = 3
# Linux images never use these; other platforms' layers are not ours to fetch.
_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


def parse_platform(text: str) -> dict:
    """{"os", "architecture", "variant"?} from "linux/arm64/v8" or "linux/amd64"."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform {text!r}: expected os/architecture[/variant]")
    platform = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        platform["variant"] = parts[2]
    return platform


def _platform_text(platform: dict) -> str:
    parts = [platform.get("os", "?"), platform.get("architecture", "?")]
    if platform.get("variant"):
        parts.append(platform["variant"])
    return "/".join(parts)


def select_manifest(index: dict, want: dict) -> dict:
    """The index entry for platform `want`; an exact variant beats an entry without one.

    arm64 without a variant matches "v8" (the two are the same platform).
    """
    best, best_rank = None, -1
    for entry in index.get("manifests") or []:
        platform = entry.get("platform") or {}
        if platform.get("os") != want["os"]:
            continue
        if platform.get("architecture") != want["architecture"]:
            continue
        variant = platform.get("variant")
        wanted = want.get("variant")
        if want["architecture"] == "arm64":
            variant, wanted = variant or "v8", wanted or "v8"
        if wanted and variant == wanted:
            rank = 2
        elif variant is None:
            rank = 1
        elif wanted is None:
            rank = 0  # some variant of our architecture, none asked for
        else:
            continue
        if rank > best_rank:
            best, best_rank = entry, rank
    if best is None:
        offered = sorted(
            {_platform_text(e.get("platform") or {}) for e in index.get("manifests") or []}
        )
        raise NotFound(
            f"no manifest for platform {_platform_text(want)} (offered: {', '.join(offered)})"
        )
    return best


def pull(
    reference: str,
    store=None,
    on_progress=None,
    *,
    platform: str | dict | None = None,
    settings: RegistrySettings | None = None,
    credentials=_AUTO,
    ca_file: str | None = None,
    insecure: bool | None = None,
    max_parallel: int = MAX_PARALLEL,
):
    """Pull `reference` into `store` (default: the ImageStore at COMPOSER_ROOT); the Image.

    `on_progress(layer_digest, done_bytes, total_bytes)` is called from the download
    threads as bytes arrive (and once with done == total for layers already stored).
    """
    from runtime.images.store import ImageStore, host_platform

    store = store if store is not None else ImageStore()
    settings = settings if settings is not None else RegistrySettings.load()
    if isinstance(platform, str):
        platform = parse_platform(platform)
    platform = platform or host_platform()
    ref = parse_reference(reference)
    if ref.registry:
        candidates = [ref]
    else:
        registries = configured_registries()
        if not registries:
            raise RegistryError(
                f"{reference} names no registry and none is configured for short names "
                "(set COMPOSER_REGISTRIES or the search list in registries.json)"
            )
        candidates = [ref.with_registry(r) for r in registries]
    failures: list[str] = []
    for candidate in candidates:
        try:
            digest = _pull_from_registry(
                candidate,
                store,
                on_progress,
                platform,
                settings,
                dict(credentials=credentials, ca_file=ca_file, insecure=insecure),
                max_parallel,
            )
        except NotFound as e:
            failures.append(str(e))
            continue
        names = [str(candidate)] if candidate.tag else []
        if names and not ref.registry:
            names.append(str(ref))  # the short name finds it locally from now on
        for name in names:
            store.tag(name, digest)
        image = store.resolve(names[0] if names else digest)
        assert image is not None
        return image
    raise NotFound(f"{reference}: not found: " + "; ".join(failures))


def _endpoints(ref: Reference, settings: RegistrySettings) -> list[str | None]:
    """Mirror URLs for the registry, then None for the registry itself."""
    return [*settings.mirrors.get(ref.registry or "", []), None]


def _pull_from_registry(
    ref: Reference, store, on_progress, platform, settings, client_options, max_parallel
) -> str:
    endpoints = _endpoints(ref, settings)
    failures: list[str] = []
    for url in endpoints:
        # Explicit credentials, CA file and insecure flag are for the registry, not its mirrors.
        options = client_options if url is None else {}
        client = RegistryClient(ref.registry, url=url, settings=settings, **options)
        try:
            return _pull_with(client, ref, store, on_progress, platform, max_parallel)
        except (RegistryError, AuthError, OSError) as e:
            if url is None:  # the registry itself: its answer is final
                if failures and isinstance(e, NotFound):
                    raise NotFound(f"{e} (mirrors: {'; '.join(failures)})") from e
                raise
            if isinstance(e, DigestError):
                raise  # a mirror serving wrong bytes is an alarm, not a miss
            failures.append(f"{url}: {e}")
        finally:
            client.close()
    raise AssertionError("unreachable")


def _pull_with(
    client: RegistryClient, ref: Reference, store, on_progress, platform, max_parallel
) -> str:
    repository = ref.repository
    manifest = client.get_manifest(repository, ref.digest or ref.tag)
    if manifest.media_type in INDEX_TYPES:
        entry = select_manifest(manifest.json(), platform)
        manifest = client.get_manifest(repository, entry["digest"], accept=MANIFEST_TYPES)
    if manifest.media_type not in MANIFEST_TYPES:
        raise RegistryError(
            f"{ref}: unsupported manifest type {manifest.media_type!r} "
            "(only OCI and Docker schema 2 images)"
        )
    body = manifest.json()
    config_desc = body.get("config") or {}
    layers = [d for d in body.get("layers") or [] if d.get("mediaType") != _FOREIGN_LAYER]
    if not store.has_blob(config_desc["digest"]):
        data = client.get_blob(repository, config_desc["digest"])
        store.put_blob(
            data,
            config_desc.get("mediaType"),
            expected_digest=config_desc["digest"],
            expected_size=config_desc.get("size"),
        )
    config = store.read_json_blob(config_desc["digest"])
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    listed = len(body.get("layers") or [])
    if len(diff_ids) != listed:
        raise RegistryError(
            f"{ref}: the config lists {len(diff_ids)} layers, the manifest {listed}"
        )
    _fetch_layers(client, repository, layers, store, on_progress, max_parallel)
    stored = store.put_manifest(manifest.data, manifest.media_type)
    if stored.digest != manifest.digest:
        raise DigestError(f"{ref}: stored manifest {stored.digest}, fetched {manifest.digest}")
    return manifest.digest


class Cancelled(Exception):
    """The pull was interrupted; downloads stop at their next chunk (partials are kept)."""


def _fetch_layers(client, repository, layers, store, on_progress, max_parallel) -> None:
    import threading

    stop = threading.Event()

    def progress(digest: str, done: int, total: int) -> None:
        if stop.is_set():
            raise Cancelled(f"pull of {digest} cancelled")
        if on_progress:
            on_progress(digest, done, total)

    def fetch(layer: dict) -> None:
        digest, size = layer["digest"], layer.get("size")
        if store.has_blob(digest):
            progress(digest, size, size)
            return
        _download_into_store(client, repository, digest, size, store, progress)

    if not layers:
        return
    workers = max(1, min(max_parallel, len(layers)))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="pull")
    try:
        futures = [pool.submit(fetch, layer) for layer in layers]
        errors = [f.exception() for f in futures]
    except BaseException:
        # Ctrl-C: the other downloads stop at their next chunk instead of running to the end.
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for error in errors:
        if error is not None:
            raise error


def ingest_dir(store) -> Path:
    """Where partial downloads wait (same filesystem as the blobs: they are renamed in)."""
    return Path(store.root) / "ingest"


def _download_into_store(client, repository, digest, size, store, on_progress) -> None:
    from runtime.images.store import digest_hex
    from runtime.state import Lock

    hexpart = digest_hex(digest)  # refuses anything that is not a sha256 path-safe name
    ingest = ingest_dir(store)
    ingest.mkdir(parents=True, exist_ok=True)
    partial = ingest / f"{hexpart}.partial"
    # Two pulls of the same layer must not append to one partial file.
    with Lock(ingest / f"{hexpart}.lock", f"download {digest}", timeout=None):
        if store.has_blob(digest):
            if on_progress:
                on_progress(digest, size, size)
            return
        resumed = partial.exists()
        try:
            client.download_blob(repository, digest, partial, size, on_progress)
        except DigestError:
            if not resumed:
                raise
            # The partial file of an earlier pull may be what was wrong: once more from zero.
            partial.unlink(missing_ok=True)
            client.download_blob(repository, digest, partial, size, on_progress)
        target = store.blob_path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(partial, 0o444)
        os.rename(partial, target)  # verified by download_blob; same filesystem
    # The lock file stays: unlinking it would let a waiter and a newcomer both "hold" it.
