"""Variable substitution in Compose values, and the type casts that follow it.

The syntax is the Compose Specification's (the same as compose-go's template
package): `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
`${VAR:?message}`, `${VAR?message}`, `${VAR:+alternate}`, `${VAR+alternate}`,
with nested expressions inside default, alternate and message, and `$$` for a
literal `$`. A `$` followed by anything else is kept as written. Names are
ASCII letters, digits and `_`, not starting with a digit.

One parser serves three callers: `interpolate` (the tree pass), `find_variables`
(`composer config --variables`) and the .env reader (composer.loader.dotenv).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from composer.loader.errors import LoadError, Problem, global_sources
from composer.loader.nodes import MapNode, Mark, SeqNode
from runtime.record import record

if TYPE_CHECKING:
    from composer.loader.environment import Environment

Lookup = Callable[[str], "str | None"]

ESCAPE_HINT = "a literal $ is written $$"

# Longest first, so ":-" is not read as ":" followed by "-".
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")
_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")


class TemplateError(Exception):
    """A value that cannot be substituted; str() is the message for the user."""

    hint: str | None = None


class InvalidTemplate(TemplateError):
    hint = ESCAPE_HINT


class MissingRequired(TemplateError):
    """`${VAR?message}` or `${VAR:?message}` with VAR unset (or empty for `:?`)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        text = f"required variable {name} is missing a value"
        super().__init__(f"{text}: {reason}" if reason else text)


@record
class Reference:
    """One `$NAME` or `${NAME<op><word>}`; word is parsed, word_text as written."""

    name: str
    op: str | None = None
    word: tuple[str | Reference, ...] = ()
    word_text: str = ""


Template = tuple[str | Reference, ...]


@functools.lru_cache(maxsize=4096)
def parse_template(text: str) -> Template:
    """Split text into literal strings and References; raises InvalidTemplate."""
    parts: list[str | Reference] = []
    literal: list[str] = []
    pos = 0
    while True:
        dollar = text.find("$", pos)
        if dollar < 0:
            literal.append(text[pos:])
            break
        literal.append(text[pos:dollar])
        nxt = text[dollar + 1 : dollar + 2]
        if nxt == "$":
            literal.append("$")
            pos = dollar + 2
            continue
        if nxt == "{":
            reference, pos = _parse_braced(text, dollar)
        else:
            match = _NAME.match(text, dollar + 1)
            if not match:  # `$` before anything else is just a dollar sign
                literal.append("$")
                pos = dollar + 1
                continue
            reference, pos = Reference(match.group()), match.end()
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(reference)
    if any(literal):
        parts.append("".join(literal))
    return tuple(p for p in parts if p != "")


def _parse_braced(text: str, dollar: int) -> tuple[Reference, int]:
    start = dollar + 2
    match = _NAME.match(text, start)
    if not match:
        found = text[start : start + 1]
        why = "an unclosed '${'" if not found else f"no variable name after '${{' (found {found!r})"
        raise InvalidTemplate(f"invalid interpolation format in {text!r}: {why}")
    name, pos = match.group(), match.end()
    if text.startswith("}", pos):
        return Reference(name), pos + 1
    op = next((o for o in _OPERATORS if text.startswith(o, pos)), None)
    if op is None:
        found = text[pos : pos + 1]
        why = (
            f"'${{{name}' is not closed"
            if not found
            else f"unexpected {found!r} after '${{{name}' (expected '}}', ':-', '-', ':?', '?', "
            "':+' or '+')"
        )
        raise InvalidTemplate(f"invalid interpolation format in {text!r}: {why}")
    word_start = pos + len(op)
    depth = 1
    for index in range(word_start, len(text)):
        char = text[index]
        if char == "\n":  # as in compose-go: an expression stays on one line
            break
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                word_text = text[word_start:index]
                return Reference(name, op, parse_template(word_text), word_text), index + 1
    raise InvalidTemplate(
        f"invalid interpolation format in {text!r}: '${{{name}{op}' is not closed"
    )


