"""YAML that remembers where every value came from, so errors can name the line.

PyYAML's composer gives nodes with marks; this module builds plain Python values from them and a
map from each value's path (``("rules", 0, "severity")``) to its line and column. It also refuses
what a policy file never needs and an attacker could use: duplicate keys (PyYAML silently keeps
the last), non-string keys, recursive aliases and alias or merge-key expansion beyond a node
budget (the "billion laughs"), nesting deep enough to exhaust the stack, and files over a size
limit. Booleans follow YAML 1.2 (``true``/``false`` only), so ``no`` stays the string ``"no"``.
libyaml does the scanning and parsing when PyYAML has it (most of the time a large policy took to
load); a document it refuses, or one it would read differently, goes to PyYAML's own parser. A
document without anchors, aliases, explicit tags, merge keys or problems (nearly every policy) is
built straight from libyaml's events, without the node tree in between.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from agentguard.policy._errors import MAX_ISSUES, PolicyError, PolicyIssue, format_path

__all__ = ["MAX_DEPTH", "MAX_NODES", "MAX_SOURCE_BYTES", "Marks", "load_yaml"]

MAX_SOURCE_BYTES = 1 << 20
MAX_NODES = 50_000
MAX_DEPTH = 64

Path = tuple[str | int, ...]


class Marks:
    """Line and column (1-based) of each value, and of each mapping key, by path."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.values: dict[Path, tuple[int, int]] = {}
        self.keys: dict[Path, tuple[int, int]] = {}

    def locate(self, path: Path, *, key: bool = False) -> tuple[int | None, int | None]:
        """The position of ``path``, or of its longest known prefix."""
        table = self.keys if key else self.values
        if key and path not in table:
            table = self.values
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), (None, None))

    def issue(self, path: Path, message: str, hint: str | None = None, *, key: bool = False
              ) -> PolicyIssue:
        line, column = self.locate(path, key=key)
        return PolicyIssue(self.file, line, column, format_path(path), message, hint)


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans."""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


class _NotForLibyaml(Exception):
    """The document uses what libyaml and PyYAML's parser read differently: parse it again."""


# libyaml's parser with PyYAML's composer, when PyYAML was built with libyaml.
_FastLoader: Any = None
try:
    from yaml._yaml import CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    pass
else:
    class _LibyamlLoader(yaml.composer.Composer, CParser, yaml.constructor.SafeConstructor,
                         yaml.resolver.Resolver):
        """libyaml scans and parses (about five times faster than PyYAML's pure-Python
        scanner, most of the time a large policy takes to load); PyYAML's own composer builds the
        nodes, so anchors, aliases and nesting are handled exactly as by :class:`_Loader`."""

        yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

        def compose_node(self, parent: Any, index: Any) -> Any:
            # Explicit tags ('!', '!!str') are where the two parsers disagree on values; a
            # policy needs none.
            if getattr(self.peek_event(), "tag", None) is not None:
                raise _NotForLibyaml
            return super().compose_node(parent, index)

    _FastLoader = _LibyamlLoader

# Byte order marks past the start and the line breaks YAML 1.1 adds to \n and \r: the parsers
# split lines differently around them.
_PYYAML_ONLY = re.compile("[\ufeff\x85\u2028\u2029]")

_STR = "tag:yaml.org,2002:str"
_VALUE = "tag:yaml.org,2002:value"
_WILDCARD: tuple[tuple[str, Any], ...] = tuple(_Loader.yaml_implicit_resolvers.get(None, []))
# First character of a plain scalar → the implicit resolvers Resolver.resolve tries, in its order
# (a plain scalar starting with any other character is a string).
_RESOLVERS: dict[str, tuple[tuple[str, Any], ...]] = {
    first: tuple(resolvers) + _WILDCARD
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
    if first is not None and resolvers
}
# Tags of plain scalars whose SafeConstructor function returns the value (no generator, no
# error for any text the resolver gave the tag).
_SCALAR_CONSTRUCTORS: dict[str, Any] = {
    f"tag:yaml.org,2002:{name}":
        yaml.constructor.SafeConstructor.yaml_constructors[f"tag:yaml.org,2002:{name}"]
    for name in ("null", "bool", "int", "float", "timestamp")
}


