"""The Compose loader: files on disk → a frozen composer.model.Project.

One pass a module, in the order of the Compose Specification:

    discovery → parse → interpolate (+ cast) → include / extends → merge
    → validate → profiles → normalize → semantics → model

Every pass works on the MapNode/SeqNode tree of composer.loader.nodes, keeps
each node's marks (or copies them onto what it builds), and reports bad input
by raising composer.loader.errors.LoadError, with every problem it found.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from composer.loader.errors import LoadError, Problem
from runtime.record import field, record

if TYPE_CHECKING:
    from composer.loader.environment import Environment
    from composer.model import Project


@record(frozen=False)
class LoadOptions:
    """What the command line (or an API caller) says about where the project is."""

    files: list[str] = field(default_factory=list)  # -f, in order; "-" is stdin
    project_directory: str | None = None  # --project-directory
    project_name: str | None = None  # -p
    profiles: list[str] = field(default_factory=list)  # --profile
    env_files: list[str] = field(default_factory=list)  # --env-file, in order
    selected_services: list[str] = field(default_factory=list)  # named on the command line
    interpolate: bool = True  # False for --no-interpolate
    strict_env: bool = False  # --strict-env: unset variables are errors
    environ: Mapping[str, str] | None = None  # the shell environment (os.environ by default)
    cwd: str | None = None  # where relative -f paths start (os.getcwd() by default)
    stdin_text: str | None = None  # what `-f -` reads (sys.stdin by default)

    def shell_environ(self) -> Mapping[str, str]:
        """Read by name only: what a load reads of it is an input (composer/cli/memo.py)."""
        return os.environ if self.environ is None else self.environ


@record(frozen=False)
class LoadResult:
    project: Project
    environment: Environment
    warnings: list[str]
    # The merged, normalized tree (marks kept), for `composer config` output.
    tree: Any
    # How the project name was derived, e.g. "directory 'My App' → 'myapp'".
    name_source: str
    # Every profile named in the files, enabled or not (`config --profiles`).
    all_profiles: list[str] = field(default_factory=list)


def load(options: LoadOptions) -> LoadResult:
    """Run every pass; raises LoadError for bad input."""
    from composer.graph import check_acyclic
    from composer.loader import (
        discovery,
        environment,
        extends,
        include,
        interpolate,
        merge,
        naming,
        normalize,
        parse,
        profiles,
        resources,
        semantics,
        validate,
    )
    from composer.model import build_project

    found = discovery.discover(options)
    env = environment.build_environment(
        options.shell_environ(),
        options.env_files,
        found.project_dir,
        strict=options.strict_env,
        cwd=options.cwd,
    )
    # Up to validation, every file's problems are gathered so a user sees them
    # all at once; later passes need a valid tree, so they stop at the first.
    problems = _Problems()
    trees = []
    for source in found.files:
        tree = problems.run(parse.parse_compose, source.text, source.display)
        if tree is None:
            continue
        if options.interpolate:
            problems.run(interpolate.interpolate, tree, env)
            problems.run(interpolate.cast, tree, env)
        tree = problems.run(include.apply_includes, tree, source, env, options) or tree
        tree = problems.run(extends.apply_extends, tree, source, env, options) or tree
        trees.append(tree)
    tree = merge.merge_all(trees)
    problems.run(validate.validate, tree)
    problems.raise_if_any()
    name, name_source = naming.project_name(options, tree, found.project_dir, env)
    all_profiles = sorted(
        {
            p
            for svc in (tree.get("services") or {}).values()
            for p in (svc or {}).get("profiles") or ()
        }
    )
    profiles.apply_profiles(tree, options.profiles or env.profiles(), options.selected_services)
    normalize.normalize(tree, found.project_dir, env)
    semantics.check(tree)
    check_acyclic(tree)
    resources.settle_resources(tree, name)
    project = build_project(
        tree, name=name, project_dir=found.project_dir, config_files=found.paths(), env=env
    )
    warnings = [*found.warnings, *env.warnings]
    return LoadResult(project, env, warnings, tree, name_source, all_profiles)


class _Problems:
    """Problems gathered across passes; one per key path (the first pass's wins)."""

    def __init__(self) -> None:
        self.found: list[Problem] = []
        self._paths: set[tuple] = set()

    def run(self, step: Callable[..., Any], *args: Any) -> Any:
        try:
            return step(*args)
        except LoadError as err:
            for problem in err.problems:
                if problem.path and problem.path in self._paths:
                    continue
                self._paths.add(problem.path)
                self.found.append(problem)
            return None

    def raise_if_any(self) -> None:
        if self.found:
            raise LoadError(list(self.found))


def variables(options: LoadOptions) -> list:
    """The variables the project's files use, as written (`config --variables`)."""
    from composer.loader import discovery, interpolate, parse

    found = discovery.discover(options)
    seen: dict[str, object] = {}
    for source in found.files:
        for variable in interpolate.find_variables(
            parse.parse_compose(source.text, source.display)
        ):
            seen.setdefault(variable.name, variable)
    return sorted(seen.values(), key=lambda v: v.name)
