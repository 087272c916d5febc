"""Container logs as JSON lines: the one place that knows the format.

Each line of log.jsonl is one record:

    {"log": "hello\\n", "stream": "stdout", "time": "2026-11-28T13:20:23.123456789Z"}

`log` keeps the line's own newline, as Docker's json-file driver does: a record without
one is a fragment (a line longer than MAX_LINE split in pieces, or output that ended
without a newline), so the bytes the container wrote are recoverable exactly.

The writer runs inside the shim (standard library C parts only, see runtime.state);
the reader runs in the engine.
"""

from __future__ import annotations

import os
import time

from runtime.state import dumps, loads

STREAMS = ("stdout", "stderr")
# Longer lines become several records, so one runaway line cannot exhaust memory.
MAX_LINE = 16 * 1024


def format_time(ns: int) -> str:
    """RFC 3339 in UTC with nanoseconds: 2026-11-28T13:20:23.000000001Z."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def parse_time(value) -> int:
    """Nanoseconds since the epoch from RFC 3339 text, a datetime, seconds (int/float) or
    a duration before now such as "90s", "10m", "1h30m" (as `docker logs --since`)."""
    import calendar
    import datetime

    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        delta = value - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
        return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    if isinstance(value, int | float):
        return int(value * 1_000_000_000)
    text = str(value).strip()
    ago = _duration_ns(text)
    if ago is not None:
        return time.time_ns() - ago
    date, _, clock = text.replace("t", "T").partition("T")
    if not clock:
        raise ValueError(f"not an RFC 3339 time: {value!r}")
    offset = 0
    if clock[-1] in "Zz":
        clock = clock[:-1]
    elif len(clock) > 6 and clock[-6] in "+-" and clock[-3] == ":":
        sign = 1 if clock[-6] == "+" else -1
        offset = sign * (int(clock[-5:-3]) * 3600 + int(clock[-2:]) * 60)
        clock = clock[:-6]
    whole, _, fraction = clock.partition(".")
    try:
        year, month, day = (int(p) for p in date.split("-"))
        hour, minute, second = (int(p) for p in whole.split(":"))
        nanos = int((fraction + "000000000")[:9]) if fraction else 0
    except ValueError:
        raise ValueError(f"not an RFC 3339 time: {value!r}") from None
    seconds = calendar.timegm((year, month, day, hour, minute, second)) - offset
    return seconds * 1_000_000_000 + nanos


_UNITS = {"h": 3600_000_000_000, "m": 60_000_000_000, "s": 1_000_000_000, "ms": 1_000_000}


def _duration_ns(text: str) -> int | None:
    """A duration like "1h30m" or "2.5s" in nanoseconds; None if `text` is not one."""
    total, number, i = 0, "", 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else ch
        if not number or unit not in _UNITS:
            return None
        try:
            total += int(float(number) * _UNITS[unit])
        except ValueError:
            return None
        number = ""
        i += len(unit)
    return total if text and not number else None


def encode_record(stream: str, text: str, ns: int | None = None) -> bytes:
    """One JSON line for `text` written to `stream` at `ns` (now if None)."""
    record = {
        "log": text,
        "stream": stream,
        "time": format_time(time.time_ns() if ns is None else ns),
    }
    return (dumps(record) + "\n").encode()


def _utf8_cut(data: bytes, start: int, limit: int) -> int:
    """The end of a piece of at most `limit` bytes from `start`, not inside a UTF-8 sequence."""
    end = start + limit
    if end >= len(data):
        return len(data)
    cut = end
    # At most 3 continuation bytes (10xxxxxx) follow a lead byte.
    while cut > end - 3 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if cut > start else end


class LogWriter:
    """Turns chunks of container output into records appended to a log file.

    Bytes are kept per stream until a newline arrives, so a line written in several
    pieces is one record, stamped when its last byte arrived; `close()` writes what is
    left as a final fragment.
    """

    def __init__(self, path: str | os.PathLike, max_line: int = MAX_LINE) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self.max_line = max_line
        self.pending = {stream: b"" for stream in STREAMS}
        self.pending_since = dict.fromkeys(STREAMS, 0)  # when pending bytes last arrived

    def write(self, stream: str, data: bytes, ns: int | None = None) -> None:
        ns = time.time_ns() if ns is None else ns
        buf = self.pending[stream] + data
        out = []
        start = 0
        while True:
            newline = buf.find(b"\n", start, start + self.max_line)
            if newline >= 0:
                out.append(buf[start : newline + 1])
                start = newline + 1
            elif len(buf) - start >= self.max_line:
                cut = _utf8_cut(buf, start, self.max_line)
                out.append(buf[start:cut])
                start = cut
            else:
                break
        self.pending[stream] = buf[start:]
        if self.pending[stream]:
            self.pending_since[stream] = ns
        self._emit(stream, out, ns)

    def flush_partial(self, stream: str, ns: int | None = None) -> None:
        """Write what is pending on `stream` as a fragment (its writer went away), stamped
        with the time its last piece arrived unless `ns` is given."""
        rest, self.pending[stream] = self.pending[stream], b""
        if rest:
            self._emit(stream, [rest], self.pending_since[stream] if ns is None else ns)

    def note(self, text: str, stream: str = "stderr") -> None:
        """A line of the shim's own (e.g. why it killed at once), marked as such."""
        self._emit(stream, [f"[composer-shim] {text}\n".encode()], time.time_ns())

    def _emit(self, stream: str, pieces: list[bytes], ns: int) -> None:
        if not pieces:
            return
        payload = b"".join(
            encode_record(stream, piece.decode("utf-8", "replace"), ns) for piece in pieces
        )
        view = memoryview(payload)
        while view:
            view = view[os.write(self.fd, view) :]

    def close(self) -> None:
        if self.fd < 0:
            return
        for stream in STREAMS:
            self.flush_partial(stream)
        os.close(self.fd)
        self.fd = -1


