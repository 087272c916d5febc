"""Schema validation of the merged Compose tree (schemas/compose.schema.json).

Two validators, one schema. The fast one is fastjsonschema's generated code,
compiled once and cached on disk as a marshalled code object (start-up must
not pay for compiling the schema, nor for `import jsonschema`). Only when it
says "invalid" do we import jsonschema and collect every error, each turned
into a Problem with the mark of the offending key or value and a hint.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any

from composer.cache import cache_dir, write_private
from composer.loader.errors import LoadError, Problem, format_path
from composer.loader.nodes import locate, locate_key

# pathlib costs milliseconds at start-up; plain os.path strings do here.
SCHEMA_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "schemas",
    "compose.schema.json",
)

# Keys that, found on a top-level mapping, say "this is a service written one level too high".
_SERVICE_HINT_KEYS = {"image", "build", "command", "ports", "environment", "volumes", "depends_on"}

_EXTENSION_PATTERN = "^x-"

# For mappings keyed by names: what the names are, and their rule in words.
_NAME_KINDS = {
    "services": "service",
    "networks": "network",
    "volumes": "volume",
    "secrets": "secret",
    "configs": "config",
    "models": "model",
    "depends_on": "service",
    "ulimits": "ulimit",
}
_NAME_RULES = {
    "^[a-zA-Z0-9._-]+$": "use only letters, digits, '.', '_' and '-'",
    "^[a-z]+$": "use only lowercase letters, e.g. nofile or nproc",
}

_fast_validators: dict[str, Callable[[Any], bool]] = {}
_schemas: dict[str, dict] = {}


def validate(tree: Any, schema_path: str = SCHEMA_PATH) -> None:
    """Raise LoadError listing every schema violation in tree; return if it is valid."""
    if fast_validator(schema_path)(tree):
        return
    problems = explain(tree, schema_path)
    if not problems:  # the two validators disagree; never let bad input through silently
        problems = [Problem("the file does not match the Compose schema", locate(tree, ()))]
    raise LoadError(problems)


# --- fast path ---------------------------------------------------------------------------


def fast_validator(schema_path: str = SCHEMA_PATH) -> Callable[[Any], bool]:
    """A function tree -> bool, built once per process (from the disk cache when possible)."""
    check = _fast_validators.get(schema_path)
    if check is None:
        with open(schema_path, "rb") as fh:
            schema_bytes = fh.read()
        check = _fast_validators[schema_path] = load_fast_validator(schema_bytes, cache_dir())
    return check


def load_fast_validator(schema_bytes: bytes, directory: str | None) -> Callable[[Any], bool]:
    """Load the compiled validator for schema_bytes from directory, compiling it if absent.

    The cache key covers everything the code object depends on: the schema's
    bytes, the fastjsonschema version and the Python bytecode version. Any
    problem with the cache (unwritable, corrupt) falls back to compiling in
    memory.
    """
    import importlib.util
    import marshal

    generator = _generator_version()
    if generator is None:  # pragma: no cover - fastjsonschema is a dependency
        return _jsonschema_is_valid(schema_bytes)
    key = _sha256(schema_bytes + generator + importlib.util.MAGIC_NUMBER).hexdigest()
    path = os.path.join(directory, f"compose-schema-{key[:32]}.bin") if directory else None
    code = _read_cached_code(path) if path else None
    if code is None:
        code = compile(_generate_source(schema_bytes), "<compose-schema>", "exec")
        if path is not None:
            write_private(path, marshal.dumps(code))
    namespace: dict[str, Any] = {"__name__": "composer_compose_schema"}
    exec(code, namespace)
    run = namespace["validate"]
    invalid = namespace["JsonSchemaValueException"]

    def is_valid(tree: Any) -> bool:
        try:
            run(tree)
        except invalid:
            return False
        return True

    return is_valid


def _read_cached_code(path: str) -> Any:
    """The code object cached at path, or None if absent, corrupt or not safely ours."""
    import marshal
    import types

    from composer.cache import read_private

    data = read_private(path)
    try:
        code = marshal.loads(data) if data else None
    except (EOFError, ValueError, TypeError):
        return None
    return code if isinstance(code, types.CodeType) else None


def _sha256(data: bytes) -> Any:
    from composer.digest import sha256

    return sha256(data)


def _generator_version() -> bytes | None:
    """fastjsonschema's version file, read without importing the package (that costs ms)."""
    import importlib.util

    spec = importlib.util.find_spec("fastjsonschema")
    if spec is None or not spec.origin:
        return None
    try:
        with open(os.path.join(os.path.dirname(spec.origin), "version.py"), "rb") as fh:
            return fh.read()
    except OSError:
        return spec.origin.encode()


