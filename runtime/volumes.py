"""Named and anonymous volumes: directories under COMPOSER_ROOT/volumes/<name>/.

    volumes/<name>/_data        what containers see
    volumes/<name>/volume.json  name, labels, created time, driver options

A volume is filled from the image's content at its mount point the first time
it is mounted while empty (unless `nocopy`), as docker does.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from runtime.state import Lock, atomic_write_json, read_json, state_root, volumes_dir

VALID_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


class VolumeError(Exception):
    pass


class VolumeInUse(VolumeError):
    pass


class Volumes:
    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = state_root(root)
        self.dir = volumes_dir(self.root)

    def _path(self, name: str) -> Path:
        if not VALID_NAME.match(name):
            raise VolumeError(f"invalid volume name {name!r}: use letters, digits, '_', '.', '-'")
        return self.dir / name

    def exists(self, name: str) -> bool:
        return (self._path(name) / "volume.json").exists()

    def create(
        self, name: str, labels: dict | None = None, driver_opts: dict | None = None
    ) -> dict:
        """Create the volume if it does not exist yet; return its record either way."""
        path = self._path(name)
        self.dir.mkdir(parents=True, exist_ok=True)
        with Lock(self.dir / ".lock", f"create volume {name}", timeout=30):
            record = read_json(path / "volume.json", None)
            if record is not None:
                return record
            (path / "_data").mkdir(parents=True, exist_ok=True)
            record = {
                "name": name,
                "driver": "local",
                "labels": dict(labels or {}),
                "options": dict(driver_opts or {}),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "mountpoint": str(path / "_data"),
            }
            atomic_write_json(path / "volume.json", record)
            return record

    def inspect(self, name: str) -> dict:
        record = read_json(self._path(name) / "volume.json", None)
        if record is None:
            raise VolumeError(f"no such volume: {name}")
        return record

    def mountpoint(self, name: str) -> str:
        return str(self._path(name) / "_data")

    def list(self, labels: dict | None = None) -> list[dict]:
        if not self.dir.is_dir():
            return []
        found = []
        for entry in sorted(self.dir.iterdir()):
            if not entry.is_dir():
                continue  # the lock file
            record = read_json(entry / "volume.json", None)
            if record is None:
                continue
            have = record.get("labels") or {}
            if labels and any(have.get(k) != v for k, v in labels.items()):
                continue
            found.append(record)
        return found

    def remove(self, name: str, in_use_by: list[str] | None = None) -> None:
        """Remove a volume and its data; refused while a container uses it."""
        if in_use_by:
            raise VolumeInUse(f"volume {name} is in use by {', '.join(in_use_by)}")
        path = self._path(name)
        if not path.exists():
            raise VolumeError(f"no such volume: {name}")
        shutil.rmtree(path)

    def fill_from_image(self, name: str, rootfs: str, target: str) -> bool:
        """Copy the image's content at `target` into an empty volume; True if it copied."""
        data = Path(self.mountpoint(name))
        source = Path(rootfs) / target.lstrip("/")
        if any(data.iterdir()) or not source.is_dir() or source.is_symlink():
            return False
        for entry in source.iterdir():
            destination = data / entry.name
            if entry.is_dir() and not entry.is_symlink():
                shutil.copytree(entry, destination, symlinks=True, copy_function=_copy_owned)
                _copy_owner_and_mode(entry, destination)
                for directory, subdirs, _files in os.walk(entry):
                    for sub in subdirs:
                        src = Path(directory) / sub
                        _copy_owner_and_mode(src, destination / src.relative_to(entry))
            else:
                _copy_owned(entry, destination)
        _copy_owner_and_mode(source, data)
        return True


def _copy_owner_and_mode(source: Path, destination: Path) -> None:
    stat = source.lstat()
    os.lchown(destination, stat.st_uid, stat.st_gid)
    if not source.is_symlink():
        os.chmod(destination, stat.st_mode & 0o7777)


def _copy_owned(source, destination) -> None:
    """copy2, plus the owner: a service's data directory is often not root's."""
    shutil.copy2(source, destination, follow_symlinks=False)
    _copy_owner_and_mode(Path(source), Path(destination))
