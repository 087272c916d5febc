"""Debian images built here, from the Debian archive this machine's apt already uses.

With no container registry in reach, `debian:<suite>`, `debian:<suite>-slim`,
`debian:<version>` (12, 12.5, 12-slim) and `debian:latest` / `debian:stable` (this
machine's own suite) are made with mmdebstrap (or debootstrap), variant minbase, from
the mirror named in /etc/apt/sources.list(.d), and stored as an ordinary one-layer image.

    image = bootstrap("debian:bookworm-slim", ImageStore(), on_output=print)

A second call finds the stored image and returns it at once. `should_bootstrap` tells
the resolver whether a reference is one this module can make; the caller decides when
to ask (after the local store and any configured registry).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from pathlib import Path

from runtime.mounts import mount_points_under
from runtime.record import record

APT_ETC = Path("/etc/apt")
OS_RELEASE = Path("/etc/os-release")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LABEL_PREFIX = "org.composer.bootstrap"

# Release numbers as Debian tags them; codenames beyond these are checked on the mirror.
RELEASES = {
    "9": "stretch",
    "10": "buster",
    "11": "bullseye",
    "12": "bookworm",
    "13": "trixie",
    "14": "forky",
    "15": "duke",
}
# Tags that mean "the suite this machine runs" rather than whatever the archive calls so.
MACHINE_ALIASES = ("latest", "stable")
TOOLS = ("mmdebstrap", "debootstrap")  # mmdebstrap first: about twice as fast here
# Without it mmdebstrap converts to merged /usr by installing usrmerge, which drags in
# all of perl (+50 MB); the hook lays out the merged symlinks itself where the suite wants.
MERGED_USR_HOOKS = Path("/usr/share/mmdebstrap/hooks/maybe-merged-usr")

# dpkg filters for -slim, in dpkg's order (the last matching rule wins). The same list
# prunes the bootstrapped tree and becomes the image's dpkg config, so later installs
# stay slim too.
SLIM_RULES: tuple[tuple[str, str], ...] = (
    ("exclude", "/usr/share/doc/*"),
    ("include", "/usr/share/doc/*/copyright"),  # licences must stay with the binaries
    ("exclude", "/usr/share/man/*"),
    ("exclude", "/usr/share/info/*"),
    ("exclude", "/usr/share/groff/*"),
    ("exclude", "/usr/share/lintian/*"),
    ("exclude", "/usr/share/linda/*"),
    ("exclude", "/usr/share/locale/*"),
    ("include", "/usr/share/locale/locale.alias"),  # gettext reads it for every program
)
SLIM_DPKG_CONFIG = "etc/dpkg/dpkg.cfg.d/composer-slim"

# Left over from the bootstrap itself, in every variant: package lists, caches, logs.
# Globs relative to the root; directories named here are emptied, not removed.
CLEAN_GLOBS = (
    "var/lib/apt/lists/*",
    "var/cache/apt/*.bin",
    "var/cache/apt/archives/*.deb",
    "var/cache/apt/archives/partial/*",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "var/log/*.log",
    "var/log/apt/*",
    "tmp/*",
    "var/tmp/*",
    "dev/*",  # the runtime builds /dev; device nodes have no place in a layer
    "run/*",
    "proc/*",
    "sys/*",
)
KEEP_AFTER_CLEAN = ("var/lib/apt/lists/partial", "var/cache/apt/archives/partial")

# Apt settings for a container: no downloaded .deb kept after install, no translations.
APT_CONTAINER_CONFIG = (
    "etc/apt/apt.conf.d/composer-container",
    'APT::Keep-Downloaded-Packages "false";\n'
    'Acquire::Languages "none";\n'
    'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };\n',
)
# Maintainer scripts must not start services inside an image build (invoke-rc.d asks this).
POLICY_RC_D = ("usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n")


WORK_PREFIX = ".bootstrap-"  # <state root>/.bootstrap-<pid>-<random>: one bootstrap's tree


class BootstrapError(Exception):
    """A Debian image cannot be bootstrapped; the message says why and what to do."""


@record
class Target:
    """What a debian:<tag> reference asks for."""

    suite: str
    slim: bool

    @property
    def canonical_name(self) -> str:
        return f"debian:{self.suite}{'-slim' if self.slim else ''}"


@record
class AptSource:
    """One `deb` entry of the machine's apt configuration (deb-src entries are dropped)."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]

    def line(self, suite: str) -> str:
        return f"deb {self.uri} {suite} main"


