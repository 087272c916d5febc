"""A client for the OCI distribution API (/v2/) on http.client.

One `RegistryClient` talks to one registry host. It speaks HTTPS, and plain HTTP only to
loopback hosts or to registries the user listed as insecure; it answers 401 challenges
through `auth.Authorizer`, follows blob redirects (without our Authorization on other
hosts), verifies every digest it is given or told, and resumes blob downloads with Range.

Connections are kept alive, one per thread, so parallel layer downloads each use their own.

Settings come from registries.json ($XDG_CONFIG_HOME/composer, else ~/.config/composer):

    {"search": ["registry.example:5000"],          # short names (read by reference.py)
     "mirrors": {"registry.example": ["http://127.0.0.1:5001"]},
     "insecure": ["registry.lan:5000"],             # plain HTTP / unverified TLS allowed
     "ca": {"registry.lan:5000": "/path/ca.pem"}}   # extra CA file for that registry
"""

from __future__ import annotations

import hashlib
import http.client
import os
import ssl
import threading
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from runtime.images.auth import AuthError, Authorizer, Credentials, get_credentials
from runtime.record import field, record

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST)
MANIFEST_TYPES = (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)

_AUTO = object()
USER_AGENT = "composer/0.1"
_CHUNK = 1 << 20
_MAX_MANIFEST = 4 << 20  # what registries themselves accept; bounds memory on a bad answer
_LOOPBACK = ("localhost", "127.0.0.1", "::1")
_BUSY = (429, 502, 503, 504)  # worth asking again, for requests that change nothing
_BUSY_RETRIES = 3

__all__ = ["AuthError", "RegistryClient", "RegistryError"]


class RegistryError(Exception):
    """A registry request failed; the message names the registry, the object and the reason."""


class NotFound(RegistryError):
    pass


class DigestError(RegistryError):
    """Content does not match the digest it was fetched or announced by."""


# ---------------------------------------------------------------- settings


def registries_file() -> Path:
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "composer" / "registries.json"


@record(frozen=False)
class RegistrySettings:
    mirrors: dict[str, list[str]] = field(default_factory=dict)
    insecure: set[str] = field(default_factory=set)
    ca_files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> RegistrySettings:
        path = path or registries_file()
        try:
            import json

            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as e:
            raise RegistryError(f"cannot read {path}: {e}") from e
        if not isinstance(data, dict):
            raise RegistryError(f"{path}: expected a JSON object")
        mirrors = data.get("mirrors") or {}
        insecure = data.get("insecure") or []
        ca_files = data.get("ca") or {}
        if not isinstance(mirrors, dict) or not all(
            isinstance(v, list) and all(isinstance(u, str) for u in v) for v in mirrors.values()
        ):
            raise RegistryError(f'{path}: "mirrors" maps a registry to a list of URLs')
        if not isinstance(insecure, list) or not all(isinstance(r, str) for r in insecure):
            raise RegistryError(f'{path}: "insecure" must be a list of registry names')
        if not isinstance(ca_files, dict):
            raise RegistryError(f'{path}: "ca" maps a registry to a CA file')
        return cls(dict(mirrors), set(insecure), {k: str(v) for k, v in ca_files.items()})


def split_host(netloc: str) -> tuple[str, int | None]:
    """("host", port) from "host:port", "[::1]:5000", "::1"."""
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if netloc.count(":") == 1:
        host, port = netloc.split(":")
        return host, int(port)
    return netloc, None


def is_loopback(netloc: str) -> bool:
    return split_host(netloc)[0].lower() in _LOOPBACK


# ---------------------------------------------------------------- digests


def digest_hasher(digest: str):
    algorithm, _, hexpart = digest.partition(":")
    if algorithm not in ("sha256", "sha512") or not hexpart:
        raise DigestError(f"unsupported digest {digest!r}")
    return hashlib.new(algorithm)


