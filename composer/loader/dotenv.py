"""The .env file format, read as docker compose reads it (compose-go's dotenv rules).

    # a comment line                  blank lines are skipped
    KEY=value # comment               unquoted: trimmed, ` #` starts a comment, ${VAR} expanded
    export KEY=value                  `export ` is ignored
    KEY: value                        the YAML-like separator works too
    KEY='lit ${X} \\n'                single quotes: literal (only \\' is unescaped)
    KEY="a\\tb ${X:-d}"                double quotes: \\n \\t \\r \\\\ \\" \\$ (…) escapes, then ${VAR}
    KEY="multi                        quoted values may span lines
    line"
    KEY=                              empty value
    KEY                               alone: take KEY from the lookup, or leave it out

Variables in values resolve from `lookup` first, then from keys defined
earlier in the file, then from `fallback` (e.g. earlier --env-file files).

Unlike compose-go, text after a closing quote other than a comment is an
error rather than the start of another entry, and so is an empty key.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable

from composer.loader.errors import LoadError, Problem, global_sources
from composer.loader.interpolate import Lookup, Resolver, TemplateError, parse_template, render
from composer.loader.nodes import Mark
from runtime.record import record


@record
class DotenvValue:
    value: str
    mark: Mark  # where the value starts (for a bare KEY, where the key is)


# Go's unicode-aware "space but not line break" (compose-go's isSpace).
_BLANK = frozenset("\t\v\f\r \x85\xa0")
_KEY_PUNCTUATION = frozenset("_.-[]")
_ESCAPES = re.compile(r'\\(?:[abcfnrtv$"\\]|0[0-9]{0,3})')
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    '"': '"',
    "\\": "\\",
    "$": "$$",  # stays a literal $ through the substitution that follows
}


def _unescape(match: re.Match[str]) -> str:
    body = match.group()[1:]
    if body in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[body]
    # \0ooo: exactly three octal digits, one byte; anything else stays as written
    digits = body[1:]
    if len(digits) == 3 and all(d in "01234567" for d in digits) and int(digits, 8) <= 0o377:
        return chr(int(digits, 8))
    return match.group()


def unescape_double_quoted(text: str) -> str:
    return _ESCAPES.sub(_unescape, text)


class _Reader:
    def __init__(self, text: str, filename: str) -> None:
        self.text = text
        self.filename = filename
        self.line_starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
        self.problems: list[Problem] = []

    def mark(self, pos: int) -> Mark:
        line = bisect.bisect_right(self.line_starts, pos) - 1
        return Mark(self.filename, line + 1, pos - self.line_starts[line] + 1)

    def line_end(self, pos: int) -> int:
        end = self.text.find("\n", pos)
        return len(self.text) if end < 0 else end

    def skip_blank(self, pos: int) -> int:
        while pos < len(self.text) and self.text[pos] in _BLANK:
            pos += 1
        return pos

    def problem(self, message: str, pos: int, key: str | None = None, hint: str | None = None):
        path = (key,) if key else ()
        self.problems.append(Problem(message, self.mark(pos), path, hint))


def parse_dotenv(
    text: str,
    filename: str,
    lookup: Lookup | None = None,
    *,
    fallback: Lookup | None = None,
    on_unset: Callable[[str, Mark], None] | None = None,
) -> dict[str, DotenvValue]:
    """Parse .env text; raises LoadError with every malformed line (FILE:LINE:COL).

    on_unset(name, mark) hears of each `$NAME` that resolved to nothing, as
    docker compose warns about those.
    """
    global_sources().add(filename, text)
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = _Reader(text, filename)
    values: dict[str, DotenvValue] = {}

    def resolve(name: str) -> str | None:
        if lookup is not None:
            found = lookup(name)
            if found is not None:
                return found
        if name in values:
            return values[name].value
        return fallback(name) if fallback is not None else None

    pos = 0
    size = len(text)
    while True:
        while pos < size and text[pos].isspace():
            pos += 1
        if pos >= size:
            break
        if text[pos] == "#":
            pos = reader.line_end(pos)
            continue
        pos = _read_entry(reader, pos, values, resolve, on_unset)
    if reader.problems:
        raise LoadError(reader.problems)
    return values


def _read_entry(
    reader: _Reader,
    pos: int,
    values: dict[str, DotenvValue],
    resolve: Callable[[str], str | None],
    on_unset: Callable[[str, Mark], None] | None,
) -> int:
    """Read one KEY[=value] entry starting at pos; returns where the next one may start."""
    text = reader.text
    if text.startswith("export", pos) and text[pos + 6 : pos + 7] in _BLANK:
        pos = reader.skip_blank(pos + 6)
    key_start = pos
    while pos < len(text) and text[pos] not in "=:\n":
        char = text[pos]
        if not (char in _BLANK or char.isalnum() or char in _KEY_PUNCTUATION):
            line = text[key_start : reader.line_end(key_start)]
            reader.problem(
                f"unexpected character {char!r} in variable name {line.strip()!r}",
                pos,
                hint="names use letters, digits and _ . - [ ]; write KEY=value",
            )
            return reader.line_end(pos)
        pos += 1
    key = text[key_start:pos].rstrip()
    if any(c in _BLANK for c in key):
        reader.problem(
            f"variable name {key!r} contains a space",
            key_start,
            hint="write KEY=value; a value with spaces needs no quotes, a name cannot have them",
        )
        return reader.line_end(pos)
    if pos >= len(text) or text[pos] == "\n":
        # A bare KEY takes its value from the environment, if it is there.
        found = resolve(key)
        if found is not None:
            values[key] = DotenvValue(found, reader.mark(key_start))
        return pos
    if not key:
        reader.problem(f"missing variable name before {text[pos]!r}", pos)
        return reader.line_end(pos)
    pos = reader.skip_blank(pos + 1)
    value_mark = reader.mark(pos)
    if pos < len(text) and text[pos] in "'\"":
        raw, end = _read_quoted(reader, pos, key)
        if raw is None:
            return end
        after = reader.skip_blank(end)
        if after < len(text) and text[after] not in "\n#":
            reader.problem(
                "unexpected text after the closing quote",
                after,
                key,
                hint="put the whole value inside the quotes, or start a comment with #",
            )
            return reader.line_end(after)
        if text[pos] == "'":
            values[key] = DotenvValue(raw, value_mark)
            return end
        raw = unescape_double_quoted(raw)
    else:
        end = reader.line_end(pos)
        raw = text[pos:end].split(" #", 1)[0].rstrip()
    try:
        value = render(parse_template(raw), _Resolver(resolve, on_unset, value_mark))
    except TemplateError as exc:
        reader.problems.append(Problem(str(exc), value_mark, (key,), exc.hint))
        return end
    values[key] = DotenvValue(value, value_mark)
    return end


class _Resolver(Resolver):
    def __init__(
        self, lookup: Lookup, on_unset: Callable[[str, Mark], None] | None, mark: Mark
    ) -> None:
        super().__init__(lookup)
        self.on_unset = on_unset
        self.mark = mark

    def unset(self, name: str) -> None:
        if self.on_unset is not None:
            self.on_unset(name, self.mark)


def _read_quoted(reader: _Reader, start: int, key: str) -> tuple[str | None, int]:
    """The raw text between quotes (escaped quotes unescaped) and the index after the closing one."""
    text = reader.text
    quote = text[start]
    chars: list[str] = []
    escaped = False
    for index in range(start + 1, len(text)):
        char = text[index]
        if char == quote and not escaped:
            return "".join(chars), index + 1
        if escaped:
            escaped = False
            if char != quote:  # other escapes are decoded later (double quotes) or kept
                chars.append("\\")
        elif char == "\\":
            escaped = True
            continue
        chars.append(char)
    reader.problem(
        f"unterminated quoted value (no closing {quote})",
        start,
        key,
        hint=f"end the value with {quote}; a {quote} inside it is written \\{quote}",
    )
    return None, len(text)
