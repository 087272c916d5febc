"""Shared test helper: a busybox-static image built locally into an ImageStore."""

from __future__ import annotations

import io
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rootfs import make_busybox_rootfs

BUSYBOX_CONFIG = {
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    "Cmd": ["sh"],
}


def busybox_tar() -> bytes:
    """An uncompressed tar of a busybox root filesystem (~2 MB)."""
    with tempfile.TemporaryDirectory(prefix="busybox-image-") as scratch:
        root = make_busybox_rootfs(Path(scratch) / "rootfs")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(root, arcname=".")
        return buffer.getvalue()


def busybox_image(store, name: str = "busybox:latest"):
    """Import a busybox-static root filesystem into `store` as `name`; return the Image."""
    return store.import_rootfs_tar(io.BytesIO(busybox_tar()), name, config=dict(BUSYBOX_CONFIG))
