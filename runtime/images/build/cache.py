"""The build cache: the state after each step, by a key of everything that step depends on.

A key chains the parent step's key with the instruction (after substitution) and whatever
else the step reads (copied files' hashes, build-arg values). An entry is the build state
after the step (layers, diff_ids, image config); a hit is used only while the store still
has every layer blob, so `prune` can never make the cache lie.

    $COMPOSER_ROOT/build-cache/<key>.json
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from runtime.record import field, record
from runtime.state import atomic_write_json, read_json, state_root


def step_key(parent: str, *parts: str) -> str:
    """sha256 over the parent key and the step's parts, unambiguously separated."""
    digest = hashlib.sha256(parent.encode())
    for part in parts:
        data = part.encode()
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


@record(frozen=False)
class BuildState:
    """A stage's root filesystem (layer descriptors and diff_ids) and image config so far."""

    layers: list[dict] = field(default_factory=list)  # descriptor dicts
    diff_ids: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)  # the whole OCI image config
    key: str = ""

    def to_dict(self) -> dict:
        return {"layers": self.layers, "diff_ids": self.diff_ids, "config": self.config}

    def copy(self, key: str | None = None) -> BuildState:
        import copy

        return BuildState(
            [dict(d) for d in self.layers],
            list(self.diff_ids),
            copy.deepcopy(self.config),
            self.key if key is None else key,
        )


class BuildCache:
    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.dir = Path(state_root(root)) / "build-cache"

    def _path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def get(self, key: str, store) -> BuildState | None:
        data = read_json(self._path(key), None)
        if not data:
            return None
        if not all(store.has_blob(d["digest"]) for d in data.get("layers", [])):
            return None
        return BuildState(data["layers"], data["diff_ids"], data["config"], key)

    def put(self, key: str, state: BuildState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self._path(key), state.to_dict())

    def get_image(self, key: str, store) -> str | None:
        """The manifest digest a finished build with this key stored, if still there."""
        data = read_json(self._path("image-" + key), None)
        if data and store.has_blob(data["manifest"]) and store.has_blob(data["config"]):
            return data["manifest"]
        return None

    def put_image(self, key: str, manifest_digest: str, config_digest: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            self._path("image-" + key), {"manifest": manifest_digest, "config": config_digest}
        )

    def prune(self, store) -> list[str]:
        """Drop entries whose layers the store no longer has; return their keys."""
        removed = []
        if not self.dir.is_dir():
            return removed
        for path in self.dir.glob("*.json"):
            data = read_json(path, None) or {}
            if path.name.startswith("image-"):
                alive = data and store.has_blob(data["manifest"])
            else:
                alive = all(store.has_blob(d["digest"]) for d in data.get("layers", []))
            if not alive:
                path.unlink(missing_ok=True)
                removed.append(path.stem)
        return removed