@record
class RootfsInfo:
    suite: str
    mirror: str
    tool: str
    seconds: float


# ---------------------------------------------------------------- references


def _reference(reference):
    from runtime.images.reference import parse_reference

    return parse_reference(reference) if isinstance(reference, str) else reference


def target_for(reference, machine_suite: str | None = None) -> Target:
    """The suite and variant a debian reference names; BootstrapError if it names none.

    Suite names outside RELEASES are accepted here and checked against the mirror later.
    """
    ref = _reference(reference)
    if ref.registry is not None or ref.repository != "debian":
        raise BootstrapError(f"{ref}: only debian:<suite> images can be bootstrapped")
    if ref.digest:
        raise BootstrapError(f"{ref}: a bootstrap cannot reproduce a given digest")
    tag = ref.tag or "latest"
    base, slim = (tag[: -len("-slim")], True) if tag.endswith("-slim") else (tag, False)
    if re.fullmatch(r"\d+(\.\d+)*", base):
        suite = RELEASES.get(base.split(".")[0])
        if suite is None:
            known = ", ".join(f"{n} ({s})" for n, s in RELEASES.items())
            raise BootstrapError(f"{ref}: Debian {base} is not a release known here ({known})")
    elif base in MACHINE_ALIASES:
        suite = machine_suite or machine_codename()
    elif re.fullmatch(r"[a-z]+", base):
        suite = base
    else:
        raise BootstrapError(
            f"{ref}: tag {tag!r} names no Debian suite (want <suite>, <version>, "
            "latest or stable, each optionally with -slim)"
        )
    return Target(suite, slim)


def should_bootstrap(reference, *, registries: Iterable[str] | None = None) -> bool:
    """Whether `reference` is a debian image no registry can serve, so it gets bootstrapped.

    `registries` are those the caller could still ask (default: the configured ones); a
    caller whose registries all failed passes an empty list.
    """
    from runtime.images.reference import ReferenceError, configured_registries

    try:
        target_for(reference, machine_suite="stable")  # the alias needs no /etc lookup here
    except (BootstrapError, ReferenceError):
        return False
    if registries is None:
        registries = configured_registries()
    return not list(registries)


def describe(reference, mirror: str, seconds: float) -> str:
    """The line the CLI prints after a bootstrap."""
    return (
        f"{_reference(reference)}: no registry serves it here; "
        f"bootstrapped from {mirror} ({seconds:.0f} s)"
    )


def machine_codename(os_release: Path = OS_RELEASE) -> str:
    """This machine's Debian codename (VERSION_CODENAME in os-release)."""
    try:
        text = os_release.read_text()
    except OSError as e:
        raise BootstrapError(f"cannot tell this machine's Debian suite: {e}") from e
    fields = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")
    )
    codename = fields.get("VERSION_CODENAME", "").strip().strip('"')
    if not codename:
        raise BootstrapError(f"{os_release} names no VERSION_CODENAME; say debian:<suite>")
    return codename


# ---------------------------------------------------------------- apt sources


def parse_one_line_sources(text: str) -> list[AptSource]:
    """Entries of a sources.list: `deb [options] uri suite [component...]`."""
    sources = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, rest = line.partition(" ")
        rest = rest.strip()
        if rest.startswith("["):  # [arch=amd64 signed-by=...]
            rest = rest.partition("]")[2].strip()
        words = rest.split()
        if kind != "deb" or len(words) < 2:
            continue
        sources.append(AptSource(words[0], (words[1],), tuple(words[2:])))
    return sources


