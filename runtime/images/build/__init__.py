"""Dockerfile builds: `build(context_dir, ...) -> Image`; errors are DockerfileError/BuildError.

The names are loaded on first use, so importing the package costs nothing.
"""

from __future__ import annotations

__all__ = ["BuildError", "DockerfileError", "build"]


def __getattr__(name: str):
    if name in ("build", "BuildError"):
        from runtime.images.build import builder

        return getattr(builder, name)
    if name == "DockerfileError":
        from runtime.images.build.dockerfile import DockerfileError

        return DockerfileError
    raise AttributeError(name)
