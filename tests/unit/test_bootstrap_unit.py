"""Debian bootstrap without root or network: references, apt sources, tree clean-up, config."""

from __future__ import annotations

import io
import os
import stat
import sys
import tarfile
from pathlib import Path

import pytest

from runtime import mounts
from runtime.images import bootstrap as bs
from runtime.images.bootstrap import AptSource, BootstrapError, Target

MIRROR = "http://mirror.example/debian"
SECURITY = "http://mirror.example/debian-security"


# ---------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("reference", "target"),
    [
        ("debian:bookworm", Target("bookworm", False)),
        ("debian:bookworm-slim", Target("bookworm", True)),
        ("debian:trixie", Target("trixie", False)),
        ("debian:12", Target("bookworm", False)),
        ("debian:12.7", Target("bookworm", False)),
        ("debian:12-slim", Target("bookworm", True)),
        ("debian:12.7-slim", Target("bookworm", True)),
        ("debian:11", Target("bullseye", False)),
        ("debian:13-slim", Target("trixie", True)),
        ("debian:latest", Target("machinesuite", False)),
        ("debian", Target("machinesuite", False)),
        ("debian:stable-slim", Target("machinesuite", True)),
        ("debian:sid", Target("sid", False)),
    ],
)
def test_reference_to_suite(reference, target):
    assert bs.target_for(reference, machine_suite="machinesuite") == target


def test_canonical_name():
    assert Target("bookworm", True).canonical_name == "debian:bookworm-slim"
    assert Target("trixie", False).canonical_name == "debian:trixie"


@pytest.mark.parametrize(
    ("reference", "complaint"),
    [
        ("debian:99", "not a release known here"),
        ("debian:99-slim", "not a release known here"),
        ("debian:bookworm_20240101", "names no Debian suite"),
        ("debian:Bookworm", "names no Debian suite"),
        ("ubuntu:22.04", "only debian:<suite>"),
        ("localhost:5000/debian:12", "only debian:<suite>"),
        ("library/debian:12", "only debian:<suite>"),
        ("debian@sha256:" + "a" * 64, "cannot reproduce a given digest"),
    ],
)
def test_references_that_cannot_be_bootstrapped(reference, complaint):
    with pytest.raises(BootstrapError, match=complaint):
        bs.target_for(reference, machine_suite="bookworm")
    assert not bs.should_bootstrap(reference, registries=[])


def test_should_bootstrap_only_when_no_registry_is_left(monkeypatch):
    assert bs.should_bootstrap("debian:bookworm-slim", registries=[])
    assert bs.should_bootstrap("debian:12", registries=[])
    assert not bs.should_bootstrap("debian:12", registries=["localhost:5000"])
    assert not bs.should_bootstrap("busybox", registries=[])
    assert not bs.should_bootstrap("not a reference", registries=[])
    monkeypatch.setenv("COMPOSER_REGISTRIES", "")
    assert bs.should_bootstrap("debian:latest")
    monkeypatch.setenv("COMPOSER_REGISTRIES", "localhost:5000")
    assert not bs.should_bootstrap("debian:latest")


def test_cli_message():
    message = bs.describe("debian:bookworm-slim", MIRROR, 41.6)
    assert message == (
        f"debian:bookworm-slim: no registry serves it here; bootstrapped from {MIRROR} (42 s)"
    )


def test_machine_codename(tmp_path):
    os_release = tmp_path / "os-release"
    os_release.write_text(
        'PRETTY_NAME="Debian GNU/Linux 12"\nVERSION_CODENAME=bookworm\nID=debian\n'
    )
    assert bs.machine_codename(os_release) == "bookworm"
    os_release.write_text('ID=something\nVERSION_CODENAME=""\n')
    with pytest.raises(BootstrapError, match="VERSION_CODENAME"):
        bs.machine_codename(os_release)
    with pytest.raises(BootstrapError, match="cannot tell"):
        bs.machine_codename(tmp_path / "missing")


# ---------------------------------------------------------------- apt sources


def test_one_line_sources():
    text = f"""
# a comment
deb {MIRROR} bookworm main contrib  # trailing comment
deb-src {MIRROR} bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] {SECURITY} bookworm-security main
deb http://third.example/apt stable
broken
"""
    assert bs.parse_one_line_sources(text) == [
        AptSource(MIRROR, ("bookworm",), ("main", "contrib")),
        AptSource(SECURITY, ("bookworm-security",), ("main",)),
        AptSource("http://third.example/apt", ("stable",), ()),
    ]