def parse_deb822_sources(text: str) -> list[AptSource]:
    """Entries of a .sources file (deb822: stanzas of `Field: value`, blank-line separated)."""
    sources = []
    for stanza in _deb822_stanzas(text):
        if stanza.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in stanza.get("types", "").split():
            continue
        suites = tuple(stanza.get("suites", "").split())
        components = tuple(stanza.get("components", "").split())
        sources.extend(AptSource(uri, suites, components) for uri in stanza.get("uris", "").split())
    return sources


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    field = None
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current, field = {}, None
        elif raw[0] in " \t" and field:  # continuation line
            current[field] += " " + raw.strip()
        elif ":" in raw:
            field, _, value = raw.partition(":")
            field = field.strip().lower()
            current[field] = value.strip()
    return stanzas


def machine_sources(apt_etc: Path = APT_ETC) -> list[AptSource]:
    """Every `deb` entry apt on this machine reads, in apt's file order."""
    sources: list[AptSource] = []
    main_list = apt_etc / "sources.list"
    if main_list.is_file():
        sources.extend(parse_one_line_sources(main_list.read_text()))
    parts = apt_etc / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):  # apt ignores other suffixes (.disabled, .save)
            if path.suffix == ".list":
                sources.extend(parse_one_line_sources(path.read_text()))
            elif path.suffix == ".sources":
                sources.extend(parse_deb822_sources(path.read_text()))
    return sources


def _is_release_suite(suite: str) -> bool:
    return suite in RELEASES.values() or suite in ("stable", "testing", "unstable", "sid")


def archive_mirror(sources: list[AptSource], suite: str) -> AptSource:
    """The Debian archive among `sources`: a `main` entry for a release suite, not security.

    One that already carries `suite` is preferred; any Debian archive serves every suite.
    """
    candidates = [
        s
        for s in sources
        if "main" in s.components
        and any(_is_release_suite(x) or x == suite for x in s.suites)
        and not any(x.endswith("-security") or "/updates" in x for x in s.suites)
    ]
    for source in candidates:
        if suite in source.suites:
            return source
    if candidates:
        return candidates[0]
    raise BootstrapError(
        "no Debian archive in this machine's apt sources (/etc/apt/sources.list, "
        "/etc/apt/sources.list.d/*.sources) to bootstrap from"
    )


def mirror_lines(sources: list[AptSource], suite: str) -> list[str]:
    """The sources.list lines for `suite`: its archive, plus the machine's -updates and
    -security entries when they are for that same suite."""
    lines = [archive_mirror(sources, suite).line(suite)]
    for extra in (f"{suite}-updates", f"{suite}-security"):
        for source in sources:
            if extra in source.suites and "main" in source.components:
                lines.append(source.line(extra))
                break
    return lines


def check_suite(mirror: str, suite: str, timeout: float = 20.0) -> None:
    """Fail clearly if the mirror has no such suite (before a tool fails obscurely)."""
    import urllib.error
    import urllib.request

    if not mirror.startswith(("http:", "https:", "file:")):
        return  # other apt methods (mirror+file:, cdrom:) are left to the tool
    for index in ("InRelease", "Release"):  # older suites may carry only the latter
        if mirror.startswith("file:"):
            if Path(mirror.removeprefix("file:"), "dists", suite, index).exists():
                return
            continue
        url = f"{mirror.rstrip('/')}/dists/{suite}/{index}"
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, method="HEAD"), timeout=timeout
            ):
                return
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise BootstrapError(f"cannot check suite {suite!r} on {mirror}: {e}") from e
        except (urllib.error.URLError, OSError) as e:
            raise BootstrapError(f"cannot reach the Debian mirror {mirror}: {e}") from e
    raise BootstrapError(f"unknown Debian suite {suite!r}: {mirror} has no dists/{suite}")


# ---------------------------------------------------------------- the tree


