"""`composer images`, the `image` group, pull/push and login/logout, run as subprocesses
against a private COMPOSER_ROOT, a busybox image and Debian's docker-registry on loopback."""

from __future__ import annotations

import json
import os
import pty
import select
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.compose_helpers import COMPOSER
from tests.images import busybox_image, busybox_tar
from tests.registry_server import RegistryServer

HEX12 = set("0123456789abcdef")


class Cli:
    """`composer` with a private state root, registry settings and credentials."""

    def __init__(self, tmp: Path) -> None:
        self.directory = tmp / "project"
        self.directory.mkdir(exist_ok=True)
        self.root = tmp / "root"
        self.config_home = tmp / "xdg"
        self.docker_config = tmp / "docker"
        self.env = {
            **os.environ,
            "COMPOSER_ROOT": str(self.root),
            "XDG_CONFIG_HOME": str(self.config_home),
            "DOCKER_CONFIG": str(self.docker_config),
            "COMPOSE_PROJECT_NAME": f"t{uuid.uuid4().hex[:8]}",
        }
        self.env.pop("COMPOSER_REGISTRIES", None)

    def __call__(
        self, *args: str, check: bool = True, input: str | bytes | None = None
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*COMPOSER, *args],
            cwd=self.directory,
            env=self.env,
            input=input,
            capture_output=True,
            text=not isinstance(input, bytes),
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"composer {' '.join(args)} failed:\n{result.stderr}")
        return result

    def json(self, *args: str):
        return json.loads(self(*args).stdout)

    def write(self, text: str) -> None:
        (self.directory / "compose.yaml").write_text(text)

    def registry_settings(self, settings: dict) -> None:
        path = self.config_home / "composer" / "registries.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))


def _store(root: Path):
    from runtime.images.store import ImageStore

    return ImageStore(root)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    c = Cli(tmp_path)
    busybox_image(_store(c.root))
    return c


@pytest.fixture(scope="module")
def rootfs_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rootfs") / "busybox.tar"
    path.write_bytes(busybox_tar())
    return path


def _no_internal_error(result: subprocess.CompletedProcess) -> None:
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- the store's images


def test_ls_inspect_history_and_tag(cli):
    listed = cli.json("image", "ls", "--format", "json")
    assert [(r["Repository"], r["Tag"]) for r in listed] == [("busybox", "latest")]
    image_id = listed[0]["ID"]
    assert cli("image", "ls", "-q").stdout.split() == [image_id[7:19]]
    table = cli("image", "ls").stdout.splitlines()
    assert table[0].split()[:3] == ["REPOSITORY", "TAG", "IMAGE"]
    assert table[1].split()[:3] == ["busybox", "latest", image_id[7:19]]

    cli("image", "tag", "busybox", "tools/box:1")
    [info] = cli.json("image", "inspect", "tools/box:1")
    for key in ("Id", "RepoTags", "RepoDigests", "Created", "Size", "Config", "RootFS"):
        assert key in info
    assert info["Id"] == image_id
    assert info["RepoTags"] == ["busybox:latest", "tools/box:1"]
    assert info["RepoDigests"][0].startswith("busybox@sha256:")
    assert info["Os"] == "linux" and info["Architecture"]
    assert info["Config"]["Cmd"] == ["sh"]
    assert len(info["RootFS"]["Layers"]) == 1 and info["Size"] > 100_000

    missing = cli("image", "inspect", "busybox", "no/such:image", check=False)
    assert missing.returncode == 1
    assert [i["Id"] for i in json.loads(missing.stdout)] == [image_id]
    assert "no such image: no/such:image" in missing.stderr

    steps = cli.json("image", "history", "--format", "json", "busybox")
    assert [s["CreatedBy"] for s in steps] == ["composer import"]
    assert steps[0]["Layer"] == info["RootFS"]["Layers"][0]
    history = cli("image", "history", "busybox").stdout.splitlines()
    assert history[0].split()[:2] == ["IMAGE", "CREATED"]
    assert history[1].startswith(image_id[7:19])

    bad = cli("image", "tag", "busybox", "Not:A:Name", check=False)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    _no_internal_error(bad)


