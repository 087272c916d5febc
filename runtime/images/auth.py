"""Registry credentials and the distribution auth handshake.

Credentials live where other container tools keep them, so one login serves all:
$DOCKER_CONFIG/config.json or ~/.docker/config.json, `{"auths": {"<registry>": {"auth":
base64("user:password")}}}`. Credential helpers (`credsStore`, `credHelpers`) are not run.

A registry answers 401 with `WWW-Authenticate`: `Basic realm=...` (send the credentials)
or `Bearer realm=...,service=...,scope=...` (trade the credentials for a token at the
realm, then send the token). `Authorizer` does both and caches tokens per scope.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from pathlib import Path

from runtime.record import field, record

CONFIG_ENV = "DOCKER_CONFIG"


class AuthError(Exception):
    """The registry refused our credentials (or wants some and we have none)."""


@record
class Credentials:
    username: str
    password: str

    def basic_header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"


# ---------------------------------------------------------------- config.json


def config_path() -> Path:
    directory = os.environ.get(CONFIG_ENV)
    return Path(directory) / "config.json" if directory else Path.home() / ".docker/config.json"


def registry_key(registry: str) -> str:
    """`https://host:port/v1/` and `host:port` name the same entry in config.json."""
    key = registry.strip()
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key.split("/", 1)[0]


def _read_config(path: Path) -> dict:
    from runtime.state import read_json

    try:
        data = read_json(path, {})
    except ValueError as e:
        raise AuthError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise AuthError(f"{path}: expected a JSON object")
    return data


def get_credentials(registry: str, path: Path | None = None) -> Credentials | None:
    """The stored credentials for `registry`, or None."""
    path = path or config_path()
    auths = _read_config(path).get("auths") or {}
    wanted = registry_key(registry)
    for key, entry in auths.items():
        if registry_key(key) != wanted or not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as e:
                raise AuthError(f"{path}: bad auth entry for {key}: {e}") from e
            return Credentials(user, password)
        if entry.get("username"):
            return Credentials(entry["username"], entry.get("password", ""))
    return None


def _write_private(path: Path, data: dict) -> None:
    """Atomic replace, created 0600: the file holds passwords."""
    from runtime.state import dumps

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a leftover tmp file
        os.write(fd, (dumps(data) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def store_credentials(
    registry: str, username: str, password: str, path: Path | None = None
) -> Path:
    """Record credentials for `registry`, keeping every other key of the file."""
    path = path or config_path()
    data = _read_config(path)
    auths = data.setdefault("auths", {})
    for key in [k for k in auths if registry_key(k) == registry_key(registry)]:
        del auths[key]
    auths[registry_key(registry)] = {
        "auth": base64.b64encode(f"{username}:{password}".encode()).decode()
    }
    _write_private(path, data)
    return path


def erase_credentials(registry: str, path: Path | None = None) -> bool:
    """Forget credentials for `registry`; False if there were none."""
    path = path or config_path()
    data = _read_config(path)
    auths = data.get("auths") or {}
    keys = [k for k in auths if registry_key(k) == registry_key(registry)]
    for key in keys:
        del auths[key]
    if keys:
        _write_private(path, data)
    return bool(keys)


def login(
    registry: str, username: str, password: str, *, path: Path | None = None, **client_options
) -> Path:
    """Check the credentials against `registry` and store them; AuthError if refused."""
    from runtime.images.registry import RegistryClient

    credentials = Credentials(username, password)
    client = RegistryClient(registry, credentials=credentials, **client_options)
    try:
        client.check_login()
    finally:
        client.close()
    return store_credentials(registry, username, password, path)


# ---------------------------------------------------------------- challenges


@record
class Challenge:
    scheme: str  # lower case: "basic" or "bearer"
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate value: `Scheme k="v", k2=v2, Scheme2 ...` (RFC 7235)."""
    challenges: list[Challenge] = []
    i, n = 0, len(header)
    while i < n:
        while i < n and header[i] in " ,":
            i += 1
        start = i
        while i < n and header[i] not in " ,=":
            i += 1
        word = header[start:i]
        if not word:
            break
        if i < n and header[i] == "=" and challenges:
            i, value = _param_value(header, i + 1)
            challenges[-1].params[word.lower()] = value
        else:
            challenges.append(Challenge(word.lower(), {}))
    return challenges


