"""Read manifest files into plain data that remembers where every value was written.

PyYAML's composer gives us a node graph with marks (line/column); we construct plain JSON-like
data from those nodes ourselves instead of using PyYAML's constructor, because we need to:

- record the position of every value by JSON path (`$.spec.input.order`), so any later stage can
  point at `file:line:col`;
- refuse duplicate keys (PyYAML silently keeps the last one);
- remember which plain scalars YAML 1.1 turned into booleans, numbers or timestamps (`on`, `yes`,
  `1.10`, `2024-01-01`), so validation can say "quote it" where a string was wanted;
- bound alias expansion, so a billion-laughs document fails fast instead of eating the machine.

The loader never raises for bad content: it returns documents plus diagnostics, so `validate` can
report every problem in every file at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
import yaml.reader
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from jobrunner.errors import Diagnostic
from jobrunner.jsonpaths import child_path, nearest
from jobrunner.resources import Position

try:  # libyaml's parser+composer is much faster and still gives marks on every node
    from yaml._yaml import CParser
except ImportError:  # pragma: no cover - pure-Python fallback
    CParser = None  # type: ignore[assignment,misc]

MAX_FILE_BYTES = 8 * 1024 * 1024
# Values constructed a second time because an alias points at them. Real manifests re-use a few
# anchors; a billion-laughs document needs billions. 100k keeps legitimate use far from the limit.
MAX_ALIAS_EXPANSION = 100_000
MAX_DEPTH = 200

TAG_STR = "tag:yaml.org,2002:str"
TAG_BOOL = "tag:yaml.org,2002:bool"
TAG_INT = "tag:yaml.org,2002:int"
TAG_FLOAT = "tag:yaml.org,2002:float"
TAG_NULL = "tag:yaml.org,2002:null"
TAG_TIMESTAMP = "tag:yaml.org,2002:timestamp"
TAG_MERGE = "tag:yaml.org,2002:merge"
TAG_BINARY = "tag:yaml.org,2002:binary"
TAG_SEQ = "tag:yaml.org,2002:seq"
TAG_MAP = "tag:yaml.org,2002:map"

@dataclass(frozen=True)
class ImplicitScalar:
    """A plain (unquoted) scalar that YAML resolved to something other than a string."""

    text: str  # what the user wrote
    tag: str  # TAG_BOOL | TAG_INT | TAG_FLOAT | TAG_TIMESTAMP
    value: Any = None  # what YAML 1.1 made of it


@dataclass
class Document:
    """One YAML document of a file, as plain data with positions."""

    file: str  # workspace-relative, POSIX
    index: int  # 0-based document number within the file
    data: Any
    line: int
    column: int
    positions: dict[str, Position] = field(default_factory=dict)
    implicit: dict[str, ImplicitScalar] = field(default_factory=dict)

    def position(self, json_path: str) -> Position:
        """Best position for a JSON path: the path itself, else its nearest ancestor, else the document."""
        return nearest(self.positions, json_path) or Position(self.line, self.column)


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


class _PyComposer(Reader, Scanner, Parser, Composer, Resolver):
    """Parser + composer + the YAML 1.1 resolver; no constructor (we construct ourselves)."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        Resolver.__init__(self)