def test_deb822_sources():
    text = f"""Types: deb deb-src
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: {MIRROR} http://other.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://sources-only.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb
URIs: {SECURITY}
Suites:
 bookworm-security
Components: main
  non-free-firmware
"""
    assert bs.parse_deb822_sources(text) == [
        AptSource(MIRROR, ("bookworm", "bookworm-updates"), ("main",)),
        AptSource("http://other.example/debian", ("bookworm", "bookworm-updates"), ("main",)),
        AptSource(SECURITY, ("bookworm-security",), ("main", "non-free-firmware")),
    ]


def test_machine_sources_reads_the_files_apt_reads(tmp_path):
    (tmp_path / "sources.list").write_text(f"deb {MIRROR} bookworm main\n")
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "b.sources").write_text(
        f"Types: deb\nURIs: {SECURITY}\nSuites: bookworm-security\nComponents: main\n"
    )
    (parts / "a.list").write_text("deb http://a.example/debian bookworm main\n")
    (parts / "c.list.disabled").write_text("deb http://ignored.example/debian bookworm main\n")
    uris = [s.uri for s in bs.machine_sources(tmp_path)]
    assert uris == [MIRROR, "http://a.example/debian", SECURITY]


def test_machine_sources_with_nothing_configured(tmp_path):
    assert bs.machine_sources(tmp_path) == []


def _machine() -> list[AptSource]:
    return [
        AptSource("http://third.example/apt", ("bookworm",), ("stable",)),  # not main
        AptSource(SECURITY, ("bookworm-security",), ("main",)),
        AptSource(MIRROR, ("bookworm", "bookworm-updates"), ("main",)),
    ]


def test_archive_mirror_is_the_main_archive():
    assert bs.archive_mirror(_machine(), "bookworm").uri == MIRROR
    assert bs.archive_mirror(_machine(), "trixie").uri == MIRROR  # any suite from the archive


def test_archive_mirror_prefers_the_one_carrying_the_suite():
    sources = [*_machine(), AptSource("http://sid.example/debian", ("sid",), ("main",))]
    assert bs.archive_mirror(sources, "sid").uri == "http://sid.example/debian"


def test_no_archive_is_a_clear_error():
    with pytest.raises(BootstrapError, match="no Debian archive"):
        bs.archive_mirror(_machine()[:2], "bookworm")


def test_mirror_lines_carry_updates_and_security_only_for_the_same_suite():
    assert bs.mirror_lines(_machine(), "bookworm") == [
        f"deb {MIRROR} bookworm main",
        f"deb {MIRROR} bookworm-updates main",
        f"deb {SECURITY} bookworm-security main",
    ]
    assert bs.mirror_lines(_machine(), "trixie") == [f"deb {MIRROR} trixie main"]


def test_check_suite_on_a_file_mirror(tmp_path):
    (tmp_path / "dists" / "bookworm").mkdir(parents=True)
    (tmp_path / "dists" / "bookworm" / "Release").write_text("Suite: stable\n")
    bs.check_suite(f"file:{tmp_path}", "bookworm")
    with pytest.raises(BootstrapError, match="unknown Debian suite 'nosuch'"):
        bs.check_suite(f"file:{tmp_path}", "nosuch")


# ---------------------------------------------------------------- slim rules


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("/usr/share/doc/bash/README.gz", True),
        ("/usr/share/doc/bash/copyright", False),
        ("/usr/share/doc/bash/examples/deep/file", True),
        ("/usr/share/man/man1/ls.1.gz", True),
        ("/usr/share/info/coreutils.info.gz", True),
        ("/usr/share/locale/de/LC_MESSAGES/dpkg.mo", True),
        ("/usr/share/locale/locale.alias", False),
        ("/usr/share/lintian/overrides/bash", True),
        ("/usr/share/doc", False),
        ("/usr/bin/bash", False),
        ("/usr/share/zoneinfo/UTC", False),
    ],
)
def test_slim_rules(path, excluded):
    assert bs.slim_excluded(path) is excluded


