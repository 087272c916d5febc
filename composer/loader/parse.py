"""YAML → MapNode tree, with YAML 1.2 core-schema semantics.

PyYAML resolves plain scalars by YAML 1.1 rules (`22:22` is a base-60 int,
`0755` octal, `yes`/`on` booleans). Compose files are read by Go's YAML 1.2
parser, so we install the 1.2 core-schema resolvers instead and build the tree
ourselves from PyYAML's node graph: that keeps a mark on every key and value,
lets us refuse duplicate keys, and gives each alias use its own copy so later
passes may edit the tree in place.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from composer.loader.errors import LoadError, Problem, fail, global_sources
from composer.loader.nodes import MapNode, Mark, SeqNode

try:  # libyaml's parser is several times faster; fall back to the pure one.
    from yaml._yaml import CParser as _ParserBase
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml.composer import Composer
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _ParserBase(Reader, Scanner, Parser, Composer):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            Composer.__init__(self)


TAG_NULL = "tag:yaml.org,2002:null"
TAG_BOOL = "tag:yaml.org,2002:bool"
TAG_INT = "tag:yaml.org,2002:int"
TAG_FLOAT = "tag:yaml.org,2002:float"
TAG_STR = "tag:yaml.org,2002:str"
TAG_MERGE = "tag:yaml.org,2002:merge"
TAG_MAP = "tag:yaml.org,2002:map"
TAG_SEQ = "tag:yaml.org,2002:seq"

# Compose's merge tags (spec "Merge and override"): on a value, they change how
# a later file's value combines with an earlier one.
MERGE_TAGS = {"!reset": "reset", "!override": "override"}

# A bound on the nodes built from one document, against alias bombs.
MAX_NODES = 1_000_000


class CoreResolver(yaml.resolver.BaseResolver):
    """The YAML 1.2 core schema's implicit types (plus `<<` merge keys)."""

    yaml_implicit_resolvers: dict = {}


