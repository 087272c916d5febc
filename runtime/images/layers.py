"""Layer tars: compression, safe unpacking with OCI whiteouts, and the unpacked-layer cache.

An unpacked layer is an overlayfs lower directory, so OCI whiteouts become overlay
whiteouts while unpacking: `.wh.<name>` → a 0:0 character device `<name>`, and
`.wh..wh..opq` → the directory's `trusted.overlay.opaque="y"` xattr. Writing a layer
from an overlay upper directory does the reverse.

Each member's path is checked before anything is written: absolute paths, `..`,
parents that are symlinks resolving outside the layer, and hardlinks to outside are
refused with UnsafeLayer. Layers unpack into a temporary sibling directory that is
renamed into place only when the whole tar succeeded.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path
from typing import BinaryIO

from runtime.state import Lock, layers_dir

CHUNK = 1 << 20
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
SHORT_LINKS = "l"  # layers/l/<short> → ../<diffid-hex>: keeps overlay mount options short


class LayerError(Exception):
    pass


class UnsafeLayer(LayerError):
    """A tar member would write outside the layer directory."""


# ---------------------------------------------------------------- compression


def detect_compression(head: bytes) -> str | None:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


class _Prefixed:
    """A read-only stream with some already-read bytes put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0:
                data, self._head = self._head + self._rest.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            if len(data) < n:
                data += self._rest.read(n - len(data))
            return data
        return self._rest.read(n)

    def readable(self) -> bool:
        return True


def _peek(stream: BinaryIO, n: int = 4) -> tuple[bytes, BinaryIO]:
    head = b""
    while len(head) < n:
        chunk = stream.read(n - len(head))
        if not chunk:
            break
        head += chunk
    return head, _Prefixed(head, stream)


def _decompressed(stream: BinaryIO, kind: str | None) -> BinaryIO:
    """A reader of `stream`'s uncompressed bytes; reads stay bounded whatever the ratio."""
    if kind is None:
        return stream
    if kind == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=stream, mode="rb")  # multi-member, zero padding
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(
            stream, read_size=CHUNK, read_across_frames=True, closefd=False
        )
    raise LayerError(f"unsupported layer compression {kind!r}")


def _decompression_errors() -> tuple[type[Exception], ...]:
    import gzip
    import zlib

    import zstandard

    return (gzip.BadGzipFile, zlib.error, zstandard.ZstdError)


class _Tee:
    """Passes reads through and hands every chunk read to `sink`."""

    def __init__(self, stream: BinaryIO, sink) -> None:
        self._stream = stream
        self._sink = sink

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self._sink(data)
        return data

    def readable(self) -> bool:
        return True


class _Compressor:
    def __init__(self, kind: str | None) -> None:
        self.kind = kind
        if kind == "gzip":
            import zlib

            # zlib's own gzip header has mtime 0 and no file name: same input, same bytes.
            self._obj = zlib.compressobj(6, zlib.DEFLATED, 31)
        elif kind == "zstd":
            import zstandard

            self._obj = zstandard.ZstdCompressor(level=3).compressobj()
        elif kind is None:
            self._obj = None
        else:
            raise LayerError(f"unsupported layer compression {kind!r}")

    def feed(self, data: bytes) -> bytes:
        return self._obj.compress(data) if self._obj else data

    def finish(self) -> bytes:
        return self._obj.flush() if self._obj else b""