def test_slim_dpkg_config_lists_every_rule_in_order():
    lines = [line for line in bs.slim_dpkg_config().splitlines() if not line.startswith("#")]
    assert lines == [f"path-{action}={pattern}" for action, pattern in bs.SLIM_RULES]
    assert lines[0] == "path-exclude=/usr/share/doc/*"
    assert "path-include=/usr/share/doc/*/copyright" in lines


def _files(root: Path) -> set[str]:
    out = set()
    for directory, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(directory, d))]:
            out.add(os.path.relpath(os.path.join(directory, name), root))
    return out


def _touch(root: Path, *paths: str) -> None:
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(path)


def test_slim_tree_on_a_fake_tree(tmp_path):
    _touch(
        tmp_path,
        "usr/bin/bash",
        "usr/share/doc/bash/copyright",
        "usr/share/doc/bash/README.gz",
        "usr/share/doc/bash/examples/loadables/Makefile",
        "usr/share/doc/onlydocs/changelog.gz",
        "usr/share/man/man1/bash.1.gz",
        "usr/share/info/dir",
        "usr/share/locale/locale.alias",
        "usr/share/locale/de/LC_MESSAGES/dpkg.mo",
        "usr/share/zoneinfo/UTC",
        "usr/share/lintian/overrides/bash",
    )
    (tmp_path / "usr/share/doc/link").symlink_to("bash")  # a symlinked doc dir goes too
    removed = bs.slim_tree(tmp_path)
    assert removed == 8
    assert _files(tmp_path) == {
        "usr/bin/bash",
        "usr/share/doc/bash/copyright",
        "usr/share/locale/locale.alias",
        "usr/share/zoneinfo/UTC",
        bs.SLIM_DPKG_CONFIG,
    }
    # Emptied excluded directories go; the parents dpkg owns stay.
    assert not (tmp_path / "usr/share/doc/onlydocs").exists()
    assert not (tmp_path / "usr/share/man/man1").exists()
    assert (tmp_path / "usr/share/man").is_dir()
    assert (tmp_path / bs.SLIM_DPKG_CONFIG).read_text() == bs.slim_dpkg_config()


def test_clean_tree_on_a_fake_tree(tmp_path):
    _touch(
        tmp_path,
        "var/lib/apt/lists/mirror_dists_bookworm_InRelease",
        "var/lib/apt/lists/lock",
        "var/lib/apt/lists/partial/half",
        "var/cache/apt/pkgcache.bin",
        "var/cache/apt/archives/bash_5.2_amd64.deb",
        "var/cache/debconf/config.dat-old",
        "var/cache/debconf/config.dat",
        "var/lib/dpkg/status-old",
        "var/lib/dpkg/status",
        "var/log/dpkg.log",
        "var/log/apt/history.log",
        "tmp/leftover",
        "dev/null",
        "etc/hostname",
        "etc/resolv.conf",
        "etc/passwd",
    )
    bs.clean_tree(tmp_path)
    assert _files(tmp_path) == {
        "var/cache/debconf/config.dat",
        "var/lib/dpkg/status",
        "etc/hostname",
        "etc/resolv.conf",
        "etc/passwd",
        bs.APT_CONTAINER_CONFIG[0],
        bs.POLICY_RC_D[0],
    }
    assert (tmp_path / "var/lib/apt/lists/partial").is_dir()
    assert (tmp_path / "dev").is_dir()
    assert (tmp_path / "etc/hostname").read_text() == ""  # not this host's name
    assert (tmp_path / "etc/resolv.conf").read_text() == ""
    policy = tmp_path / bs.POLICY_RC_D[0]
    assert stat.S_IMODE(policy.stat().st_mode) == 0o755
    assert "exit 101" in policy.read_text()


# ---------------------------------------------------------------- commands and config


def test_mmdebstrap_command(tmp_path):
    mirrors = [f"deb {MIRROR} bookworm main", f"deb {SECURITY} bookworm-security main"]
    cmd = bs._tool_command(
        "mmdebstrap", "bookworm", tmp_path / "root", "minbase", mirrors, ["curl", "git"], None
    )
    assert cmd[0] == "mmdebstrap"
    assert "--variant=minbase" in cmd
    assert "--include=curl,git" in cmd
    assert cmd[-4:] == ["bookworm", str(tmp_path / "root"), *mirrors]
    assert not any(arg.startswith("--setup-hook") for arg in cmd)
    slim = bs._tool_command(
        "mmdebstrap", "bookworm", tmp_path / "r", "minbase", mirrors, (), tmp_path / "cfg"
    )
    hook = next(arg for arg in slim if arg.startswith("--setup-hook="))
    assert str(tmp_path / "cfg") in hook and bs.SLIM_DPKG_CONFIG in hook
    assert not any(arg.startswith("--include") for arg in slim)