def _generate_source(schema_bytes: bytes) -> str:
    import json

    import fastjsonschema

    source = fastjsonschema.compile_to_code(json.loads(schema_bytes))
    # Only valid/invalid matters here (jsonschema explains errors), so drop the
    # schema copies embedded in every raise, and imports that only cost start-up
    # time: fastjsonschema itself, and decimal (YAML never yields a Decimal).
    # test_schema_compat's differential test guards these edits.
    source = re.sub(r", definition=\{.*?\}, rule='", ", definition=None, rule='", source)
    source = source.replace(
        "from fastjsonschema import JsonSchemaValueException, JsonSchemaValuesException",
        "class JsonSchemaValueException(ValueError):\n"
        "    def __init__(self, message, value=None, name=None, definition=None, rule=None):\n"
        "        super().__init__(message)\n"
        "JsonSchemaValuesException = JsonSchemaValueException",
    )
    return source.replace("from decimal import Decimal\n", "class Decimal:\n    pass\n", 1)


def _jsonschema_is_valid(schema_bytes: bytes) -> Callable[[Any], bool]:
    import json

    import jsonschema

    validator = jsonschema.Draft7Validator(json.loads(schema_bytes))
    return validator.is_valid


# --- explaining errors -------------------------------------------------------------------


def load_schema(schema_path: str = SCHEMA_PATH) -> dict:
    schema = _schemas.get(schema_path)
    if schema is None:
        import json

        with open(schema_path, "rb") as fh:
            schema = _schemas[schema_path] = json.loads(fh.read())
    return schema


def explain(tree: Any, schema_path: str = SCHEMA_PATH) -> list[Problem]:
    """Every schema violation in tree as a Problem, sorted by location."""
    import jsonschema

    schema = load_schema(schema_path)
    validator = jsonschema.Draft7Validator(schema)
    reporter = _Reporter(tree, schema)
    problems: list[Problem] = []
    for error in validator.iter_errors(tree):
        problems.extend(reporter.describe(error))
    unique = list(dict.fromkeys(problems))
    unique.sort(key=_sort_key)
    return unique


def _sort_key(problem: Problem) -> tuple:
    mark = problem.mark
    where = (mark.file, mark.line, mark.col) if mark else ("", 0, 0)
    return (*where, format_path(problem.path), problem.message)