def recompress(
    source: BinaryIO, out: BinaryIO | None, compression: str | None
) -> tuple[str | None, int, str]:
    """Copy a tar (plain, gzip or zstd) to `out` in `compression`; return
    (blob digest, blob size, diff_id). Input already in `compression` is copied byte for
    byte. With compression "discard" nothing is written (only the diff_id is computed)."""
    import hashlib

    head, stream = _peek(source)
    found = detect_compression(head)
    discard = compression == "discard"
    verbatim = not discard and compression == found
    compressor = None if verbatim or discard else _Compressor(compression)
    blob_hash, diff_hash = hashlib.sha256(), hashlib.sha256()
    size = 0

    def emit(data: bytes) -> None:
        nonlocal size
        if data and out is not None:
            blob_hash.update(data)
            out.write(data)
            size += len(data)

    if verbatim:
        stream = _Tee(stream, emit)
    plain = _decompressed(stream, found)
    try:
        while chunk := plain.read(CHUNK):
            diff_hash.update(chunk)
            if compressor is not None:
                emit(compressor.feed(chunk))
    except (EOFError, *_decompression_errors()) as e:
        raise LayerError(f"broken {found}-compressed layer: {e}") from e
    if compressor is not None:
        emit(compressor.finish())
    while stream.read(CHUNK):  # bytes after the compressed end still belong to the blob
        pass
    digest = None if discard else "sha256:" + blob_hash.hexdigest()
    return digest, size, "sha256:" + diff_hash.hexdigest()


class _DecompressingReader:
    """A file-like view of the uncompressed tar that also hashes it (for the diff_id)."""

    def __init__(self, source: BinaryIO, compression: str | None) -> None:
        import hashlib

        head, stream = _peek(source)
        found = detect_compression(head)
        if compression not in ("auto", None) and found not in (None, compression):
            raise LayerError(f"layer is {found}-compressed, not {compression}")
        self._plain = _decompressed(stream, found)
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._plain.read(n)
        self.hash.update(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


# ---------------------------------------------------------------- unpack


def _member_path(name: str) -> str:
    """The member's path relative to the layer root, or UnsafeLayer."""
    if name.startswith("/"):
        raise UnsafeLayer(f"absolute path {name!r} in layer")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(f"path {name!r} in layer climbs out with '..'")
    if not parts:
        return ""
    return "/".join(parts)


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + "/")


def _safe_parent(root: str, rel: str) -> str:
    """The real directory `rel`'s parent resolves to; UnsafeLayer if outside `root`."""
    parent = os.path.dirname(os.path.join(root, rel))
    real = os.path.realpath(parent)
    if not _inside(root, real):
        raise UnsafeLayer(f"{rel!r}: a parent is a symlink leading outside the layer ({real})")
    return real


def _make_parents(root: str, rel: str) -> str:
    """Create missing parent directories (mode 0755) safely; return the real parent path."""
    current = root
    for part in rel.split("/")[:-1]:
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(current)
            if not _inside(root, real):
                raise UnsafeLayer(
                    f"{rel!r}: parent {part!r} is a symlink leading outside the layer"
                )
            current = real
        elif not stat.S_ISDIR(st.st_mode):
            raise LayerError(f"{rel!r}: parent {part!r} is not a directory")
    return _safe_parent(root, rel)


def _remove_existing(path: str, keep_dir: bool) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _xattrs(member) -> dict[str, bytes]:
    out = {}
    for key, value in (member.pax_headers or {}).items():
        # overlayfs's own xattrs (redirect, metacopy, origin...) would steer the mount
        # that stacks this layer; only whiteout markers may set them.
        if key.startswith("SCHILY.xattr.") and not key.startswith("SCHILY.xattr.trusted.overlay."):
            data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
            out[key[len("SCHILY.xattr.") :]] = data
    return out


def _mtime_ns(member) -> int:
    """The member's mtime in ns, exact from the PAX text when there is one."""
    from decimal import Decimal, InvalidOperation

    text = (member.pax_headers or {}).get("mtime")
    if text:
        try:
            return int(Decimal(text) * 10**9)
        except InvalidOperation:
            pass
    return int(member.mtime * 10**9)