def test_rm_untags_then_deletes_and_prune_removes_dangling_then_unused(cli, rootfs_tar):
    cli("image", "tag", "busybox", "tools/box:1")
    removed = cli("image", "rm", "tools/box:1").stdout
    assert removed.strip() == "Untagged: tools/box:1"
    unknown = cli("image", "rm", "no/such:image", check=False)
    assert unknown.returncode == 1 and "no such image" in unknown.stderr

    dangling_id = cli("image", "import", str(rootfs_tar), "-c", "CMD echo x").stdout.strip()
    rows = cli.json("image", "ls", "--format", "json")
    assert ("<none>", dangling_id) in [(r["Repository"], r["ID"]) for r in rows]

    declined = cli("image", "prune", input="n\n")
    assert "Are you sure" in declined.stdout
    assert len(cli.json("image", "ls", "--format", "json")) == 2

    # Blobs no manifest refers to are kept for ten minutes (another pull may be writing).
    blobs = cli.root / "images" / "blobs" / "sha256"
    old = time.time() - 3600
    for path in blobs.iterdir():
        os.utime(path, (old, old), follow_symlinks=False)
    pruned = cli("image", "prune", "-f").stdout
    assert "Deleted Images:" in pruned and "Total reclaimed space: 0B" not in pruned
    assert [r["Repository"] for r in cli.json("image", "ls", "--format", "json")] == ["busybox"]

    everything = cli("image", "prune", "-a", "-f").stdout
    assert "untagged: busybox:latest" in everything
    assert cli.json("image", "ls", "--format", "json") == []


@pytest.mark.parametrize("archive_format", ["docker", "oci"])
def test_save_then_load_keeps_the_digest(cli, tmp_path, archive_format):
    [before] = cli.json("image", "inspect", "busybox")
    archive = tmp_path / "busybox.tar"
    cli("image", "save", "-o", str(archive), "--format", archive_format, "busybox")
    import tarfile

    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert "index.json" in names and ("manifest.json" in names) == (archive_format == "docker")

    (tmp_path / "other").mkdir()
    other = Cli(tmp_path / "other")
    loaded = other("image", "load", "-i", str(archive))
    assert loaded.stdout.strip() == "Loaded image: busybox:latest"
    [after] = other.json("image", "inspect", "busybox")
    assert (after["Id"], after["Digest"]) == (before["Id"], before["Digest"])

    # From stdin into a third store, and to stdout from the first.
    (tmp_path / "third").mkdir()
    third = Cli(tmp_path / "third")
    data = cli("image", "save", "--format", archive_format, "busybox", input=b"").stdout
    assert data == archive.read_bytes()  # archives of the same image are the same bytes
    third("image", "load", input=data)
    assert third.json("image", "inspect", "busybox")[0]["Digest"] == before["Digest"]


def test_load_of_something_else_is_a_clear_error(cli, tmp_path):
    junk = tmp_path / "junk.tar"
    import tarfile

    with tarfile.open(junk, "w") as tar:
        tar.add(__file__, arcname="readme.txt")
    result = cli("image", "load", "-i", str(junk), check=False)
    assert result.returncode == 1 and "not an image archive" in result.stderr
    _no_internal_error(result)
    text = tmp_path / "text"
    text.write_text("hello\n" * 200)
    for args, message in (
        (("load", "-i", str(text)), "not a tar archive"),
        (("load", "-i", str(tmp_path / "missing.tar")), "missing.tar: No such file"),
        (("import", str(tmp_path / "missing.tar"), "x:1"), "missing.tar: No such file"),
        (("save", "-o", str(tmp_path / "no" / "dir.tar"), "busybox"), "No such file"),
    ):
        result = cli("image", *args, check=False)
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- with containers


def _sleepers(*images: str) -> str:
    services = "".join(
        f"  s{i}:\n    image: {image}\n    command: [sleep, '600']\n"
        for i, image in enumerate(images)
    )
    return f"services:\n{services}"


