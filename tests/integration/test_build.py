"""Real Dockerfile builds (root): RUN in containers over overlayfs, COPY/ADD, the cache."""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from images import busybox_image

from runtime.images.build import BuildError, DockerfileError, build
from runtime.images.build import builder as builder_module
from runtime.images.store import ImageStore


@pytest.fixture
def store(composer_root: Path):
    if os.geteuid() != 0:
        pytest.fail("integration tests need root")
    store = ImageStore(composer_root)
    busybox_image(store, "busybox:latest")
    yield store
    # Nothing of a build may stay behind: mounts, container dirs, runtime state.
    with open("/proc/self/mountinfo") as f:
        assert str(composer_root) not in f.read()
    containers = composer_root / "containers"
    assert not containers.exists() or not any(containers.iterdir())
    runtime_state = composer_root / "runtimes" / "composer-runtime"
    assert not runtime_state.exists() or not any(runtime_state.iterdir())


def write(context: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = context / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return context


def files_of(store: ImageStore, image) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    """The image's flattened file tree: path -> (tar member, content of a regular file)."""
    tree: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    for layer in image.layers:
        with tarfile.open(store.blob_path(layer.digest)) as tar:
            for member in tar:
                name = member.name.removeprefix("./").rstrip("/")
                base = os.path.basename(name)
                parent = os.path.dirname(name)
                if base == ".wh..wh..opq":
                    for key in [k for k in tree if k.startswith(parent + "/")]:
                        del tree[key]
                    continue
                if base.startswith(".wh."):
                    gone = os.path.join(parent, base[4:])
                    for key in [k for k in tree if k == gone or k.startswith(gone + "/")]:
                        del tree[key]
                    continue
                data = tar.extractfile(member).read() if member.isfile() else None
                tree[name] = (member, data)
    return tree


def steps_recorder():
    steps: list[tuple[int, int, str, bool]] = []
    return steps, lambda *step: steps.append(step)


def test_run_writes_files_into_the_image(store, tmp_path):
    context = write(
        tmp_path / "ctx",
        {"Dockerfile": "FROM busybox\nRUN echo built > /built && rm /etc/hostname && echo hi\n"},
    )
    output: list[str] = []
    image = build(context, store=store, tags=["t/run:1"], on_output=output.append)
    tree = files_of(store, image)
    assert tree["built"][1] == b"built\n"
    assert "etc/hostname" not in tree  # deleted through a whiteout in the RUN layer
    assert "bin/busybox" in tree
    assert "hi" in output
    assert len(image.layers) == 2
    assert store.resolve("t/run:1").digest == image.digest


def test_run_uses_user_workdir_shell_and_heredoc(store, tmp_path):
    dockerfile = (
        "FROM busybox\n"
        "WORKDIR /work/dir\n"
        "RUN pwd > /tmp/pwd\n"
        "USER user\n"
        "RUN id -u > /tmp/uid\n"
        "USER root\n"
        'SHELL ["/bin/sh", "-e", "-c"]\n'
        "RUN <<EOF\n"
        "echo one > /tmp/heredoc\n"
        "echo two >> /tmp/heredoc\n"
        "EOF\n"
        "RUN cat > /tmp/fed <<'END'\n"
        "$NOT_EXPANDED\n"
        "END\n"
    )
    context = write(tmp_path / "ctx", {"Dockerfile": dockerfile})
    image = build(context, store=store)
    tree = files_of(store, image)
    assert tree["tmp/pwd"][1] == b"/work/dir\n"
    assert tree["tmp/uid"][1] == b"1000\n"
    assert tree["tmp/heredoc"][1] == b"one\ntwo\n"
    assert tree["tmp/fed"][1] == b"$NOT_EXPANDED\n"
    assert tree["work/dir"][0].isdir()
    assert image.config["config"]["Shell"] == ["/bin/sh", "-e", "-c"]


def test_copy_globs_chown_chmod_and_dockerignore(store, tmp_path):
    context = write(
        tmp_path / "ctx",
        {
            "Dockerfile": (
                "FROM busybox\n"
                "COPY *.txt /dst/\n"
                "COPY --chown=user:user --chmod=600 src /app/\n"
                "COPY --chown=1234 single.cfg /etc/renamed.cfg\n"
                "COPY --link src/sub/ /linked\n"
            ),
            ".dockerignore": "*.txt\n!keep*.txt\nsrc/**/*.tmp\n",
            "one.txt": "ignored\n",
            "keep1.txt": "k1\n",
            "keep2.txt": "k2\n",
            "src/main.py": "print()\n",
            "src/sub/data.tmp": "scratch\n",
            "src/sub/data.json": "{}\n",
            "single.cfg": "cfg\n",
        },
    )
    image = build(context, store=store)
    tree = files_of(store, image)
    assert tree["dst/keep1.txt"][1] == b"k1\n" and tree["dst/keep2.txt"][1] == b"k2\n"
    assert "dst/one.txt" not in tree
    main, data = tree["app/main.py"]
    assert data == b"print()\n"
    assert (main.uid, main.gid, main.mode & 0o7777) == (1000, 1000, 0o600)
    assert "app/sub/data.tmp" not in tree
    assert tree["app/sub/data.json"][0].uid == 1000
    cfg = tree["etc/renamed.cfg"][0]
    assert (cfg.uid, cfg.gid) == (1234, 1234)
    assert tree["linked/data.json"][1] == b"{}\n"
    assert "Dockerfile" not in tree


def test_copy_missing_source_names_the_line(store, tmp_path):
    context = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\n\nCOPY nothing-here /x\n"})
    with pytest.raises(BuildError) as err:
        build(context, store=store)
    assert err.value.line == 3
    assert "nothing-here" in str(err.value)


def test_copy_heredoc_and_add_local_tar(store, tmp_path):
    context = write(
        tmp_path / "ctx",
        {
            "Dockerfile": "FROM busybox\nARG WHO=world\nCOPY <<EOF /hello\nhi $WHO\nEOF\nADD files.tar.gz /unpacked/\n"
        },
    )
    with tarfile.open(context / "files.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("inner/file")
        info.size = 5
        info.uid = 42
        tar.addfile(info, io.BytesIO(b"inner"))
    image = build(context, store=store)
    tree = files_of(store, image)
    assert tree["hello"][1] == b"hi world\n"
    assert tree["unpacked/inner/file"][1] == b"inner"
    assert tree["unpacked/inner/file"][0].uid == 42


def test_add_url_offline_is_a_clear_error(store, tmp_path):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = write(
        tmp_path / "ctx", {"Dockerfile": f"FROM busybox\nADD http://127.0.0.1:{port}/f.txt /f\n"}
    )
    with pytest.raises(BuildError) as err:
        build(context, store=store)
    assert "offline" in str(err.value) and err.value.line == 2


@pytest.fixture
def loopback_server():
    """An HTTP server on the host's loopback answering "served"; yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"served\n")

        def log_message(self, *_):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


def test_add_url_from_a_local_server(store, tmp_path, loopback_server):
    context = write(
        tmp_path / "ctx",
        {"Dockerfile": f"FROM busybox\nADD http://127.0.0.1:{loopback_server}/dir/f.txt /srv/\n"},
    )
    image = build(context, store=store)
    assert files_of(store, image)["srv/f.txt"][1] == b"served\n"
    good = "sha256:" + hashlib.sha256(b"served\n").hexdigest()
    for checksum, fails in ((good, False), ("sha256:" + "0" * 64, True)):
        write(
            context,
            {
                "Dockerfile": f"FROM busybox\nADD --checksum={checksum} "
                f"http://127.0.0.1:{loopback_server}/f /f\n"
            },
        )
        if fails:
            with pytest.raises(DockerfileError, match="expected sha256:0000"):
                build(context, store=store)
        else:
            assert files_of(store, build(context, store=store))["f"][1] == b"served\n"


def test_run_uses_the_host_network_unless_told_none(store, tmp_path, loopback_server):
    url = f"http://127.0.0.1:{loopback_server}/"
    context = write(tmp_path / "ctx", {"Dockerfile": f"FROM busybox\nRUN wget -q -O /got {url}\n"})
    assert files_of(store, build(context, store=store))["got"][1] == b"served\n"
    write(context, {"Dockerfile": f"FROM busybox\nRUN --network=none wget -q -O /got {url}\n"})
    with pytest.raises(BuildError) as err:
        build(context, store=store)
    assert err.value.line == 2


MULTI_STAGE = (
    "ARG BASE=busybox\n"
    "FROM $BASE AS builder\n"
    "RUN mkdir /out && echo artifact > /out/bin.txt\n"
    "FROM scratch AS unused\n"
    "COPY --from=builder /out/bin.txt /\n"
    "FROM ${BASE} AS final\n"
    "COPY --from=builder /out/ /app/\n"
    "COPY --from=busybox:latest /etc/passwd /copied-passwd\n"
    'CMD ["cat", "/app/bin.txt"]\n'
    "FROM final AS extra\n"
    "RUN echo extra > /extra\n"
)


def test_multi_stage_copy_from_and_target(store, tmp_path):
    context = write(tmp_path / "ctx", {"Dockerfile": MULTI_STAGE})
    steps, on_step = steps_recorder()
    image = build(context, store=store, target="final", on_step=on_step)
    tree = files_of(store, image)
    assert tree["app/bin.txt"][1] == b"artifact\n"
    assert tree["copied-passwd"][1].startswith(b"root:")
    assert "extra" not in tree
    assert "out/bin.txt" not in tree  # only what was copied, not the builder's layer
    texts = [text for _, _, text, _ in steps]
    assert not any("unused" in t or "extra" in t for t in texts)  # not needed, not built
    assert [s[0] for s in steps] == list(range(1, len(steps) + 1))
    assert all(total == len(steps) for _, total, _, _ in steps)
    full = build(context, store=store)
    assert files_of(store, full)["extra"][1] == b"extra\n"


def test_arg_and_env_substitution(store, tmp_path):
    dockerfile = (
        "ARG TAG=latest\n"
        "FROM busybox:${TAG}\n"
        "ARG TAG\n"
        "ARG NAME=default\n"
        "ARG UNSET\n"
        'ENV DIR=/opt/${NAME} GREETING="hello there"\n'
        "COPY file.txt $DIR/\n"
        "WORKDIR $DIR\n"
        'RUN echo "$NAME $TAG ${UNSET:-none} $GREETING" > args.txt\n'
        "LABEL name=${NAME} fallback=${MISSING:-fb}\n"
        "EXPOSE 8080 53/udp\n"
    )
    context = write(tmp_path / "ctx", {"Dockerfile": dockerfile, "file.txt": "f\n"})
    image = build(context, store=store, args={"NAME": "given"})
    tree = files_of(store, image)
    assert tree["opt/given/file.txt"][1] == b"f\n"
    assert tree["opt/given/args.txt"][1] == b"given latest none hello there\n"
    config = image.config["config"]
    assert "DIR=/opt/given" in config["Env"] and "GREETING=hello there" in config["Env"]
    assert not any(e.startswith("NAME=") for e in config["Env"])  # ARGs are not kept
    assert config["WorkingDir"] == "/opt/given"
    assert config["Labels"] == {"name": "given", "fallback": "fb"}
    assert config["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}


def test_image_config_from_instructions(store, tmp_path):
    dockerfile = (
        "FROM busybox AS base\n"
        'CMD ["from-base"]\n'
        "FROM base\n"
        'ENTRYPOINT ["/bin/sh", "-c"]\n'
        "CMD echo hi\n"
        "USER 1000:1000\n"
        "WORKDIR /srv\n"
        "WORKDIR sub\n"
        "HEALTHCHECK --interval=5s --timeout=2s --retries=4 --start-period=1m CMD wget -q -O- localhost\n"
        "VOLUME /data /cache\n"
        "STOPSIGNAL SIGQUIT\n"
        "LABEL a=b\n"
    )
    context = write(tmp_path / "ctx", {"Dockerfile": dockerfile})
    image = build(context, store=store, labels={"extra": "yes"})
    config = image.config["config"]
    assert config["Entrypoint"] == ["/bin/sh", "-c"]
    assert config["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert config["User"] == "1000:1000"
    assert config["WorkingDir"] == "/srv/sub"
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q -O- localhost"],
        "Interval": 5_000_000_000,
        "Timeout": 2_000_000_000,
        "StartPeriod": 60_000_000_000,
        "Retries": 4,
    }
    assert set(config["Volumes"]) == {"/data", "/cache"}
    assert config["StopSignal"] == "SIGQUIT"
    assert config["Labels"] == {"a": "b", "extra": "yes"}
    assert [h["created_by"] for h in image.config["history"]][-1] == "LABEL a=b"


def test_entrypoint_drops_an_inherited_cmd(store, tmp_path):
    context = write(tmp_path / "ctx", {"Dockerfile": 'FROM busybox\nENTRYPOINT ["top"]\n'})
    image = build(context, store=store)
    assert "Cmd" not in image.config["config"]
    assert image.config["config"]["Entrypoint"] == ["top"]


def test_onbuild_triggers_run_in_the_child(store, tmp_path):
    parent = write(
        tmp_path / "parent",
        {"Dockerfile": "FROM busybox\nONBUILD COPY marker /marker\nONBUILD RUN echo t > /t\n"},
    )
    base = build(parent, store=store, tags=["onbuild-base:1"])
    assert base.config["config"]["OnBuild"] == ["COPY marker /marker", "RUN echo t > /t"]
    child = write(
        tmp_path / "child", {"Dockerfile": "FROM onbuild-base:1\n", "marker": "from child\n"}
    )
    image = build(child, store=store)
    tree = files_of(store, image)
    assert tree["marker"][1] == b"from child\n"
    assert tree["t"][1] == b"t\n"
    assert "OnBuild" not in image.config["config"]


def test_failing_run_reports_step_line_and_output(store, tmp_path):
    context = write(
        tmp_path / "ctx",
        {
            "Dockerfile": "FROM busybox\nRUN echo fine\nRUN echo 'about to fail' && exit 3\nRUN true\n"
        },
    )
    with pytest.raises(BuildError) as err:
        build(context, store=store)
    assert err.value.line == 3
    assert err.value.instruction == "RUN echo 'about to fail' && exit 3"
    assert "about to fail" in err.value.output
    assert "code: 3" in str(err.value)
    assert str(err.value).startswith(f"{context / 'Dockerfile'}:3: ")


def test_rebuild_without_changes_does_no_work(store, tmp_path, monkeypatch):
    context = write(
        tmp_path / "ctx",
        {
            "Dockerfile": 'FROM busybox\nCOPY app /app\nRUN cat /app/a > /copy\nCMD ["sh"]\n',
            "app/a": "one\n",
        },
    )
    first = build(context, store=store, tags=["cached:1"])
    blobs = store.root / "blobs" / "sha256"
    before = {p.name: p.stat().st_mtime_ns for p in blobs.iterdir()}

    def no_container(*_args, **_kwargs):
        raise AssertionError("a cached build started a container")

    monkeypatch.setattr(builder_module.Builder, "_run_container", no_container)
    monkeypatch.setattr(store, "commit_layer_dir", no_container)
    steps, on_step = steps_recorder()
    second = build(context, store=store, tags=["cached:1"], on_step=on_step)
    assert second.digest == first.digest
    assert all(cached for *_, cached in steps)
    assert {p.name: p.stat().st_mtime_ns for p in blobs.iterdir()} == before


def test_touching_a_copied_file_rebuilds_from_that_step(store, tmp_path):
    context = write(
        tmp_path / "ctx",
        {
            "Dockerfile": (
                "FROM busybox\nRUN echo early > /early\nCOPY app /app\n"
                "RUN cat /app/a > /copy\nENV X=1\n"
            ),
            "app/a": "one\n",
            "app/b": "unchanged\n",
        },
    )
    first = build(context, store=store)
    (context / "app/a").write_text("two\n")
    steps, on_step = steps_recorder()
    second = build(context, store=store, on_step=on_step)
    cached = {text: hit for _, _, text, hit in steps}
    assert cached["RUN echo early > /early"] is True
    assert cached["COPY app /app"] is False
    assert cached["RUN cat /app/a > /copy"] is False
    assert cached["ENV X=1"] is False
    assert first.layers[:2] == second.layers[:2]
    assert files_of(store, second)["copy"][1] == b"two\n"
    os.chmod(context / "app/b", 0o600)  # a mode change counts too
    steps.clear()
    build(context, store=store, on_step=on_step)
    assert {text: hit for _, _, text, hit in steps}["COPY app /app"] is False


def test_no_cache_rebuilds_everything(store, tmp_path):
    context = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo x > /x\n"})
    build(context, store=store)
    steps, on_step = steps_recorder()
    build(context, store=store, no_cache=True, on_step=on_step)
    assert [hit for *_, hit in steps] == [True, False]  # FROM is never "built"


def test_inline_dockerfile(store, tmp_path):
    context = write(tmp_path / "ctx", {"f": "inline\n"})
    image = build(context, inline="FROM busybox\nCOPY f /f\n", store=store)
    assert files_of(store, image)["f"][1] == b"inline\n"


def test_base_image_errors(store, tmp_path):
    context = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nFROM nosuch/image:1\n"})
    with pytest.raises(BuildError) as err:
        build(context, store=store)
    assert err.value.line == 2 and "nosuch/image:1" in str(err.value)
    bad_platform = "FROM --platform=linux/s390x busybox\n"
    if bad_platform.split("=")[1].split()[0].endswith(os.uname().machine):
        bad_platform = "FROM --platform=linux/riscv64 busybox\n"
    write(context, {"Dockerfile": bad_platform})
    with pytest.raises(BuildError) as err:
        build(context, store=store)
    assert "platform" in str(err.value) and err.value.line == 1
    write(context, {"Dockerfile": "FROM --platform=$BUILDPLATFORM busybox\n"})
    assert build(context, store=store).layers  # our own platform is accepted


def test_dockerfile_errors_have_the_file_and_line(store, tmp_path):
    context = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN true\nBOGUS x\n"})
    with pytest.raises(DockerfileError) as err:
        build(context, store=store)
    assert err.value.line == 3 and err.value.file.endswith("Dockerfile")
    write(context, {"Dockerfile": "FROM busybox AS one\n"})
    with pytest.raises(BuildError, match="nope"):
        build(context, store=store, target="nope")


def test_scratch_stage_gets_copied_files_only(store, tmp_path):
    context = write(
        tmp_path / "ctx",
        {"Dockerfile": 'FROM scratch\nCOPY f /etc/f\nWORKDIR /w\nCMD ["/x"]\n', "f": "x\n"},
    )
    image = build(context, store=store)
    tree = files_of(store, image)
    assert set(tree) == {"etc", "etc/f", "w"}
    assert tree["etc/f"][1] == b"x\n"
    write(context, {"Dockerfile": "FROM scratch\nRUN true\n"})
    with pytest.raises(BuildError, match="scratch") as err:
        build(context, store=store)
    assert err.value.line == 2


def test_copy_from_a_later_stage_is_refused(store, tmp_path):
    context = write(
        tmp_path / "ctx",
        {"Dockerfile": "FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\n"},
    )
    with pytest.raises(BuildError, match="earlier stages") as err:
        build(context, store=store, target="a")
    assert err.value.line == 2


def test_context_symlink_to_the_host_is_not_followed_out(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret\n")
    context = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nCOPY link/secret /s\n"})
    os.symlink(str(outside), context / "link")
    with pytest.raises(BuildError, match="not found in the build context"):
        build(context, store=store)


def test_unknown_user_in_run_names_the_line(store, tmp_path):
    context = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nUSER ghost\nRUN true\n"})
    with pytest.raises(BuildError, match="ghost") as err:
        build(context, store=store)
    assert err.value.line == 3


def test_proxy_args_reach_run_without_an_arg_line(store, tmp_path):
    context = write(
        tmp_path / "ctx", {"Dockerfile": 'FROM busybox\nRUN echo "$HTTP_PROXY" > /proxy\n'}
    )
    image = build(context, store=store, args={"HTTP_PROXY": "http://127.0.0.1:3128"})
    assert files_of(store, image)["proxy"][1] == b"http://127.0.0.1:3128\n"
    assert not any("HTTP_PROXY" in e for e in image.config["config"]["Env"])
    steps, on_step = steps_recorder()
    build(context, store=store, args={"HTTP_PROXY": "http://127.0.0.1:3129"}, on_step=on_step)
    assert all(hit for *_, hit in steps)  # a proxy change does not invalidate the cache


def test_run_heredoc_with_a_shebang_runs_as_a_script(store, tmp_path):
    context = write(
        tmp_path / "ctx",
        {"Dockerfile": 'FROM busybox\nRUN <<EOF\n#!/bin/sh -e\necho "script $0" > /sb\nEOF\n'},
    )
    tree = files_of(store, build(context, store=store))
    assert tree["sb"][1].startswith(b"script /")
    assert not any(name.startswith("dev/") for name in tree)


def test_copy_dot_copies_contents_and_keeps_dest_mode(store, tmp_path):
    context = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nCOPY . /app\n", "a": "a\n"})
    os.chmod(context, 0o700)
    tree = files_of(store, build(context, store=store))
    assert tree["app"][0].mode & 0o777 == 0o755
    assert tree["app/a"][1] == b"a\n"
    assert tree["app/Dockerfile"][0].isfile()


def test_healthcheck_none(store, tmp_path):
    context = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nHEALTHCHECK NONE\n"})
    assert build(context, store=store).config["config"]["Healthcheck"] == {"Test": ["NONE"]}


def test_cache_never_outlives_pruned_layers(store, tmp_path):
    from runtime.images.build.cache import BuildCache

    context = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo x > /x\n"})
    build(context, store=store, tags=["gone:1"])
    store.remove("gone:1")
    store.prune(min_age=0)
    assert BuildCache(store.state_root).prune(store)  # entries whose layers went
    steps, on_step = steps_recorder()
    image = build(context, store=store, on_step=on_step)
    assert [hit for *_, hit in steps] == [True, False]
    assert files_of(store, image)["x"][1] == b"x\n"
