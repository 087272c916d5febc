"""Debian images bootstrapped for real from the mirror this machine's apt is configured with.

Slow (a minbase install from the network), so the image is made once for the module.
The suite is the machine's own (bookworm on the CI machine), which its mirror carries.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from runtime.images import bootstrap as bs
from runtime.images.bootstrap import BootstrapError
from runtime.images.layers import remove_tree
from runtime.images.store import ImageStore

pytestmark = pytest.mark.slow


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == str(path) or p.startswith(f"{path}/")]


def _tree_bytes(root: Path) -> int:
    """Bytes of regular files, each hardlinked file once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(directory, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("integration tests need root")
    root = tmp_path_factory.mktemp("bootstrap")
    yield root
    assert _mounts_under(root) == []
    remove_tree(root)


@pytest.fixture(scope="module")
def store(workdir):
    return ImageStore(workdir / "composer-root")


@pytest.fixture(scope="module")
def suite():
    return bs.machine_codename()


@pytest.fixture(scope="module")
def slim(store, suite):
    output: list[str] = []
    image = bs.bootstrap(f"debian:{suite}-slim", store, on_output=output.append)
    return image, output


@pytest.fixture(scope="module")
def slim_rootfs(store, slim):
    image, _ = slim
    (diff_id,) = image.diff_ids
    return store.layers.ensure_unpacked(diff_id, store.blob_path(image.layers[0].digest))


@pytest.fixture(scope="module")
def slim_copy(slim_rootfs, workdir):
    """A private copy to run programs in: the unpacked layer is shared and read-only by
    contract, and a chroot writes into it (a shell creates /dev/null as a plain file)."""
    copy = workdir / "slim-copy"
    subprocess.run(["cp", "-a", str(slim_rootfs), str(copy)], check=True)
    return copy


def test_slim_image_has_bash_and_working_apt(slim, slim_copy, store, suite):
    image, output = slim
    assert image.name == f"debian:{suite}-slim"
    assert store.resolve(f"debian:{suite}-slim").digest == image.digest
    assert (slim_copy / "usr/bin/bash").is_file()
    assert os.path.realpath(slim_copy / "bin") == str(slim_copy / "usr/bin")
    apt = subprocess.run(
        ["chroot", str(slim_copy), "apt-get", "--version"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
    )
    assert apt.returncode == 0, apt.stderr
    assert apt.stdout.startswith("apt ")
    dpkg = subprocess.run(
        ["chroot", str(slim_copy), "dpkg-query", "-W", "-f=${Status}", "bash"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert dpkg.stdout == "install ok installed", dpkg.stderr
    mirror = bs.archive_mirror(bs.machine_sources(), suite).uri
    assert output[-1].startswith(
        f"debian:{suite}-slim: no registry serves it here; bootstrapped from {mirror} ("
    )


def test_slim_image_config(slim, suite):
    image, _ = slim
    config = image.config["config"]
    assert config["Cmd"] == ["bash"]
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in config["Env"]
    labels = config["Labels"]
    assert labels["org.composer.bootstrap.suite"] == suite
    assert labels["org.composer.bootstrap.variant"] == "minbase-slim"
    assert (
        labels["org.composer.bootstrap.mirror"]
        == bs.archive_mirror(bs.machine_sources(), suite).uri
    )
    assert len(image.layers) == 1


def test_slim_image_has_no_docs_but_copyrights(slim_rootfs):
    docs = [p for p in (slim_rootfs / "usr/share/doc").rglob("*") if not p.is_dir()]
    assert docs, "copyright files must stay"
    assert all(p.name == "copyright" for p in docs), [p for p in docs if p.name != "copyright"]
    assert not [p for p in (slim_rootfs / "usr/share/man").rglob("*") if not p.is_dir()]
    assert not list((slim_rootfs / "usr/share").glob("locale/*/LC_MESSAGES/*.mo"))
    assert (slim_rootfs / bs.SLIM_DPKG_CONFIG).is_file()
    assert not list((slim_rootfs / "var/lib/apt/lists").glob("*_InRelease"))
    assert not list((slim_rootfs / "var/cache/apt/archives").glob("*.deb"))
    assert not list((slim_rootfs / "dev").iterdir())


def test_later_installs_stay_slim(slim_copy, tmp_path):
    """dpkg in the image honours the path-exclude config: a package installed later
    brings no docs. Uses a locally built .deb, so no network is needed."""
    package = tmp_path / "pkg"
    (package / "DEBIAN").mkdir(parents=True)
    (package / "DEBIAN/control").write_text(
        "Package: composer-probe\nVersion: 1\nArchitecture: all\n"
        "Maintainer: tests <t@t>\nDescription: probe\n"
    )
    _write(package / "usr/share/doc/composer-probe/README", "docs\n")
    _write(package / "usr/share/doc/composer-probe/copyright", "licence\n")
    _write(package / "usr/share/man/man1/probe.1", "man\n")
    _write(package / "usr/lib/composer-probe/data", "data\n")
    deb = tmp_path / "probe.deb"
    subprocess.run(["dpkg-deb", "--build", str(package), str(deb)], check=True, capture_output=True)
    (slim_copy / "probe.deb").write_bytes(deb.read_bytes())
    subprocess.run(
        ["chroot", str(slim_copy), "dpkg", "-i", "/probe.deb"],
        check=True,
        capture_output=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert (slim_copy / "usr/lib/composer-probe/data").is_file()
    assert (slim_copy / "usr/share/doc/composer-probe/copyright").is_file()
    assert not (slim_copy / "usr/share/doc/composer-probe/README").exists()
    assert not (slim_copy / "usr/share/man/man1/probe.1").exists()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_slim_is_noticeably_smaller_than_full(slim_rootfs, suite, workdir):
    """The full tree comes from debootstrap, so the fallback tool is exercised too."""
    full = workdir / "full-rootfs"
    info = bs.bootstrap_rootfs(suite, full, "minbase", tool="debootstrap")
    try:
        assert info.tool == "debootstrap"
        assert (full / "usr/bin/bash").is_file()
        assert (full / "usr/share/man").exists()
        sources = (full / "etc/apt/sources.list").read_text().splitlines()
        assert sources == bs.mirror_lines(bs.machine_sources(), suite)
        assert not list((full / "var/cache/apt/archives").glob("*.deb"))
        full_bytes, slim_bytes = _tree_bytes(full), _tree_bytes(slim_rootfs)
        assert slim_bytes < 0.85 * full_bytes, (slim_bytes, full_bytes)
        assert _mounts_under(full) == []
    finally:
        remove_tree(full)


def test_second_call_is_served_from_the_store(slim, store, suite):
    image, _ = slim
    output: list[str] = []
    # A tool that does not exist: any new bootstrap would fail.
    again = bs.bootstrap(f"debian:{suite}-slim", store, on_output=output.append, tool="no-such")
    assert again.digest == image.digest
    assert output == []
    number = next(n for n, s in bs.RELEASES.items() if s == suite)
    alias = bs.bootstrap(f"debian:{number}-slim", store, tool="no-such")
    assert alias.digest == image.digest


def test_unknown_suite_is_a_clear_error(store):
    with pytest.raises(BootstrapError, match="unknown Debian suite 'nosuchsuite'"):
        bs.bootstrap("debian:nosuchsuite", store)
    assert store.resolve("debian:nosuchsuite") is None
    assert not [p for p in store.state_root.iterdir() if p.name.startswith(".bootstrap-")]


def test_leftovers_of_a_killed_bootstrap_are_unmounted_before_removal(tmp_path):
    """A tool killed midway leaves host directories bound into its tree; the sweep must
    unmount them and never delete through them."""
    host_dir = tmp_path / "host"
    _write(host_dir / "precious", "keep me\n")
    process = subprocess.Popen(["true"])
    process.wait()
    work = tmp_path / f"{bs.WORK_PREFIX}{process.pid}-dead"
    target = work / "rootfs/sys"
    target.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(host_dir), str(target)], check=True)
    try:
        bs.sweep_stale_work(tmp_path)
    finally:
        if _mounts_under(work):
            subprocess.run(["umount", "--lazy", str(target)], check=False)
    assert not work.exists()
    assert (host_dir / "precious").read_text() == "keep me\n"