def test_images_lists_the_project_containers_images(project):
    project.run("image", "tag", "busybox:latest", "tools/box:1")
    project.write(_sleepers("busybox:latest", "tools/box:1"))
    project.run("up", "-d")
    rows = json.loads(project.run("images", "--format", "json").stdout)
    by_container = {r["ContainerName"]: r for r in rows}
    assert set(by_container) == {f"{project.name}-s0-1", f"{project.name}-s1-1"}
    s0, s1 = by_container[f"{project.name}-s0-1"], by_container[f"{project.name}-s1-1"]
    assert (s0["Repository"], s0["Tag"]) == ("busybox", "latest")
    assert (s1["Repository"], s1["Tag"]) == ("tools/box", "1")  # the name the service asked for
    assert s0["ID"] == s1["ID"] and s0["Size"] > 0
    assert project.run("images", "-q").stdout.split() == [s0["ID"][7:19]]
    table = project.run("images", "s1").stdout.splitlines()
    assert table[0].split()[:3] == ["CONTAINER", "REPOSITORY", "TAG"]
    assert len(table) == 2 and table[1].split()[:3] == [f"{project.name}-s1-1", "tools/box", "1"]


def test_rm_refuses_an_image_a_container_uses_unless_forced(project):
    project.write(_sleepers("busybox:latest"))
    project.run("up", "-d")
    refused = project.run("image", "rm", "busybox", check=False)
    assert refused.returncode == 1
    assert f"in use by container {project.name}-s0-1" in refused.stderr
    assert "busybox" in project.run("image", "ls").stdout
    # Another name of it may go: the container keeps its image.
    project.run("image", "tag", "busybox", "tools/box:1")
    assert project.run("image", "rm", "tools/box:1").stdout.strip() == "Untagged: tools/box:1"
    # Pruning everything unused spares it.
    project.run("image", "prune", "-a", "-f")
    assert "busybox" in project.run("image", "ls").stdout
    forced = project.run("image", "rm", "-f", "busybox")
    assert "Untagged: busybox:latest" in forced.stdout
    [row] = project.ps()
    assert row["State"] == "running"


def test_imported_rootfs_runs(project, rootfs_tar):
    image_id = project.run(
        "image", "import", str(rootfs_tar), "made/here:1", "-c", 'CMD ["echo", "imported ok"]'
    ).stdout.strip()
    assert len(image_id) == 71 and image_id.startswith("sha256:")
    [info] = json.loads(project.run("image", "inspect", "made/here:1").stdout)
    assert info["Id"] == image_id and info["Config"]["Cmd"] == ["echo", "imported ok"]
    project.write("services:\n  job:\n    image: made/here:1\n")
    project.run("up", "-d")
    assert "imported ok" in project.wait_for_log("job", "imported ok")


# ---------------------------------------------------------------- registries


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    with RegistryServer(tmp_path_factory.mktemp("registry")) as server:
        yield server


def test_push_then_pull_through_a_configured_registry(cli, tmp_path, registry):
    repository = f"c2-{uuid.uuid4().hex[:8]}/busybox:1"
    cli.env["COMPOSER_REGISTRIES"] = registry.host
    cli.write(f"services:\n  app:\n    image: {registry.host}/{repository}\n  built:\n"
              "    build: {context: ., dockerfile_inline: 'FROM busybox'}\n")  # fmt: skip
    cli("image", "tag", "busybox", f"{registry.host}/{repository}")
    pushed = cli("--progress", "plain", "push")
    assert "Pushed" in pushed.stderr and "Skipped - no image name to push" in pushed.stderr
    [source] = cli.json("image", "inspect", f"{registry.host}/{repository}")

    (tmp_path / "fresh").mkdir()
    fresh = Cli(tmp_path / "fresh")
    fresh.env["COMPOSER_REGISTRIES"] = registry.host
    fresh.write(f"services:\n  app:\n    image: {repository}\n")  # a short name
    pulled = fresh("--progress", "plain", "pull")
    assert " app " in pulled.stderr and "Pulled" in pulled.stderr
    assert "Downloading complete" in pulled.stderr
    [got] = fresh.json("image", "inspect", repository)
    assert (got["Id"], got["Digest"]) == (source["Id"], source["Digest"])
    quiet = fresh("pull", "-q", "--policy", "missing")
    assert quiet.stderr == ""
    present = fresh("--progress", "plain", "pull", "--policy", "missing")
    assert "Skipped - image is already present locally" in present.stderr