def test_debootstrap_command(tmp_path):
    mirrors = [f"deb {MIRROR} trixie main"]
    cmd = bs._tool_command("debootstrap", "trixie", tmp_path, "minbase", mirrors, ["bash"], None)
    assert cmd == [
        "debootstrap",
        "--variant=minbase",
        "--components=main",
        "--include=bash",
        "trixie",
        str(tmp_path),
        MIRROR,
    ]


def test_image_config():
    info = bs.RootfsInfo("bookworm", MIRROR, "mmdebstrap", 12.0)
    config = bs.image_config(info, True, "2026-01-02T03:04:05Z")
    assert config["config"]["Cmd"] == ["bash"]
    assert config["config"]["Env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    ]
    labels = config["config"]["Labels"]
    assert labels["org.composer.bootstrap"] == "true"
    assert labels["org.composer.bootstrap.mirror"] == MIRROR
    assert labels["org.composer.bootstrap.suite"] == "bookworm"
    assert labels["org.composer.bootstrap.variant"] == "minbase-slim"
    assert labels["org.composer.bootstrap.date"] == "2026-01-02T03:04:05Z"
    assert config["os"] == "linux" and config["architecture"]
    assert config["created"] == "2026-01-02T03:04:05Z"


def test_bootstrap_rootfs_refuses_a_full_directory(tmp_path):
    (tmp_path / "something").write_text("")
    with pytest.raises(BootstrapError, match="not empty"):
        bs.bootstrap_rootfs("bookworm", tmp_path, sources=_machine())


def test_missing_tool_is_a_clear_error():
    with pytest.raises(BootstrapError, match="needs no-such-bootstrapper"):
        bs.find_tool("no-such-bootstrapper")


# ---------------------------------------------------------------- cache


def _tiny_rootfs_tar() -> io.BytesIO:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("etc/debian_version")
        payload = b"12.0\n"
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    data.seek(0)
    return data


def test_a_stored_image_is_returned_without_bootstrapping(tmp_path):
    from runtime.images.store import ImageStore

    store = ImageStore(tmp_path)
    stored = store.import_rootfs_tar(_tiny_rootfs_tar(), "debian:bookworm-slim")
    output: list[str] = []
    # A missing tool proves nothing ran: any bootstrap would fail on it.
    image = bs.bootstrap("debian:bookworm-slim", store, on_output=output.append, tool="no-such")
    assert image.digest == stored.digest
    # Another spelling of the same suite is tagged onto the stored image.
    alias = bs.bootstrap("debian:12-slim", store, on_output=output.append, tool="no-such")
    assert alias.digest == stored.digest
    assert store.resolve("debian:12-slim").digest == stored.digest
    assert output == []


# ---------------------------------------------------------------- leftovers of a killed run


def _mountinfo(tmp_path: Path, *points: str) -> Path:
    lines = [f"{n} 1 0:{n} / {p} rw - tmpfs tmpfs rw" for n, p in enumerate(points, 30)]
    path = tmp_path / "mountinfo"
    path.write_text("\n".join(["22 1 8:1 / / rw - ext4 /dev/vda rw", *lines]) + "\n")
    return path


def test_mount_points_under(tmp_path, monkeypatch):
    work = tmp_path / "w"
    monkeypatch.setattr(
        mounts,
        "MOUNTINFO",
        _mountinfo(
            tmp_path,
            f"{work}/root/sys",
            f"{work}/root/sys/fs/cgroup",
            f"{work}x/other",
            f"{work}/with\\040space",
        ),
    )
    assert bs.mount_points_under(work) == [
        f"{work}/root/sys/fs/cgroup",
        f"{work}/root/sys",
        f"{work}/with space",
    ]


def _dead_pid() -> int:
    import subprocess

    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_sweep_removes_only_trees_of_dead_bootstraps(tmp_path, monkeypatch):
    monkeypatch.setattr(mounts, "MOUNTINFO", _mountinfo(tmp_path))
    dead = tmp_path / f".bootstrap-{_dead_pid()}-abcd"
    live = tmp_path / f".bootstrap-{os.getpid()}-abcd"
    for tree in (dead, live):
        _touch(tree, "rootfs/usr/bin/bash")
    os.chmod(dead / "rootfs/usr", 0o555)  # image modes must not stop the removal
    bs.sweep_stale_work(tmp_path)
    assert not dead.exists()
    assert (live / "rootfs/usr/bin/bash").is_file()


def test_a_tree_still_mounted_is_left_alone(tmp_path, monkeypatch):
    work = tmp_path / f".bootstrap-{_dead_pid()}-abcd"
    _touch(work, "rootfs/sys/kernel/x")
    # umount of a path that is not really mounted fails, so the mount "stays".
    monkeypatch.setattr(mounts, "MOUNTINFO", _mountinfo(tmp_path, f"{work}/rootfs/sys"))
    with pytest.raises(BootstrapError, match="still mounted"):
        bs.sweep_stale_work(tmp_path)
    assert (work / "rootfs/sys/kernel/x").is_file()


def test_a_failing_tool_reports_its_last_lines():
    with pytest.raises(BootstrapError, match=r"sh failed \(exit 3\):\nline 1\nline 2"):
        bs._run(["sh", "-c", "echo line 1; echo line 2 >&2; exit 3"], None)


def test_a_failing_callback_stops_the_tool(tmp_path):
    marker = tmp_path / "finished"

    def refuse(line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        program = (
            f"print('start', flush=True); import time; time.sleep(30); open({str(marker)!r}, 'w')"
        )
        bs._run([sys.executable, "-c", program], refuse)  # one process: nothing outlives it
    assert not marker.exists()


@pytest.fixture
def loopback_mirror(tmp_path):
    """A directory served over HTTP on 127.0.0.1, as an apt mirror would be."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}/debian"
    server.shutdown()
    server.server_close()
    thread.join()


def test_check_suite_over_http(loopback_mirror):
    root, mirror = loopback_mirror
    _touch(root, "debian/dists/bookworm/InRelease", "debian/dists/stretch/Release")
    bs.check_suite(mirror, "bookworm")
    bs.check_suite(mirror, "stretch")  # only the unsigned index: still a suite
    with pytest.raises(BootstrapError, match=f"unknown Debian suite 'nosuch': {mirror} has no"):
        bs.check_suite(mirror, "nosuch")


def test_check_suite_with_the_mirror_unreachable(loopback_mirror):
    _root, mirror = loopback_mirror
    port = int(mirror.split(":")[2].split("/")[0])
    closed = mirror.replace(f":{port}/", ":1/")  # nothing listens on port 1
    with pytest.raises(BootstrapError, match="cannot reach the Debian mirror"):
        bs.check_suite(closed, "bookworm", timeout=5)


def _tar_bytes(rootfs: Path) -> bytes:
    tar = bs._tar_stream(rootfs)
    data = tar.stdout.read()
    tar.stdout.close()
    assert tar.wait() == 0
    return data


def test_layer_tar_is_reproducible_with_source_date_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    _touch(tmp_path, "usr/bin/bash", "etc/passwd")
    first = _tar_bytes(tmp_path)
    os.utime(tmp_path / "usr/bin/bash", (1800000000, 1800000000))  # a later bootstrap
    os.utime(tmp_path / "etc", (1800000000, 1800000000))
    assert _tar_bytes(tmp_path) == first
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        names = tar.getnames()
        assert names == sorted(names, key=lambda n: n.split("/")) and "usr/bin/bash" in names
        assert all(member.mtime <= 1700000000 for member in tar.getmembers())
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert bs.source_date_epoch() is None
    with tarfile.open(fileobj=io.BytesIO(_tar_bytes(tmp_path))) as tar:
        assert tar.getmember("usr/bin/bash").mtime == 1800000000


def test_clean_tree_refuses_a_tree_with_mounts(tmp_path, monkeypatch):
    _touch(tmp_path, "sys/kernel/x")
    monkeypatch.setattr(mounts, "MOUNTINFO", _mountinfo(tmp_path, f"{tmp_path}/sys"))
    with pytest.raises(BootstrapError, match="still has mounts"):
        bs.clean_tree(tmp_path)
    assert (tmp_path / "sys/kernel/x").is_file()
