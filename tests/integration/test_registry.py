"""Pull and push against a real registry (Debian's docker-registry) on 127.0.0.1."""

from __future__ import annotations

import http.client
import http.server
import io
import json
import os
import stat
import sys
import tarfile
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from images import BUSYBOX_CONFIG, busybox_image, busybox_tar
from registry_server import RegistryServer, TokenServer
from rootfs import unique_id

from runtime.images.auth import AuthError, Credentials, login
from runtime.images.pull import ingest_dir, pull
from runtime.images.push import push
from runtime.images.registry import (
    MEDIA_DOCKER_LIST,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX,
    DigestError,
    NotFound,
    RegistryClient,
    RegistryError,
    RegistrySettings,
)
from runtime.images.store import ImageStore, host_platform


@pytest.fixture(autouse=True)
def private_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No user's registries.json, credentials or search list leaks into a test."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.delenv("COMPOSER_REGISTRIES", raising=False)
    monkeypatch.setenv("COMPOSER_ROOT", str(tmp_path / "composer-root"))
    return tmp_path / "xdg" / "composer" / "registries.json"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    with RegistryServer(tmp_path_factory.mktemp("registry")) as server:
        yield server


@pytest.fixture
def source(tmp_path: Path) -> ImageStore:
    store = ImageStore(tmp_path / "source")
    busybox_image(store)
    return store


@pytest.fixture
def fresh(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "fresh")


def repo(registry: RegistryServer, tag: str = "1") -> str:
    return f"{registry.host}/{unique_id('test')}/busybox:{tag}"


def write_settings(path: Path, settings: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings))


# ---------------------------------------------------------------- push and pull


def test_pushed_image_pulls_back_with_the_same_digests(registry, source, fresh):
    name = repo(registry)
    progress: list[tuple[str, int, int]] = []
    pushed = push("busybox:latest", name, source, on_progress=lambda *p: progress.append(p))
    original = source.resolve("busybox:latest")
    assert pushed == original.digest

    pulled = pull(name, fresh, on_progress=lambda *p: progress.append(p))

    assert pulled.digest == original.digest
    assert pulled.id == original.id
    assert [layer.digest for layer in pulled.layers] == [d.digest for d in original.layers]
    assert pulled.diff_ids == original.diff_ids
    assert fresh.resolve(name).digest == original.digest
    layer = original.layers[0]
    assert fresh.read_blob(layer.digest) == source.read_blob(layer.digest)
    assert (layer.digest, layer.size, layer.size) in progress
    assert not list(ingest_dir(fresh).glob("*.partial"))


def test_second_push_finds_blobs_and_another_repository_mounts_them(registry, source, fresh):
    name = repo(registry)
    push("busybox:latest", name, source)
    pull(name, fresh)
    again: dict[str, str] = {}
    push("busybox:latest", name, source, on_blob=lambda d, how: again.__setitem__(d, how))
    assert set(again.values()) == {"exists"}

    # The pulled image is named on this registry, so its blobs can be mounted from there.
    moved: dict[str, str] = {}
    other = repo(registry)
    push(name, other, fresh, on_blob=lambda d, how: moved.__setitem__(d, how))
    assert set(moved.values()) == {"mounted"}
    client = RegistryClient(registry.host)
    other_repo = other.split("/", 1)[1].rsplit(":", 1)[0]
    assert client.get_manifest(other_repo, "1").digest == fresh.resolve(name).digest


def test_chunked_upload(registry, source, fresh):
    name = repo(registry)
    how: dict[str, str] = {}
    push("busybox:latest", name, source, chunk_size=256 * 1024, on_blob=how.__setitem__)
    assert "uploaded" in how.values()
    assert pull(name, fresh).digest == source.resolve("busybox:latest").digest


def test_pull_by_digest_and_list_tags(registry, source, fresh):
    name = repo(registry)
    digest = push("busybox:latest", name, source)
    base = name.rsplit(":", 1)[0]
    image = pull(f"{base}@{digest}", fresh)
    assert image.digest == digest
    assert fresh.resolve(digest).digest == digest
    assert RegistryClient(registry.host).list_tags(base.split("/", 1)[1]) == ["1"]
    with pytest.raises(DigestError):  # a digest that is not the image's own
        push("busybox:latest", f"{base}@sha256:{'0' * 64}", source)


def test_missing_tag_is_not_found(registry, fresh):
    with pytest.raises(NotFound, match=r"MANIFEST_UNKNOWN|NAME_UNKNOWN"):
        pull(repo(registry, "nope"), fresh)
    assert not (fresh.root / "index.json").exists() or fresh.list_images() == []


