"""Registry client pieces that need no registry: challenges, credentials, settings, platforms."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from runtime.images.auth import (
    AuthError,
    Authorizer,
    Credentials,
    erase_credentials,
    get_credentials,
    parse_challenges,
    registry_key,
    store_credentials,
)
from runtime.images.pull import parse_platform, select_manifest
from runtime.images.registry import (
    DigestError,
    NotFound,
    RegistryClient,
    RegistryError,
    RegistrySettings,
    is_loopback,
    sha256_digest,
    split_host,
    verify_digest,
)

# ---------------------------------------------------------------- challenges


def test_bearer_challenge_with_quoted_commas():
    [challenge] = parse_challenges(
        'Bearer realm="https://auth.test/token",service="reg.test",scope="repository:a/b:pull,push"'
    )
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.test/token",
        "service": "reg.test",
        "scope": "repository:a/b:pull,push",
    }


def test_several_challenges_and_unquoted_values():
    challenges = parse_challenges(
        'Basic realm="x y", Bearer realm=https://t.test/tok, error=invalid'
    )
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert challenges[0].params == {"realm": "x y"}
    assert challenges[1].params == {"realm": "https://t.test/tok", "error": "invalid"}


def test_escaped_quote_in_value():
    [challenge] = parse_challenges(r'Basic realm="say \"hi\""')
    assert challenge.params["realm"] == 'say "hi"'


# ---------------------------------------------------------------- authorizer


class TokenService:
    """Stands in for the realm's HTTP answer; records the requests."""

    def __init__(self, status: int = 200, body: dict | None = None) -> None:
        self.status = status
        self.body = body if body is not None else {"token": "T1", "expires_in": 300}
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, url: str, headers: dict) -> tuple[int, bytes]:
        self.calls.append((url, headers))
        return self.status, json.dumps(self.body).encode()


CHALLENGE = 'Bearer realm="https://auth.test/token",service="reg.test",scope="repository:a:pull"'


def test_bearer_token_is_fetched_with_service_scopes_and_credentials_then_cached():
    service = TokenService()
    auth = Authorizer("reg.test", Credentials("u", "p"), service)
    scopes = ("repository:a:pull",)
    assert auth.header(scopes) is None
    assert auth.answer(CHALLENGE, scopes) == "Bearer T1"
    [(url, headers)] = service.calls
    query = parse_qs(urlsplit(url).query)
    assert query == {"service": ["reg.test"], "scope": ["repository:a:pull"]}
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    assert auth.header(scopes) == "Bearer T1"
    assert auth.header(("repository:other:pull",)) is None  # another scope, another token


def test_challenge_scope_is_added_to_what_we_ask_for():
    service = TokenService(body={"access_token": "T2"})
    auth = Authorizer("reg.test", None, service)
    assert auth.answer(CHALLENGE, ("repository:b:pull,push",)) == "Bearer T2"
    query = parse_qs(urlsplit(service.calls[0][0]).query)
    assert query["scope"] == ["repository:b:pull,push", "repository:a:pull"]
    assert "Authorization" not in service.calls[0][1]  # anonymous


def test_challenge_scope_already_covered_is_not_repeated():
    service = TokenService()
    Authorizer("reg.test", None, service).answer(CHALLENGE, ("repository:a:pull,push",))
    assert parse_qs(urlsplit(service.calls[0][0]).query)["scope"] == ["repository:a:pull,push"]


def test_challenge_with_several_scopes_asks_for_each():
    service = TokenService()
    challenge = (
        'Bearer realm="https://auth.test/token",scope="repository:a:pull,push repository:b:pull"'
    )
    Authorizer("reg.test", None, service).answer(challenge, ("repository:a:pull,push",))
    query = parse_qs(urlsplit(service.calls[0][0]).query)
    assert query["scope"] == ["repository:a:pull,push", "repository:b:pull"]


