"""A tiny root filesystem for container tests, built from Debian's busybox-static."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

BUSYBOX = Path("/bin/busybox")

_PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    "user:x:1000:1000:user:/home/user:/bin/sh\n"
)
_GROUP = "root:x:0:\nnobody:x:65534:\nuser:x:1000:\n"


def _applets() -> list[str]:
    out = subprocess.run([str(BUSYBOX), "--list"], check=True, capture_output=True, text=True)
    return [name for name in out.stdout.split() if name and "/" not in name]


def make_busybox_rootfs(dest: Path) -> Path:
    """Fill `dest` with /bin/busybox, its applet symlinks and a minimal /etc; return `dest`."""
    dest = Path(dest)
    for sub in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/user", "run", "var"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    for applet in _applets():
        link = dest / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text(_PASSWD)
    (dest / "etc" / "group").write_text(_GROUP)
    (dest / "etc" / "hostname").write_text("busybox\n")
    if os.geteuid() == 0:
        os.chown(dest / "home" / "user", 1000, 1000)
    return dest


def read_config(bundle: Path) -> dict:
    return json.loads((bundle / "config.json").read_text())


def write_config(bundle: Path, config: dict) -> None:
    (bundle / "config.json").write_text(json.dumps(config, indent=1))


def unique_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
