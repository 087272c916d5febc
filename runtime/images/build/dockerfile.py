"""Dockerfile parsing: logical lines, directives, heredocs, flags, exec/shell form, stages.

`parse(text, path)` gives a `Dockerfile` of stages of `Instruction`s, every one with the
line it starts on. Variable substitution (`expand`, `expand_words`) is separate: the
builder applies it per instruction with the build's ARG and ENV values, as Docker does.
Every error is a `DockerfileError` naming the file and line.
"""

from __future__ import annotations

import json

from runtime.record import field, record

KNOWN = frozenset(
    [
        "FROM",
        "RUN",
        "CMD",
        "ENTRYPOINT",
        "COPY",
        "ADD",
        "ENV",
        "ARG",
        "WORKDIR",
        "USER",
        "EXPOSE",
        "LABEL",
        "VOLUME",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
        "ONBUILD",
        "MAINTAINER",
    ]
)

# Flags each instruction accepts (`--name=value` before its arguments).
FLAGS = {
    "FROM": {"platform"},
    "RUN": {"mount", "network", "security"},
    "COPY": {"from", "chown", "chmod", "link", "parents", "exclude"},
    "ADD": {"chown", "chmod", "link", "checksum", "keep-git-dir", "exclude"},
    "HEALTHCHECK": {"interval", "timeout", "start-period", "start-interval", "retries"},
}
# Flags that may be given bare (`--link` means `--link=true`).
BOOLEAN_FLAGS = {"link", "parents", "keep-git-dir"}

HEREDOC_INSTRUCTIONS = frozenset({"RUN", "COPY", "ADD"})


class DockerfileError(Exception):
    """A problem in a Dockerfile, at `file`:`line` (line 0: the file as a whole)."""

    def __init__(self, file: str, line: int, message: str) -> None:
        self.file = file
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"

    def render(self, text: str | None = None) -> str:
        """The message and the offending line, as the compose loader shows its errors.

        `text` is the Dockerfile's content (an inline one has no file to read back).
        """
        if text is None:
            try:
                with open(self.file, encoding="utf-8", errors="replace") as f:
                    text = f.read()
            except OSError:
                return str(self)
        lines = text.splitlines()
        if not 1 <= self.line <= len(lines):
            return str(self)
        return f"{self}\n  {self.line} | {lines[self.line - 1]}"


@record
class Heredoc:
    name: str
    content: str
    expand: bool  # False when the delimiter was quoted: <<"EOF" or <<'EOF'


@record(frozen=False)
class Instruction:
    keyword: str  # upper case
    args: str  # the arguments after the flags, continuations joined
    line: int
    end_line: int
    original: str  # the instruction as written (logical line), for messages and history
    flags: dict[str, str] = field(default_factory=dict)
    exec_form: list[str] | None = None  # the JSON array form, when used
    heredocs: tuple[Heredoc, ...] = ()

    def __str__(self) -> str:
        return self.original


@record(frozen=False)
class Stage:
    index: int
    base: str  # as written (before substitution)
    name: str | None
    platform: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)


@record(frozen=False)
class Dockerfile:
    path: str
    escape: str
    meta_args: list[Instruction]  # ARGs before the first FROM
    stages: list[Stage]
    directives: dict[str, str] = field(default_factory=dict)

    def stage_index(self, name_or_index: str) -> int | None:
        for stage in self.stages:
            if stage.name is not None and stage.name == name_or_index.lower():
                return stage.index
        if name_or_index.isdigit() and int(name_or_index) < len(self.stages):
            return int(name_or_index)
        return None


# ---------------------------------------------------------------- logical lines


def _directives(lines: list[str]) -> tuple[dict[str, str], int]:
    """Parser directives (`# escape=` ...) at the very top; and the lines they used."""
    found: dict[str, str] = {}
    for number, raw in enumerate(lines):
        text = raw.strip()
        if not text.startswith("#"):
            return found, number
        key, eq, value = text[1:].partition("=")
        key = key.strip().lower()
        if not eq or not key.isalnum() or " " in key:
            return found, number
        if key in found:
            return found, number  # Docker ignores a repeated directive and ends the block
        found[key] = value.strip()
    return found, len(lines)


