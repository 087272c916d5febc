"""The project name, which prefixes every container, network and volume.

Precedence (as docker compose): `-p`, then COMPOSE_PROJECT_NAME (the shell's,
then the .env file's), then the top-level `name:`, then the project
directory's base name. A name someone wrote must already be valid; a name
derived from a directory is normalized, and the mapping is reported.
"""

from __future__ import annotations

import os
import re
from typing import Any

from composer.loader.errors import fail
from composer.loader.nodes import MapNode

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_RULE = (
    "a project name must consist of lowercase letters, digits, '-' and '_', "
    "and start with a letter or digit"
)
ENV_VAR = "COMPOSE_PROJECT_NAME"


def normalize_name(text: str) -> str:
    """Lowercase, keep [a-z0-9_-], drop leading '-' and '_'."""
    kept = "".join(re.findall(r"[a-z0-9_-]", text.lower()))
    return kept.lstrip("-_")


def project_name(options: Any, tree: MapNode, project_dir: str, env: Any) -> tuple[str, str]:
    """(name, how it was chosen); raises LoadError for a name that cannot be used."""
    if options.project_name:
        return _explicit(options.project_name, "-p"), "-p / --project-name"
    shell = options.shell_environ()
    if shell.get(ENV_VAR):
        return _explicit(shell[ENV_VAR], f"{ENV_VAR} in the environment"), f"{ENV_VAR} (shell)"
    from_env_file = env.lookup(ENV_VAR) if env is not None else None
    if from_env_file:
        where = env.explain(ENV_VAR).source  # FILE:LINE of the env file that set it
        return _explicit(from_env_file, f"{ENV_VAR} at {where}"), f"{ENV_VAR} ({where})"
    if "name" in tree and tree["name"] is not None:
        return _from_tree(tree), f"'name' at {tree.mark_of('name')}"
    return _from_directory(project_dir)


def _explicit(value: str, origin: str) -> str:
    if NAME_PATTERN.match(value):
        return value
    suggestion = normalize_name(value)
    raise fail(
        f"invalid project name {value!r} from {origin}: {_RULE}",
        hint=f"use {suggestion!r}" if suggestion else None,
    )


def _from_tree(tree: MapNode) -> str:
    value = tree["name"]
    mark = tree.mark_of("name")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise fail("the project name must be a string", mark, ("name",))
    text = str(value)
    if NAME_PATTERN.match(text):
        return text
    suggestion = normalize_name(text)
    raise fail(
        f"invalid project name {text!r}: {_RULE}",
        mark,
        ("name",),
        hint=f"write name: {suggestion}" if suggestion else None,
    )


def _from_directory(project_dir: str) -> tuple[str, str]:
    base = os.path.basename(os.path.normpath(project_dir))
    name = normalize_name(base)
    if not name:
        raise fail(
            f"cannot derive a project name from the directory {base or project_dir!r}: "
            "it has no letters or digits",
            hint="name the project with -p NAME, COMPOSE_PROJECT_NAME or a top-level 'name:'",
        )
    if name == base:
        return name, f"directory {base!r}"
    return name, f"directory {base!r} → {name!r}"
