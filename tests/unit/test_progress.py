"""The progress display: which mode is chosen, what each prints, and rich only on a tty."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from composer.cli.progress import LineDisplay, RichDisplay, choose_mode, open_progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_prints_a_line_per_state_change_and_transfers_only_when_they_change():
    stream = io.StringIO()
    with open_progress("plain", stream) as progress:
        progress("app", "Pulling")
        for done in (0, 100, 200, 300):
            progress.transfer("  3f4e5a6b7c8d", done, 300, "Downloading")
        progress("app", "Pulled")
    lines = [line.split() for line in stream.getvalue().splitlines()]
    assert lines == [
        ["app", "Pulling"],
        ["3f4e5a6b7c8d", "Downloading"],
        ["3f4e5a6b7c8d", "Downloading", "complete"],
        ["app", "Pulled"],
    ]


def test_json_mode_gives_one_object_per_change():
    stream = io.StringIO()
    with open_progress("json", stream) as progress:
        progress("Image web", "[1/2] FROM busybox")
        progress.transfer("  abc", 5, 10, "Pushing")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert records == [
        {"resource": "Image web", "state": "[1/2] FROM busybox"},
        {"resource": "abc", "state": "Pushing", "current": 5, "total": 10},
    ]


def test_quiet_prints_nothing():
    stream = io.StringIO()
    with open_progress("quiet", stream) as progress:
        progress("app", "Pulling")
        progress.transfer("  abc", 1, 1, "Downloading")
    assert stream.getvalue() == ""


def test_auto_draws_only_when_stdout_and_the_stream_are_terminals(monkeypatch):
    monkeypatch.setattr(sys, "stdout", FakeTerminal())
    assert choose_mode("auto", FakeTerminal()) == "tty"
    assert choose_mode("auto", io.StringIO()) == "plain"
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert choose_mode("auto", FakeTerminal()) == "plain"
    assert choose_mode("quiet", FakeTerminal()) == "quiet"
    with pytest.raises(ValueError):
        choose_mode("fancy")
    assert isinstance(open_progress("plain", FakeTerminal()), LineDisplay)


def test_tty_mode_draws_a_bar_while_a_transfer_runs_and_the_state_after(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setenv("COLUMNS", "100")
    progress = open_progress("tty", terminal)
    assert isinstance(progress, RichDisplay)
    with progress:
        progress("app", "Pulling")
        progress.transfer("  3f4e5a6b7c8d", 1_000_000, 4_000_000, "Downloading")
        progress.progress.refresh()
        running = terminal.getvalue()
        progress.transfer("  3f4e5a6b7c8d", 4_000_000, 4_000_000, "Downloading")
        progress("app", "Pulled")
    assert "\x1b[" in running  # drawn in place
    assert "1.0/4.0 MB" in running and "━" in running
    final = terminal.getvalue()[len(running) :]
    assert "Downloading complete" in final and "Pulled" in final


def test_rich_is_not_imported_for_plain_output():
    code = (
        "import io, sys\n"
        "from composer.cli.progress import open_progress\n"
        "with open_progress('plain', io.StringIO()) as p:\n"
        "    p('x', 'y'); p.transfer('z', 1, 2, 'Downloading')\n"
        "print('rich' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