def slim_excluded(path: str, rules: Iterable[tuple[str, str]] = SLIM_RULES) -> bool:
    """Whether dpkg, given `rules`, would leave out `path` (absolute, inside the image)."""
    excluded = False
    for action, pattern in rules:
        if fnmatchcase(path, pattern):  # like dpkg: `*` also matches `/`
            excluded = action == "exclude"
    return excluded


def slim_dpkg_config(rules: Iterable[tuple[str, str]] = SLIM_RULES) -> str:
    lines = ["# debian -slim: no docs, man pages or translations; later installs stay slim"]
    lines += [f"path-{action}={pattern}" for action, pattern in rules]
    return "\n".join(lines) + "\n"


def slim_tree(root: str | os.PathLike) -> int:
    """Remove what SLIM_RULES exclude from the tree at `root` and write the dpkg config that
    keeps it out; return how many files went."""
    root = Path(root)
    removed = 0
    for directory, dirnames, filenames in os.walk(root, topdown=False):
        relative = os.path.relpath(directory, root)
        inside = "" if relative == "." else "/" + relative
        for name in filenames + [d for d in dirnames if (Path(directory) / d).is_symlink()]:
            if slim_excluded(f"{inside}/{name}"):
                os.unlink(os.path.join(directory, name))
                removed += 1
        for name in dirnames:
            path = os.path.join(directory, name)
            if not os.path.islink(path) and slim_excluded(f"{inside}/{name}"):
                try:
                    os.rmdir(path)  # only once empty: it may hold included files
                except OSError:
                    pass
    _write(root, SLIM_DPKG_CONFIG, slim_dpkg_config())
    return removed


def clean_tree(root: str | os.PathLike) -> None:
    """Remove the bootstrap's leftovers and host-specific files; add container settings."""
    root = Path(root)
    if mount_points_under(root):  # dev/*, sys/* would then reach the host's files
        raise BootstrapError(f"{root} still has mounts: {', '.join(mount_points_under(root))}")
    for pattern in CLEAN_GLOBS:
        for path in root.glob(pattern):
            if path.relative_to(root).as_posix() in KEEP_AFTER_CLEAN:
                for child in path.iterdir():  # apt wants the directory (owner _apt, 0700)
                    _remove(child)
            else:
                _remove(path)
    # The bootstrap copied this host's name and resolver; the runtime provides its own.
    for host_file in ("etc/hostname", "etc/resolv.conf"):
        if (root / host_file).exists() or (root / host_file).is_symlink():
            (root / host_file).unlink()
            (root / host_file).write_text("")
    _write(root, *APT_CONTAINER_CONFIG)
    _write(root, *POLICY_RC_D, mode=0o755)


def remove_work(work: Path) -> None:
    """Remove a bootstrap's tree, unmounting first what a killed tool left mounted there.

    The tools bind /sys and /dev nodes into the tree; deleting through such a mount
    would delete the host's files, so a tree still holding mounts is left alone.
    """
    for point in mount_points_under(work):
        subprocess.run(["umount", "--lazy", point], capture_output=True)
    left = mount_points_under(work)
    if left:
        raise BootstrapError(f"cannot remove {work}: still mounted there: {', '.join(left)}")
    from runtime.images.layers import remove_tree

    remove_tree(work)