def test_token_fetched_meanwhile_is_reused_and_a_refused_one_replaced():
    service = TokenService()
    auth = Authorizer("reg.test", None, service)
    scopes = ("repository:a:pull",)
    assert auth.answer(CHALLENGE, scopes) == "Bearer T1"
    # A request sent before the token existed: it gets the token without a new fetch.
    assert auth.answer(CHALLENGE, scopes, sent=None) == "Bearer T1"
    assert len(service.calls) == 1
    # The token itself was refused: fetch another.
    service.body = {"token": "T2"}
    assert auth.answer(CHALLENGE, scopes, sent="Bearer T1") == "Bearer T2"
    assert len(service.calls) == 2


def test_refused_token_request_is_an_auth_error():
    auth = Authorizer("reg.test", Credentials("u", "bad"), TokenService(status=401))
    with pytest.raises(AuthError, match="refused the credentials"):
        auth.answer(CHALLENGE, ())


def test_basic_challenge_needs_credentials():
    with pytest.raises(AuthError, match="requires authentication"):
        Authorizer("reg.test", None, TokenService()).answer('Basic realm="r"', ())
    auth = Authorizer("reg.test", Credentials("u", "p"), TokenService())
    assert auth.answer('Basic realm="r"', ()).startswith("Basic ")
    assert auth.header(("anything",)).startswith("Basic ")


def test_challenge_without_known_scheme():
    with pytest.raises(AuthError, match="without a usable challenge"):
        Authorizer("reg.test", None, TokenService()).answer("Negotiate", ())


# ---------------------------------------------------------------- config.json


def test_credentials_round_trip_keep_other_keys_and_mode_0600(tmp_path: Path):
    path = tmp_path / "docker" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"auths": {"other.test": {"auth": "eDp5"}}, "psFormat": "x"}))
    store_credentials("https://reg.test:5000/v1/", "alice", "pa:ss", path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["psFormat"] == "x"
    assert set(data["auths"]) == {"other.test", "reg.test:5000"}
    assert get_credentials("reg.test:5000", path) == Credentials("alice", "pa:ss")
    assert get_credentials("other.test", path) == Credentials("x", "y")
    assert get_credentials("missing.test", path) is None
    assert erase_credentials("reg.test:5000", path)
    assert get_credentials("reg.test:5000", path) is None
    assert not erase_credentials("reg.test:5000", path)


def test_credentials_as_username_and_password_fields(tmp_path: Path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"http://reg.test": {"username": "u", "password": "p"}}}))
    assert get_credentials("reg.test", path) == Credentials("u", "p")


def test_missing_config_file_means_no_credentials(tmp_path: Path):
    assert get_credentials("reg.test", tmp_path / "absent.json") is None


def test_registry_key_strips_scheme_and_path():
    assert registry_key("https://reg.test:5000/v1/") == "reg.test:5000"
    assert registry_key("reg.test") == "reg.test"


# ---------------------------------------------------------------- settings and hosts


def test_settings_file(tmp_path: Path):
    path = tmp_path / "registries.json"
    assert RegistrySettings.load(path) == RegistrySettings()
    path.write_text(
        json.dumps(
            {
                "search": ["reg.test"],
                "mirrors": {"reg.test": ["http://127.0.0.1:5001"]},
                "insecure": ["lan.test:5000"],
                "ca": {"reg.test": "/ca.pem"},
            }
        )
    )
    settings = RegistrySettings.load(path)
    assert settings.mirrors == {"reg.test": ["http://127.0.0.1:5001"]}
    assert settings.insecure == {"lan.test:5000"}
    assert settings.ca_files == {"reg.test": "/ca.pem"}


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"mirrors": {"reg.test": "http://x"}}', "mirrors"),
        ('{"insecure": "reg.test"}', "insecure"),
        ("[1]", "JSON object"),
        ("{bad", "cannot read"),
    ],
)
def test_bad_settings_are_explained(tmp_path: Path, content: str, message: str):
    path = tmp_path / "registries.json"
    path.write_text(content)
    with pytest.raises(RegistryError, match=message):
        RegistrySettings.load(path)


