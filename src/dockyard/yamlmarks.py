"""YAML with line numbers: plain data, plus the line each key and item was written on.

A schema error must name the line of the offending field, which ``yaml.safe_load``
forgets. Here the document is composed into nodes (which carry marks) and converted by
hand: every mapping key and sequence item records its line under its path, such as
``("steps", 2, "timeout")``. Scalars are typed by PyYAML's safe constructors.

Merge keys work as in YAML 1.1 (``<<: *defaults`` or ``<<: [*a, *b]``): a mapping's
own keys win over merged ones, and earlier merged mappings over later ones. A merged
key keeps the line where its value is written, in the anchored mapping.

Duplicate keys, which PyYAML silently resolves to the last one, are errors; so are
recursive aliases and alias expansions past a size limit (the "billion laughs"),
nesting deeper than ``MAX_DEPTH`` (PyYAML composes recursively: ``[[[[...`` would
exhaust Python's stack), and characters YAML does not allow (NUL, other controls).

Pipeline files (:mod:`dockyard.ci.pipeline`), policy files (:mod:`dockyard.check.policy`)
and manifest scans (:mod:`dockyard.transfer.manifest_images`) read YAML through here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import yaml

from dockyard.errors import LocatedError
from dockyard.frozen import Frozen

FieldPath = tuple[str | int, ...]
MAX_NODES = 100_000
MAX_DEPTH = 100
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlError(LocatedError):
    """The text is not a YAML document we accept; ``line`` is 1-based, if known.

    The text has no file name here: ``str()`` is the message, and callers that know
    the file say ``file:line`` themselves.
    """

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message, None, line)


class MarkedDocument(Frozen):
    """A YAML document as plain data, and the line of each path in it."""

    __slots__ = ("data", "lines")
    data: Any
    lines: dict[FieldPath, int]

    def __init__(self, data: Any, lines: dict[FieldPath, int]):
        self._set(data=data, lines=lines)

    def line_of(self, path: FieldPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that was written."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


def field_name(loc: Sequence[str | int]) -> str:
    """``("steps", 2, "timeout")`` as ``steps[2].timeout``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def load(text: str) -> MarkedDocument:
    """Parse one YAML document (an empty text is ``None``)."""
    with _parsing(text) as loader:
        node = loader.get_single_node()
        converter = _Converter(loader)
        data = converter.convert(node, ()) if node is not None else None
    lines = converter.lines if node is not None else {}
    return MarkedDocument(data, lines)


def load_all(text: str) -> list[MarkedDocument]:
    """Parse every document of a stream (``---`` between them).

    As Kubernetes manifests are written; the ``MAX_NODES`` limit holds for all of them together."""
    documents = []
    with _parsing(text) as loader:
        count = 0
        while loader.check_node():
            node = loader.get_node()
            assert node is not None  # check_node() saw one
            converter = _Converter(loader, count)
            data = converter.convert(node, ())
            converter.lines[()] = _line(node)
            documents.append(MarkedDocument(data, converter.lines))
            count = converter.count
    return documents


@contextmanager
def _parsing(text: str) -> Iterator[_Loader]:
    """A loader on ``text``; PyYAML's errors in the block become :class:`YamlError`."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as e:  # a character YAML does not allow, such as NUL
        raise _reader_error(e, text) from None
    try:
        yield loader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or str(e)
        raise YamlError(problem, mark.line + 1 if mark else None) from None
    except yaml.reader.ReaderError as e:
        raise _reader_error(e, text) from None
    except yaml.YAMLError as e:
        raise YamlError(str(e)) from None
    finally:
        loader.dispose()


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing nesting deeper than ``MAX_DEPTH``."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YamlError(f"nested deeper than {MAX_DEPTH} levels", mark.line + 1)
            return super().compose_node(parent, index)  # type: ignore[arg-type]  # keys: nodes
        finally:
            self._depth -= 1


class _Converter:
    def __init__(self, loader: yaml.SafeLoader, count: int = 0):
        self.loader = loader
        self.lines: dict[FieldPath, int] = {(): 1}
        self.count = count  # values converted so far (in earlier documents too)
        self.active: set[int] = set()  # ids of the collection nodes being converted

    def convert(self, node: yaml.Node, path: FieldPath) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise YamlError(f"document too large (over {MAX_NODES} values)", _line(node))
        if isinstance(node, yaml.ScalarNode):
            return self.loader.construct_object(node, deep=True)
        if id(node) in self.active:
            raise YamlError("recursive alias", _line(node))
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                items = []
                for index, item in enumerate(node.value):
                    self.lines[(*path, index)] = _line(item)
                    items.append(self.convert(item, (*path, index)))
                return items
            assert isinstance(node, yaml.MappingNode)
            merges = [(k, v) for k, v in node.value if k.tag == _MERGE_TAG]
            if len(merges) > 1:
                raise YamlError("duplicate key '<<'", _line(merges[1][0]))
            # Merged first, so that the mapping's own keys then replace values and lines.
            mapping = self._merged(merges[0][1], path) if merges else {}
            own: set[Any] = set()
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.convert(key_node, path)
                if not isinstance(key, str | int | float | bool) and key is not None:
                    raise YamlError("mapping keys must be scalars", _line(key_node))
                if key in own:
                    raise YamlError(f"duplicate key {key!r}", _line(key_node))
                own.add(key)
                part = key if isinstance(key, str | int) else str(key)  # 1.5, null: as text
                self.lines[(*path, part)] = _line(key_node)
                mapping[key] = self.convert(value_node, (*path, part))
            return mapping
        finally:
            self.active.discard(id(node))

    def _merged(self, node: yaml.Node, path: FieldPath) -> dict[Any, Any]:
        """The keys a ``<<`` value brings into the mapping at ``path``."""
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if not sources or not all(isinstance(s, yaml.MappingNode) for s in sources):
            raise YamlError("<< must be given a mapping or a list of mappings", _line(node))
        merged: dict[Any, Any] = {}
        for source in reversed(sources):  # the earlier ones win: converted last
            merged.update(self.convert(source, path))
        return merged


def _reader_error(error: yaml.reader.ReaderError, text: str) -> YamlError:
    """A reader error (which knows an offset, not a line) as one naming its line."""
    character = error.character if isinstance(error.character, int) else 0
    line = text.count("\n", 0, error.position) + 1
    return YamlError(f"character #x{character:04x} is not allowed in YAML", line)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1
