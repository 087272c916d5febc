"""Image reference parsing: short names keep no registry; bad parts are named."""

from __future__ import annotations

import json

import pytest

from runtime.images.reference import (
    Reference,
    ReferenceError,
    configured_registries,
    normalize,
    parse_reference,
)

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("busybox", Reference(None, "busybox", "latest", None)),
        ("busybox:1.36", Reference(None, "busybox", "1.36", None)),
        ("library/debian:bookworm", Reference(None, "library/debian", "bookworm", None)),
        ("localhost/app", Reference("localhost", "app", "latest", None)),
        ("localhost:5000/team/app:v1", Reference("localhost:5000", "team/app", "v1", None)),
        ("reg.example.test/a/b/c", Reference("reg.example.test", "a/b/c", "latest", None)),
        ("127.0.0.1:5000/app@" + DIGEST, Reference("127.0.0.1:5000", "app", None, DIGEST)),
        ("app:v2@" + DIGEST, Reference(None, "app", "v2", DIGEST)),
        ("[::1]:5000/app:x", Reference("[::1]:5000", "app", "x", None)),
        ("my_app-1.x__y", Reference(None, "my_app-1.x__y", "latest", None)),
    ],
)
def test_parse(text, expected):
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "busybox",
        "busybox:1.36",
        "localhost:5000/team/app:v1",
        "app:v2@" + DIGEST,
        "127.0.0.1:5000/app@" + DIGEST,
    ],
)
def test_str_round_trips(text):
    expected = text if (":" in text.rsplit("/", 1)[-1] or "@" in text) else text + ":latest"
    assert str(parse_reference(text)) == expected
    assert parse_reference(str(parse_reference(text))) == parse_reference(text)


def test_short_name_stays_short():
    ref = parse_reference("debian:bookworm")
    assert ref.registry is None
    assert ref.name == "debian"
    assert normalize("debian") == "debian:latest"
    assert ref.with_registry("localhost:5000").name == "localhost:5000/debian"


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("", "empty"),
        (" busybox", "spaces"),
        ("BusyBox", "lowercase"),
        ("app:bad tag", "tag"),
        ("app:-x", "tag"),
        ("app@sha256:1234", "sha256 needs 64"),
        ("app@nodigest", "digest"),
        ("a//b", "repository"),
        ("app/", "repository"),
        ("localhost:port/app", "registry"),
        ("x" * 256, "repository"),
    ],
)
def test_invalid_references_name_the_part(text, part):
    with pytest.raises(ReferenceError, match=part):
        parse_reference(text)


def test_registries_empty_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPOSER_REGISTRIES", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert configured_registries() == []


def test_registries_from_env_win(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "composer").mkdir()
    (tmp_path / "composer" / "registries.json").write_text(json.dumps({"search": ["b.test"]}))
    monkeypatch.setenv("COMPOSER_REGISTRIES", "localhost:5000, a.test")
    assert configured_registries() == ["localhost:5000", "a.test"]
    monkeypatch.delenv("COMPOSER_REGISTRIES")
    assert configured_registries() == ["b.test"]


def test_registries_file_must_be_a_list(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPOSER_REGISTRIES", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "composer").mkdir()
    (tmp_path / "composer" / "registries.json").write_text(json.dumps({"search": "b.test"}))
    with pytest.raises(ReferenceError, match="list"):
        configured_registries()