for _tag, _regex, _first in (
    (TAG_BOOL, r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (TAG_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        TAG_FLOAT,
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    (TAG_NULL, r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (TAG_MERGE, r"^(?:<<)$", "<"),
):
    CoreResolver.add_implicit_resolver(_tag, re.compile(_regex), list(_first))


class _NodeLoader(_ParserBase, CoreResolver):
    """Parses and composes a node graph; construction is ours."""

    def __init__(self, stream: str) -> None:
        _ParserBase.__init__(self, stream)
        CoreResolver.__init__(self)


class LeadingZeroInt(int):
    """An int written with leading zeros, e.g. `0755`.

    YAML 1.2 reads it as decimal 755; fields that hold file modes use `text`
    to honour what the writer meant (octal), as docker compose does.
    """

    text: str

    def __new__(cls, text: str) -> LeadingZeroInt:
        obj = super().__new__(cls, int(text, 10))
        obj.text = text
        return obj

    def __repr__(self) -> str:
        return self.text


def _mark(filename: str, node: Node) -> Mark:
    return Mark(filename, node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.count = 0
        self.active: set[int] = set()

    def mark(self, node: Node) -> Mark:
        return _mark(self.filename, node)

    def build(self, node: Node) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise fail(
                f"the document expands to more than {MAX_NODES} nodes through aliases",
                self.mark(node),
            )
        if id(node) in self.active:
            raise fail("an alias refers to a node that contains it", self.mark(node))
        tag = node.tag
        if tag in MERGE_TAGS:
            tag = self._implicit_tag(node)
        if isinstance(node, ScalarNode):
            return self.scalar(node, tag)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if tag not in (TAG_SEQ,):
                    raise fail(f"unsupported tag {node.tag!r} on a sequence", self.mark(node))
                seq = SeqNode(mark=self.mark(node))
                for item in node.value:
                    seq.add(self.build(item), self.mark(item), MERGE_TAGS.get(item.tag))
                return seq
            if tag not in (TAG_MAP,):
                raise fail(f"unsupported tag {node.tag!r} on a mapping", self.mark(node))
            return self.mapping(node)
        finally:
            self.active.discard(id(node))

    def _implicit_tag(self, node: Node) -> str:
        if isinstance(node, ScalarNode):
            if node.style is not None:  # quoted
                return TAG_STR
            return CoreResolver().resolve(ScalarNode, node.value, (True, False))
        return TAG_SEQ if isinstance(node, SequenceNode) else TAG_MAP

    def scalar(self, node: ScalarNode, tag: str) -> Any:
        text = node.value
        if tag == TAG_STR:
            return text
        if tag == TAG_NULL:
            return None
        if tag == TAG_BOOL:
            if text.lower() not in ("true", "false"):
                raise fail(f"{text!r} is not a boolean", self.mark(node))
            return text.lower() == "true"
        if tag == TAG_INT:
            try:
                return self._int(text)
            except ValueError:
                raise fail(f"{text!r} is not an integer", self.mark(node)) from None
        if tag == TAG_FLOAT:
            lowered = text.lower()
            if lowered.endswith(".inf"):
                return -math.inf if lowered.startswith("-") else math.inf
            if lowered == ".nan":
                return math.nan
            try:
                return float(text)
            except ValueError:
                raise fail(f"{text!r} is not a number", self.mark(node)) from None
        raise fail(f"unsupported tag {node.tag!r}", self.mark(node))

    @staticmethod
    def _int(text: str) -> int:
        body = text.lstrip("+-")
        sign = -1 if text.startswith("-") else 1
        if body.startswith("0o"):
            return sign * int(body[2:], 8)
        if body.startswith("0x"):
            return sign * int(body[2:], 16)
        if len(body) > 1 and body.startswith("0"):
            return LeadingZeroInt(text)
        return int(text, 10)

    def mapping(self, node: MappingNode) -> MapNode:
        result = MapNode(mark=self.mark(node))
        merged: list[tuple[Any, Mark, Any, Mark, str | None]] = []
        seen: dict[str, Mark] = {}
        problems: list[Problem] = []
        for key_node, value_node in node.value:
            if key_node.tag == TAG_MERGE:
                merged.extend(self.merge_sources(value_node))
                continue
            if not isinstance(key_node, ScalarNode):
                raise fail("a mapping key must be a scalar", self.mark(key_node))
            key = key_node.value
            key_mark = self.mark(key_node)
            if key in seen:
                problems.append(
                    Problem(f"duplicate key {key!r} (first defined at {seen[key]})", key_mark)
                )
                continue
            seen[key] = key_mark
            value = self.build(value_node)
            result.set(key, value, key_mark, self.mark(value_node))
            tag = MERGE_TAGS.get(value_node.tag)
            if tag:
                result.tags[key] = tag
        if problems:
            raise LoadError(problems)
        for key, key_mark, value, value_mark, tag in merged:
            if key not in result:
                result.set(key, value, key_mark, value_mark)
                if tag:
                    result.tags[key] = tag
        return result

    def merge_sources(self, value_node: Node) -> list[tuple[Any, Mark, Any, Mark, str | None]]:
        """Entries that `<<: *a` or `<<: [*a, *b]` brings in; earlier sources win."""
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        entries: list[tuple[Any, Mark, Any, Mark, str | None]] = []
        taken: set[Any] = set()
        for source in sources:
            if not isinstance(source, MappingNode):
                raise fail(
                    "a merge key (<<) takes a mapping or a list of mappings", self.mark(source)
                )
            built = self.build(source)
            for key, value in built.items():
                if key in taken:
                    continue
                taken.add(key)
                entries.append(
                    (key, built.key_marks[key], value, built.value_marks[key], built.tags.get(key))
                )
        return entries


def parse(text: str, filename: str) -> Any:
    """Parse one YAML document; mappings become MapNode, sequences SeqNode.

    Raises LoadError for syntax errors, duplicate keys and unsupported tags.
    An empty document gives None.
    """
    global_sources().add(filename, text)
    if text.startswith("\ufeff"):
        text = text[1:]
    loader = _NodeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Mark(filename, mark.line + 1, mark.column + 1) if mark else None
        message = exc.problem or "invalid YAML"
        if exc.context:
            message = f"{message} ({exc.context})"
        raise fail(f"YAML syntax error: {message}", where) from None
    except yaml.YAMLError as exc:
        raise fail(f"YAML error: {exc}", Mark(filename, 1, 1)) from None
    finally:
        loader.dispose()
    if node is None:
        return None
    return _Builder(filename).build(node)


def parse_compose(text: str, filename: str) -> MapNode:
    """Parse a Compose file: the document must be a mapping."""
    tree = parse(text, filename)
    if tree is None:
        raise fail("empty compose file", Mark(filename, 1, 1))
    if not isinstance(tree, MapNode):
        raise fail("a compose file must be a mapping at the top level", Mark(filename, 1, 1))
    return tree
