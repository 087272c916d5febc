"""A pytest plugin for integration tests against a Compose project.

The `composer_project` fixture (session scope) brings the project up once, waits until
its services run (healthy where they have a healthcheck), and takes it down with its
volumes at the end of the session, whatever happened. A failing test that used it gets
the last log lines of every service in its report.

    def test_api(composer_project):
        host, port = composer_project.service_address("api", 8080)
        ...

Which project: `--composer-file FILE` (repeatable) or the `composer_file` ini setting,
else the compose file found in pytest's root directory; `--composer-project-name` or
`composer_project_name`, else a unique name, so parallel sessions never share one.

pytest loads this module for every run of every suite in the environment (entry point
`pytest11`): it imports nothing but pytest and the standard library until a test asks
for the fixture.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import pytest

LOG_LINES_ON_FAILURE = 50
_ACTIVE = pytest.StashKey["ComposerProject"]()


class ExecResult(NamedTuple):
    exit_code: int
    stdout: str
    stderr: str


class ComposerProject:
    """A loaded project and the engine it runs on; what a test needs to reach it."""

    def __init__(
        self,
        files: list[str],
        name: str | None = None,
        *,
        cwd: str | None = None,
        root: str | os.PathLike | None = None,
    ) -> None:
        from composer.loader import LoadOptions, load
        from composer.ops.backend import Backend

        options = LoadOptions(files=list(files), project_name=name, cwd=cwd)
        self.project = load(options).project
        self.backend = Backend(root)
        self.events: list[str] = []  # what up and down reported, for debugging

    @property
    def name(self) -> str:
        return self.project.name

    def __repr__(self) -> str:
        return f"<ComposerProject {self.name}: {', '.join(self.project.services)}>"

    def _report(self, resource: str, state: str) -> None:
        self.events.append(f"{resource}: {state}")

    def up(self, wait_timeout: float = 120.0) -> None:
        """Create and start every service, then wait until they are ready."""
        from composer.ops.project import OperationError
        from composer.ops.status import wait_ready
        from composer.ops.up import UpRequest, up

        services = up(self.project, self.backend, UpRequest(), self._report)
        problem = wait_ready(self.project, self.backend, services, wait_timeout)
        if problem:
            raise OperationError(problem)

    def down(self) -> None:
        """Remove the containers, networks and volumes (`down -v`)."""
        from composer.ops.down import down

        down(self.project, self.backend, self._report, volumes=True, remove_orphans=True)

    def _container(self, service: str, index: int) -> dict:
        from composer import labels as L

        if service not in self.project.services:
            raise LookupError(f"no such service: {service}")
        for info in self.backend.containers(self.name, include_oneoff=False):
            labels = info.get("labels") or {}
            if labels.get(L.SERVICE) == service and labels.get(L.NUMBER) == str(index):
                return info
        raise LookupError(f"service {service} has no container number {index}")

    def service_address(
        self, service: str, port: int, protocol: str = "tcp", index: int = 1
    ) -> tuple[str, int]:
        """(host, port) on this machine where the service's container `port` is published."""
        container_id = self._container(service, index)["id"]
        for network in self.backend.networks.list():
            for published in network.ports:
                if (
                    published.container_id == container_id
                    and published.container_port == int(port)
                    and published.protocol == protocol
                ):
                    host = published.host_ip
                    if host in ("", "0.0.0.0"):
                        host = "127.0.0.1"
                    elif host == "::":
                        host = "::1"
                    return host, published.host_port
        raise LookupError(f"service {service} does not publish {port}/{protocol}")

    def exec(
        self,
        service: str,
        cmd: str | list[str],
        *,
        index: int = 1,
        user: str | None = None,
        env: dict[str, str] | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        """Run cmd (a string goes to `sh -c`) in the service's running container."""
        import subprocess
        import tempfile

        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        container_id = self._container(service, index)["id"]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            code = self.backend.engine.exec(
                container_id,
                argv,
                user=user,
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
            out.seek(0)
            err.seek(0)
            return ExecResult(code, out.read().decode(errors="replace"), err.read().decode())

    def logs(self, service: str, tail: int | None = None) -> str:
        """What the service's containers printed (stdout and stderr, in time order)."""
        from composer.ops.status import merged_logs

        if service not in self.project.services:
            raise LookupError(f"no such service: {service}")
        records = merged_logs(self.project, self.backend, [service], follow=False, tail=tail)
        return "".join(record["log"] for record in records)

    def ps(self) -> list[dict]:
        """One row per container, running or not (as `composer ps -a --format json`)."""
        from composer.ops.status import ps_rows

        return ps_rows(self.project, self.backend, all=True)


# ---------------------------------------------------------------- pytest hooks


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("composer", "Compose project for integration tests")
    group.addoption(
        "--composer-file",
        action="append",
        default=[],
        dest="composer_files",
        metavar="FILE",
        help="compose file of the composer_project fixture (repeatable)",
    )
    group.addoption(
        "--composer-project-name",
        dest="composer_project_name",
        metavar="NAME",
        help="project name of the composer_project fixture (default: a unique one)",
    )
    group.addoption(
        "--composer-wait-timeout",
        dest="composer_wait_timeout",
        type=float,
        metavar="SECONDS",
        help="how long the services may take to become ready (default 120)",
    )
    parser.addini("composer_file", "compose file(s) of the composer_project fixture", "args")
    parser.addini("composer_project_name", "project name of the composer_project fixture")
    parser.addini("composer_wait_timeout", "seconds the services may take to be ready", "string")


def pytest_configure(config: pytest.Config) -> None:
    _leave_our_modules_unrewritten(config)


# Our packages: pytest marks a plugin's whole distribution for assertion rewriting.
OWN_PACKAGES = ("composer", "runtime")


def _leave_our_modules_unrewritten(config: pytest.Config) -> None:
    """Rewriting parses each module with ast; `up` imports in several threads at once, and
    CPython before 3.12 can fail two concurrent parses with "AST constructor recursion
    depth mismatch" (gh-106905). Our modules hold no asserts for pytest, so they are left
    as they are. pytest has no public way to unmark a name: this reads its hook's set, and
    does nothing where that is not there."""
    hook = getattr(config.pluginmanager, "rewrite_hook", None)
    marked = getattr(hook, "_must_rewrite", None)
    if not isinstance(marked, set):
        return
    marked.difference_update(OWN_PACKAGES)
    cache = getattr(hook, "_marked_for_rewrite_cache", None)
    if isinstance(cache, dict):
        cache.clear()


def _settings(config: pytest.Config) -> tuple[list[str], str | None, float]:
    files = [os.path.join(config.invocation_params.dir, f) for f in config.option.composer_files]
    if not files:
        base = config.inipath.parent if config.inipath else config.rootpath
        files = [os.path.join(base, f) for f in config.getini("composer_file")]
    name = config.option.composer_project_name or config.getini("composer_project_name") or None
    timeout = config.option.composer_wait_timeout or float(
        config.getini("composer_wait_timeout") or 120
    )
    return files, name, timeout


@pytest.fixture(scope="session")
def composer_project(request: pytest.FixtureRequest):
    """The session's Compose project, up and ready; taken down (`down -v`) at the end."""
    import uuid

    files, name, timeout = _settings(request.config)
    harness = ComposerProject(
        files, name or f"pytest-{uuid.uuid4().hex[:10]}", cwd=str(request.config.rootpath)
    )
    request.config.stash[_ACTIVE] = harness
    try:
        try:
            harness.up(timeout)
        except Exception as e:
            if type(e).__name__ == "OperationError":
                pytest.fail(f"composer_project {harness.name}: {e}", pytrace=False)
            raise
        yield harness
    finally:
        del request.config.stash[_ACTIVE]
        harness.down()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    if report.failed and "composer_project" in getattr(item, "fixturenames", ()):
        harness = item.config.stash.get(_ACTIVE, None)
        if harness is not None:
            for title, text in _last_logs(harness):
                report.sections.append((title, text))
    return report


def _last_logs(harness: ComposerProject) -> list[tuple[str, str]]:
    sections = []
    for service in harness.project.services:
        try:
            text = harness.logs(service, tail=LOG_LINES_ON_FAILURE) or "(no output)\n"
        except Exception as e:  # the report must still be written
            text = f"(logs unavailable: {type(e).__name__}: {e})\n"
        sections.append((f"composer logs: {service} (last {LOG_LINES_ON_FAILURE} lines)", text))
    return sections
