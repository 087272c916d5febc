"""runtime.state: root and layout, the JSON codec, atomic writes, locks that name their holder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import state
from runtime.state import Lock, LockBusy, atomic_write_json, read_json


def test_root_from_argument_env_or_default(monkeypatch, tmp_path):
    monkeypatch.delenv("COMPOSER_ROOT", raising=False)
    assert state.state_root() == Path("/var/lib/composer")
    monkeypatch.setenv("COMPOSER_ROOT", str(tmp_path))
    assert state.state_root() == tmp_path
    assert state.state_root("/elsewhere") == Path("/elsewhere")


def test_layout(monkeypatch, tmp_path):
    monkeypatch.setenv("COMPOSER_ROOT", str(tmp_path))
    assert state.images_dir() == tmp_path / "images"
    assert state.layers_dir() == tmp_path / "layers"
    assert state.volumes_dir() == tmp_path / "volumes"
    assert state.networks_dir() == tmp_path / "networks"
    assert state.runtimes_dir() == tmp_path / "runtimes"
    assert state.container_dir("abc") == tmp_path / "containers" / "abc"
    assert state.container_dir("abc", root="/r") == Path("/r/containers/abc")


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "../x"])
def test_container_dir_refuses_path_tricks(bad):
    with pytest.raises(ValueError):
        state.container_dir(bad, root="/r")


@pytest.mark.parametrize(
    "value",
    [
        {"b": [1, 2.5, 'x\u00e9\n"\\', None, True, False], "a": {}},
        [],
        "text",
        -3,
        {"nested": {"deep": [{"k": "v"}]}},
    ],
)
def test_codec_round_trips_and_matches_stdlib(value):
    text = state.dumps(value)
    assert state.loads(text) == value
    assert json.loads(text) == value
    assert text == json.dumps(value, sort_keys=True)


@pytest.mark.parametrize("bad", ['{"a": ', '{"a": 1} trailing', "{not json", '"open', "nul", ""])
def test_codec_refuses_bad_input(bad):
    with pytest.raises(ValueError):
        state.loads(bad)


def test_codec_refuses_bad_output():
    with pytest.raises(TypeError):
        state.dumps({"a": object()})
    with pytest.raises(ValueError):
        state.dumps(float("nan"))
    assert state.loads(b'  {"a": 1}\n') == {"a": 1}


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_json(target, {"status": "created"})
    atomic_write_json(target, {"status": "running", "pid": 7})
    assert read_json(target) == {"status": "running", "pid": 7}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_atomic_write_failure_keeps_old_content(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"v": object()})
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_read_json_default(tmp_path):
    assert read_json(tmp_path / "missing.json", None) is None
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "missing.json")


def test_lock_is_exclusive_and_reusable(tmp_path):
    path = tmp_path / "lock"
    with Lock(path, "first job") as first:
        assert first.held
        with pytest.raises(LockBusy) as busy:
            Lock(path, "second job").acquire()
        message = str(busy.value)
        assert "cannot second job" in message
        assert f"pid {os.getpid()}" in message
        assert "for first job" in message
    assert not first.held
    with Lock(path, "third job"):
        pass


_HOLD = """
import sys, time
from runtime.state import Lock
with Lock(sys.argv[1], "hold for the test"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
print("released", flush=True)
"""


def _holder(path: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "held\n"
    return proc


def test_lock_message_names_other_process(tmp_path):
    path = tmp_path / "lock"
    proc = _holder(path, 30)
    try:
        with pytest.raises(LockBusy) as busy:
            Lock(path, "remove container").acquire()
        message = str(busy.value)
        assert f"pid {proc.pid}" in message
        assert "hold for the test" in message
        assert "-c" in message  # the holder's command line
    finally:
        proc.kill()
        proc.wait()
    # flock dies with its holder: no stale lock.
    with Lock(path, "after holder died"):
        pass


def test_lock_waits_for_release(tmp_path):
    path = tmp_path / "lock"
    proc = _holder(path, 0.3)
    try:
        with Lock(path, "patient", timeout=30) as lock:
            assert lock.held
            assert proc.stdout.readline() == "released\n"  # the holder let go; we waited
    finally:
        proc.kill()
        proc.wait()


def test_lock_timeout_expires(tmp_path):
    path = tmp_path / "lock"
    proc = _holder(path, 30)
    try:
        with pytest.raises(LockBusy, match=r"after waiting 0\.2s"):
            Lock(path, "impatient", timeout=0.2).acquire()
    finally:
        proc.kill()
        proc.wait()


def test_lock_holder_text_is_cleared_on_release(tmp_path):
    path = tmp_path / "lock"
    with Lock(path, "job"):
        assert "purpose=job" in path.read_text()
    assert path.read_text() == ""
    assert Lock(path, "x").holder() == "another process"


def test_state_imports_no_regex_module():
    # The shim imports runtime.state; `re` would cost it a megabyte of RSS.
    repo = str(Path(__file__).resolve().parents[2])
    code = "import sys; import runtime.state, runtime.logs; print('re' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {repo!r}); {code}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_lock_timeout_none_is_blocking_wait(tmp_path):
    path = tmp_path / "lock"
    proc = _holder(path, 0.2)
    try:
        with Lock(path, "forever", timeout=None):
            assert proc.stdout.readline() == "released\n"
    finally:
        proc.kill()
        proc.wait()


def test_update_json_merges_under_lock(tmp_path):
    path = tmp_path / "state.json"
    assert state.update_json(path, {"a": 1}, "first") == {"a": 1}
    assert state.update_json(path, {"b": 2}, "second") == {"a": 1, "b": 2}
    assert read_json(path) == {"a": 1, "b": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.json.lock"]