def test_short_name_goes_only_to_configured_registries(registry, source, fresh, monkeypatch):
    name = repo(registry)
    push("busybox:latest", name, source)
    short = name.split("/", 1)[1]
    with pytest.raises(RegistryError, match="none is configured"):
        pull(short, fresh)
    monkeypatch.setenv("COMPOSER_REGISTRIES", registry.host)
    image = pull(short, fresh)
    assert fresh.resolve(short).digest == image.digest
    assert fresh.resolve(name).digest == image.digest


def test_several_layers_come_down_in_parallel_with_progress(registry, source, fresh):
    base = source.resolve("busybox:latest")
    layers, diff_ids = list(base.layers), list(base.diff_ids)
    for i in range(4):
        tar = io.BytesIO()
        with tarfile.open(fileobj=tar, mode="w") as archive:
            data = os.urandom(300_000)
            member = tarfile.TarInfo(f"extra-{i}.bin")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
        tar.seek(0)
        descriptor, diff_id = source.add_layer_from_tar(tar, "gzip")
        layers.append(descriptor)
        diff_ids.append(diff_id)
    config = dict(base.config, rootfs={"type": "layers", "diff_ids": diff_ids})
    source.put_image(None, config, layers, name="layered:latest")
    name = repo(registry)
    pushed = push("layered:latest", name, source)

    progress: dict[str, tuple[int, int]] = {}
    threads: set[str] = set()

    def on_progress(digest: str, done: int, total: int) -> None:
        progress[digest] = (done, total)
        threads.add(threading.current_thread().name)

    image = pull(name, fresh, on_progress=on_progress, max_parallel=3)
    assert image.digest == pushed
    assert [layer.digest for layer in image.layers] == [layer.digest for layer in layers]
    assert progress == {layer.digest: (layer.size, layer.size) for layer in layers}
    assert 1 < len(threads) <= 3


def test_docker_schema2_manifest_keeps_its_type_and_digest(registry, source, fresh):
    image = source.resolve("busybox:latest")
    name = repo(registry)
    push("busybox:latest", name, source)
    manifest = json.loads(source.read_blob(image.digest))
    manifest["mediaType"] = MEDIA_DOCKER_MANIFEST
    manifest["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json"
    for layer in manifest["layers"]:
        layer["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    data = json.dumps(manifest, indent=3).encode()  # any spelling: the bytes make the digest
    repository = name.split("/", 1)[1].rsplit(":", 1)[0]
    digest = RegistryClient(registry.host).put_manifest(
        repository, "docker", data, MEDIA_DOCKER_MANIFEST
    )
    pulled = pull(f"{registry.host}/{repository}:docker", fresh)
    assert pulled.digest == digest
    assert fresh.read_blob(digest) == data
    assert pulled.manifest["mediaType"] == MEDIA_DOCKER_MANIFEST


# ---------------------------------------------------------------- platforms


@pytest.mark.parametrize("index_type", [MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST])
def test_manifest_list_picks_this_machines_platform(registry, source, fresh, index_type):
    ours = source.resolve("busybox:latest")
    other_arch = "arm64" if host_platform()["architecture"] != "arm64" else "amd64"
    theirs = source.import_rootfs_tar(
        io.BytesIO(busybox_tar()),
        "busybox-other:latest",
        config={"architecture": other_arch, "os": "linux", "config": dict(BUSYBOX_CONFIG)},
    )
    assert theirs.digest != ours.digest
    base = repo(registry).rsplit(":", 1)[0]
    push("busybox:latest", f"{base}@{ours.digest}", source)
    push("busybox-other:latest", f"{base}@{theirs.digest}", source)

    def entry(image, platform):
        raw = source.read_blob(image.digest)
        media_type = json.loads(raw)["mediaType"]
        return {
            "mediaType": media_type,
            "digest": image.digest,
            "size": len(raw),
            "platform": platform,
        }

    index = {
        "schemaVersion": 2,
        "mediaType": index_type,
        "manifests": [  # ours second: the choice is by platform, not by position
            entry(theirs, {"os": "linux", "architecture": other_arch}),
            entry(ours, host_platform()),
        ],
    }
    client = RegistryClient(registry.host)
    client.put_manifest(base.split("/", 1)[1], "multi", json.dumps(index).encode(), index_type)

    assert pull(f"{base}:multi", fresh).digest == ours.digest
    other = pull(
        f"{base}:multi", ImageStore(fresh.state_root / "other"), platform=f"linux/{other_arch}"
    )
    assert other.digest == theirs.digest
    with pytest.raises(NotFound, match="no manifest for platform linux/s390x"):
        pull(f"{base}:multi", ImageStore(fresh.state_root / "x"), platform="linux/s390x")


# ---------------------------------------------------------------- integrity


def test_tampered_blob_is_refused(registry, source, fresh):
    name = repo(registry)
    push("busybox:latest", name, source)
    layer = source.resolve("busybox:latest").layers[0]
    blob = registry.blob_file(layer.digest)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    blob.write_bytes(bytes(data))
    try:
        with pytest.raises(DigestError, match=f"expected {layer.digest}"):
            pull(name, fresh)
        assert not fresh.has_blob(layer.digest)
        assert fresh.resolve(name) is None
        assert not list(ingest_dir(fresh).glob("*.partial"))
    finally:
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))