def sweep_stale_work(state_root: Path) -> None:
    """Remove the trees of bootstraps whose process is gone (killed midway)."""
    from runtime.state import pid_alive

    for path in state_root.glob(f"{WORK_PREFIX}*"):
        pid = path.name.removeprefix(WORK_PREFIX).split("-")[0]
        if not path.is_dir() or not pid.isdigit() or pid_alive(int(pid)):
            continue
        remove_work(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _write(root: Path, relative: str, text: str, mode: int = 0o644) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


# ---------------------------------------------------------------- bootstrap


def find_tool(preferred: str | None = None) -> str:
    for tool in (preferred,) if preferred else TOOLS:
        if shutil.which(tool):
            return tool
    wanted = preferred or " or ".join(TOOLS)
    raise BootstrapError(
        f"bootstrapping Debian needs {wanted}: apt-get install {wanted.split()[0]}"
    )


def _tool_command(
    tool: str,
    suite: str,
    dest: Path,
    variant: str,
    mirrors: list[str],
    include_packages: Iterable[str],
    dpkg_config: Path | None,
) -> list[str]:
    packages = ",".join(include_packages)
    if tool == "mmdebstrap":
        cmd = ["mmdebstrap", f"--variant={variant}", "--components=main"]
        cmd.append("--mode=root" if os.geteuid() == 0 else "--mode=auto")
        if MERGED_USR_HOOKS.is_dir():
            cmd.append(f"--hook-dir={MERGED_USR_HOOKS}")
        if packages:
            cmd.append(f"--include={packages}")
        if dpkg_config is not None:
            # In place before the first package is installed, so dpkg skips the files.
            cmd.append(
                f'--setup-hook=mkdir -p "$1/{Path(SLIM_DPKG_CONFIG).parent}" && '
                f'cp {shlex.quote(str(dpkg_config))} "$1/{SLIM_DPKG_CONFIG}"'
            )
        return [*cmd, suite, str(dest), *mirrors]
    uri = mirrors[0].split()[1]
    cmd = ["debootstrap", f"--variant={variant}", "--components=main"]
    if packages:
        cmd.append(f"--include={packages}")
    return [*cmd, suite, str(dest), uri]


def bootstrap_rootfs(
    suite: str,
    dest: str | os.PathLike,
    variant: str = "minbase",
    include_packages: Iterable[str] = (),
    *,
    slim: bool = False,
    tool: str | None = None,
    sources: list[AptSource] | None = None,
    on_output: Callable[[str], None] | None = None,
) -> RootfsInfo:
    """Bootstrap Debian `suite` into the empty or absent directory `dest`.

    The mirror comes from the machine's apt sources; with `slim`, the -slim rules apply
    (during the install with mmdebstrap, and to the tree afterwards with either tool).
    """
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise BootstrapError(f"{dest} is not empty")
    tool = find_tool(tool)
    sources = machine_sources() if sources is None else sources
    mirrors = mirror_lines(sources, suite)
    mirror = mirrors[0].split()[1]
    check_suite(mirror, suite)
    started = time.monotonic()
    dpkg_config = None
    if slim:
        dpkg_config = dest.parent / f".{dest.name}.dpkg-slim"
        dpkg_config.write_text(slim_dpkg_config())
    try:
        command = _tool_command(tool, suite, dest, variant, mirrors, include_packages, dpkg_config)
        _run(command, on_output)
    finally:
        if dpkg_config is not None:
            dpkg_config.unlink(missing_ok=True)
    if tool == "debootstrap":  # it takes one mirror; write the rest as mmdebstrap does
        _write(dest, "etc/apt/sources.list", "\n".join(mirrors) + "\n")
    if slim:
        slim_tree(dest)
    clean_tree(dest)
    return RootfsInfo(suite, mirror, tool, time.monotonic() - started)


def _run(command: list[str], on_output: Callable[[str], None] | None) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8")
    tail: list[str] = []
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=env,
    )
    assert process.stdout is not None
    try:
        with process.stdout:
            for line in process.stdout:
                line = line.rstrip("\n")
                tail = [*tail[-19:], line]
                if on_output is not None:
                    on_output(line)
    except BaseException:
        # Interrupted (or the callback failed): let the tool undo its mounts before the
        # caller removes the tree.
        process.terminate()
        process.wait()
        raise
    if process.wait() != 0:
        output = "\n".join(tail)
        raise BootstrapError(f"{command[0]} failed (exit {process.returncode}):\n{output}")


