"""Load YAML while remembering the line of every key and list item.

Validation errors must name the file, the line and the field; PyYAML's plain
`safe_load` forgets where things were, so we compose the node graph, build
the Python value from it, and keep a map from the path of every value
(`("tables", "orders", "tenant")`) to its 1-based line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlsctl.errors import PolicyFileError

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlDocument:
    """A parsed file: its data and the line of each path in it."""

    path: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        probe = tuple(path)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return self.lines.get((), None)


def load_yaml(path: Path, display_path: str | None = None) -> YamlDocument:
    """Parse one YAML file; malformed YAML raises `PolicyFileError` with its line."""
    shown = display_path or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyFileError(shown, None, f"cannot read file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PolicyFileError(shown, None, "file is not valid UTF-8") from None
    return parse_yaml(text, shown)


def parse_yaml(text: str, shown: str) -> YamlDocument:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "malformed YAML"
        raise PolicyFileError(shown, line, f"malformed YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise PolicyFileError(shown, None, f"malformed YAML: {exc}") from None
    if node is None:
        return YamlDocument(shown, None, {(): 1})
    lines: dict[Path_, int] = {(): node.start_mark.line + 1}
    data = _build(node, (), lines, shown)
    return YamlDocument(shown, data, lines)


def _build(node: yaml.Node, path: Path_, lines: dict[Path_, int], shown: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        return _build_mapping(node, path, lines, shown)
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            items.append(_build(item, (*path, index), lines, shown))
        return items
    return _scalar(node, shown)


def _build_mapping(node: yaml.MappingNode, path: Path_, lines: dict[Path_, int], shown: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            raise PolicyFileError(shown, key_node.start_mark.line + 1, "YAML merge keys are not supported")
        key = _scalar(key_node, shown)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str | int | bool) or isinstance(key, bool):
            raise PolicyFileError(shown, line, f"mapping keys must be strings, got {key!r}")
        key = str(key)
        if key in result:
            raise PolicyFileError(shown, line, f"duplicate key {key!r}")
        lines[(*path, key)] = line
        result[key] = _build(value_node, (*path, key), lines, shown)
    return result


def _scalar(node: yaml.Node, shown: str) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise PolicyFileError(shown, node.start_mark.line + 1, "expected a plain value here")
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        raise PolicyFileError(shown, node.start_mark.line + 1, f"malformed YAML: {exc.problem}") from None
    finally:
        loader.dispose()
