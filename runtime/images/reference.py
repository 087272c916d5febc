"""Image references: `[registry/]repository[:tag][@digest]`.

A short name (no registry part) keeps `registry=None`: it is looked up in the local
store first, then through the registries the user configured (`configured_registries`).
We never invent a default registry host.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from runtime.record import record

DEFAULT_TAG = "latest"
REGISTRIES_ENV = "COMPOSER_REGISTRIES"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")
_SHA256 = re.compile(r"sha256:[a-f0-9]{64}")
_HOST = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\]"
)
_PORT = re.compile(r"[0-9]+")


class ReferenceError(ValueError):
    """The text is not a valid image reference; the message says which part is wrong."""


@record
class Reference:
    registry: str | None
    repository: str
    tag: str | None = DEFAULT_TAG
    digest: str | None = None

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def name(self) -> str:
        """Registry and repository, without tag or digest."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    def with_registry(self, registry: str) -> Reference:
        return Reference(registry, self.repository, self.tag, self.digest)

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)


def _is_registry(first: str) -> bool:
    # As in the common convention: a first path part with a dot, a port or "localhost".
    return "." in first or ":" in first or first == "localhost"


def _valid_registry(host: str) -> bool:
    if host.startswith("["):  # [ipv6]:port
        end = host.find("]")
        name, rest = host[: end + 1], host[end + 1 :]
        port = rest[1:] if rest.startswith(":") else None
        if rest and port is None:
            return False
    else:
        name, _, port = host.partition(":")
        port = port if ":" in host else None
    if not _HOST.fullmatch(name):
        return False
    return port is None or bool(_PORT.fullmatch(port))


def parse_reference(text: str) -> Reference:
    """Parse `text` into a Reference; the tag defaults to "latest" unless a digest is given."""
    if not isinstance(text, str) or not text or text != text.strip():
        raise ReferenceError(f"invalid image reference {text!r}: empty or surrounded by spaces")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if digest.startswith("sha256:") and not _SHA256.fullmatch(digest):
            raise ReferenceError(f"invalid image reference {text!r}: sha256 needs 64 hex digits")
        if not _DIGEST.fullmatch(digest):
            raise ReferenceError(f"invalid image reference {text!r}: bad digest {digest!r}")
    registry = None
    first, slash, remainder = rest.partition("/")
    if slash and _is_registry(first):
        if not _valid_registry(first):
            raise ReferenceError(f"invalid image reference {text!r}: bad registry {first!r}")
        registry, rest = first, remainder
    tag = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise ReferenceError(f"invalid image reference {text!r}: bad tag {tag!r}")
    if not _REPOSITORY.fullmatch(rest) or len(rest) > 255:
        hint = " (repository names are lowercase)" if rest != rest.lower() else ""
        raise ReferenceError(f"invalid image reference {text!r}: bad repository {rest!r}{hint}")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, rest, tag, digest)


def normalize(text: str) -> str:
    """The canonical spelling the store files names under ("busybox" → "busybox:latest")."""
    return str(parse_reference(text))


def configured_registries() -> list[str]:
    """Registries the user asked short names to be searched in, in order; empty by default.

    $COMPOSER_REGISTRIES (comma or space separated) wins over the "search" list of
    ~/.config/composer/registries.json.
    """
    env = os.environ.get(REGISTRIES_ENV)
    if env is not None:
        return [part for part in re.split(r"[,\s]+", env) if part]
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    path = Path(config_home) / "composer" / "registries.json"
    try:
        import json

        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise ReferenceError(f"cannot read {path}: {e}") from e
    search = data.get("search", []) if isinstance(data, dict) else []
    if not isinstance(search, list) or not all(isinstance(s, str) for s in search):
        raise ReferenceError(f'{path}: "search" must be a list of registry names')
    return list(search)
