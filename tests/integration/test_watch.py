"""`composer watch` on the real kernel: busybox services, files changed on the host, and
what the running containers then see (read back with the engine's exec)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from composer import labels as L
from composer.ops.backend import Backend
from composer.watch import copy_into, remove_from
from runtime.images.store import ImageStore
from tests import netns
from tests.compose_helpers import COMPOSER, Project, assert_nothing_left
from tests.images import busybox_image

netns_sandbox = netns.netns_sandbox
in_netns = netns.in_netns


@pytest.fixture
def project(tmp_path, in_netns):
    root = tmp_path / "root"
    directory = tmp_path / "project"
    directory.mkdir()
    busybox_image(ImageStore(root))
    p = Project(directory, root)
    yield p
    p.run("down", "-v", "-t", "0", check=False)
    assert_nothing_left(root)


class Watching:
    """`composer watch` in the background; its output collected line by line."""

    def __init__(self, project: Project, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*COMPOSER, "watch", *args],
            cwd=project.directory,
            env=project.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def output(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def wait_for(self, text: str, count: int = 1, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while sum(text in line for line in self.lines) < count:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError(f"watch never printed {text!r}:\n{self.output()}")
                self.changed.wait(min(left, 0.5))

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal sends it; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.reader.join(timeout=10)
        return code


@pytest.fixture
def watching():
    started: list[Watching] = []

    def start(project: Project, *args: str) -> Watching:
        w = Watching(project, *args)
        started.append(w)
        w.wait_for("Watching")
        return w

    yield start
    for w in started:
        w.interrupt()


def container(project: Project, service: str) -> dict:
    infos = [
        info
        for info in Backend(project.root).containers(project.name)
        if info["labels"].get(L.SERVICE) == service
    ]
    assert len(infos) == 1, infos
    return infos[0]


def read_in(project: Project, service: str, path: str) -> str | None:
    """The file's text inside the service's container, None if it is not there."""
    with tempfile.TemporaryFile(mode="w+") as out:
        code = Backend(project.root).engine.exec(
            container(project, service)["id"],
            ["cat", path],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
        out.seek(0)
        return out.read() if code == 0 else None


def eventually(check, what: str, watch: Watching | None = None, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            said = f"; watch printed:\n{watch.output()}" if watch else ""
            raise AssertionError(f"never happened: {what}{said}")
        time.sleep(0.1)


SYNCED = """
services:
  app:
    image: busybox:latest
    command: ["sleep", "600"]
    develop:
      watch:
        - path: ./src
          action: sync
          target: /app
          ignore: ["*.tmp", "cache/"]
"""


def test_sync_copies_changes_deletes_removed_files_and_skips_ignored_ones(project, watching):
    project.write(SYNCED)
    src = project.directory / "src"
    src.mkdir()
    (src / "kept.txt").write_text("old\n")
    w = watching(project)
    assert read_in(project, "app", "/app/kept.txt") is None  # no initial_sync asked for

    (src / "kept.txt").write_text("new\n")
    eventually(lambda: read_in(project, "app", "/app/kept.txt") == "new\n", "kept.txt synced")

    (src / "sub").mkdir()
    (src / "sub" / "deep.txt").write_text("deep\n")
    (src / "notes.tmp").write_text("scratch\n")
    (src / "cache").mkdir()
    (src / "cache" / "blob").write_text("cached\n")
    (src / "gone.txt").write_text("soon gone\n")
    eventually(lambda: read_in(project, "app", "/app/gone.txt") == "soon gone\n", "gone.txt")
    assert read_in(project, "app", "/app/sub/deep.txt") == "deep\n"
    # Written before gone.txt, so they would have been synced with it at the latest.
    assert read_in(project, "app", "/app/notes.tmp") is None
    assert read_in(project, "app", "/app/cache/blob") is None

    (src / "gone.txt").unlink()
    eventually(lambda: read_in(project, "app", "/app/gone.txt") is None, "gone.txt removed")
    assert read_in(project, "app", "/app/kept.txt") == "new\n"
    assert "Synced" in w.output()
    assert w.interrupt() == 0
    assert "Watch stopped" in w.output() and "Traceback" not in w.output()


def test_initial_sync_and_sync_exec(project, watching):
    project.write("""
services:
  app:
    image: busybox:latest
    command: ["sleep", "600"]
    develop:
      watch:
        - path: ./src
          action: sync+exec
          target: /app
          initial_sync: true
          exec:
            command: sh -c "cat /app/version > /app/seen-by-exec"
""")
    src = project.directory / "src"
    src.mkdir()
    (src / "version").write_text("1\n")
    watching(project)
    assert read_in(project, "app", "/app/version") == "1\n"  # before any change
    (src / "version").write_text("2\n")
    eventually(lambda: read_in(project, "app", "/app/seen-by-exec") == "2\n", "exec ran")


def test_sync_restart_restarts_the_container(project, watching):
    project.write("""
