"""runtime.logs: the JSON-lines format, line assembly in the writer, filters in the reader."""

from __future__ import annotations

import datetime
import json
import threading
import time

import pytest

from runtime import logs
from runtime.logs import LogWriter, display, encode_record, format_time, parse_time, read_records

T0 = 1_764_336_023_000_000_001  # 2025-11-28T13:20:23.000000001Z


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_time_has_nanoseconds_and_round_trips():
    text = format_time(T0)
    assert text == "2025-11-28T13:20:23.000000001Z"
    assert parse_time(text) == T0


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2025-11-28T13:20:23Z", T0 - 1),
        ("2025-11-28T13:20:23.5Z", T0 - 1 + 500_000_000),
        ("2025-11-28T15:20:23.000000001+02:00", T0),
        ("2025-11-28t13:20:23.000000001z", T0),
    ],
)
def test_parse_time_forms(text, ns):
    assert parse_time(text) == ns


def test_parse_time_other_types():
    assert parse_time(1.5) == 1_500_000_000
    assert parse_time(2) == 2_000_000_000
    moment = datetime.datetime(2025, 11, 28, 13, 20, 23, 1, tzinfo=datetime.UTC)
    assert parse_time(moment) == T0 - 1 + 1000
    with pytest.raises(ValueError):
        parse_time("yesterday")


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("10m", 600), ("1h30m", 5400), ("2.5s", 2.5), ("500ms", 0.5)]
)
def test_parse_time_durations_count_back_from_now(text, seconds):
    before = time.time_ns()
    ns = parse_time(text)
    after = time.time_ns()
    assert before - seconds * 1e9 <= ns + 1000 and ns <= after - seconds * 1e9 + 1000


@pytest.mark.parametrize("text", ["10", "m", "10x", "1h30", "1.2.3s", ""])
def test_parse_time_rejects_non_durations(text):
    with pytest.raises(ValueError):
        parse_time(text)


def test_record_format():
    line = encode_record("stdout", 'hi "x" \u00e9\n', T0)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "log": 'hi "x" \u00e9\n',
        "stream": "stdout",
        "time": "2025-11-28T13:20:23.000000001Z",
    }


def test_writer_joins_pieces_into_lines(tmp_path):
    path = tmp_path / "log.jsonl"
    writer = LogWriter(path)
    writer.write("stdout", b"hel", T0)
    writer.write("stderr", b"oops\n", T0)
    writer.write("stdout", b"lo\nwor", T0)
    writer.write("stdout", b"ld\n", T0)
    writer.close()
    got = [(r["stream"], r["log"]) for r in _records(path)]
    assert got == [("stderr", "oops\n"), ("stdout", "hello\n"), ("stdout", "world\n")]


def test_writer_flushes_trailing_fragment_on_close(tmp_path):
    path = tmp_path / "log.jsonl"
    writer = LogWriter(path)
    writer.write("stdout", b"done\nno ", T0)
    writer.write("stdout", b"newline", T0 + 5)
    writer.close()
    records = _records(path)
    assert [r["log"] for r in records] == ["done\n", "no newline"]
    # Stamped when its bytes arrived, not when the stream closed.
    assert [r["time"] for r in records] == [format_time(T0), format_time(T0 + 5)]


def test_writer_splits_long_lines_without_losing_bytes(tmp_path):
    path = tmp_path / "log.jsonl"
    writer = LogWriter(path, max_line=10)
    writer.write("stdout", b"a" * 25 + b"\nb\n", T0)
    writer.close()
    pieces = [r["log"] for r in _records(path)]
    assert pieces == ["a" * 10, "a" * 10, "a" * 5 + "\n", "b\n"]
    assert "".join(pieces) == "a" * 25 + "\nb\n"


def test_writer_default_limit_bounds_records(tmp_path):
    path = tmp_path / "log.jsonl"
    writer = LogWriter(path)
    line = b"x" * (logs.MAX_LINE * 3 + 7) + b"\n"
    for i in range(0, len(line), 4096):  # arrives in pipe-sized chunks
        writer.write("stdout", line[i : i + 4096], T0)
    writer.close()
    pieces = [r["log"] for r in _records(path)]
    assert len(pieces) == 4
    assert all(len(p) <= logs.MAX_LINE for p in pieces)
    assert "".join(pieces).encode() == line