class _Unpacker:
    def __init__(self, root: str) -> None:
        self.root = root
        self.is_root = os.geteuid() == 0
        self.dir_times: list[tuple[str, int, object]] = []

    def member(self, tar, member) -> None:
        rel = _member_path(member.name)
        if not rel:  # the root directory itself: take its metadata
            if member.isdir():
                self.dir_times.append((self.root, member.mode, member))
            return
        base = os.path.basename(rel)
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(rel, base)
            return
        parent = _make_parents(self.root, rel)
        path = os.path.join(parent, base)
        if member.isdir():
            _remove_existing(path, keep_dir=True)
            if not os.path.isdir(path):
                os.mkdir(path, 0o700)
            self.dir_times.append((path, member.mode, member))
            self.metadata(path, member, chmod=False, times=False)
            return
        _remove_existing(path, keep_dir=False)
        if member.isreg():
            with open(path, "xb") as out:
                source = tar.extractfile(member)
                while chunk := source.read(CHUNK):
                    out.write(chunk)
        elif member.issym():
            os.symlink(member.linkname, path)
        elif member.islnk():
            target_rel = _member_path(member.linkname)
            if not target_rel:
                raise UnsafeLayer(f"hardlink {rel!r} to the layer root")
            target = os.path.join(_safe_parent(self.root, target_rel), os.path.basename(target_rel))
            try:
                st = os.lstat(target)
            except FileNotFoundError:
                raise LayerError(
                    f"hardlink {rel!r} → {member.linkname!r}: target not in this layer"
                ) from None
            if stat.S_ISDIR(st.st_mode):
                raise UnsafeLayer(f"hardlink {rel!r} to a directory")
            os.link(target, path, follow_symlinks=False)
            return  # the link shares the target's inode and metadata
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        elif member.isfifo():
            os.mkfifo(path, 0o600)
        else:
            raise LayerError(f"{rel!r}: unsupported tar member type {member.type!r}")
        self.metadata(path, member, chmod=not member.issym(), times=True)

    def whiteout(self, rel: str, base: str) -> None:
        parent = _make_parents(self.root, rel)
        if base == OPAQUE_MARKER:
            os.setxattr(parent, OVERLAY_OPAQUE_XATTR, b"y", follow_symlinks=False)
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # other aufs metadata (.wh..wh.plnk, ...): nothing for overlayfs
        name = base[len(WHITEOUT_PREFIX) :]
        path = os.path.join(parent, name)
        _remove_existing(path, keep_dir=False)
        os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))

    def metadata(self, path: str, member, chmod: bool, times: bool) -> None:
        try:
            os.chown(path, member.uid, member.gid, follow_symlinks=False)
        except PermissionError:
            if self.is_root:
                raise
        for key, value in _xattrs(member).items():
            try:
                os.setxattr(path, key, value, follow_symlinks=False)
            except OSError as e:
                # user.* on a symlink or an fs without xattrs: lose the xattr, not the layer.
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
        if chmod:  # after chown, which clears set-id bits
            os.chmod(path, stat.S_IMODE(member.mode))
        if times:
            os.utime(path, ns=(_mtime_ns(member),) * 2, follow_symlinks=False)

    def finish(self) -> None:
        # Deepest first: setting a child's time touches nothing above it, but a parent's
        # mode may forbid writing into it.
        for path, mode, member in sorted(self.dir_times, key=lambda t: -t[0].count("/")):
            os.chmod(path, stat.S_IMODE(mode))
            os.utime(path, ns=(_mtime_ns(member),) * 2, follow_symlinks=False)


