"""A container's root filesystem: the image's unpacked layers stacked with overlayfs.

    <container_dir>/upper   the container's writes
    <container_dir>/work    overlayfs's scratch dir (same filesystem as upper)
    <container_dir>/rootfs  the mount point, returned to the caller

While mounted, a record under $COMPOSER_ROOT/layers/.users/ names the image and its
layers, so `prune` never removes a layer a container stands on.

The mount data (lowerdir=a:b:c,upperdir=...,workdir=...) must fit in one page. Deep
images use short links (layers/l/<short> → ../<diffid>) named relative to the layers
directory, and mount from a child process whose working directory is that directory
(a chdir in this process would race other threads).
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

from runtime.state import atomic_write_json, layers_dir, read_json, state_root

USERS_DIR = ".users"


def _page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


def _user_record(root: Path, container_dir: Path) -> Path:
    key = hashlib.sha256(os.fsencode(container_dir)).hexdigest()[:32]
    return layers_dir(root) / USERS_DIR / f"{key}.json"


def _users(root: str | os.PathLike | None) -> list[dict]:
    directory = layers_dir(root) / USERS_DIR
    if not directory.is_dir():
        return []
    out = []
    for path in directory.glob("*.json"):
        record = read_json(path, None)
        # A container dir removed without release_rootfs leaves a stale record.
        if record and os.path.isdir(record.get("container_dir", "")):
            out.append(record)
    return out


def layers_in_use(root: str | os.PathLike | None = None) -> set[str]:
    """diff_ids of the layers under some container's root filesystem."""
    return {diff_id for record in _users(root) for diff_id in record.get("diff_ids", [])}


def images_in_use(root: str | os.PathLike | None = None) -> set[str]:
    """Manifest digests of the images some container's root filesystem is made from."""
    return {
        digest
        for record in _users(root)
        for digest in (record.get("image"), record.get("listed_digest"))
        if digest
    }


def is_mounted(path: str | os.PathLike) -> bool:
    """Whether something is mounted exactly on `path` (in this mount namespace)."""
    from runtime.mounts import is_mounted as mounted

    return mounted(path)


def _escape(path: str) -> str:
    # overlayfs splits its options on "," and lowerdir on ":"; a backslash escapes both.
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def _mount_data(lowers: list[str], upper: str, work: str) -> str:
    lowerdir = ":".join(_escape(lower) for lower in lowers)
    return f"lowerdir={lowerdir},upperdir={_escape(upper)},workdir={_escape(work)}"


def _mount_from(directory: str, target: str, data: str) -> None:
    """mount(2) overlay with relative lowerdirs resolved from `directory`, in a child."""
    from runtime.oci import syscalls

    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.chdir(directory)
            syscalls.mount("overlay", target, "overlay", 0, data)
        except OSError as e:
            code = e.errno or 255
        except BaseException:
            code = 255
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise OSError(code, f"mount overlay on {target}: {os.strerror(code)} (data={data!r})")


def prepare_rootfs(
    image, container_dir: str | os.PathLike, store=None, *, volatile: bool = False
) -> Path:
    """Mount the image's layers (unpacked on first use) with a fresh upper dir under
    `container_dir`; return the mounted root filesystem. Calling it again while mounted
    returns the same mount.

    volatile: overlayfs never syncs the upper dir. Without it, unmounting syncs the whole
    filesystem under it (every process's dirty data: ~5-90 ms a container on a busy disk);
    with it, a machine crash may lose the container's latest writes. overlayfs refuses to
    mount a volatile upper dir again until the marker it left in the work dir is gone: a
    remount (after a restart of the machine) empties the work dir first, keeping the upper
    dir, the container's own files."""
    from runtime.images.store import ImageStore
    from runtime.oci import syscalls

    store = store or ImageStore()
    container_dir = Path(container_dir).absolute()
    rootfs, upper, work = (container_dir / name for name in ("rootfs", "upper", "work"))
    for directory in (rootfs, upper, work):
        directory.mkdir(parents=True, exist_ok=True)
    if is_mounted(rootfs):
        return rootfs
    layer_store = store.layers
    lowers = list(image.diff_ids)
    if not lowers or len(lowers) != len(image.layers):
        raise ValueError(f"image {image.name or image.digest}: no layers, or not one per diff_id")
    # Recorded before unpacking: a prune running meanwhile must see these layers as used.
    record = _user_record(store.state_root, container_dir)
    record.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        record,
        {
            "container_dir": str(container_dir),
            "image": image.digest,
            "listed_digest": getattr(image, "listed_digest", None),
            "diff_ids": lowers,
        },
    )
    top_first = list(reversed(lowers))
    try:
        for descriptor, diff_id in zip(image.layers, lowers, strict=True):
            if not layer_store.has(diff_id):
                with store.open_blob(descriptor.digest, descriptor.size) as blob:
                    layer_store.ensure_unpacked(diff_id, blob)
    except BaseException:
        record.unlink(missing_ok=True)
        raise
    extra = ",volatile" if volatile else ""
    if (work / "work" / "incompat" / "volatile").exists():
        from runtime.images.layers import remove_tree

        remove_tree(work / "work")
    data = _mount_data([str(layer_store.path(d)) for d in top_first], str(upper), str(work))
    try:
        if len(data + extra) < _page_size():
            syscalls.mount("overlay", str(rootfs), "overlay", 0, data + extra)
        else:
            short = [f"{layer_store.short_name(d)}" for d in top_first]
            data = _mount_data(short, str(upper), str(work))
            if len(data + extra) >= _page_size():
                raise OSError(errno.E2BIG, f"{len(lowers)} layers do not fit in one overlay mount")
            _mount_from(str(layer_store.dir / "l"), str(rootfs), data + extra)
    except BaseException:
        record.unlink(missing_ok=True)
        raise
    return rootfs


def release_rootfs(container_dir: str | os.PathLike, root: str | os.PathLike | None = None) -> None:
    """Unmount the container's root filesystem and remove its upper, work and mount dirs."""
    from runtime.images.layers import remove_tree
    from runtime.oci import syscalls

    container_dir = Path(container_dir).absolute()
    rootfs = container_dir / "rootfs"
    while rootfs.is_dir() and is_mounted(rootfs):
        try:
            syscalls.umount2(str(rootfs), 0)
        except OSError as e:
            if e.errno == errno.EBUSY:
                syscalls.umount2(str(rootfs), syscalls.MNT_DETACH)
            elif e.errno != errno.EINVAL:
                raise
    for name in ("rootfs", "upper", "work"):
        remove_tree(container_dir / name)
    _user_record(state_root(root), container_dir).unlink(missing_ok=True)