class Resolver:
    """How a template meets its environment; subclasses report unset names and defaults."""

    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup

    def unset(self, name: str) -> None:
        """A plain reference to a variable that is not set (it becomes "")."""

    def default_used(self, name: str, value: str) -> None:
        """A `-` or `:-` default replaced the variable."""


def render(template: Template, resolver: Resolver) -> str:
    """Substitute a parsed template; raises MissingRequired."""
    out: list[str] = []
    for part in template:
        out.append(part if isinstance(part, str) else _resolve(part, resolver))
    return "".join(out)


def _resolve(ref: Reference, resolver: Resolver) -> str:
    value = resolver.lookup(ref.name)
    op = ref.op
    if op is None:
        if value is None:
            resolver.unset(ref.name)
            return ""
        return value
    # The colon forms treat an empty value like an unset one.
    missing = value is None or (op.startswith(":") and value == "")
    kind = op[-1]
    if kind == "-":
        if missing:
            default = render(ref.word, resolver)
            resolver.default_used(ref.name, default)
            return default
        return value
    if kind == "?":
        if missing:
            raise MissingRequired(ref.name, render(ref.word, resolver))
        return value
    # "+": the alternate when set, else the variable's own (empty) value.
    return render(ref.word, resolver) if not missing else (value or "")


def substitute(text: str, lookup: Lookup) -> str:
    """Substitute with no reporting (unset variables become ""); raises TemplateError."""
    if "$" not in text:
        return text
    return render(parse_template(text), Resolver(lookup))


class _EnvResolver(Resolver):
    """Reports to the Environment: warnings once per name, defaults for --explain."""

    def __init__(self, env: Environment, mark: Mark | None, path: tuple) -> None:
        super().__init__(env.lookup)
        self.env = env
        self.mark = mark
        self.path = path
        self.problems: list[Problem] = []

    def unset(self, name: str) -> None:
        if self.env.strict:
            self.problems.append(
                Problem(
                    f'the "{name}" variable is not set (--strict-env)',
                    self.mark,
                    self.path,
                    f"set {name} in the shell or an env file, or give a default: ${{{name}:-value}}",
                )
            )
        else:
            self.env.report_unset(name, self.mark)

    def default_used(self, name: str, value: str) -> None:
        self.env.record_default(name, value, self.mark)


def _substitute_value(
    text: str, env: Environment, mark: Mark | None, path: tuple
) -> tuple[str, list[Problem]]:
    resolver = _EnvResolver(env, mark, path)
    try:
        result = render(parse_template(text), resolver)
    except TemplateError as exc:
        return text, [Problem(str(exc), mark, path, exc.hint)]
    return result, resolver.problems


def interpolate_string(text: str, env: Environment, mark: Mark | None, path: tuple = ()) -> str:
    """Substitute one string from a file (include, extends, env_file use it); raises LoadError."""
    if "$" not in text:
        return text
    result, problems = _substitute_value(text, env, mark, tuple(path))
    if problems:
        raise LoadError(problems)
    return result