def _heredoc_marks(text: str) -> list[tuple[str, bool, bool]]:
    """(name, quoted, strip_tabs) for each `<<NAME`, `<<-NAME`, `<<"NAME"` in a line."""
    marks = []
    i = 0
    while True:
        i = text.find("<<", i)
        if i < 0:
            return marks
        j = i + 2
        strip = j < len(text) and text[j] == "-"
        if strip:
            j += 1
        quote = text[j] if j < len(text) and text[j] in "\"'" else ""
        if quote:
            j += 1
        k = j
        while k < len(text) and (text[k].isalnum() or text[k] in "_-."):
            k += 1
        name = text[j:k]
        if name and (not quote or (k < len(text) and text[k] == quote)):
            marks.append((name, bool(quote), strip))
            i = k + (1 if quote else 0)
        else:
            i = j


def parse(text: str, path: str = "Dockerfile") -> Dockerfile:
    """Parse a whole Dockerfile; raise DockerfileError at the first problem."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.splitlines()
    directives, i = _directives(lines)
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise DockerfileError(path, 1, f"invalid escape directive {escape!r}: use \\ or `")

    instructions: list[Instruction] = []
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        start = i
        parts = []
        while True:
            body = lines[i].rstrip()
            continued = body.endswith(escape)
            parts.append(body[:-1] if continued else body)
            i += 1
            if not continued:
                break
            # Comment and blank lines inside a continued instruction are dropped.
            while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                i += 1
            if i >= len(lines):
                break
        logical = "".join(parts).strip()
        keyword, _, rest = logical.partition(" ")
        if "\t" in keyword:
            keyword, _, more = keyword.partition("\t")
            rest = more + " " + rest
        keyword = keyword.upper()
        heredocs: list[Heredoc] = []
        if keyword in HEREDOC_INSTRUCTIONS:
            for name, quoted, strip_tabs in _heredoc_marks(rest):
                body_lines = []
                while i < len(lines):
                    candidate = lines[i].lstrip("\t") if strip_tabs else lines[i]
                    i += 1
                    if candidate == name:
                        break
                    body_lines.append(candidate)
                else:
                    raise DockerfileError(
                        path, start + 1, f"heredoc <<{name} is not terminated by a {name} line"
                    )
                content = "".join(b + "\n" for b in body_lines)
                heredocs.append(Heredoc(name, content, not quoted))
        instructions.append(
            _instruction(path, keyword, rest.strip(), start + 1, i, logical, tuple(heredocs))
        )
    return _stages(path, escape, directives, instructions)


def _instruction(path, keyword, rest, line, end_line, original, heredocs) -> Instruction:
    if keyword not in KNOWN:
        raise DockerfileError(path, line, f"unknown instruction: {keyword}")
    flags: dict[str, str] = {}
    allowed = FLAGS.get(keyword, set())
    while rest.startswith("--"):
        word, _, remainder = rest.partition(" ")
        if "\t" in word:
            word, _, more = word.partition("\t")
            remainder = more + " " + remainder
        name, eq, value = word[2:].partition("=")
        if not name:
            break  # a lone "--" is an argument
        if name not in allowed:
            raise DockerfileError(path, line, f"{keyword} does not take the flag --{name}")
        if not eq:
            if name not in BOOLEAN_FLAGS:
                raise DockerfileError(path, line, f"{keyword} --{name} needs a value (--{name}=…)")
            value = "true"
        if name in flags and name not in ("mount", "exclude"):
            raise DockerfileError(path, line, f"{keyword} --{name} is given twice")
        flags[name] = value if name not in flags else flags[name] + "\n" + value
        rest = remainder.lstrip()
    exec_form = None
    if keyword in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"):
        exec_form = _json_array(rest)
    if keyword == "SHELL" and exec_form is None:
        raise DockerfileError(path, line, 'SHELL needs the JSON form, e.g. SHELL ["/bin/sh", "-c"]')
    if not rest and keyword not in ("CMD", "ENTRYPOINT") and not heredocs:
        raise DockerfileError(path, line, f"{keyword} needs at least one argument")
    return Instruction(keyword, rest, line, end_line, original, flags, exec_form, heredocs)


def _json_array(text: str) -> list[str] | None:
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None  # not JSON: Docker treats it as the shell form
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _stages(path, escape, directives, instructions: list[Instruction]) -> Dockerfile:
    meta: list[Instruction] = []
    stages: list[Stage] = []
    for inst in instructions:
        if inst.keyword == "FROM":
            words = inst.args.split()
            name = None
            if len(words) == 3 and words[1].lower() == "as":
                name = words[2].lower()
                if not _valid_stage_name(name):
                    raise DockerfileError(path, inst.line, f"invalid stage name {words[2]!r}")
                if any(s.name == name for s in stages):
                    raise DockerfileError(path, inst.line, f"stage name {name!r} is used twice")
            elif len(words) != 1:
                raise DockerfileError(path, inst.line, "FROM takes an image and optionally AS name")
            stages.append(Stage(len(stages), words[0], name, inst.flags.get("platform"), inst.line))
        elif not stages:
            if inst.keyword != "ARG":
                raise DockerfileError(
                    path, inst.line, f"{inst.keyword} before the first FROM (only ARG may be)"
                )
            meta.append(inst)
        else:
            if inst.keyword == "ONBUILD":
                parse_onbuild(inst, path)  # check it now, at its line
            stages[-1].instructions.append(inst)
    if not stages:
        raise DockerfileError(path, 0, "no FROM instruction: a Dockerfile needs at least one")
    return Dockerfile(path, escape, meta, stages, directives)


def _valid_stage_name(name: str) -> bool:
    return (
        bool(name)
        and name[0].isalpha()
        and all(c.isalnum() or c in "_.-" for c in name)
        and len(name) <= 128
    )


def parse_onbuild(inst: Instruction, path: str = "Dockerfile") -> Instruction:
    """The instruction an ONBUILD carries, parsed (ONBUILD, FROM and MAINTAINER refused)."""
    text = inst.args
    keyword = text.split(None, 1)[0].upper() if text.split() else ""
    if keyword in ("ONBUILD", "FROM", "MAINTAINER"):
        raise DockerfileError(path, inst.line, f"ONBUILD cannot trigger {keyword}")
    rest = text[len(keyword) :].strip()
    return _instruction(path, keyword, rest, inst.line, inst.end_line, text, ())


# ---------------------------------------------------------------- substitution


def _is_name(text: str) -> bool:
    return bool(text) and not text[0].isdigit() and _name_end(text, 0) == len(text)


def _name_end(text: str, i: int) -> int:
    j = i
    while j < len(text) and (text[j].isalnum() or text[j] == "_"):
        j += 1
    return j


def _variable(text: str, i: int, lookup, escape: str, where) -> tuple[str, int]:
    """Expand the variable at text[i] == "$"; (value, index after it)."""
    if i + 1 < len(text) and text[i + 1] == "{":
        depth, j = 1, i + 2
        while j < len(text) and depth:
            if text[j] == escape:
                j += 1
            elif text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
            j += 1
        if depth:
            raise where(f"missing '}}' in {text[i:]!r}")
        inner = text[i + 2 : j - 1]
        end = _name_end(inner, 0)
        name, modifier = inner[:end], inner[end:]
        if not name or not (name[0].isalpha() or name[0] == "_"):
            raise where(f"bad substitution: ${{{inner}}}")
        value = lookup(name)
        if not modifier:
            return value or "", j
        for op in (":-", ":+", ":?", "-", "+", "?"):
            if modifier.startswith(op):
                word = modifier[len(op) :]
                break
        else:
            raise where(f"unsupported modifier in ${{{inner}}}")
        is_set = value is not None
        nonempty = bool(value)
        present = nonempty if op.startswith(":") else is_set
        if op.endswith("-"):
            return (value if present else expand(word, lookup, escape)), j
        if op.endswith("+"):
            return (expand(word, lookup, escape) if present else ""), j
        if not present:
            raise where(f"{name}: {expand(word, lookup, escape) or 'is not set'}")
        return value, j
    end = _name_end(text, i + 1)
    if end == i + 1 or text[i + 1].isdigit():
        return "$", i + 1
    return lookup(text[i + 1 : end]) or "", end


def _default_where(message: str) -> Exception:
    return ValueError(message)


def _lex(text: str, lookup, escape: str, split: bool, quotes: bool, where) -> list[str]:
    words: list[str] = []
    word: list[str] = []
    started = False  # a word exists even if empty ("" is one empty word)
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote == "'":
            if ch == "'":
                quote = ""
            else:
                word.append(ch)
            i += 1
            continue
        if ch == escape and i + 1 < len(text):
            nxt = text[i + 1]
            if quote == '"' and nxt not in ('"', "$", escape):
                word.append(ch)  # inside double quotes only these are escaped
            elif not quotes and nxt != "$":
                word.append(ch)
            word.append(nxt)
            started = True
            i += 2
            continue
        if ch == "$":
            value, i = _variable(text, i, lookup, escape, where)
            word.append(value)
            started = True
            continue
        if quotes and ch in "\"'" and (not quote or ch == quote):
            quote = "" if quote else ch
            started = True
            i += 1
            continue
        if split and not quote and ch.isspace():
            if started or word:
                words.append("".join(word))
            word, started = [], False
            i += 1
            continue
        word.append(ch)
        started = True
        i += 1
    if quote:
        raise where(f"unterminated {quote} quote in {text!r}")
    if started or word or not split:
        words.append("".join(word))
    return words


def expand(text: str, lookup, escape: str = "\\", *, quotes: bool = True, where=None) -> str:
    """`text` with $VAR, ${VAR}, ${VAR:-x}, ${VAR:+x} ... replaced; quotes removed if `quotes`.

    `lookup(name)` returns the value or None if unset. `where(message)` makes the error
    to raise (the builder passes one that names the Dockerfile line).
    """
    return _lex(text, lookup, escape, False, quotes, where or _default_where)[0]


def expand_words(text: str, lookup, escape: str = "\\", *, where=None) -> list[str]:
    """Whitespace-separated words of `text`, each expanded and unquoted."""
    return _lex(text, lookup, escape, True, True, where or _default_where)


def key_values(inst: Instruction, lookup, escape: str, path: str) -> list[tuple[str, str]]:
    """ENV/LABEL pairs: `k=v k2="v 2"`, or the old `ENV key value with spaces` form."""

    def where(message: str) -> DockerfileError:
        return DockerfileError(path, inst.line, message)

    text = inst.args
    words = _raw_words(text, escape)
    if not words or "=" not in words[0]:
        # Old form: one key, the rest of the line is the value.
        key, _, value = text.partition(" ")
        if not value.strip():
            raise where(f"{inst.keyword} {key} needs a value")
        return [(key, expand(value.strip(), lookup, escape, where=where))]
    pairs = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise where(f"{inst.keyword} expects key=value, got {word!r}")
        pairs.append(
            (expand(key, lookup, escape, where=where), expand(value, lookup, escape, where=where))
        )
    return pairs


def _raw_words(text: str, escape: str) -> list[str]:
    """Split on unquoted, unescaped whitespace, keeping quotes and escapes for expand()."""
    words, word, quote, i = [], [], "", 0
    while i < len(text):
        ch = text[i]
        if ch == escape and quote != "'" and i + 1 < len(text):
            word.append(text[i : i + 2])
            i += 2
            continue
        if ch in "\"'" and (not quote or ch == quote):
            quote = "" if quote else ch
        elif ch.isspace() and not quote:
            if word:
                words.append("".join(word))
                word = []
            i += 1
            continue
        word.append(ch)
        i += 1
    if word:
        words.append("".join(word))
    return words


def arg_declarations(inst: Instruction, lookup, escape: str, path: str):
    """ARG's (name, default or None) pairs: `ARG a`, `ARG a=1 b`."""

    def where(message: str) -> DockerfileError:
        return DockerfileError(path, inst.line, message)

    out = []
    for word in _raw_words(inst.args, escape):
        name, eq, value = word.partition("=")
        if not _is_name(name):
            raise where(f"invalid ARG name {name!r}")
        out.append((name, expand(value, lookup, escape, where=where) if eq else None))
    return out


# ---------------------------------------------------------------- durations (HEALTHCHECK)

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go-style duration ("30s", "1m30s", "500ms") in seconds; ValueError if malformed."""
    if text == "0":
        return 0.0
    total, i, seen = 0.0, 0, False
    while i < len(text):
        j = i
        while j < len(text) and (text[j].isdigit() or text[j] == "."):
            j += 1
        if j == i:
            raise ValueError(f"invalid duration {text!r}")
        number = float(text[i:j])
        k = j
        while k < len(text) and not (text[k].isdigit() or text[k] == "."):
            k += 1
        unit = text[j:k]
        if unit not in _UNITS:
            raise ValueError(f"invalid duration {text!r}: unknown unit {unit!r}")
        total += number * _UNITS[unit]
        seen = True
        i = k
    if not seen:
        raise ValueError(f"invalid duration {text!r}")
    return total