if CParser is not None:

    class _CComposer(CParser, Resolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Resolver.__init__(self)

    _Composer: type = _CComposer
else:  # pragma: no cover
    _Composer = _PyComposer


# Scalar construction re-uses SafeConstructor's converters (ints with 0x/0o/_/sexagesimal, floats,
# bools, timestamps) on single nodes, so numbers mean exactly what they mean in PyYAML.
_SCALAR = SafeConstructor()


class _Budget(Exception):
    pass


class _Walker:
    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: dict[str, Position] = {}
        self.implicit: dict[str, ImplicitScalar] = {}
        self.diagnostics: list[Diagnostic] = []
        self.seen: set[int] = set()
        self.expanded = 0
        self.stack: set[int] = set()

    def error(self, node_or_mark: Any, message: str, json_path: str = "$") -> None:
        mark = getattr(node_or_mark, "start_mark", node_or_mark)
        self.diagnostics.append(
            Diagnostic("error", self.file, mark.line + 1, mark.column + 1, message, None, json_path)
        )

    def build(self, node: Node, path: str, depth: int = 0) -> Any:
        nid = id(node)
        if nid in self.stack:
            self.error(node, "recursive alias: an anchor refers to itself", path)
            return None
        if depth > MAX_DEPTH:
            self.error(node, f"nesting deeper than {MAX_DEPTH} levels", path)
            return None
        if nid in self.seen:
            self.expanded += 1
            if self.expanded > MAX_ALIAS_EXPANSION:
                raise _Budget()
        else:
            self.seen.add(nid)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        expected = TAG_SEQ if isinstance(node, SequenceNode) else TAG_MAP
        if node.tag != expected:
            self.error(node, f"unknown tag {_short_tag(node.tag)}: jobrunner manifests use plain YAML without "
                             "custom tags", path)
            return None
        self.stack.add(nid)
        try:
            if isinstance(node, SequenceNode):
                out_list = []
                for i, item in enumerate(node.value):
                    p = child_path(path, i)
                    self.positions.setdefault(p, _pos(item))
                    out_list.append(self.build(item, p, depth + 1))
                return out_list
            if isinstance(node, MappingNode):
                return self.mapping(node, path, depth)
        finally:
            self.stack.discard(nid)
        self.error(node, f"unsupported YAML node {type(node).__name__}", path)
        return None

    def mapping(self, node: MappingNode, path: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == TAG_MERGE:
                for src in _merge_sources(value_node):
                    if not isinstance(src, MappingNode):
                        self.error(value_node, "a merge key (<<) must refer to a mapping or a list of mappings", path)
                        continue
                    sub = self.build(src, path, depth + 1)
                    for k, v in (sub or {}).items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(key_node, ScalarNode):
                self.error(key_node, "mapping keys must be plain strings, not lists or mappings", path)
                continue
            key = str(key_node.value)
            p = child_path(path, key)
            if key in first_line:
                self.error(key_node, f"duplicate key `{key}` (first defined at line {first_line[key]})", p)
                continue
            first_line[key] = key_node.start_mark.line + 1
            self.positions[p] = _pos(key_node)
            out[key] = self.build(value_node, p, depth + 1)
        for k, v in merged.items():  # explicit keys win over merged ones
            out.setdefault(k, v)
        return out

    def scalar(self, node: ScalarNode, path: str) -> Any:
        tag = node.tag
        if tag == TAG_STR or node.style in ("'", '"', "|", ">"):
            return node.value
        try:
            if tag == TAG_NULL:
                return None
            if tag == TAG_BOOL:
                value: Any = _SCALAR.construct_yaml_bool(node)
            elif tag == TAG_INT:
                value = _SCALAR.construct_yaml_int(node)
            elif tag == TAG_FLOAT:
                value = _SCALAR.construct_yaml_float(node)
                if value != value or value in (float("inf"), float("-inf")):
                    # JSON has no NaN/Infinity; keep the text so it cannot poison fingerprints.
                    self.implicit[path] = ImplicitScalar(node.value, tag)
                    return node.value
            elif tag == TAG_TIMESTAMP:
                # JSON has no dates: keep exactly what was written (the YAML 1.2 reading), and
                # remember it so validation can warn that YAML 1.1 tools read it as a date.
                self.implicit[path] = ImplicitScalar(node.value, tag)
                return node.value
            elif tag == TAG_BINARY:
                self.error(node, "binary (!!binary) values are not supported; use a {$file: path} reference", path)
                return None
            else:
                self.error(node, f"unknown tag {_short_tag(tag)}: jobrunner manifests use plain YAML without "
                                 "custom tags", path)
                return None
        except (ConstructorError, ValueError) as exc:
            self.error(node, f"cannot read value {node.value!r}: {exc}", path)
            return None
        self.implicit[path] = ImplicitScalar(node.value, tag, value)
        return value


def _short_tag(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:"):] if tag.startswith("tag:yaml.org,2002:") else tag


def _address(data: Any) -> str | None:
    """Kind/name of a document when it names them, for positioning loader diagnostics."""
    if isinstance(data, dict) and isinstance(data.get("kind"), str) and isinstance(data.get("metadata"), dict):
        name = data["metadata"].get("name")
        if isinstance(name, str):
            return f"{data['kind']}/{name}"
    return None


def _merge_sources(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    return [node]


def _pos(node: Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def decode(raw: bytes, file: str) -> tuple[str | None, Diagnostic | None]:
    """UTF-8 text (BOM allowed), or a diagnostic pointing at the first bad byte."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        return None, Diagnostic(
            "error", file, line, col,
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at line {line}, column {col}); save the file as UTF-8",
        )


def load_text(text: str, file: str) -> LoadResult:
    """Parse a multi-document YAML text. Empty documents are skipped."""
    result = LoadResult()
    loader = None
    index = 0
    try:
        loader = _Composer(text)
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            walker = _Walker(file)
            try:
                data = walker.build(node, "$")
            except _Budget:
                result.diagnostics.append(Diagnostic(
                    "error", file, node.start_mark.line + 1, node.start_mark.column + 1,
                    f"aliases expand to more than {MAX_ALIAS_EXPANSION} values (a billion-laughs document?); "
                    "use fewer or smaller anchors",
                ))
                index += 1
                continue
            address = _address(data)
            result.diagnostics.extend(
                replace(d, address=address) if address else d for d in walker.diagnostics
            )
            if data is None and isinstance(node, ScalarNode) and node.tag == TAG_NULL:
                index += 1
                continue  # an empty document, e.g. after a trailing `---`
            doc = Document(file, index, data, node.start_mark.line + 1, node.start_mark.column + 1,
                           walker.positions, walker.implicit)
            doc.positions.setdefault("$", Position(doc.line, doc.column))
            result.documents.append(doc)
            index += 1
    except yaml.MarkedYAMLError as exc:
        result.diagnostics.append(_syntax_error(exc, text, file))
    except yaml.reader.ReaderError as exc:  # control characters and the like
        before = text[: exc.position]
        line = before.count("\n") + 1
        col = exc.position - (before.rfind("\n") + 1) + 1
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
        result.diagnostics.append(Diagnostic(
            "error", file, line, col, f"invalid YAML: control character U+{char:04X} is not allowed; remove it"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        result.diagnostics.append(Diagnostic("error", file, line, col, f"invalid YAML: {exc}"))
    finally:
        if loader is not None:
            loader.dispose()
    return result


def _syntax_error(exc: yaml.MarkedYAMLError, text: str, file: str) -> Diagnostic:
    """The parser's error at its position, with its context; a tab in the indentation said plainly."""
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "invalid YAML"
    if exc.context:
        problem = f"{problem} ({exc.context}"
        if exc.context_mark is not None and exc.context_mark is not mark:
            problem += f" at line {exc.context_mark.line + 1}"
        problem += ")"
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    if mark is not None and _tab_indented(text, mark.line):
        problem = ("a tab in the indentation: YAML allows only spaces there; "
                   "use spaces instead of the tab(s) on this line")
        col = 1
    return Diagnostic("error", file, line, col, f"invalid YAML: {problem}")


def _tab_indented(text: str, line_index: int) -> bool:
    """True when line `line_index` (0-based) is indented with a tab, which YAML forbids: the
    parser's own words for it ("found character that cannot start any token") never say so."""
    lines = text.splitlines()
    if not 0 <= line_index < len(lines):
        return False
    line = lines[line_index]
    return "\t" in line[: len(line) - len(line.lstrip(" \t"))]


def load_file(path: Path, file: str, *, max_bytes: int = MAX_FILE_BYTES) -> LoadResult:
    """Read and parse one file; `file` is the name to report (workspace-relative)."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return LoadResult(diagnostics=[Diagnostic(
                "error", file, 1, 1,
                f"file is {size} bytes, over the {max_bytes}-byte limit for manifests; "
                "move large batches to an inputs_file",
            )])
        raw = path.read_bytes()
    except OSError as exc:
        return LoadResult(diagnostics=[Diagnostic("error", file, 1, 1, f"cannot read file: {exc.strerror}")])
    text, diag = decode(raw, file)
    if diag is not None:
        return LoadResult(diagnostics=[diag])
    assert text is not None
    return load_text(text, file)


__all__ = [
    "MAX_FILE_BYTES",
    "MAX_ALIAS_EXPANSION",
    "ImplicitScalar",
    "Document",
    "LoadResult",
    "child_path",
    "decode",
    "load_text",
    "load_file",
]