def test_pull_failures_are_reported_or_ignored(cli, registry):
    missing = f"{registry.host}/c2-{uuid.uuid4().hex[:8]}/nothing:1"
    cli.write(f"services:\n  gone:\n    image: {missing}\n  here:\n    image: busybox\n"
              "    pull_policy: never\n")  # fmt: skip
    failed = cli("--progress", "plain", "pull", check=False)
    assert failed.returncode == 1
    assert "gone:" in failed.stderr and "not found" in failed.stderr.lower()
    assert "Skipped - pull_policy: never" in failed.stderr
    _no_internal_error(failed)
    ignored = cli("pull", "--ignore-pull-failures", "-q")
    assert "WARN" in ignored.stderr and "gone:" in ignored.stderr


def test_pull_on_a_terminal_draws_bars(cli, tmp_path, registry):
    name = f"{registry.host}/c2-{uuid.uuid4().hex[:8]}/busybox:1"
    cli("image", "tag", "busybox", name)
    cli.write(f"services:\n  app:\n    image: {name}\n")
    cli("push", "-q")
    (tmp_path / "fresh").mkdir()
    fresh = Cli(tmp_path / "fresh")
    fresh.write(f"services:\n  app:\n    image: {name}\n")
    output = _run_on_pty([*COMPOSER, "pull"], fresh.directory, fresh.env)
    assert "\x1b[" in output  # drawn in place, not printed line by line
    assert "Pulled" in output and "Downloading complete" in output
    assert fresh.json("image", "ls", "--format", "json")[0]["Tag"] == "1"


def _run_on_pty(argv: list[str], cwd: Path, env: dict) -> str:
    main, child = pty.openpty()
    process = subprocess.Popen(
        argv, cwd=cwd, env={**env, "COLUMNS": "120", "TERM": "xterm"}, stdin=child, stdout=child,
        stderr=child,
    )  # fmt: skip
    os.close(child)
    output = b""
    try:
        while True:
            ready, _, _ = select.select([main], [], [], 60)
            if not ready:
                raise AssertionError(f"no output for a minute: {output[-2000:]!r}")
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the child side closed
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(main)
        assert process.wait(60) == 0, output[-2000:]
    return output.decode(errors="replace")


def test_login_checks_and_stores_credentials_then_logout_forgets(tmp_path, cli):
    users = {"alice": "correct horse"}
    with RegistryServer(tmp_path / "auth-registry", tls=True, users=users) as server:
        cli.registry_settings({"ca": {server.host: str(server.ca_file)}})
        config = cli.docker_config / "config.json"
        wrong = cli("login", server.host, "-u", "alice", "--password-stdin", input="nope\n",
                    check=False)  # fmt: skip
        assert wrong.returncode == 1
        assert "authentication failed as alice" in wrong.stderr
        assert len(wrong.stderr.strip().splitlines()) == 1
        _no_internal_error(wrong)
        assert not config.exists()

        ok = cli("login", server.host, "-u", "alice", "--password-stdin", input="correct horse\n")
        assert ok.stdout.strip() == "Login Succeeded"
        assert "WARN" not in ok.stderr and "correct horse" not in ok.stderr
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert server.host in json.loads(config.read_text())["auths"]

        # The stored credentials are used by push.
        name = f"{server.host}/c2/busybox:1"
        cli("image", "tag", "busybox", name)
        cli.write(f"services:\n  app:\n    image: {name}\n")
        cli("push", "-q")

        on_command_line = cli("login", server.host, "-u", "alice", "-p", "correct horse")
        assert "WARN" in on_command_line.stderr and "--password-stdin" in on_command_line.stderr

        assert (
            cli("logout", server.host).stdout.strip()
            == f"Removing login credentials for {server.host}"
        )
        assert server.host not in json.loads(config.read_text()).get("auths", {})
        assert cli("logout", server.host).stdout.strip() == f"Not logged in to {server.host}"
        refused = cli("push", "-q", check=False)
        assert refused.returncode == 1 and "requires authentication" in refused.stderr


def test_login_without_a_registry_says_what_to_do(cli):
    result = cli("login", "-u", "alice", "--password-stdin", input="x\n", check=False)
    assert result.returncode == 1 and "name a registry" in result.stderr
    _no_internal_error(result)


def test_short_ids_are_hex(cli):
    ids = cli("image", "ls", "-q").stdout.split()
    assert ids and all(len(i) == 12 and set(i) <= HEX12 for i in ids)