services:
  app:
    image: busybox:latest
    command: ["sh", "-c", "cat /app/setting 2>/dev/null; exec sleep 600"]
    develop:
      watch:
        - path: ./conf
          action: sync+restart
          target: /app
""")
    (project.directory / "conf").mkdir()
    w = watching(project)
    before = container(project, "app")
    (project.directory / "conf" / "setting").write_text("restarted-with-setting\n")
    w.wait_for("Restarted")
    after = container(project, "app")
    assert after["id"] == before["id"] and after["status"] == "running"
    assert after["pid"] != before["pid"]
    project.wait_for_log("app", "restarted-with-setting")


def test_rebuild_recreates_the_service_from_a_new_image(project, watching):
    context = project.directory / "app"
    context.mkdir()
    (context / "Dockerfile").write_text(
        'FROM busybox:latest\nCOPY message /message\nCMD ["sleep", "600"]\n'
    )
    (context / "message").write_text("first\n")
    project.write("""
services:
  app:
    build: ./app
    develop:
      watch:
        - path: ./app
          action: rebuild
""")
    w = watching(project, "--prune")
    before = container(project, "app")
    assert read_in(project, "app", "/message") == "first\n"
    (context / "message").write_text("second\n")
    w.wait_for("Rebuilt and recreated")
    after = container(project, "app")
    assert after["id"] != before["id"]
    assert after["labels"][L.IMAGE] != before["labels"][L.IMAGE]
    assert read_in(project, "app", "/message") == "second\n"
    # --prune: the image the old container ran is gone, the new one stays.
    w.wait_for("Pruned 1 dangling")
    digests = {image.digest for image in ImageStore(project.root).list_images()}
    assert before["labels"][L.IMAGE] not in digests and after["labels"][L.IMAGE] in digests

    # A broken build is reported; the running container stays and the watch goes on.
    (context / "Dockerfile").write_text("FROM busybox:latest\nCOPY missing /missing\n")
    w.wait_for("rebuild failed")
    assert container(project, "app")["id"] == after["id"]
    (context / "Dockerfile").write_text(
        'FROM busybox:latest\nCOPY message /message\nCMD ["sleep", "600"]\n'
    )
    (context / "message").write_text("third\n")
    w.wait_for("Rebuilt and recreated", count=2)
    assert read_in(project, "app", "/message") == "third\n"


def test_sync_writes_through_volumes_and_skips_bind_mounts(project, watching):
    project.write("""
services:
  app:
    image: busybox:latest
    command: ["sleep", "600"]
    volumes:
      - ./src:/app
      - data:/data
    develop:
      watch:
        - path: ./src
          action: sync
          target: /app
        - path: ./seed
          action: sync
          target: /data/seed
volumes:
  data: {}
""")
    (project.directory / "src").mkdir()
    (project.directory / "seed").mkdir()
    w = watching(project)
    (project.directory / "seed" / "rows.csv").write_text("1,2\n")
    eventually(lambda: read_in(project, "app", "/data/seed/rows.csv") == "1,2\n", "volume sync", w)
    (project.directory / "src" / "main.py").write_text("print()\n")
    w.wait_for("(1 on a bind mount)")
    assert read_in(project, "app", "/app/main.py") == "print()\n"  # through the bind itself
    rootfs = Path(container(project, "app")["bundle"]).parent / "rootfs"
    assert not (rootfs / "app" / "main.py").exists() and not (rootfs / "data" / "seed").exists()


def rules_from(tmp_path: Path, develop: str) -> list:
    from composer.loader import LoadOptions, load
    from composer.watch import rules_of

    (tmp_path / "compose.yaml").write_text(
        "services:\n  app:\n    image: busybox:latest\n    develop:\n" + develop
    )
    options = LoadOptions(files=[str(tmp_path / "compose.yaml")], project_name="rules")
    return rules_of(load(options).project)


def test_rules_read_from_develop_watch(tmp_path):
    rules = rules_from(
        tmp_path,
        """      watch:
        - path: ./web
          action: sync+exec
          target: /srv
          include: ["*.py"]
          exec:
            command: kill -HUP 1
            user: "1000"
            environment: [MODE=dev]
        - path: requirements.txt
          action: rebuild
""",
    )
    sync, rebuild = rules
    assert sync.path == str(tmp_path / "web") and sync.target == "/srv"
    assert sync.exec.command == ("kill", "-HUP", "1") and sync.exec.user == "1000"
    assert dict(sync.exec.environment) == {"MODE": "dev"}
    assert sync.include == ("*.py",) and not sync.initial_sync
    assert rebuild.path == str(tmp_path / "requirements.txt") and rebuild.target is None


def test_include_patterns_narrow_what_counts(tmp_path):
    from composer.watch import PathFilter

    (rule,) = rules_from(
        tmp_path,
        """      watch:
        - path: ./web
          action: sync
          target: /srv
          include: ["**/*.py"]
          ignore: [tests/]