def unpack_layer(
    stream: BinaryIO | str | os.PathLike,
    dest: str | os.PathLike,
    compression: str | None = "auto",
    expected_diff_id: str | None = None,
) -> str:
    """Unpack a layer tar into `dest` (which must not exist); return its diff_id.

    Works in a temporary sibling directory renamed to `dest` at the end, so a refused
    or broken tar leaves nothing behind. The compression is detected from the stream
    (`compression` other than "auto" must then agree).
    """
    import tarfile

    dest = os.path.abspath(dest)
    if os.path.lexists(dest):
        raise LayerError(f"{dest} already exists")
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    work = os.path.join(parent, f".unpack-{os.path.basename(dest)}-{os.urandom(4).hex()}")
    os.mkdir(work, 0o755)
    opened = isinstance(stream, (str, os.PathLike))
    source = open(stream, "rb") if opened else stream  # noqa: SIM115
    try:
        reader = _DecompressingReader(source, compression)
        unpacker = _Unpacker(os.path.realpath(work))
        try:
            with tarfile.open(fileobj=reader, mode="r|", errorlevel=2) as tar:
                for member in tar:
                    unpacker.member(tar, member)
            reader.drain()  # trailing padding counts for the diff_id
        except (tarfile.TarError, EOFError, *_decompression_errors()) as e:
            raise LayerError(f"broken layer tar: {e}") from e
        while source.read(CHUNK):  # a verifying blob reader checks its digest at its end
            pass
        diff_id = "sha256:" + reader.hash.hexdigest()
        if expected_diff_id is not None and diff_id != expected_diff_id:
            raise LayerError(f"layer content is {diff_id}, expected diff_id {expected_diff_id}")
        unpacker.finish()
        os.rename(work, dest)
    except BaseException:
        remove_tree(work)
        raise
    finally:
        if opened:
            source.close()
    return diff_id


def remove_tree(path: str | os.PathLike) -> None:
    """rm -rf that also enters directories whose mode forbids it (layers keep image modes)."""

    def allow_and_retry(function, failed, _exc):
        parent = os.path.dirname(failed)
        try:
            os.chmod(parent, 0o700)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, 0o700)
            function(failed)
        except FileNotFoundError:
            pass

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=allow_and_retry)


# ---------------------------------------------------------------- pack


def write_layer_tar(
    directory: str | os.PathLike,
    out: BinaryIO,
    overlay_upper: bool = False,
    mtime: int | None = None,
) -> None:
    """Write the tree under `directory` as an uncompressed layer tar (sorted, PAX).

    With `overlay_upper`, 0:0 character devices become `.wh.<name>` and opaque
    directories get a `.wh..wh..opq` member. `mtime` clamps newer file times.
    """
    import tarfile

    root = os.path.abspath(directory)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        inodes: dict[tuple[int, int], str] = {}

        def add(path: str, arcname: str) -> None:
            st = os.lstat(path)
            if overlay_upper and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                head, base = os.path.split(arcname)
                _add_empty(tar, os.path.join(head, WHITEOUT_PREFIX + base), st, mtime)
                return
            info = tarfile.TarInfo(arcname)
            info.uid, info.gid = st.st_uid, st.st_gid
            info.uname = info.gname = ""
            info.mode = stat.S_IMODE(st.st_mode)
            info.mtime = int(st.st_mtime) if mtime is None else min(int(st.st_mtime), mtime)
            xattrs = _read_xattrs(path)
            opaque = xattrs.pop(OVERLAY_OPAQUE_XATTR, None) == b"y"
            if xattrs:
                info.pax_headers = {
                    "SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape")
                    for k, v in xattrs.items()
                }
            key = (st.st_dev, st.st_ino)
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
            elif stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and key in inodes:
                info.type = tarfile.LNKTYPE
                info.linkname = inodes[key]
            elif stat.S_ISREG(st.st_mode):
                info.size = st.st_size
                if st.st_nlink > 1:
                    inodes[key] = arcname
                with open(path, "rb") as f:
                    tar.addfile(info, f)
                return
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            elif stat.S_ISFIFO(st.st_mode):
                info.type = tarfile.FIFOTYPE
            else:
                return  # sockets cannot be archived
            tar.addfile(info)
            if opaque and stat.S_ISDIR(st.st_mode):
                _add_empty(tar, os.path.join(arcname, OPAQUE_MARKER), st, mtime)

        for current, dirs, files in os.walk(root):
            dirs.sort()
            rel = os.path.relpath(current, root)
            for name in sorted(dirs + files):
                arcname = name if rel == "." else f"{rel}/{name}"
                add(os.path.join(current, name), arcname)
            # os.walk does not descend into symlinked dirs; nothing else to prune.