class _Unusual(Exception):
    """The document needs the node tree (anchors, aliases, tags, merge keys) or has a problem:
    build it the general way, which also words every problem."""


def _plain_tag(value: str) -> str:
    """The tag ``Resolver.resolve`` gives a plain (unquoted, untagged) scalar."""
    for tag, regexp in _RESOLVERS.get(value[:1], _WILDCARD):
        if regexp.match(value):
            return tag
    return _STR


_Scalar = yaml.ScalarEvent
_SequenceStart = yaml.SequenceStartEvent
_MappingStart = yaml.MappingStartEvent
_End = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


def _load_events(text: str, file: str) -> tuple[Any, Marks]:
    """Build values and marks straight from libyaml's events: what :func:`_load` with libyaml
    gives for a document without anchors, aliases, explicit tags, merge keys, keys that are not
    strings, duplicate keys or limits exceeded; raises :class:`_Unusual` for anything else.

    The general way composes a node for every value, then walks the nodes again and
    constructs each scalar through PyYAML's constructor: three passes in Python over what is,
    for a policy of thousands of rules, a quarter of a million values.
    """
    marks = Marks(file)
    values = marks.values
    keys = marks.keys
    loader = _FastLoader(text)
    try:
        get = loader.get_event
        get()  # stream start
        if type(get()) is not yaml.DocumentStartEvent:
            raise _Unusual
        nodes = 0
        # The tag of each plain scalar text met (keys and small values recur).
        tags: dict[str, str] = {}
        # Open collections, innermost last: [the list or dict, its path, and for a dict the path
        # and name of the key whose value comes next (None: a key comes next)]. The document
        # itself is the value of a mapping of our own, at path ().
        document: dict[str, Any] = {}
        stack: list[list[Any]] = [[document, (), (), ""]]
        while True:
            event = get()
            kind = type(event)
            if kind in _End:
                stack.pop()
                if len(stack) == 1:
                    break
                continue
            if kind is not _Scalar and kind is not _MappingStart and kind is not _SequenceStart:
                raise _Unusual  # an alias
            if event.anchor is not None or event.tag is not None:
                raise _Unusual
            mark = event.start_mark
            top = stack[-1]
            container = top[0]
            if type(container) is list:
                path: Path = (*top[1], len(container))
            elif top[2] is None:
                # A key: a string (a plain '=' is one too), new in its mapping.
                key = event.value if kind is _Scalar else None
                if key is None or key in container:
                    raise _Unusual
                if event.implicit[0] and (key[:1] in _RESOLVERS or _WILDCARD):
                    tag = tags.get(key)
                    if tag is None:
                        tag = tags[key] = _plain_tag(key)
                    if tag != _STR and tag != _VALUE:
                        raise _Unusual
                key_path: Path = (*top[1], key)
                top[2] = key_path
                top[3] = key
                keys[key_path] = (mark.line + 1, mark.column + 1)
                continue
            else:
                path = top[2]
            nodes += 1
            if nodes > MAX_NODES or len(path) > MAX_DEPTH:
                raise _Unusual
            values[path] = (mark.line + 1, mark.column + 1)
            if kind is _Scalar:
                value: Any = event.value
                if event.implicit[0] and (value[:1] in _RESOLVERS or _WILDCARD):
                    tag = tags.get(value)
                    if tag is None:
                        tag = tags[value] = _plain_tag(value)
                    if tag != _STR:
                        construct = _SCALAR_CONSTRUCTORS.get(tag)
                        if construct is None:
                            raise _Unusual
                        value = construct(loader, yaml.ScalarNode(
                            tag, value, mark, event.end_mark, event.style))
            else:
                value = [] if kind is _SequenceStart else {}
            if type(container) is list:
                container.append(value)
            else:
                container[top[3]] = value
                top[2] = None
            if kind is not _Scalar:
                stack.append([value, path, None, None])
            elif len(stack) == 1:
                break  # the document is one scalar
        if type(get()) is not yaml.DocumentEndEvent or type(get()) is not yaml.StreamEndEvent:
            raise _Unusual
        return document[""], marks
    finally:
        loader.dispose()


