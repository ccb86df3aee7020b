"""Loading policy files: YAML or JSON into a validated :class:`Policy`, with errors naming the place."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import rfc8785
import yaml
from pydantic import ValidationError

from mcpgov._datafile import UniqueKeyLoader as _UniqueKeyLoader
from mcpgov._datafile import unique_json_pairs as _json_pairs
from mcpgov._errors import ConfigurationError
from mcpgov.policy._model import PolicyDocument

__all__ = ["Policy", "PolicyError", "load_policy"]

MAX_POLICY_BYTES = 16 * 1024 * 1024
"""The largest policy file read (a policy is configuration, not data)."""
MAX_POLICY_DEPTH = 64
"""The deepest nesting of mappings and lists a policy may have."""
MAX_POLICY_NODES = 1_000_000
"""The most values (scalars, mappings, lists) a policy may hold, with YAML aliases expanded."""


class PolicyError(ConfigurationError):
    """A policy could not be loaded. The message names the file, the rule and the field.

    Attributes:
        source: the file (or ``<string>``) the policy came from.
        rule: the id of the offending rule, when the error is inside one.
        field: the dotted path of the offending field, when there is one.
    """

    code = "mcpgov.configuration"

    def __init__(self, message: str, *, source: str, rule: str | None = None, field: str | None = None) -> None:
        super().__init__(message, reason="policy_invalid")
        self.source = source
        self.rule = rule
        self.field = field


_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: linear-time scanning


def _yaml_shape(text: str, source: str) -> None:
    """Refuse YAML whose nesting is too deep or whose aliases expand too far, before building it.

    Walks the parser's events (the parser itself does not recurse), counting each alias as the
    size and depth of what it refers to, so a "billion laughs" document is refused cheaply.
    """
    sizes: dict[str, tuple[int, int]] = {}
    open_anchors: list[tuple[str | None, int, int]] = []  # (anchor, count at start, depth at start)
    count = 0
    depth = 0
    deepest_below: list[int] = [0]
    for event in yaml.parse(text, Loader=_FAST_LOADER):
        if isinstance(event, yaml.AliasEvent):
            size, below = sizes.get(event.anchor or "", (1, 0))
            count += size
            if depth + below > MAX_POLICY_DEPTH:
                raise PolicyError(
                    f"{source}: nesting deeper than {MAX_POLICY_DEPTH} levels (through alias *{event.anchor})",
                    source=source,
                )
            deepest_below[-1] = max(deepest_below[-1], below)
        elif isinstance(event, yaml.ScalarEvent):
            count += 1
            if event.anchor:
                sizes[event.anchor] = (1, 0)
        elif isinstance(event, yaml.CollectionStartEvent):
            count += 1
            depth += 1
            if depth > MAX_POLICY_DEPTH:
                raise PolicyError(f"{source}: nesting deeper than {MAX_POLICY_DEPTH} levels", source=source)
            open_anchors.append((event.anchor, count, depth))
            deepest_below.append(0)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, start, _ = open_anchors.pop()
            below = deepest_below.pop() + 1
            deepest_below[-1] = max(deepest_below[-1], below)
            if anchor:
                sizes[anchor] = (count - start + 1, below)
            depth -= 1
        if count > MAX_POLICY_NODES:
            raise PolicyError(
                f"{source}: more than {MAX_POLICY_NODES} values (YAML aliases expanded): refused as an alias bomb",
                source=source,
            )


def _data_shape(data: Any, source: str) -> None:
    """Refuse parsed content that nests too deeply or holds too many values (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    count = 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_POLICY_NODES:
            raise PolicyError(f"{source}: more than {MAX_POLICY_NODES} values", source=source)
        if isinstance(value, Mapping):
            children: Any = value.values()
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        if depth + 1 > MAX_POLICY_DEPTH:
            raise PolicyError(f"{source}: nesting deeper than {MAX_POLICY_DEPTH} levels", source=source)
        stack.extend((child, depth + 1) for child in children)


def _jsonable(value: Any) -> Any:
    """Values as JSON would carry them (YAML timestamps become ISO strings), for the digest."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + ("in" if part == "in_" else part)
    return out


class Policy:
    """A validated policy document, its version (a digest of its content) and where it came from.

    Build one with :meth:`from_file`, :meth:`from_yaml`, :meth:`from_json` or :meth:`from_dict`;
    compile it with :meth:`compile` (what :class:`~mcpgov.policy.PolicyMiddleware` does).

    Attributes:
        document: the validated document.
        version: ``sha256:`` of the RFC 8785 canonical JSON of the document as written.
        source: the file it was read from, or a label such as ``<string>``.
    """

    engine_name = "policy"

    def __init__(self, document: PolicyDocument, *, version: str, source: str = "<policy>") -> None:
        self.document = document
        self.version = version
        self.source = source

    def __repr__(self) -> str:
        return f"Policy(source={self.source!r}, version={self.version!r}, rules={len(self.document.rules)})"

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>") -> Policy:
        """Validate ``data`` (the parsed content of a policy file).

        Raises:
            PolicyError: the content is not a valid policy; the message names source, rule and field.
        """
        if not isinstance(data, Mapping):
            raise PolicyError(
                f"{source}: a policy must be a mapping with a 'rules' list, got {type(data).__name__}", source=source
            )
        _data_shape(data, source)
        try:
            document = PolicyDocument.model_validate(dict(data))
        except ValidationError as exc:
            raise _policy_error(exc, data, source) from None
        except (RecursionError, MemoryError) as exc:
            raise PolicyError(
                f"{source}: policy is too complex to validate ({type(exc).__name__})", source=source
            ) from None
        try:
            canonical = rfc8785.dumps(_jsonable(data))
        except Exception as exc:  # noqa: BLE001 - any value rfc8785 refuses is a bad policy
            raise PolicyError(f"{source}: policy content is not JSON-compatible ({exc})", source=source) from None
        return cls(document, version="sha256:" + hashlib.sha256(canonical).hexdigest(), source=source)

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "<string>") -> Policy:
        """Parse and validate a YAML policy (duplicate keys are refused).

        Raises:
            PolicyError: a YAML syntax error (with its line) or an invalid policy.
        """
        _bounded(text, source)
        try:
            _yaml_shape(text, source)
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise PolicyError(f"{source}: invalid YAML: {exc}", source=source) from None
        except (RecursionError, MemoryError) as exc:
            raise PolicyError(f"{source}: YAML too deeply nested ({type(exc).__name__})", source=source) from None
        if data is None:
            data = {}
        return cls.from_dict(data, source=source)

    @classmethod
    def from_json(cls, text: str, *, source: str = "<string>") -> Policy:
        """Parse and validate a JSON policy (duplicate keys are refused).

        Raises:
            PolicyError: a JSON syntax error or an invalid policy.
        """
        _bounded(text, source)
        try:
            data = json.loads(text, object_pairs_hook=_json_pairs)
        except ValueError as exc:
            raise PolicyError(f"{source}: invalid JSON: {exc}", source=source) from None
        except (RecursionError, MemoryError) as exc:
            raise PolicyError(
                f"{source}: JSON nesting deeper than {MAX_POLICY_DEPTH} levels ({type(exc).__name__})", source=source
            ) from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Policy:
        """Read a ``.yaml``/``.yml`` or ``.json`` policy file.

        Raises:
            PolicyError: the file cannot be read, is too large, has an unknown suffix, or is invalid.
        """
        p = Path(path)
        source = str(p)
        suffix = p.suffix.lower()
        if suffix not in (".yaml", ".yml", ".json"):
            raise PolicyError(f"{source}: a policy file must end in .yaml, .yml or .json", source=source)
        return cls.from_file_content(p, read_bytes(p))

    @classmethod
    def from_file_content(cls, path: str | os.PathLike[str], raw: bytes) -> Policy:
        """Parse ``raw``, the content read from the policy file ``path`` (its suffix says YAML or JSON).

        Raises:
            PolicyError: too large, not UTF-8, an unknown suffix, or invalid.
        """
        p = Path(path)
        source = str(p)
        suffix = p.suffix.lower()
        if suffix not in (".yaml", ".yml", ".json"):
            raise PolicyError(f"{source}: a policy file must end in .yaml, .yml or .json", source=source)
        text = decode(raw, source)
        return cls.from_json(text, source=source) if suffix == ".json" else cls.from_yaml(text, source=source)


def _bounded(text: Any, source: str) -> None:
    if not isinstance(text, str):
        raise PolicyError(f"{source}: policy text must be a string, got {type(text).__name__}", source=source)
    if len(text) > MAX_POLICY_BYTES:
        raise PolicyError(f"{source}: policy text exceeds {MAX_POLICY_BYTES} characters", source=source)


def read_text(path: Path, what: str = "policy file") -> str:
    """Read a policy file (or another file, named ``what`` in errors) as UTF-8, bounded in size.

    Raises:
        PolicyError: unreadable, too large, or not UTF-8.
    """
    return decode(read_bytes(path, what), str(path), what)


def read_bytes(path: Path, what: str = "policy file") -> bytes:
    """Read a policy file's content once, bounded in size (at most ``MAX_POLICY_BYTES + 1`` bytes).

    Raises:
        PolicyError: unreadable.
    """
    try:
        with path.open("rb") as fh:
            return bytes(fh.read(MAX_POLICY_BYTES + 1))
    except OSError as exc:
        raise PolicyError(
            f"{path}: cannot read {what} ({exc.strerror or type(exc).__name__})", source=str(path)
        ) from None


def decode(raw: bytes, source: str, what: str = "policy file") -> str:
    """A policy file's content as text.

    Raises:
        PolicyError: too large or not UTF-8.
    """
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"{source}: {what} exceeds {MAX_POLICY_BYTES} bytes", source=source)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError(f"{source}: {what} is not UTF-8", source=source) from None


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate a policy file (``.yaml``, ``.yml`` or ``.json``); see :meth:`Policy.from_file`."""
    return Policy.from_file(path)


def _policy_error(exc: ValidationError, data: Mapping[str, Any], source: str) -> PolicyError:
    """Turn a pydantic error into one message per problem naming source, rule id and field."""
    lines: list[str] = []
    first_rule: str | None = None
    first_field: str | None = None
    for error in exc.errors():
        loc = tuple(error["loc"])
        rule_label = None
        field_loc = loc
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            rules = data.get("rules")
            rule_id = None
            if isinstance(rules, list) and loc[1] < len(rules) and isinstance(rules[loc[1]], Mapping):
                raw_id = rules[loc[1]].get("id")
                rule_id = raw_id if isinstance(raw_id, str) else None
            rule_label = f"rule {rule_id!r} (rules[{loc[1]}])" if rule_id else f"rules[{loc[1]}]"
            field_loc = loc[2:]
            if first_rule is None:
                first_rule = rule_id or f"rules[{loc[1]}]"
        field = _format_loc(field_loc)
        if first_field is None and field:
            first_field = field
        message = error["msg"].removeprefix("Value error, ")
        where = ", ".join(part for part in (rule_label, f"field {field!r}" if field else None) if part)
        lines.append(f"{source}: {where + ': ' if where else ''}{message}")
    return PolicyError("\n".join(lines), source=source, rule=first_rule, field=first_field)
