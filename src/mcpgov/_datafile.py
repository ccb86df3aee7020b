"""Reading a configuration file that is YAML, or JSON when its name ends in ``.json``.

Both readings are strict: a key given twice in one mapping is refused (a reader of the file sees
the first value, the loader would keep the last), and so is an unquoted YAML scalar that YAML 1.1
reads differently from YAML 1.2 and JSON (``yes``, ``010``, ``0x1F``, ``1:30``...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from mcpgov._errors import ConfigurationError

__all__ = ["UniqueKeyLoader", "read_data_file", "unique_json_pairs"]


class UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys (a silently overridden key hides a mistake)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, str):
            raise yaml.constructor.ConstructorError(
                None, None, f"mapping keys must be strings, got {key!r}", key_node.start_mark
            )
        if key in mapping:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _json_reading(text: str) -> Any:
    """What JSON (and YAML 1.2's core schema, for these forms) reads an unquoted ``text`` as."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return json.loads(text.removeprefix("+"))
    except ValueError:
        return text


def _plain(constructor: Any) -> Any:
    """A constructor that refuses an unquoted scalar YAML 1.1 reads differently from YAML 1.2
    and JSON: ``no``/``yes``/``on``/``off`` (booleans to YAML 1.1), ``010`` (octal), ``0x1F``,
    ``0b11``, ``1_000``, ``1:30`` (base 60), and ``1e3`` (a string to YAML 1.1, a number to JSON).
    What is used must be what the author wrote, whichever reading they assumed."""

    def construct(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
        value = constructor(loader, node)
        if node.style is None and isinstance(node.value, str):
            other = _json_reading(node.value)
            if isinstance(value, float) and isinstance(other, (int, float)) and not isinstance(other, bool):
                same = float(other) == value
            else:
                same = type(other) is type(value) and other == value
            if not same:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"the unquoted value {node.value!r} is read as {json.dumps(value)} by YAML 1.1 but not by "
                    f"YAML 1.2 or JSON: quote it ('{node.value}') or write the value in JSON form",
                    node.start_mark,
                )
        return value

    return construct


for _tag, _constructor in (
    ("tag:yaml.org,2002:bool", yaml.SafeLoader.construct_yaml_bool),
    ("tag:yaml.org,2002:int", yaml.SafeLoader.construct_yaml_int),
    ("tag:yaml.org,2002:float", yaml.SafeLoader.construct_yaml_float),
    ("tag:yaml.org,2002:str", yaml.SafeLoader.construct_yaml_str),
):
    UniqueKeyLoader.add_constructor(_tag, _plain(_constructor))


def unique_json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A ``json.loads`` ``object_pairs_hook`` refusing a key given twice in one object."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def read_data_file(path: Path, what: str) -> Any:
    """The data in ``path`` (JSON for a ``.json`` name, YAML otherwise); ``what`` names the file in errors.

    Raises:
        ConfigurationError: the file cannot be read, is not UTF-8, does not parse (with the line
            where the parser knows it), holds a key twice in one mapping, or (YAML) an unquoted
            value YAML 1.1 reads differently from YAML 1.2 and JSON.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{what} {path} cannot be read ({type(exc).__name__})") from exc
    is_json = path.suffix == ".json"
    try:
        if is_json:
            return json.loads(text, object_pairs_hook=unique_json_pairs)
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else getattr(exc, "lineno", None)
        where = f" (line {line})" if line is not None else ""
        problem = getattr(exc, "problem", None) if isinstance(exc, yaml.YAMLError) else None
        if isinstance(exc, ValueError) and not isinstance(exc, json.JSONDecodeError):
            problem = str(exc)  # a duplicate key
        detail = f": {problem}" if problem else ""
        raise ConfigurationError(f"{what} {path} is not valid {'JSON' if is_json else 'YAML'}{where}{detail}") from exc