def image_config(info: RootfsInfo, slim: bool, created: str) -> dict:
    """The image config of a bootstrapped Debian: bash by default, labelled with its origin."""
    from runtime.images.store import host_platform

    labels = {
        LABEL_PREFIX: "true",
        f"{LABEL_PREFIX}.suite": info.suite,
        f"{LABEL_PREFIX}.variant": "minbase-slim" if slim else "minbase",
        f"{LABEL_PREFIX}.mirror": info.mirror,
        f"{LABEL_PREFIX}.tool": info.tool,
        f"{LABEL_PREFIX}.date": created,
    }
    return {
        **host_platform(),
        "created": created,
        "config": {"Env": [PATH_ENV], "Cmd": ["bash"], "Labels": labels},
        "history": [
            {
                "created": created,
                "created_by": f"{info.tool} --variant=minbase {info.suite} {info.mirror}"
                + (" (slim)" if slim else ""),
            }
        ],
    }


def source_date_epoch() -> int | None:
    """$SOURCE_DATE_EPOCH, the reproducible-builds clock, if set (mmdebstrap reads it too)."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else None


def _tar_stream(rootfs: Path) -> subprocess.Popen:
    """GNU tar of the tree: names relative to the root, numeric owners, xattrs kept, no
    per-run noise in the headers (pid in pax header names, atime, ctime), and mtimes
    clamped to $SOURCE_DATE_EPOCH when set, so equal trees give equal layers."""
    options = [
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=*",
        "--sort=name",
        "--format=posix",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
    ]
    epoch = source_date_epoch()
    if epoch is not None:
        options += [f"--mtime=@{epoch}", "--clamp-mtime"]
    entries = sorted(os.listdir(rootfs))
    return subprocess.Popen(
        ["tar", "--create", "--file=-", *options, "--directory", str(rootfs), "--", *entries],
        stdout=subprocess.PIPE,
    )


def bootstrap(
    reference,
    store,
    *,
    on_output: Callable[[str], None] | None = None,
    tool: str | None = None,
):
    """The Image for a debian reference: the stored one, else bootstrapped and stored now.

    Stored under the requested name and its canonical `debian:<suite>[-slim]` name, so
    `debian:12-slim` and `debian:bookworm-slim` share one image.
    """
    from runtime.state import Lock

    ref = _reference(reference)
    name = str(ref)
    found = store.resolve(name)
    if found is not None:
        return found
    target = target_for(ref)
    store.root.mkdir(parents=True, exist_ok=True)
    lock = store.root / f".bootstrap-{target.suite}{'-slim' if target.slim else ''}.lock"
    with Lock(lock, f"bootstrap {target.canonical_name}", timeout=1800):
        # Another process may have finished the same bootstrap while we waited.
        found = store.resolve(name) or store.resolve(target.canonical_name)
        if found is not None:
            store.tag(name, found.digest)
            return store.resolve(name)
        sweep_stale_work(store.state_root)
        started = time.monotonic()
        work = store.state_root / f"{WORK_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
        work.mkdir(parents=True)
        try:
            info = bootstrap_rootfs(
                target.suite,
                work / "rootfs",
                "minbase",
                slim=target.slim,
                tool=tool,
                on_output=on_output,
            )
            epoch = source_date_epoch()
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
            config = image_config(info, target.slim, created)
            image = _store_rootfs(store, work / "rootfs", target.canonical_name, config)
        finally:
            remove_work(work)
        if name != target.canonical_name:
            store.tag(name, image.digest)
            image = store.resolve(name)
    if on_output is not None:
        on_output(describe(ref, info.mirror, time.monotonic() - started))
    return image


def _store_rootfs(store, rootfs: Path, name: str, config: dict):
    tar = _tar_stream(rootfs)
    assert tar.stdout is not None
    try:
        with tar.stdout:
            image = store.import_rootfs_tar(tar.stdout, name, config=config)
    finally:
        tar.wait()  # a failed import closed the pipe, so tar has ended too
    if tar.returncode != 0:
        raise BootstrapError(f"tar of {rootfs} failed (exit {tar.returncode})")
    return image
