"""Strict YAML config loading with errors that name the file and line.

PyYAML's node tree knows where every value starts; pydantic knows what is wrong and
where in the tree. `load_model` joins the two so an operator reads
`config/devices.yaml:212: devices[41].kind: Input should be 'rain_gauge', ...`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from pantau.errors import ConfigError, ConfigErrors

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# The schema of config/ files. A file says which one it was written for with a
# top-level `pantau_config: N` (no key: 1, the schema of every file written before the
# key existed). When a release changes what a file must say, it bumps CONFIG_SCHEMA and
# tells here what to change, so an old file fails at start with that instead of with
# whatever the new models make of it.
CONFIG_SCHEMA = 1
VERSION_KEY = "pantau_config"
SCHEMA_CHANGES: dict[int, str] = {
    1: "the first versioned schema",
}


class LocatedYaml:
    """A parsed YAML document plus the line (1-based) where each path starts."""

    def __init__(self, path: Path, data: Any, lines: dict[Loc, int]) -> None:
        self.path = path
        self.data = data
        self.lines = lines

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """Line of the deepest known prefix of `loc` (pydantic adds model-internal parts)."""
        parts = tuple(loc)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return self.lines.get(())

    def error(self, loc: Sequence[str | int], problem: str) -> ConfigError:
        return ConfigError(self.path, self.line_of(loc), f"{format_loc(loc)}: {problem}")


def format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


def read_yaml(path: Path) -> LocatedYaml:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(path, None, f"cannot read: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(path, None, f"not UTF-8 text: {err.reason}") from err
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        line = err.problem_mark.line + 1 if err.problem_mark is not None else None
        raise ConfigError(path, line, f"YAML syntax: {err.problem}") from err
    lines: dict[Loc, int] = {}
    data = {} if node is None else _to_python(path, node, (), lines)
    doc = LocatedYaml(path, data, lines)
    check_schema(doc)
    return doc


def check_schema(
    doc: LocatedYaml, current: int = CONFIG_SCHEMA, changes: Mapping[int, str] = SCHEMA_CHANGES
) -> None:
    """Refuse a file written for another config schema, saying what to change; then
    drop the version key, so the file's own model never sees it."""
    if not isinstance(doc.data, dict) or VERSION_KEY not in doc.data:
        return  # files before versioning: schema 1
    version = doc.data.pop(VERSION_KEY)
    where = doc.lines.pop((VERSION_KEY,), None)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(doc.path, where, f"{VERSION_KEY}: a whole number, not {version!r}")
    if version > current:
        raise ConfigError(
            doc.path,
            where,
            f"{VERSION_KEY}: {version} is newer than this Pantau reads ({current}): "
            "upgrade Pantau, or use the config of its release",
        )
    if version < current:
        todo = "; ".join(
            f"for {v}: {changes.get(v, '(not described)')}" for v in range(version + 1, current + 1)
        )
        raise ConfigError(
            doc.path,
            where,
            f"{VERSION_KEY}: {version} is an old config schema, this Pantau reads {current}. "
            f"Change the file ({todo}), then set {VERSION_KEY}: {current}",
        )


def load_model(path: Path, model: type[M]) -> tuple[M, LocatedYaml]:
    """Read `path` and validate it as `model`; every problem becomes a ConfigError."""
    doc = read_yaml(path)
    try:
        return model.model_validate(doc.data), doc
    except ValidationError as err:
        raise ConfigErrors([_located(doc, e) for e in err.errors()]) from err


def _located(doc: LocatedYaml, e: Mapping[str, Any]) -> ConfigError:
    loc = tuple(p for p in e["loc"] if isinstance(p, str | int))
    msg = str(e["msg"])
    if e["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling; allowed keys are in the docs)"
    return doc.error(loc, msg)


def _to_python(path: Path, node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> Any:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if isinstance(key, list | dict):
                raise ConfigError(
                    path, key_node.start_mark.line + 1, "mapping keys must be scalars"
                )
            if key in out:
                raise ConfigError(
                    path, key_node.start_mark.line + 1, f"{format_loc((*loc, key))}: duplicate key"
                )
            out[key] = _to_python(path, value_node, (*loc, key), lines)
            lines[(*loc, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(path, item, (*loc, i), lines) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    # Construct one scalar with the safe constructor so YAML types (int, float, bool,
    # null, timestamps) resolve exactly as yaml.safe_load would.
    constructor = yaml.constructor.SafeConstructor()
    return constructor.construct_object(node, deep=True)
