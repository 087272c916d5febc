"""The runtime parts a command works with, made on first use (each costs imports)."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from composer import labels as L
from composer.plan import Existing


class Backend:
    def __init__(self, root: str | os.PathLike | None = None, runtime: str | None = None) -> None:
        from runtime.state import state_root

        self.root = state_root(root)
        self.runtime = runtime or os.environ.get("COMPOSER_RUNTIME", "composer-runtime")

    @cached_property
    def engine(self):
        # Kills and execs through it are journaled for `composer events`.
        from composer.ops.journal import engine_class

        return engine_class()(self.root, self.runtime)

    @cached_property
    def store(self):
        from runtime.images.store import ImageStore

        return ImageStore(self.root)

    @cached_property
    def volumes(self):
        from runtime.volumes import Volumes

        return Volumes(self.root)

    @cached_property
    def networks(self):
        from runtime.network.manager import NetworkManager

        return NetworkManager(self.root)

    def container_dir(self, container_id: str) -> Path:
        from runtime.state import container_dir

        return container_dir(container_id, self.root)

    def project_dir(self) -> Path:
        return self.root / "projects"

    def containers(self, project: str, *, include_oneoff: bool = True) -> list[dict]:
        found = self.engine.list({L.PROJECT: project})
        if not include_oneoff:
            found = [c for c in found if (c.get("labels") or {}).get(L.ONEOFF) != "True"]
        return found

    def existing(self, project: str) -> list[Existing]:
        return [Existing.from_engine(info) for info in self.containers(project)]