""",
    )
    wanted = PathFilter(rule).wanted
    web = tmp_path / "web"
    assert wanted(f"{web}/app.py") and wanted(f"{web}/pkg/mod.py")
    assert not wanted(f"{web}/style.css")
    assert not wanted(f"{web}/tests/test_app.py")  # ignore wins
    assert wanted(f"{web}/pkg", is_dir=True)  # directories are walked for what they hold
    assert not wanted(str(tmp_path / "elsewhere.py"))


class _Event:
    def __init__(self, event_type: str, src_path: str, is_directory: bool = False) -> None:
        self.event_type = event_type
        self.src_path = src_path
        self.is_directory = is_directory
        self.dest_path = ""


def test_a_burst_of_events_is_one_batch_without_reads_and_ignored_files(tmp_path):
    from composer.loader import LoadOptions, load
    from composer.watch import Watcher, rules_of

    (tmp_path / "src").mkdir()
    (tmp_path / "compose.yaml").write_text(SYNCED)
    # Loaded from elsewhere: the rule's relative path is the compose file's folder's.
    options = LoadOptions(files=[str(tmp_path / "compose.yaml")], project_name="burst", cwd="/")
    loaded = load(options)
    watcher = Watcher(loaded.project, Backend(tmp_path / "root"), rules_of(loaded.project), print)
    src = str(tmp_path / "src")
    for n in range(50):
        watcher._on_event(_Event("modified", f"{src}/file{n}.txt"))
    watcher._on_event(_Event("opened", f"{src}/read-only.txt"))
    watcher._on_event(_Event("closed_no_write", f"{src}/read-only.txt"))
    watcher._on_event(_Event("created", f"{src}/scratch.tmp"))
    watcher._on_event(_Event("created", f"{src}/cache/blob"))
    watcher._on_event(_Event("modified", f"{src}/.git/index"))
    watcher._on_event(_Event("modified", f"{src}/sub", is_directory=True))
    watcher._on_event(_Event("modified", str(tmp_path / "compose.yaml")))
    assert list(watcher._pending) == [0]  # else next_batch would wait for more
    batch = watcher.next_batch(threading.Event())
    assert batch == {0: {f"{src}/file{n}.txt" for n in range(50)}}


def test_unknown_service_and_missing_rules_are_plain_errors(project):
    project.write("services:\n  app:\n    image: busybox:latest\n    command: [sleep, '600']\n")
    result = project.run("watch", "--no-up", check=False)
    assert result.returncode == 1
    assert "no develop.watch rules in app" in result.stderr and "Traceback" not in result.stderr
    result = project.run("watch", "--no-up", "nosuch", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr


# -- copying into a root filesystem: symlinks resolve inside it, never on the host --


def test_copies_follow_container_symlinks_inside_the_root_only(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    outside = tmp_path / "host-etc"
    outside.mkdir()
    # Links a container might make: absolute, and climbing with "..".
    (root / "app").symlink_to("/etc")
    (root / "up").symlink_to("../../../../host-etc")
    name = f"synced-{uuid.uuid4().hex[:8]}"
    source = tmp_path / name
    source.write_text("x\n")

    assert copy_into(root, f"/app/{name}", str(source)) == 1
    assert (root / "etc" / name).read_text() == "x\n"
    assert not os.path.exists(f"/etc/{name}")

    assert copy_into(root, f"/up/{name}", str(source)) == 1
    assert (root / "host-etc" / name).read_text() == "x\n"  # ".." stops at the root
    assert list(outside.iterdir()) == []

    # The last component is replaced, never followed.
    (root / "etc" / "link").symlink_to(str(outside / "target"))
    copy_into(root, "/etc/link", str(source))
    assert not (root / "etc" / "link").is_symlink()
    assert not (outside / "target").exists()

    assert remove_from(root, f"/app/{name}") is True
    assert not (root / "etc" / name).exists()
    assert remove_from(root, "/app/never-there") is False
    # Removing through a link removes the link's own entry only.
    (root / "etc" / "dirlink").symlink_to(str(outside))
    (outside / "keep").write_text("keep\n")
    assert remove_from(root, "/etc/dirlink") is True
    assert (outside / "keep").read_text() == "keep\n"


def test_a_directory_copy_keeps_modes_and_skips_what_the_filter_refuses(tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "run").write_text("#!/bin/sh\n")
    (tree / "bin" / "run").chmod(0o755)
    (tree / "skip.me").write_text("no\n")
    (tree / "link").symlink_to("bin/run")

    count = copy_into(root, "/srv/tree", str(tree), lambda path, is_dir: "skip" not in path)
    assert count == 2
    assert (root / "srv/tree/bin/run").stat().st_mode & 0o777 == 0o755
    assert os.readlink(root / "srv/tree/link") == "bin/run"
    assert not (root / "srv/tree/skip.me").exists()
    assert sorted(Path(root / "srv/tree").iterdir()) == [
        root / "srv/tree/bin",
        root / "srv/tree/link",
    ]