def test_layer_longer_than_its_manifest_says_is_refused(registry, source, fresh):
    name = repo(registry)
    push("busybox:latest", name, source)
    image = source.resolve("busybox:latest")
    manifest = json.loads(source.read_blob(image.digest))
    manifest["layers"][0]["size"] -= 100
    repository = name.split("/", 1)[1].rsplit(":", 1)[0]
    RegistryClient(registry.host).put_manifest(
        repository, "short", json.dumps(manifest).encode(), manifest["mediaType"]
    )
    with pytest.raises(DigestError, match="the manifest says"):
        pull(f"{registry.host}/{repository}:short", fresh)
    assert not fresh.has_blob(image.layers[0].digest)
    assert not list(ingest_dir(fresh).glob("*.partial"))


# ---------------------------------------------------------------- resume


class CuttingProxy:
    """A loopback HTTP proxy in front of the registry that breaks off one blob download.

    The first GET of `digest` without a Range header gets the full Content-Length but
    only `cut_after` bytes before the connection closes. Every Range header is recorded.
    """

    def __init__(self, upstream: str, digest: str, cut_after: int, busy: int = 0) -> None:
        self.upstream, self.digest, self.cut_after = upstream, digest, cut_after
        self.busy = busy  # answer this many blob requests with 503 first
        self.ranges: list[str | None] = []
        self.cut = False
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self.forward()

            def do_GET(self) -> None:
                self.forward()

            def forward(self) -> None:
                is_blob = self.path.endswith(f"/blobs/{proxy.digest}")
                if is_blob:
                    proxy.ranges.append(self.headers.get("Range"))
                    if proxy.busy:
                        proxy.busy -= 1
                        self.send_response(503)
                        self.send_header("Retry-After", "0")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                conn = http.client.HTTPConnection(*proxy.upstream.split(":"), timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding", "date", "server"):
                        self.send_header(key, value)
                self.end_headers()
                if is_blob and not proxy.cut and self.headers.get("Range") is None:
                    proxy.cut = True
                    self.wfile.write(body[: proxy.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                elif self.command != "HEAD":
                    self.wfile.write(body)
                conn.close()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CuttingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def test_broken_download_resumes_with_range_through_a_mirror(
    registry, source, fresh, private_config
):
    name = repo(registry)
    push("busybox:latest", name, source)
    layer = source.resolve("busybox:latest").layers[0]
    cut_after = layer.size // 3
    with CuttingProxy(registry.host, layer.digest, cut_after) as proxy:
        write_settings(private_config, {"mirrors": {registry.host: [proxy.url]}})
        image = pull(name, fresh)
    assert proxy.cut
    assert proxy.ranges == [None, f"bytes={cut_after}-"]
    assert image.layers[0].digest == layer.digest
    assert fresh.read_blob(layer.digest) == source.read_blob(layer.digest)


def test_busy_registry_is_asked_again(registry, source, fresh, private_config):
    name = repo(registry)
    push("busybox:latest", name, source)
    layer = source.resolve("busybox:latest").layers[0]
    with CuttingProxy(registry.host, layer.digest, cut_after=0, busy=2) as proxy:
        proxy.cut = True
        write_settings(private_config, {"mirrors": {registry.host: [proxy.url]}})
        pull(name, fresh)
    assert proxy.busy == 0
    assert proxy.ranges == [None, None, None]  # two 503s, then the blob
    assert fresh.has_blob(layer.digest)


def test_partial_download_of_an_earlier_pull_continues(registry, source, fresh, private_config):
    name = repo(registry)
    push("busybox:latest", name, source)
    layer = source.resolve("busybox:latest").layers[0]
    half = layer.size // 2
    partial = ingest_dir(fresh) / f"{layer.digest.split(':')[1]}.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(source.read_blob(layer.digest)[:half])
    with CuttingProxy(registry.host, layer.digest, cut_after=0) as proxy:
        proxy.cut = True  # pass everything through
        write_settings(private_config, {"mirrors": {registry.host: [proxy.url]}})
        pull(name, fresh)
    assert proxy.ranges == [f"bytes={half}-"]
    assert fresh.read_blob(layer.digest) == source.read_blob(layer.digest)
    assert not partial.exists()


def test_wrong_partial_download_is_fetched_again_from_the_start(
    registry, source, fresh, private_config
):
    name = repo(registry)
    push("busybox:latest", name, source)
    layer = source.resolve("busybox:latest").layers[0]
    partial = ingest_dir(fresh) / f"{layer.digest.split(':')[1]}.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\0" * 1000)
    with CuttingProxy(registry.host, layer.digest, cut_after=0) as proxy:
        proxy.cut = True
        write_settings(private_config, {"mirrors": {registry.host: [proxy.url]}})
        pull(name, fresh)
    assert proxy.ranges == ["bytes=1000-", None]
    assert fresh.read_blob(layer.digest) == source.read_blob(layer.digest)


# ---------------------------------------------------------------- TLS and auth


def test_tls_registry_with_our_ca_file(tmp_path, source, fresh, private_config):
    with RegistryServer(tmp_path / "tls-registry", tls=True) as server:
        name = f"{server.host}/{unique_id('tls')}/busybox:1"
        with pytest.raises(RegistryError, match="certificate not trusted"):
            push("busybox:latest", name, source)
        pushed = push("busybox:latest", name, source, ca_file=str(server.ca_file))
        # The CA can also come from registries.json.
        write_settings(private_config, {"ca": {server.host: str(server.ca_file)}})
        pulled = pull(name, fresh)
        assert pulled.digest == pushed
        assert RegistryClient(server.host)._base().startswith("https://")


def test_htpasswd_auth_and_login(tmp_path, source, fresh):
    users = {"alice": "correct horse"}
    with RegistryServer(tmp_path / "auth-registry", tls=True, users=users) as server:
        ca = str(server.ca_file)
        name = f"{server.host}/{unique_id('auth')}/busybox:1"
        with pytest.raises(AuthError, match="requires authentication"):
            push("busybox:latest", name, source, ca_file=ca)
        wrong = Credentials("alice", "wrong")
        with pytest.raises(AuthError, match="authentication failed as alice"):
            push("busybox:latest", name, source, ca_file=ca, credentials=wrong)
        with pytest.raises(AuthError, match="authentication failed as alice"):
            login(server.host, "alice", "wrong", ca_file=ca)
        config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
        assert not config.exists()

        login(server.host, "alice", "correct horse", ca_file=ca)
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert server.host in json.loads(config.read_text())["auths"]
        # From here on the stored credentials are found without being passed.
        pushed = push("busybox:latest", name, source, ca_file=ca)
        assert pull(name, fresh, ca_file=ca).digest == pushed


def test_bearer_token_flow_with_a_token_service(tmp_path, source, fresh):
    token_service = TokenServer(tmp_path / "token", {"bob": "builder"})
    try:
        with RegistryServer(tmp_path / "token-registry", token_server=token_service) as server:
            repository = f"{unique_id('bearer')}/busybox"
            name = f"{server.host}/{repository}:1"
            with pytest.raises(AuthError, match="failed anonymously"):
                push("busybox:latest", name, source, credentials=None)
            with pytest.raises(AuthError, match="refused the credentials"):
                push("busybox:latest", name, source, credentials=Credentials("bob", "wrong"))

            with pytest.raises(AuthError, match="refused the credentials"):
                login(server.host, "bob", "wrong")
            login(server.host, "bob", "builder")
            before = len(token_service.requests)
            pushed = push("busybox:latest", name, source)  # with the stored credentials
            push_tokens = token_service.requests[before:]
            # One token for all the parallel uploads, asked for with the push scope.
            assert push_tokens == [
                (
                    "bob",
                    {"service": ["test-registry"], "scope": [f"repository:{repository}:pull,push"]},
                )
            ]

            before = len(token_service.requests)
            assert pull(name, fresh, credentials=None).digest == pushed
            assert token_service.requests[before:] == [
                (None, {"service": ["test-registry"], "scope": [f"repository:{repository}:pull"]})
            ]

            # A mount needs a token for both repositories: push to ours, pull from theirs.
            target = f"{unique_id('bearer')}/busybox"
            how: dict[str, str] = {}
            before = len(token_service.requests)
            push(name, f"{server.host}/{target}:1", fresh, on_blob=how.__setitem__)
            assert set(how.values()) == {"mounted"}
            scopes = {s for _, query in token_service.requests[before:] for s in query["scope"]}
            assert {f"repository:{target}:pull,push", f"repository:{repository}:pull"} <= scopes
    finally:
        token_service.close()


def test_plain_http_registry_found_on_loopback(registry):
    client = RegistryClient(registry.host, settings=RegistrySettings())
    client.ping()
    assert client.scheme == "http"