def _add_empty(tar, arcname: str, st: os.stat_result, mtime: int | None) -> None:
    import tarfile

    info = tarfile.TarInfo(arcname)
    info.mode = 0o644 if arcname.endswith(OPAQUE_MARKER) else 0o600
    info.mtime = int(st.st_mtime) if mtime is None else min(int(st.st_mtime), mtime)
    info.uname = info.gname = ""
    tar.addfile(info)


def _read_xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in names:
        if name.startswith("trusted.overlay.") and name != OVERLAY_OPAQUE_XATTR:
            continue  # overlay's own bookkeeping (origin, impure, ...)
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return out


# ---------------------------------------------------------------- the cache


class LayerStore:
    """Unpacked layers under $COMPOSER_ROOT/layers/<diffid-hex>, each unpacked once and
    shared read-only by every container stacked on it."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.dir = layers_dir(root)

    def path(self, diff_id: str) -> Path:
        return self.dir / _hex(diff_id)

    def has(self, diff_id: str) -> bool:
        return self.path(diff_id).is_dir()

    def ensure_unpacked(self, diff_id: str, blob: BinaryIO | str | os.PathLike) -> Path:
        """The unpacked directory of the layer `diff_id`, unpacking `blob` (a stream or
        path of the compressed layer) the first time. Concurrent callers unpack once."""
        path = self.path(diff_id)
        if path.is_dir():
            return path
        self.dir.mkdir(parents=True, exist_ok=True)
        with Lock(self.dir / f".{path.name}.lock", f"unpack layer {diff_id}", timeout=None):
            if not path.is_dir():
                unpack_layer(blob, path, "auto", expected_diff_id=diff_id)
        return path

    def short_name(self, diff_id: str) -> str:
        """A short name under layers/l/ linking to the layer (made on first use)."""
        hexpart = _hex(diff_id)
        links = self.dir / SHORT_LINKS
        links.mkdir(parents=True, exist_ok=True)
        target = f"../{hexpart}"
        for length in (12, 20, 64):
            name = hexpart[:length]
            link = links / name
            try:
                os.symlink(target, link)
                return name
            except FileExistsError:
                if os.readlink(link) == target:
                    return name
        raise LayerError(f"cannot make a short link for {diff_id}")

    def list(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return [
            "sha256:" + entry.name
            for entry in self.dir.iterdir()
            if len(entry.name) == 64 and entry.is_dir()
        ]

    def remove(self, diff_id: str) -> None:
        hexpart = _hex(diff_id)
        links = self.dir / SHORT_LINKS
        for length in (12, 20, 64):
            link = links / hexpart[:length]
            try:
                if os.readlink(link) == f"../{hexpart}":
                    os.unlink(link)
            except OSError:
                pass
        remove_tree(self.dir / hexpart)
        (self.dir / f".{hexpart}.lock").unlink(missing_ok=True)

    def prune(self, keep: set[str]) -> list[str]:
        """Remove unpacked layers not in `keep` and not under a container; return them."""
        from runtime.images.rootfs import layers_in_use

        in_use = layers_in_use(self.dir.parent)
        removed = []
        for diff_id in self.list():
            if diff_id not in keep and diff_id not in in_use:
                self.remove(diff_id)
                removed.append(diff_id)
        # Leftovers of unpacks that were killed midway.
        if self.dir.is_dir():
            for entry in self.dir.iterdir():
                if entry.name.startswith(".unpack-") and _abandoned(entry):
                    remove_tree(entry)
        return removed


def _abandoned(path: Path) -> bool:
    import time

    try:
        return time.time() - path.stat().st_mtime > 3600
    except FileNotFoundError:
        return False


def _hex(diff_id: str) -> str:
    from runtime.images.store import digest_hex

    return digest_hex(diff_id)