def _parse_line(line: bytes) -> dict | None:
    try:
        record = loads(line)
    except ValueError:
        return None  # a torn line from a crash mid-write: skip it, keep the rest
    return record if isinstance(record, dict) and "log" in record else None


def read_records(
    path: str | os.PathLike,
    *,
    follow: bool = False,
    since=None,
    until=None,
    tail: int | None = None,
    still_writing=None,
    poll_interval: float = 0.05,
):
    """Yield records from a log file, oldest first.

    since/until: RFC 3339 text, datetime or epoch seconds; records outside are left out.
    tail: only the last `tail` records (after since/until). follow: keep yielding new
    records while `still_writing()` is true, then the rest and stop.
    """
    since_ns = None if since is None else parse_time(since)
    until_ns = None if until is None else parse_time(until)

    def wanted(record: dict) -> bool:
        if since_ns is None and until_ns is None:
            return True
        try:
            ns = parse_time(record.get("time", ""))
        except ValueError:
            return False
        return (since_ns is None or ns >= since_ns) and (until_ns is None or ns <= until_ns)

    try:
        f = open(path, "rb")  # noqa: SIM115 - kept open across yields while following
    except FileNotFoundError:
        if not follow:
            return
        f = None
    try:
        first = []
        rest = b""
        if f is not None:
            lines = f.read().split(b"\n")
            rest = lines.pop()  # a line still being written has no newline yet
            records = [r for r in map(_parse_line, lines) if r is not None]
            first = [r for r in records if wanted(r)]
            if until_ns is not None and records and _time_or_zero(records[-1]) > until_ns:
                follow = False  # the log has already passed `until`
        if tail is not None:
            first = first[-tail:] if tail > 0 else []
        yield from first
        if not follow:
            return
        while True:
            writing = still_writing() if still_writing else False
            if f is None:
                try:
                    f = open(path, "rb")  # noqa: SIM115
                except FileNotFoundError:
                    if not writing:
                        return
                    time.sleep(poll_interval)
                    continue
            chunk = f.read()
            if chunk:
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                for record in map(_parse_line, lines):
                    if record is None:
                        continue
                    if until_ns is not None and _time_or_zero(record) > until_ns:
                        return  # later records are later still: nothing more to wait for
                    if wanted(record):
                        yield record
                continue
            if not writing:
                return
            time.sleep(poll_interval)
    finally:
        if f is not None:
            f.close()


def _time_or_zero(record: dict) -> int:
    try:
        return parse_time(record.get("time", ""))
    except ValueError:
        return 0


def display(record: dict, timestamps: bool = False) -> str:
    """The record as `docker logs` prints it: the text, optionally after its time."""
    return f"{record['time']} {record['log']}" if timestamps else record["log"]