_TYPE_ORDER = ["string", "number", "integer", "boolean", "object", "array", "null"]
_TYPE_WORDS = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "a boolean",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def type_of(value: Any) -> str:
    """The JSON Schema type name of a loaded YAML value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _fits(value: Any, type_name: str) -> bool:
    actual = type_of(value)
    if type_name == "number":
        return actual in ("number", "integer")
    if type_name == "integer":
        return actual == "integer" or (actual == "number" and float(value).is_integer())
    return actual == type_name


def _join_or(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def _describe_value(value: Any) -> str:
    """'got …' text: the type, and the value itself when it is a short scalar."""
    kind = type_of(value)
    word = _TYPE_WORDS.get(kind, kind)
    if kind in ("string", "number", "integer", "boolean"):
        shown = _short(value)
        return f"{word} ({shown})"
    return word


def _short(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _did_you_mean(word: str, choices: list[str]) -> str | None:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


class _Reporter:
    """Turns jsonschema errors into Problems about the user's tree."""

    def __init__(self, tree: Any, schema: dict) -> None:
        self.tree = tree
        self.schema = schema

    def resolve(self, subschema: Any) -> Any:
        seen = 0
        while isinstance(subschema, dict) and "$ref" in subschema and seen < 32:
            ref = subschema["$ref"]
            if not ref.startswith("#/"):
                break
            node: Any = self.schema
            for part in ref[2:].split("/"):
                node = node[part]
            subschema = node
            seen += 1
        return subschema

    def types_of(self, subschema: Any) -> list[str]:
        """The types a subschema accepts (following $ref and oneOf/anyOf)."""
        subschema = self.resolve(subschema)
        if not isinstance(subschema, dict):
            return []
        if "type" in subschema:
            declared = subschema["type"]
            return [declared] if isinstance(declared, str) else list(declared)
        out: list[str] = []
        for keyword in ("oneOf", "anyOf"):
            for branch in subschema.get(keyword, []):
                out.extend(self.types_of(branch))
        return out

    def fits(self, subschema: Any, value: Any) -> bool:
        types = self.types_of(subschema)
        return not types or any(_fits(value, t) for t in types)

    def describe(self, error: Any) -> Iterator[Problem]:
        path = tuple(error.absolute_path)
        handler = getattr(self, f"on_{error.validator}", None)
        if handler is None:
            yield Problem(error.message, locate(self.tree, path), path)
            return
        yield from handler(error, path)

    # One method per JSON Schema keyword our schema uses.

    def on_type(self, error: Any, path: tuple) -> Iterator[Problem]:
        expected = error.validator_value
        yield self.type_problem([expected] if isinstance(expected, str) else expected, error, path)

    def type_problem(self, expected: list[str], error: Any, path: tuple) -> Problem:
        names = [t for t in _TYPE_ORDER if t in expected]
        if "number" in names and "integer" in names:
            names.remove("integer")
        words = [_TYPE_WORDS[t] for t in names]
        message = f"expected {_join_or(words)}, got {_describe_value(error.instance)}"
        hint = None
        if "array" in names and type_of(error.instance) in ("string", "number", "integer"):
            hint = f"a single item still goes in a list: [{_short(error.instance)}]"
        return Problem(message, locate(self.tree, path), path, hint)

    def on_oneOf(self, error: Any, path: tuple) -> Iterator[Problem]:
        branches = error.validator_value
        fitting = [i for i, branch in enumerate(branches) if self.fits(branch, error.instance)]
        if not fitting:
            expected: list[str] = []
            for branch in branches:
                expected.extend(self.types_of(branch))
            yield self.type_problem(expected, error, path)
            return
        by_branch: dict[int, list[Any]] = {}
        for sub in error.context or ():
            by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
        failing = [i for i in fitting if by_branch.get(i)]
        if len(failing) < len(fitting):  # a fitting branch passed: oneOf matched twice
            message = "matches more than one of the allowed forms"
            yield Problem(message, locate(self.tree, path), path)
            return
        # The branch that got furthest (deepest errors, then fewest) says what is wrong.
        best = min(
            failing,
            key=lambda i: (
                -max(len(e.absolute_path) for e in by_branch[i]),
                len(by_branch[i]),
                i,
            ),
        )
        for sub in by_branch[best]:
            yield from self.describe(sub)

    on_anyOf = on_oneOf

    def on_additionalProperties(self, error: Any, path: tuple) -> Iterator[Problem]:
        subschema = error.schema
        allowed = list(subschema.get("properties", {}))
        patterns = list(subschema.get("patternProperties", {}))
        name_patterns = [p for p in patterns if p != _EXTENSION_PATTERN]
        for key in error.instance:
            if key in allowed or any(re.search(p, key) for p in patterns):
                continue
            mark = locate_key(self.tree, (*path, key))
            if not allowed and name_patterns:
                kind = _NAME_KINDS.get(path[-1] if path else "", "key")
                message = f"{key!r} is not a valid {kind} name"
                hint = _NAME_RULES.get(name_patterns[0], f"it must match {name_patterns[0]}")
                yield Problem(message, mark, path, hint)
                continue
            hint = _did_you_mean(key, allowed)
            value = error.instance[key]
            if not path and isinstance(value, dict) and _SERVICE_HINT_KEYS & set(value):
                hint = f"{key!r} is at the top level; did you mean under 'services:'?"
            elif hint is None and _EXTENSION_PATTERN in patterns:
                hint = "custom keys must start with 'x-'"
            yield Problem(f"additional property {key!r} is not allowed", mark, path, hint)

    def on_required(self, error: Any, path: tuple) -> Iterator[Problem]:
        for key in error.validator_value:
            if isinstance(error.instance, dict) and key not in error.instance:
                message = f"missing required key {key!r}"
                yield Problem(message, locate(self.tree, path), path)

    def on_enum(self, error: Any, path: tuple) -> Iterator[Problem]:
        choices = error.validator_value
        listed = _join_or([_short(c) for c in choices])
        message = f"must be {listed}, got {_short(error.instance)}"
        hint = None
        if isinstance(error.instance, str):
            hint = _did_you_mean(error.instance, [c for c in choices if isinstance(c, str)])
        yield Problem(message, locate(self.tree, path), path, hint)

    def on_pattern(self, error: Any, path: tuple) -> Iterator[Problem]:
        explanation = error.schema.get("description")
        message = f"{_short(error.instance)} is not valid"
        if explanation:
            message += f": {explanation}"
        else:
            message += f" (it must match {error.validator_value})"
        yield Problem(message, locate(self.tree, path), path)

    def on_minimum(self, error: Any, path: tuple) -> Iterator[Problem]:
        message = f"must be at least {error.validator_value}, got {_short(error.instance)}"
        yield Problem(message, locate(self.tree, path), path)

    def on_maximum(self, error: Any, path: tuple) -> Iterator[Problem]:
        message = f"must be at most {error.validator_value}, got {_short(error.instance)}"
        yield Problem(message, locate(self.tree, path), path)

    def on_uniqueItems(self, error: Any, path: tuple) -> Iterator[Problem]:
        items = error.instance
        for later in range(len(items)):
            for earlier in range(later):
                if _same(items[earlier], items[later]):
                    shown = (
                        _short(items[later]) if not isinstance(items[later], dict | list) else ""
                    )
                    what = f"duplicate entry {shown}".rstrip()
                    message = f"{what} (same as [{earlier}])"
                    item_path = (*path, later)
                    yield Problem(message, locate(self.tree, item_path), item_path)
                    break


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    numbers = ("integer", "number")
    if type_of(a) in numbers and type_of(b) in numbers:
        return a == b
    return type_of(a) == type_of(b) and a == b