def _param_value(text: str, i: int) -> tuple[int, str]:
    if i < len(text) and text[i] == '"':
        out = []
        i += 1
        while i < len(text) and text[i] != '"':
            if text[i] == "\\" and i + 1 < len(text):
                i += 1
            out.append(text[i])
            i += 1
        return i + 1, "".join(out)
    start = i
    while i < len(text) and text[i] != ",":
        i += 1
    return i, text[start:i].strip()


# ---------------------------------------------------------------- authorizer


class Authorizer:
    """What to send in `Authorization` for a registry, learnt from its 401 challenges.

    `fetch(url, headers) -> (status, body_bytes)` makes the token request; the registry
    client passes its own transport so the CA file and proxies apply to the realm too.
    """

    def __init__(self, registry: str, credentials: Credentials | None, fetch) -> None:
        self.registry = registry
        self.credentials = credentials
        self._fetch = fetch
        self._lock = threading.Lock()
        self._fetching = threading.Lock()
        self._scheme: str | None = None  # set by the first challenge
        self._bearer: dict[str, str] = {}  # realm/service from the challenge
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}  # scopes → (token, expiry)

    def header(self, scopes: tuple[str, ...]) -> str | None:
        with self._lock:
            if self._scheme == "basic" and self.credentials:
                return self.credentials.basic_header()
            if self._scheme == "bearer":
                cached = self._tokens.get(scopes)
                if cached and cached[1] > time.monotonic():
                    return f"Bearer {cached[0]}"
        return None

    def answer(self, header: str | None, scopes: tuple[str, ...], sent: str | None = None) -> str:
        """Handle a 401's challenge; the Authorization value to retry with.

        `sent` is the Authorization the refused request carried: when another thread has
        fetched a newer token for the same scopes meanwhile, that one is used instead.
        """
        challenges = parse_challenges(header or "")
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if bearer is not None:
            wanted = scopes
            # The challenge may name several scopes, space separated (e.g. for a mount).
            for scope in bearer.params.get("scope", "").split():
                if not _covered(scope, wanted):
                    wanted = (*wanted, scope)
            # One token request at a time: parallel downloads all start with a 401.
            with self._fetching:
                fresh = self.header(scopes)
                if fresh and fresh.startswith("Bearer ") and fresh != sent:
                    return fresh
                token, expiry = self._token(bearer.params, wanted)
                with self._lock:
                    self._scheme = "bearer"
                    # Filed under what callers ask for, so their next request sends it at once.
                    self._tokens[scopes] = (token, expiry)
            return f"Bearer {token}"
        if basic is not None:
            if not self.credentials:
                raise AuthError(
                    f"{self.registry} requires authentication: log in first (composer login)"
                )
            with self._lock:
                self._scheme = "basic"
            return self.credentials.basic_header()
        raise AuthError(f"{self.registry} answered 401 without a usable challenge: {header!r}")

    def _token(self, params: dict[str, str], scopes: tuple[str, ...]) -> tuple[str, float]:
        from urllib.parse import urlencode

        realm = params.get("realm")
        if not realm:
            raise AuthError(f"{self.registry}: Bearer challenge without a realm")
        query = [("service", params["service"])] if params.get("service") else []
        query += [("scope", s) for s in scopes]
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        headers = {"Authorization": self.credentials.basic_header()} if self.credentials else {}
        status, body = self._fetch(url, headers)
        if status in (401, 403):
            raise AuthError(
                f"{self.registry}: the token service refused "
                + ("the credentials" if self.credentials else "anonymous access")
                + f" (HTTP {status})"
            )
        if status != 200:
            raise AuthError(f"{self.registry}: token request to {realm} failed (HTTP {status})")
        from runtime.state import loads

        try:
            data = loads(body)
            token = data.get("token") or data["access_token"]
        except (ValueError, KeyError, AttributeError) as e:
            raise AuthError(f"{self.registry}: bad token response from {realm}") from e
        lifetime = float(data.get("expires_in") or 60)
        # Renew a little early so a token does not expire between check and use.
        return token, time.monotonic() + max(lifetime - 10, lifetime / 2)


def _covered(scope: str, scopes: tuple[str, ...]) -> bool:
    """Whether `scope` ("repository:name:pull") asks for nothing `scopes` does not."""
    resource, _, actions = scope.rpartition(":")
    for have in scopes:
        have_resource, _, have_actions = have.rpartition(":")
        if have_resource == resource and set(actions.split(",")) <= set(have_actions.split(",")):
            return True
    return False