@pytest.mark.parametrize(
    "netloc, host, port",
    [
        ("127.0.0.1:5000", "127.0.0.1", 5000),
        ("[::1]:5000", "::1", 5000),
        ("[::1]", "::1", None),
        ("reg.test", "reg.test", None),
    ],
)
def test_split_host(netloc: str, host: str, port: int | None):
    assert split_host(netloc) == (host, port)


def test_loopback_hosts():
    assert is_loopback("localhost:5000")
    assert is_loopback("127.0.0.1")
    assert is_loopback("[::1]:80")
    assert not is_loopback("reg.test:5000")
    assert not is_loopback("127.0.0.2.test")


def test_plain_http_only_to_loopback_or_insecure():
    with pytest.raises(RegistryError, match="plain HTTP only"):
        RegistryClient(
            "reg.test", url="http://reg.test", settings=RegistrySettings(), credentials=None
        )
    client = RegistryClient(
        "reg.test", settings=RegistrySettings(insecure={"reg.test"}), credentials=None
    )
    assert client.plain_http_allowed
    assert RegistryClient(
        "127.0.0.1:5000", settings=RegistrySettings(), credentials=None
    ).plain_http_allowed
    assert not RegistryClient(
        "reg.test", settings=RegistrySettings(), credentials=None
    ).plain_http_allowed


def test_a_mirror_gets_its_own_credentials_and_ca_not_the_upstreams(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    store_credentials("reg.test", "u", "p", tmp_path / "config.json")
    settings = RegistrySettings(insecure={"reg.test"}, ca_files={"reg.test": "/nonexistent.pem"})
    upstream = RegistryClient("reg.test", settings=RegistrySettings(insecure={"reg.test"}))
    assert upstream.auth.credentials == Credentials("u", "p")
    mirror = RegistryClient("reg.test", url="https://mirror.test:5000", settings=settings)
    assert mirror.auth.credentials is None
    assert not mirror.insecure


def test_mirror_url_with_a_path_is_refused():
    with pytest.raises(RegistryError, match="no path"):
        RegistryClient(
            "reg.test",
            url="https://mirror.test/prefix",
            settings=RegistrySettings(),
            credentials=None,
        )


# ---------------------------------------------------------------- digests


def test_digest_verification():
    data = b"hello"
    digest = sha256_digest(data)
    verify_digest(data, digest, "x")
    with pytest.raises(DigestError, match="expected sha256:"):
        verify_digest(b"hellO", digest, "x")
    with pytest.raises(DigestError, match="unsupported digest"):
        verify_digest(data, "md5:abc", "x")


# ---------------------------------------------------------------- platforms


def _index(*platforms: dict) -> dict:
    return {
        "manifests": [
            {"digest": f"sha256:{i:064x}", "platform": platform}
            for i, platform in enumerate(platforms)
        ]
    }


def test_platform_chosen_by_os_and_architecture():
    index = _index(
        {"os": "linux", "architecture": "arm64"},
        {"os": "windows", "architecture": "amd64"},
        {"os": "linux", "architecture": "amd64"},
    )
    assert select_manifest(index, {"os": "linux", "architecture": "amd64"})["digest"].endswith("2")


def test_exact_variant_wins_and_arm64_means_v8():
    index = _index(
        {"os": "linux", "architecture": "arm", "variant": "v6"},
        {"os": "linux", "architecture": "arm", "variant": "v7"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
    )
    assert select_manifest(index, parse_platform("linux/arm/v7"))["digest"].endswith("1")
    assert select_manifest(index, parse_platform("linux/arm64"))["digest"].endswith("2")
    with pytest.raises(NotFound, match=r"linux/arm/v5.*offered: linux/arm/v6"):
        select_manifest(index, parse_platform("linux/arm/v5"))


def test_attestation_entries_are_not_a_platform():
    index = _index({"os": "unknown", "architecture": "unknown"})
    with pytest.raises(NotFound, match="offered: unknown/unknown"):
        select_manifest(index, {"os": "linux", "architecture": "amd64"})


@pytest.mark.parametrize("text", ["linux", "linux/", "a/b/c/d"])
def test_bad_platform_text(text: str):
    with pytest.raises(ValueError, match="os/architecture"):
        parse_platform(text)