def verify_digest(data: bytes, digest: str, what: str) -> None:
    hasher = digest_hasher(digest)
    hasher.update(data)
    actual = f"{digest.split(':')[0]}:{hasher.hexdigest()}"
    if actual != digest:
        raise DigestError(f"{what}: content has digest {actual}, expected {digest}")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@record
class Manifest:
    data: bytes  # exactly as served: its sha256 is the digest
    media_type: str
    digest: str

    def json(self) -> dict:
        from runtime.state import loads

        return loads(self.data)


# ---------------------------------------------------------------- client


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


class RegistryClient:
    """Talks to the registry `registry` ("host[:port]"), or to `url` standing in for it."""

    def __init__(
        self,
        registry: str,
        *,
        url: str | None = None,
        credentials: Credentials | object | None = _AUTO,
        ca_file: str | None = None,
        insecure: bool | None = None,
        settings: RegistrySettings | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.registry = registry
        settings = settings if settings is not None else RegistrySettings.load()
        target = url or registry
        scheme = None
        if "://" in target:
            scheme, target = target.split("://", 1)
            if scheme not in ("http", "https"):
                raise RegistryError(f"{url}: only http:// and https:// registry URLs")
        self.netloc = target.rstrip("/")
        if "/" in self.netloc:
            raise RegistryError(f"{url or registry}: a registry URL has no path")
        # Everything per host is looked up by the host we talk to: a mirror gets neither
        # the upstream's credentials nor its exemptions.
        self.insecure = insecure if insecure is not None else self.netloc in settings.insecure
        self.plain_http_allowed = self.insecure or is_loopback(self.netloc)
        if scheme == "http" and not self.plain_http_allowed:
            raise RegistryError(
                f"{url}: plain HTTP only to loopback hosts or registries listed as insecure"
            )
        self._schemes = [scheme] if scheme else ["https", "http"]
        self.scheme: str | None = scheme if scheme == "http" else None
        self.timeout = timeout
        self.ssl_context = self._ssl_context(ca_file or settings.ca_files.get(self.netloc))
        if credentials is _AUTO:
            credentials = get_credentials(self.netloc)
        self.auth = Authorizer(self.netloc, credentials, self._fetch_token)
        self._local = threading.local()
        self._all_connections: list[http.client.HTTPConnection] = []
        self._pool_lock = threading.Lock()

    def _ssl_context(self, ca_file: str | None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if ca_file:
            context.load_verify_locations(cafile=ca_file)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    # ------------------------------------------------------------ transport

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        conn = pool.get((scheme, netloc))
        if conn is None:
            host, port = split_host(netloc)
            if scheme == "https":
                conn = http.client.HTTPSConnection(
                    host, port, timeout=self.timeout, context=self.ssl_context, blocksize=_CHUNK
                )
            else:
                conn = http.client.HTTPConnection(
                    host, port, timeout=self.timeout, blocksize=_CHUNK
                )
            pool[(scheme, netloc)] = conn
            with self._pool_lock:
                self._all_connections.append(conn)
        return conn

    def _drop(self, scheme: str, netloc: str) -> None:
        pool = getattr(self._local, "pool", {})
        conn = pool.pop((scheme, netloc), None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._pool_lock:
            connections, self._all_connections = self._all_connections, []
        for conn in connections:
            conn.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _send(self, method: str, url: str, headers: dict, body=None) -> http.client.HTTPResponse:
        """One request; a kept-alive connection the server closed meanwhile is reopened once."""
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {"User-Agent": USER_AGENT, **headers}
        start = body.tell() if hasattr(body, "seek") else None
        resendable = start is not None or body is None or isinstance(body, bytes | bytearray)
        for attempt in (0, 1):
            conn = self._connection(parts.scheme, parts.netloc)
            fresh = conn.sock is None
            try:
                conn.request(method, target, body=body, headers=headers)
                return conn.getresponse()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self._drop(parts.scheme, parts.netloc)
                if fresh or attempt or not resendable:
                    raise
                if start is not None:
                    body.seek(start)
            except BaseException:
                self._drop(parts.scheme, parts.netloc)
                raise
        raise AssertionError("unreachable")

    def _fetch_token(self, url: str, headers: dict) -> tuple[int, bytes]:
        parts = urlsplit(url)
        if parts.scheme != "https" and not is_loopback(parts.netloc) and not self.insecure:
            raise AuthError(f"{self.registry}: refusing to send credentials to {url} over HTTP")
        response = self._send("GET", url, {"Accept": "application/json", **headers})
        return response.status, response.read(_MAX_MANIFEST)

    def _base(self) -> str:
        if self.scheme is None:
            self._probe()
        return f"{self.scheme}://{self.netloc}"

    def _probe(self) -> None:
        """Find the scheme: HTTPS, or plain HTTP where allowed and the host does not speak TLS."""
        last: Exception | None = None
        for scheme in self._schemes:
            if scheme == "http" and not self.plain_http_allowed:
                continue
            try:
                response = self._send("GET", f"{scheme}://{self.netloc}/v2/", {})
                response.read()
            except ssl.SSLCertVerificationError as e:
                raise RegistryError(
                    f"{self.registry}: TLS certificate not trusted ({e.verify_message}); "
                    "pass its CA file or list the registry as insecure"
                ) from e
            except (OSError, http.client.HTTPException) as e:
                self._drop(scheme, self.netloc)
                last = e
                continue
            self.scheme = scheme
            return
        raise RegistryError(f"cannot reach registry {self.netloc}: {last}") from last

    def request(
        self,
        method: str,
        path: str,
        *,
        scopes: tuple[str, ...] = (),
        headers: dict | None = None,
        body=None,
        ok: tuple[int, ...] = (200,),
        what: str | None = None,
        authenticate: bool = True,
    ) -> http.client.HTTPResponse:
        """Send `method path` (under the registry root, or an absolute URL) with auth.

        The response is returned unread when its status is in `ok`; otherwise the
        registry's error document becomes a RegistryError (NotFound for 404).
        """
        base = self._base()
        url = path if "://" in path else base + path
        start = body.tell() if hasattr(body, "seek") else None
        authorization = self.auth.header(scopes)
        answered = not authenticate
        busy_retries = 0
        for _hop in range(8 + _BUSY_RETRIES):
            own_host = urlsplit(url).netloc == self.netloc
            sent = dict(headers or {})
            if own_host and authorization:
                sent["Authorization"] = authorization
            response = self._send(method, url, sent, body)
            if response.status == 401 and own_host and not answered:
                challenge = response.getheader("WWW-Authenticate")
                response.read()
                authorization = self.auth.answer(challenge, scopes, sent.get("Authorization"))
                answered = True
                if start is not None:
                    body.seek(start)
                continue
            if response.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
                location = response.getheader("Location")
                response.read()
                if not location:
                    break
                url = urljoin(url, location)
                continue
            if (
                response.status in _BUSY
                and method in ("GET", "HEAD")
                and busy_retries < _BUSY_RETRIES
            ):
                busy_retries += 1
                _pause(response, busy_retries)
                if not response.isclosed():
                    parts = urlsplit(url)
                    self._drop(parts.scheme, parts.netloc)
                continue
            break
        if response.status in ok:
            return response
        detail = _error_text(response, method)
        if not response.isclosed():  # an error body we did not read to its end
            parts = urlsplit(url)
            self._drop(parts.scheme, parts.netloc)
        label = what or f"{method} {urlsplit(url).path}"
        if response.status == 401:
            who = f"as {self.auth.credentials.username}" if self.auth.credentials else "anonymously"
            raise AuthError(f"{self.registry}: authentication failed {who} for {label}{detail}")
        if response.status == 403:
            raise AuthError(f"{self.registry}: access denied for {label}{detail}")
        error = NotFound if response.status == 404 else RegistryError
        raise error(f"{self.registry}: {label}: HTTP {response.status}{detail}")

    # ------------------------------------------------------------ API

    def ping(self) -> None:
        """Check the registry is there and speaks /v2/ (authentication not required)."""
        self.request("GET", "/v2/", ok=(200, 401), authenticate=False).read()

    def check_login(self) -> None:
        """AuthError unless the credentials are accepted (GET /v2/ with auth)."""
        if self.auth.credentials is None:
            raise AuthError(f"{self.registry}: no credentials to check")
        self.request("GET", "/v2/", what="login").read()

    def get_manifest(
        self,
        repository: str,
        reference: str,
        accept: tuple[str, ...] = INDEX_TYPES + MANIFEST_TYPES,
    ) -> Manifest:
        """The manifest or index `reference` (tag or digest), digest-verified."""
        what = f"manifest {repository}:{reference}" if ":" not in reference else None
        what = what or f"manifest {repository}@{reference}"
        response = self.request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            scopes=(pull_scope(repository),),
            headers={"Accept": ", ".join(accept)},
            what=what,
        )
        data = _read_bounded(response, _MAX_MANIFEST, what)
        media_type = (response.getheader("Content-Type") or "").split(";")[0].strip()
        announced = response.getheader("Docker-Content-Digest")
        if reference.startswith(("sha256:", "sha512:")):
            verify_digest(data, reference, what)
            digest = reference
        elif announced:
            verify_digest(data, announced, what)
            digest = announced
        else:
            digest = sha256_digest(data)
        if media_type not in accept:
            # Registries may send a generic type; the document names its own.
            from runtime.state import loads

            try:
                media_type = loads(data).get("mediaType") or media_type
            except (ValueError, AttributeError) as e:
                raise RegistryError(f"{self.registry}: {what} is not JSON") from e
        return Manifest(data, media_type, digest)

    def get_blob(self, repository: str, digest: str, max_size: int = _MAX_MANIFEST) -> bytes:
        """A small blob (an image config) in memory, digest-verified."""
        what = f"blob {digest} in {repository}"
        response = self.request(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            scopes=(pull_scope(repository),),
            what=what,
        )
        data = _read_bounded(response, max_size, what)
        verify_digest(data, digest, what)
        return data

    def download_blob(
        self,
        repository: str,
        digest: str,
        dest: Path,
        size: int | None = None,
        on_progress=None,
        retries: int = 5,
    ) -> None:
        """Fetch a blob into `dest`, continuing a partial `dest` with Range where allowed.

        A connection cut mid-blob is retried from where it stopped (up to `retries` times
        without progress). The whole file is verified against `digest`; on mismatch it is
        deleted and DigestError raised.
        """
        what = f"blob {digest} in {repository}"
        hasher = digest_hasher(digest)
        done = 0
        with open(dest, "ab+") as out:
            out.seek(0)
            while block := out.read(_CHUNK):
                hasher.update(block)
                done += len(block)
            if size is not None and done > size:
                out.truncate(0)
                hasher, done = digest_hasher(digest), 0
            failures = 0
            buffer = memoryview(bytearray(_CHUNK))
            while size is None or done < size or done == 0:
                headers = {"Range": f"bytes={done}-"} if done else {}
                before = done
                try:
                    response = self.request(
                        "GET",
                        f"/v2/{repository}/blobs/{digest}",
                        scopes=(pull_scope(repository),),
                        headers=headers,
                        ok=(200, 206),
                        what=what,
                    )
                    if done and response.status == 200:  # Range ignored: the whole blob
                        out.truncate(0)
                        hasher, done = digest_hasher(digest), 0
                    elif done and not _continues_at(response, done):
                        # Some other range: start over from zero on a fresh request.
                        self._drop_all_here()
                        out.truncate(0)
                        hasher, done = digest_hasher(digest), 0
                        continue
                    total = size if size is not None else done + (response.length or 0)
                    if on_progress:
                        on_progress(digest, done, total)
                    while n := response.readinto(buffer):
                        out.write(buffer[:n])
                        hasher.update(buffer[:n])
                        done += n
                        if size is not None and done > size:
                            break  # more than the manifest says: refused below
                        if on_progress:
                            on_progress(digest, done, total)
                    if size is not None and done > size:
                        self._drop_all_here()
                        break
                    if response.length:  # the server stopped short of its Content-Length
                        raise http.client.IncompleteRead(b"", response.length)
                    if size is None or done >= size:
                        break
                except (OSError, http.client.HTTPException) as e:
                    self._drop_all_here()
                    failures = 0 if done > before else failures + 1
                    if failures > retries:
                        raise RegistryError(
                            f"{self.registry}: {what}: download failed after {done} bytes: {e}"
                        ) from e
            out.flush()
            os.fsync(out.fileno())
        if size is not None and done != size:
            dest.unlink(missing_ok=True)
            raise DigestError(f"{what}: got {done} bytes, the manifest says {size}")
        actual = f"{digest.split(':')[0]}:{hasher.hexdigest()}"
        if actual != digest:
            dest.unlink(missing_ok=True)
            raise DigestError(f"{what}: content has digest {actual}, expected {digest}")

    def _drop_all_here(self) -> None:
        for key in list(getattr(self._local, "pool", {})):
            self._drop(*key)

    def blob_size(self, repository: str, digest: str) -> int | None:
        """The size of a blob the registry has in `repository`, or None (HEAD)."""
        try:
            response = self.request(
                "HEAD",
                f"/v2/{repository}/blobs/{digest}",
                scopes=(push_scope(repository),),
                what=f"blob {digest} in {repository}",
            )
        except NotFound:
            return None
        response.read()
        length = response.getheader("Content-Length")
        return int(length) if length is not None else 0

    def start_upload(
        self, repository: str, digest: str, mount_from: str | None = None
    ) -> str | None:
        """Open an upload session: its URL, or None when the blob was mounted from `mount_from`."""
        from urllib.parse import urlencode

        path = f"/v2/{repository}/blobs/uploads/"
        scopes: tuple[str, ...] = (push_scope(repository),)
        if mount_from and mount_from != repository:
            path += "?" + urlencode({"mount": digest, "from": mount_from})
            scopes += (pull_scope(mount_from),)
        response = self.request(
            "POST",
            path,
            scopes=scopes,
            headers={"Content-Length": "0"},
            ok=(201, 202),
            what=f"upload of {digest} to {repository}",
        )
        response.read()
        if response.status == 201:
            return None
        return self._location(response, "upload")

    def _location(self, response: http.client.HTTPResponse, what: str) -> str:
        location = response.getheader("Location")
        if not location:
            raise RegistryError(f"{self.registry}: {what} answer without a Location")
        return urljoin(self._base() + "/", location)

    def upload_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        open_blob,
        *,
        mount_from: str | None = None,
        chunk_size: int | None = None,
        on_progress=None,
    ) -> str:
        """Upload the blob `open_blob()` returns (a binary file); "mounted" or "uploaded".

        Without `chunk_size` the blob goes in one PUT (monolithic); with it, as PATCHes of
        that size, then a closing PUT carrying the digest, which the registry verifies.
        """
        location = self.start_upload(repository, digest, mount_from)
        if location is None:
            if on_progress:
                on_progress(digest, size, size)
            return "mounted"
        scopes = (push_scope(repository),)
        what = f"upload of {digest} to {repository}"
        if chunk_size is None or size <= chunk_size:
            body = _ProgressReader(open_blob, digest, size, on_progress)
            try:
                response = self.request(
                    "PUT",
                    _with_query(location, digest=digest),
                    scopes=scopes,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(size),
                    },
                    body=body,
                    ok=(201,),
                    what=what,
                )
            finally:
                body.close()
            response.read()
        else:
            with open_blob() as blob:
                offset = 0
                while offset < size:
                    data = blob.read(chunk_size)
                    if not data:
                        raise RegistryError(f"{what}: the blob ended at {offset} of {size} bytes")
                    response = self.request(
                        "PATCH",
                        location,
                        scopes=scopes,
                        headers={
                            "Content-Type": "application/octet-stream",
                            "Content-Length": str(len(data)),
                            "Content-Range": f"{offset}-{offset + len(data) - 1}",
                        },
                        body=data,
                        ok=(202,),
                        what=what,
                    )
                    response.read()
                    location = self._location(response, what)
                    offset += len(data)
                    if on_progress:
                        on_progress(digest, offset, size)
                if blob.read(1):
                    raise RegistryError(f"{what}: the blob is longer than {size} bytes")
            response = self.request(
                "PUT",
                _with_query(location, digest=digest),
                scopes=scopes,
                headers={"Content-Length": "0"},
                ok=(201,),
                what=what,
            )
            response.read()
        stored = response.getheader("Docker-Content-Digest")
        if stored and stored != digest:
            raise DigestError(f"{what}: the registry stored {stored}")
        return "uploaded"

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        """PUT a manifest (exact bytes) under a tag or digest; its digest."""
        digest = sha256_digest(data)
        response = self.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            scopes=(push_scope(repository),),
            headers={"Content-Type": media_type, "Content-Length": str(len(data))},
            body=data,
            ok=(201,),
            what=f"manifest {repository}:{reference}",
        )
        response.read()
        stored = response.getheader("Docker-Content-Digest")
        if stored and stored != digest:
            raise DigestError(f"manifest {repository}:{reference}: the registry stored {stored}")
        return digest

    def list_tags(self, repository: str) -> list[str]:
        from runtime.state import loads

        response = self.request(
            "GET", f"/v2/{repository}/tags/list", scopes=(pull_scope(repository),)
        )
        return list(loads(_read_bounded(response, _MAX_MANIFEST, "tag list")).get("tags") or [])