def test_writer_does_not_split_utf8_sequences(tmp_path):
    path = tmp_path / "log.jsonl"
    writer = LogWriter(path, max_line=8)
    text = "ab\u00e9\u00e9\u00e9\u00e9\u00e9\n"  # 2 + 5*2 bytes
    writer.write("stdout", text.encode(), T0)
    writer.close()
    pieces = [r["log"] for r in _records(path)]
    assert "\ufffd" not in "".join(pieces)
    assert "".join(pieces) == text


def test_writer_replaces_invalid_utf8(tmp_path):
    path = tmp_path / "log.jsonl"
    writer = LogWriter(path)
    writer.write("stdout", b"bad \xff byte\n", T0)
    writer.close()
    assert _records(path)[0]["log"] == "bad \ufffd byte\n"


def test_writer_note_is_marked(tmp_path):
    path = tmp_path / "log.jsonl"
    writer = LogWriter(path)
    writer.note("killed at once")
    writer.close()
    record = _records(path)[0]
    assert record["stream"] == "stderr"
    assert record["log"] == "[composer-shim] killed at once\n"


def _write_log(path, entries):
    writer = LogWriter(path)
    for stream, text, ns in entries:
        writer.write(stream, text.encode(), ns)
    writer.close()


def test_reader_filters(tmp_path):
    path = tmp_path / "log.jsonl"
    sec = 1_000_000_000
    _write_log(path, [("stdout", f"line {i}\n", T0 + i * sec) for i in range(5)])
    texts = lambda **kw: [r["log"] for r in read_records(path, **kw)]  # noqa: E731
    assert texts() == [f"line {i}\n" for i in range(5)]
    assert texts(tail=2) == ["line 3\n", "line 4\n"]
    assert texts(tail=0) == []
    assert texts(since=format_time(T0 + 2 * sec)) == ["line 2\n", "line 3\n", "line 4\n"]
    assert texts(until=format_time(T0 + sec)) == ["line 0\n", "line 1\n"]
    assert texts(since=(T0 + sec) / 1e9 - 0.5, until=format_time(T0 + 3 * sec), tail=1) == [
        "line 3\n"
    ]


def test_reader_skips_torn_lines_and_missing_file(tmp_path):
    path = tmp_path / "log.jsonl"
    assert list(read_records(path)) == []
    path.write_bytes(encode_record("stdout", "ok\n", T0) + b'{"log": "tor\n' + b'{"partial')
    assert [r["log"] for r in read_records(path)] == ["ok\n"]


def test_reader_follow_sees_new_records_until_writer_stops(tmp_path):
    path = tmp_path / "log.jsonl"
    writer = LogWriter(path)
    writer.write("stdout", b"first\n", T0)
    writing = threading.Event()
    writing.set()
    seen = []
    reader = read_records(path, follow=True, still_writing=writing.is_set, poll_interval=0.01)
    seen.append(next(reader)["log"])
    writer.write("stdout", b"second\n", T0 + 1)
    seen.append(next(reader)["log"])
    writer.write("stderr", b"last\n", T0 + 2)
    writer.close()
    writing.clear()
    seen.extend(r["log"] for r in reader)
    assert seen == ["first\n", "second\n", "last\n"]


def test_reader_follow_stops_past_until(tmp_path):
    path = tmp_path / "log.jsonl"
    _write_log(path, [("stdout", "a\n", T0)])
    writer = LogWriter(path)
    writer.write("stdout", b"late\n", T0 + 10_000_000_000)
    writer.close()
    got = list(read_records(path, follow=True, until=T0 / 1e9 + 1, still_writing=lambda: True))
    assert [r["log"] for r in got] == ["a\n"]


def test_display():
    record = {"time": "2025-11-28T13:20:23.000000001Z", "stream": "stdout", "log": "hi\n"}
    assert display(record) == "hi\n"
    assert display(record, timestamps=True) == "2025-11-28T13:20:23.000000001Z hi\n"