def _string_slots(node: Any, path: tuple) -> Iterator[tuple[Any, Any, tuple, Mark | None]]:
    """(container, key-or-index, path, mark) for every string value under node; keys excluded."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                mark = node.mark_of(key) if isinstance(node, MapNode) else None
                yield node, key, (*path, key), mark
            elif isinstance(value, dict | list):
                yield from _string_slots(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            if isinstance(value, str):
                mark = node.mark_of(index) if isinstance(node, SeqNode) else None
                yield node, index, (*path, index), mark
            elif isinstance(value, dict | list):
                yield from _string_slots(value, (*path, index))


def interpolate(tree: Any, env: Environment) -> None:
    """Substitute variables in every string value of tree, in place; keys stay as written.

    Raises LoadError with every problem of the tree: bad syntax, required
    variables missing, and unset variables when env.strict.
    """
    problems: list[Problem] = []
    for container, key, path, mark in list(_string_slots(tree, ())):
        text = container[key]
        if "$" not in text:
            continue
        result, found = _substitute_value(text, env, mark, path)
        problems.extend(found)
        container[key] = result  # item assignment keeps the container's marks
    if problems:
        raise LoadError(problems)


# --- variables, for `composer config --variables` -------------------------------------


@record
class Variable:
    """A variable the files use; default/alternate as written (None when not given)."""

    name: str
    required: bool
    default: str | None
    alternate: str | None
    mark: Mark | None


def _references(template: Template) -> Iterator[Reference]:
    for part in template:
        if isinstance(part, Reference):
            yield part
            yield from _references(part.word)


def find_variables(tree: Any) -> list[Variable]:
    """Each variable used in the tree's values, once, in order of first use.

    A name used several times gathers what its uses say: required if any use
    requires it, and the first default and alternate written. Values with bad
    syntax are skipped here; `interpolate` reports them.
    """
    found: dict[str, Variable] = {}
    for container, key, _path, mark in _string_slots(tree, ()):
        text = container[key]
        if "$" not in text:
            continue
        try:
            template = parse_template(text)
        except InvalidTemplate:
            continue
        for ref in _references(template):
            kind = ref.op[-1] if ref.op else None
            new = Variable(
                ref.name,
                kind == "?",
                ref.word_text if kind == "-" else None,
                ref.word_text if kind == "+" else None,
                mark,
            )
            old = found.get(ref.name)
            if old is None:
                found[ref.name] = new
            else:
                found[ref.name] = Variable(
                    old.name,
                    old.required or new.required,
                    old.default if old.default is not None else new.default,
                    old.alternate if old.alternate is not None else new.alternate,
                    old.mark,
                )
    return list(found.values())


# --- casts after interpolation ---------------------------------------------------------
#
# Values that must be numbers or booleans may arrive as strings ("${PORT}", or
# quoted in YAML). compose-go casts exactly these paths after interpolation
# (its loader/interpolate.go table); other typed fields stay strings and are
# parsed later (durations, byte sizes, published ports, mem_swappiness…).
# "*" is any mapping key, "[]" any list item.

_INT64 = (-(2**63), 2**63 - 1)
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class _CastError(Exception):
    pass


def _to_int(text: str) -> int:
    if not _INT_TEXT.fullmatch(text):
        raise _CastError(f"{text!r} is not an integer")
    value = int(text, 10)
    if not _INT64[0] <= value <= _INT64[1]:
        raise _CastError(f"{text!r} is out of range for an integer")
    return value


def _to_float(text: str) -> float:
    if not _FLOAT_TEXT.fullmatch(text):
        raise _CastError(f"{text!r} is not a number")
    return float(text)


_YAML11_BOOLEANS = {"y": True, "yes": True, "on": True, "n": False, "no": False, "off": False}


def _to_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in _YAML11_BOOLEANS:
        return _YAML11_BOOLEANS[lowered]
    raise _CastError(f"{text!r} is not a boolean (true or false)")


def _service(*parts: str) -> tuple[str, ...]:
    return ("services", "*", *parts)


CAST_TABLE: dict[tuple[str, ...], Callable[[str], Any]] = {
    _service("cpu_count"): _to_int,
    _service("cpu_percent"): _to_float,
    _service("cpu_period"): _to_int,
    _service("cpu_quota"): _to_int,
    _service("cpu_rt_period"): _to_int,
    _service("cpu_rt_runtime"): _to_int,
    _service("cpus"): _to_float,
    _service("cpu_shares"): _to_int,
    _service("init"): _to_bool,
    _service("depends_on", "*", "required"): _to_bool,
    _service("depends_on", "*", "restart"): _to_bool,
    _service("deploy", "replicas"): _to_int,
    _service("deploy", "update_config", "parallelism"): _to_int,
    _service("deploy", "update_config", "max_failure_ratio"): _to_float,
    _service("deploy", "rollback_config", "parallelism"): _to_int,
    _service("deploy", "rollback_config", "max_failure_ratio"): _to_float,
    _service("deploy", "restart_policy", "max_attempts"): _to_int,
    _service("deploy", "placement", "max_replicas_per_node"): _to_int,
    _service("healthcheck", "retries"): _to_int,
    _service("healthcheck", "disable"): _to_bool,
    _service("oom_kill_disable"): _to_bool,
    _service("oom_score_adj"): _to_int,
    _service("pids_limit"): _to_int,
    _service("ports", "[]", "target"): _to_int,
    _service("privileged"): _to_bool,
    _service("read_only"): _to_bool,
    _service("scale"): _to_int,
    _service("stdin_open"): _to_bool,
    _service("tty"): _to_bool,
    _service("ulimits", "*"): _to_int,
    _service("ulimits", "*", "hard"): _to_int,
    _service("ulimits", "*", "soft"): _to_int,
    _service("volumes", "[]", "read_only"): _to_bool,
    _service("volumes", "[]", "volume", "nocopy"): _to_bool,
    ("networks", "*", "external"): _to_bool,
    ("networks", "*", "internal"): _to_bool,
    ("networks", "*", "attachable"): _to_bool,
    ("networks", "*", "enable_ipv4"): _to_bool,
    ("networks", "*", "enable_ipv6"): _to_bool,
    ("volumes", "*", "external"): _to_bool,
    ("secrets", "*", "external"): _to_bool,
    ("configs", "*", "external"): _to_bool,
}


def _matching(node: Any, pattern: tuple[str, ...], path: tuple) -> Iterator[tuple[Any, Any, tuple]]:
    """(container, key, path) of every string value whose path fits pattern."""
    step, rest = pattern[0], pattern[1:]
    if isinstance(node, dict):
        if step == "[]":
            return
        keys = list(node) if step == "*" else ([step] if step in node else [])
    elif isinstance(node, list):
        if step not in ("[]", "*"):
            return
        keys = list(range(len(node)))
    else:
        return
    for key in keys:
        value = node[key]
        if not rest:
            if isinstance(value, str):
                yield node, key, (*path, key)
        else:
            yield from _matching(value, rest, (*path, key))


def _mark_in(container: Any, key: Any) -> Mark | None:
    if isinstance(container, MapNode | SeqNode):
        return container.mark_of(key)
    return None


def cast(tree: Any, env: Environment | None = None) -> None:
    """Turn strings at typed paths into int/float/bool, in place; raises LoadError.

    With env, YAML 1.1 booleans (yes/no/on/off/y/n), which compose-go accepts
    here with a warning, are warned about in env.warnings.
    """
    hits = [
        (_mark_in(container, key), container, key, path, caster)
        for pattern, caster in CAST_TABLE.items()
        for container, key, path in _matching(tree, pattern, ())
    ]
    hits.sort(key=lambda hit: _document_order(hit[0]))
    problems: list[Problem] = []
    for mark, container, key, path, caster in hits:
        text = container[key]
        try:
            container[key] = caster(text)
        except _CastError as exc:
            problems.append(Problem(str(exc), mark, path, _interpolation_hint(mark)))
            continue
        if env is not None and caster is _to_bool and text.lower() in _YAML11_BOOLEANS:
            word = "true" if container[key] else "false"
            where = f"{mark}: " if mark else ""
            env.warnings.append(
                f"{where}{text!r} for a boolean is YAML 1.1; write {word} (YAML 1.2)"
            )
    if problems:
        raise LoadError(problems)


def _interpolation_hint(mark: Mark | None) -> str | None:
    """Say so when the bad value came out of interpolation: the user sees a different text."""
    line = global_sources().line(mark.file, mark.line) if mark else None
    if line is not None and "$" in line[mark.col - 1 :]:
        return "this is the value after interpolation; check the variables it uses"
    return None


def _document_order(mark: Mark | None) -> tuple:
    return (0, mark.file, mark.line, mark.col) if mark else (1, "", 0, 0)