class _ProgressReader:
    """A blob body for http.client: reports what has been sent; seek(0) reopens it."""

    def __init__(self, open_blob, digest: str, size: int, on_progress) -> None:
        self._open, self._digest, self._size, self._on_progress = (
            open_blob,
            digest,
            size,
            on_progress,
        )
        self._f = None
        self._sent = 0

    def read(self, n: int = -1) -> bytes:
        if self._f is None:
            self._f = self._open()
        data = self._f.read(n)
        self._sent += len(data)
        if self._on_progress and data:
            self._on_progress(self._digest, self._sent, self._size)
        return data

    def tell(self) -> int:
        return self._sent

    def seek(self, offset: int, whence: int = 0) -> int:
        if (offset, whence) != (0, 0):
            raise OSError("an upload body only rewinds to its start")
        self.close()
        self._sent = 0
        return 0

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def _pause(response: http.client.HTTPResponse, attempt: int) -> None:
    """Wait before asking a busy registry again: its Retry-After (capped), else 0.5 s, 1 s, 2 s."""
    import time

    response.read(64 * 1024)
    try:
        wait = float(response.getheader("Retry-After") or "")
    except ValueError:
        wait = 0.5 * 2 ** (attempt - 1)
    time.sleep(min(max(wait, 0.0), 10.0))


def _continues_at(response: http.client.HTTPResponse, offset: int) -> bool:
    """Whether a response to `Range: bytes=offset-` really starts at `offset`."""
    content_range = response.getheader("Content-Range") or ""
    unit, _, span = content_range.partition(" ")
    return unit == "bytes" and span.split("-")[0] == str(offset)


def _with_query(url: str, **params: str) -> str:
    from urllib.parse import urlencode

    return url + ("&" if "?" in url else "?") + urlencode(params)


def _read_bounded(response: http.client.HTTPResponse, limit: int, what: str) -> bytes:
    data = response.read(limit + 1)
    if len(data) > limit:
        response.close()
        raise RegistryError(f"{what}: larger than {limit} bytes")
    return data


def _error_text(response: http.client.HTTPResponse, method: str) -> str:
    """The registry's `{"errors": [{"code", "message"}]}` as text, if it sent one."""
    body = response.read(64 * 1024)
    if method == "HEAD":
        return ""
    try:
        from runtime.state import loads

        errors = loads(body).get("errors") or []
        text = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errors)
    except (ValueError, AttributeError, TypeError):
        text = body.decode(errors="replace").strip()[:200]
    return f" ({text})" if text else ""