class _TooBig(Exception):
    def __init__(self, message: str, node: yaml.Node | None = None) -> None:
        super().__init__(message)
        self.mark = node.start_mark if node is not None else None


class _Builder:
    def __init__(self, loader: Any, marks: Marks) -> None:
        self.loader = loader
        self.marks = marks
        self.nodes = 0
        self.active: set[int] = set()
        self.issues: list[PolicyIssue] = []

    def _mark(self, node: yaml.Node) -> tuple[int, int]:
        return node.start_mark.line + 1, node.start_mark.column + 1

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooBig(f"the policy has more than {MAX_NODES} values (aliases included)",
                          node)
        if len(path) > MAX_DEPTH:
            raise _TooBig(f"the policy nests deeper than {MAX_DEPTH} levels", node)
        self.marks.values.setdefault(path, self._mark(node))
        if isinstance(node, yaml.ScalarNode):
            return self.loader.construct_object(node, deep=True)
        if id(node) in self.active:
            raise _TooBig("a YAML alias refers to the value that contains it", node)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
        finally:
            self.active.discard(id(node))
        raise _TooBig(f"unsupported YAML node {type(node).__name__}")  # pragma: no cover

    def _flatten(self, node: yaml.MappingNode) -> None:
        """Expand ``<<: *anchor`` merge keys into ``node`` as PyYAML does (merged mappings
        first, in order; a key node merged again is left out), counting every merged pair
        against the value budget: PyYAML's own expansion visits each pair of an anchor for each
        alias of it, so a small file merging one large mapping a hundred thousand times would
        take hours."""
        merge: list[tuple[yaml.Node, yaml.Node]] = []
        seen: set[int] = set()
        index = 0
        while index < len(node.value):
            key_node, value_node = node.value[index]
            if key_node.tag == "tag:yaml.org,2002:merge":
                del node.value[index]
                if isinstance(value_node, yaml.MappingNode):
                    sources = [value_node]
                elif isinstance(value_node, yaml.SequenceNode):
                    sources = value_node.value
                else:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        "expected a mapping or list of mappings for merging, but found "
                        f"{value_node.id}", value_node.start_mark)
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping", node.start_mark,
                            f"expected a mapping for merging, but found {source.id}",
                            source.start_mark)
                    if id(source) in self.active:
                        raise _TooBig("a YAML alias refers to the value that contains it",
                                      source)
                    self._flatten(source)
                    self.nodes += len(source.value)
                    if self.nodes > MAX_NODES:
                        raise _TooBig(f"the policy has more than {MAX_NODES} values (aliases and "
                                      "merges included)", source)
                    for pair in source.value:
                        if id(pair[0]) not in seen:
                            seen.add(id(pair[0]))
                            merge.append(pair)
            elif key_node.tag == "tag:yaml.org,2002:value":
                key_node.tag = "tag:yaml.org,2002:str"
                index += 1
            else:
                index += 1
        if merge:
            node.value = merge + node.value

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        self._flatten(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.issues.append(PolicyIssue(
                    self.marks.file, *self._mark(key_node), format_path(path),
                    "a mapping key must be a plain string, not a list or mapping"))
                continue
            key = self.loader.construct_object(key_node)
            if not isinstance(key, str):
                self.issues.append(PolicyIssue(
                    self.marks.file, *self._mark(key_node), format_path(path),
                    f"mapping keys must be strings; got {type(key).__name__} {key!r}",
                    "quote the key"))
                continue
            child = (*path, key)
            if key in out:
                first = self.marks.keys.get(child)
                self.issues.append(PolicyIssue(
                    self.marks.file, *self._mark(key_node), format_path(child),
                    f"duplicate key {key!r}" + (f" (first at line {first[0]})" if first else ""),
                    "YAML keeps only the last value of a repeated key; remove one of them"))
                continue
            self.marks.keys[child] = self._mark(key_node)
            out[key] = self.build(value_node, child)
        return out


def load_yaml(text: str | bytes, file: str) -> tuple[Any, Marks]:
    """Parse one YAML document into plain values and their marks; raises :class:`PolicyError`.

    libyaml parses when PyYAML has it. A document it refuses, or one with what the two parsers
    read differently (explicit tags, byte order marks inside, Unicode line breaks), is parsed by
    PyYAML's own parser, so problems are reported with its messages and positions.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_SOURCE_BYTES:
            raise PolicyError.single(file, f"the policy is larger than {MAX_SOURCE_BYTES} bytes")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyError.single(file, f"the policy is not valid UTF-8 ({exc.reason} at byte "
                                           f"{exc.start})") from None
    if len(text) > MAX_SOURCE_BYTES:
        raise PolicyError.single(file, f"the policy is larger than {MAX_SOURCE_BYTES} characters")
    if _FastLoader is not None and \
            not _PYYAML_ONLY.search(text, 1 if text.startswith("\ufeff") else 0):
        try:
            return _load_events(text, file)
        except Exception:
            pass  # built the general way below, which words any problem
        try:
            return _load(text, file, _FastLoader)
        except (PolicyError, _NotForLibyaml):
            pass
    return _load(text, file, _Loader)


def _load(text: str, file: str, loader_class: Any) -> tuple[Any, Marks]:
    marks = Marks(file)
    loader: Any = None
    try:
        loader = loader_class(text)
        node = loader.get_single_node()
        if node is None:
            raise PolicyError.single(file, "the policy is empty",
                                     hint="start with 'rules:' (see docs/policy.md)")
        builder = _Builder(loader, marks)
        data = builder.build(node, ())
    except (PolicyError, _NotForLibyaml):
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        hint = None
        if "'\\t'" in problem or "\t" in problem:
            hint = "indent with spaces; YAML does not allow tabs"
        elif "expected a single document" in str(exc):
            hint = "put every rule in one document (one policy per file, no '---')"
        raise PolicyError.single(
            file, f"YAML syntax error: {problem}",
            line=mark.line + 1 if mark is not None else None,
            column=mark.column + 1 if mark is not None else None, hint=hint) from None
    except yaml.reader.ReaderError as exc:
        before = text[:exc.position]
        line = before.count("\n") + 1
        raise PolicyError.single(
            file, f"character U+{exc.character:04X} is not allowed in YAML",
            line=line, column=len(before) - (before.rfind("\n") + 1) + 1,
            hint="remove control characters; write them as escapes inside double quotes") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        # Constructor errors without a mark, bad escapes, out-of-range values.
        raise PolicyError.single(file, f"YAML error: {str(exc)[:300]}") from None
    except _TooBig as exc:
        raise PolicyError.single(
            file, str(exc), line=exc.mark.line + 1 if exc.mark is not None else None,
            column=exc.mark.column + 1 if exc.mark is not None else None) from None
    except RecursionError:
        raise PolicyError.single(file, f"the policy nests deeper than {MAX_DEPTH} levels") from None
    finally:
        if loader is not None:
            loader.dispose()
    if builder.issues:
        raise PolicyError(builder.issues[:MAX_ISSUES], max(0, len(builder.issues) - MAX_ISSUES))
    return data, marks
