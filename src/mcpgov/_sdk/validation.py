"""Strict request validation: decide on exactly what the handler will run.

The SDK converts what it receives before a handler sees it: ``MCPServer`` tools validate their
arguments with pydantic in lax mode (``"0"`` and ``false`` become ``0``, a JSON string becomes a
list, defaults are filled in), prompts and resource templates convert their string arguments to
the function's parameter types, and template parameters are percent-decoded. A decision made on
the wire form would then not be a decision about what runs.

So, before any decision, each request is validated without coercion against what the target
declares, and the form the handler will receive is computed:

* tools of an ``MCPServer``: pydantic strict JSON validation of the tool's own argument model;
  unknown arguments, anything the SDK would convert, and anything its lax validation would read
  differently are refused. The decided arguments are the validated ones, defaults included, and
  the handler receives a fresh copy of exactly them.
* tools of a lowlevel ``Server`` that declares input schemas (``get_tool_input_schema``): JSON
  Schema validation (Draft 2020-12, formats checked) with ``jsonschema``; the SDK does not convert.
* prompts and resource templates: every value that the SDK would convert to a non-string type
  must already be in that type's canonical text form (``"0"``, not ``"00"`` or ``" 0"``).
* resource URIs: canonical (no percent-encoded unreserved or structural characters, no
  compatibility characters, no ``.`` or ``..`` segments and no backslashes: RFC 3986's normal
  form), so a policy judging the URI judges what the template, or a handler resolving a path,
  receives.

Every refusal is an :class:`~mcpgov.InvalidRequest` (-32602) naming the field, never the value.
"""

from __future__ import annotations

import functools
import inspect
import json
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Generic, TypeVar

import jsonschema
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from mcpgov._errors import InvalidRequest
from mcpgov._sdk import compat
from mcpgov._uris import uri_problem

__all__ = ["RequestValidator", "check_canonical_arguments", "check_uri", "converted_tool_arguments", "same_json"]

_Validate = Callable[[Mapping[str, Any]], "Mapping[str, Any]"]


def same_json(a: Any, b: Any) -> bool:
    """Equality of JSON values that also requires equal types (``1 != 1.0 != True`` here)."""
    ta = type(a)
    if ta is not type(b):
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
        return False
    if ta is dict:
        if len(a) != len(b):
            return False
        return all(key in b and same_json(value, b[key]) for key, value in a.items())
    if ta is list or ta is tuple:
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _field_names(exc: ValidationError) -> str:
    names = sorted({".".join(str(part) for part in err["loc"]) or "(arguments)" for err in exc.errors()})
    return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")


def _invalid(message: str, reason: str = "arguments_invalid") -> InvalidRequest:
    return InvalidRequest(message, reason=reason)


# What a field of a plain argument model may set beyond its type: nothing that validates,
# converts, renames or leaves out a value (constraints live in ``metadata``, checked empty).
_PLAIN_FIELD_ATTRIBUTES = frozenset({"annotation", "default", "description", "title", "examples"})
_PLAIN_TYPES = (int, str, bool)


def _plain_fields(model: Any) -> dict[str, type] | None:
    """Each field's exact type, when ``model`` is the SDK's plain argument model of a function
    whose parameters are all ``int``, ``str`` or ``bool`` with no constraint, alias, validator
    or serializer; otherwise ``None``.

    For such a model strict validation depends on each value's type alone (a strict ``int``
    takes any integer and no ``bool``, a strict ``str`` any text, a strict ``bool`` only a
    ``bool``), its JSON dump is the values as given, and the SDK's pre-parsing leaves them
    alone (it only parses text given for a non-text field). So arguments naming every field,
    each of exactly its field's type, are decided as they are, without building a model.
    """
    try:
        from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase  # noqa: PLC0415 - SDK internals
    except ImportError:  # pragma: no cover - guards an SDK change within 2.3.x: the full validation
        return None
    decorators = getattr(model, "__pydantic_decorators__", None)
    if (
        getattr(model, "__bases__", None) != (ArgModelBase,)
        or decorators is None
        or any(
            getattr(decorators, kind, None)
            for kind in (
                "validators",
                "field_validators",
                "root_validators",
                "field_serializers",
                "model_serializers",
                "model_validators",
                "computed_fields",
            )
        )
        or getattr(model, "__pydantic_post_init__", None) is not None
        or set(model.model_config) - {"arbitrary_types_allowed"}
        or not model.model_fields
    ):
        return None
    fields: dict[str, type] = {}
    for name, info in model.model_fields.items():
        attributes = getattr(info, "_attributes_set", None)
        if (
            info.annotation not in _PLAIN_TYPES
            or info.metadata
            or info.alias is not None
            or info.validation_alias is not None
            or info.serialization_alias is not None
            or info.exclude
            or info.discriminator is not None
            or not isinstance(attributes, dict)
            or set(attributes) - _PLAIN_FIELD_ATTRIBUTES
        ):
            return None
        fields[name] = info.annotation
    return fields


class _ToolModel:
    """The strict form of one ``MCPServer`` tool's arguments."""

    __slots__ = ("allowed", "meta", "model", "name", "plain")

    def __init__(self, name: str, meta: Any) -> None:
        self.name = name
        self.meta = meta
        self._derive(meta.arg_model)

    def _derive(self, model: Any) -> None:
        """What is read from the argument model; again whenever the SDK's metadata gets another
        one (its fields are read live), so no check is made against a model that no longer runs."""
        self.model = model
        self.allowed = frozenset(info.alias or field_name for field_name, info in model.model_fields.items())
        self.plain = _plain_fields(model)

    def __call__(self, wire: Mapping[str, Any]) -> Mapping[str, Any]:
        model = self.meta.arg_model
        if model is not self.model:
            self._derive(model)
        plain = self.plain
        if plain is not None and len(wire) == len(plain):
            # Every field given, each of exactly its type: decided as given (see _plain_fields).
            for key, value in wire.items():
                if plain.get(key) is not type(value):
                    break
            else:
                return wire
        extra = wire.keys() - self.allowed
        if extra:
            names = ", ".join(repr(k) for k in sorted(extra)[:5])
            raise _invalid(f"tool {self.name!r} has no argument(s) {names}", "arguments_unknown")
        try:
            # Python-mode strict first (the common case, no encoding); JSON-mode strict admits what
            # only has a text form in JSON (dates, UUIDs...) and nothing else.
            strict = model.model_validate(wire, strict=True)
        except ValidationError:
            try:
                strict = model.model_validate_json(json.dumps(wire), strict=True)
            except ValidationError as exc:
                raise _invalid(f"tool {self.name!r}: invalid argument(s) {_field_names(exc)}") from None
            except (TypeError, ValueError):
                raise _invalid(f"tool {self.name!r}: arguments are not JSON") from None
        decided: dict[str, Any] = strict.model_dump(mode="json", by_alias=True)
        # What the SDK itself would make of the same wire arguments must be what was validated:
        # its pre-parsing turns JSON text into structure for fields not declared as plain strings.
        wire_dict = dict(wire)
        pre = self.meta.pre_parse_json(wire_dict)
        if any(pre[k] is not wire_dict[k] for k in wire_dict) and not same_json(self._as_sdk(wire_dict), decided):
            raise _invalid(f"tool {self.name!r}: arguments would be converted by the server", "arguments_converted")
        if same_json(decided, wire_dict):
            return decided
        # Defaults filled in, numbers as declared, text forms normalised: the SDK must read the
        # decided form exactly as decided, and as the very values validated (a secret's JSON form
        # is masked: the tool would be handed the mask, not what was sent).
        if not same_json(self._as_sdk(decided), decided) or not self._reads_back(decided, strict):
            raise _invalid(f"tool {self.name!r}: arguments would be converted by the server", "arguments_converted")
        return decided

    def _reads_back(self, decided: dict[str, Any], strict: Any) -> bool:
        try:
            return bool(self.meta.arg_model.model_validate(self.meta.pre_parse_json(decided)) == strict)
        except Exception:  # noqa: BLE001 - what the tool would be handed cannot be compared: not decided on
            return False

    def _as_sdk(self, arguments: dict[str, Any]) -> Any:
        try:
            lax = self.meta.arg_model.model_validate(self.meta.pre_parse_json(arguments))
        except ValidationError:
            return _UNREADABLE
        return lax.model_dump(mode="json", by_alias=True)


_UNREADABLE = object()


class _Schema:
    """JSON Schema validation of a lowlevel server's declared input schema."""

    __slots__ = ("name", "validator")

    def __init__(self, name: str, schema: Mapping[str, Any]) -> None:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(dict(schema))
        except jsonschema.SchemaError:
            raise _invalid(f"tool {name!r} declares an invalid input schema", "schema_invalid") from None
        self.name = name
        self.validator = cls(dict(schema), format_checker=cls.FORMAT_CHECKER)

    def __call__(self, wire: Mapping[str, Any]) -> Mapping[str, Any]:
        error = jsonschema.exceptions.best_match(self.validator.iter_errors(dict(wire)))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(arguments)"
            raise _invalid(f"tool {self.name!r}: invalid argument {where} ({error.validator})")
        return wire


def _canonical_text(adapter: TypeAdapter[Any], text: str, *, json_text: bool = False) -> bool:
    """Whether ``text`` is the canonical spelling of the value the server converts it to
    (``json_text``: text the value cannot be read from is read as JSON, as FastMCP does)."""
    try:
        try:
            value = adapter.validate_python(text)
        except (ValidationError, ValueError, TypeError):
            if not json_text:
                raise
            value = adapter.validate_json(text)
        dumped = adapter.dump_json(value).decode()
    except (ValidationError, ValueError, TypeError):
        return False
    if dumped.startswith('"'):
        dumped = json.loads(dumped)
    return dumped == text


def _parameter_adapters(fn: Callable[..., Any]) -> dict[str, TypeAdapter[Any]]:
    """A pydantic adapter for each parameter of ``fn`` that converts what it is given: its
    annotation with its metadata (``Annotated`` constraints and validators, a ``Field(...)``
    default), as the server's own validation reads it. Plain ``str`` and untyped ones convert nothing."""
    adapters: dict[str, TypeAdapter[Any]] = {}
    target = inspect.unwrap(fn)
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable annotations: each parameter as written
        hints = {}
    for name, param in inspect.signature(target).parameters.items():
        annotation = hints.get(name, param.annotation)
        if isinstance(param.default, FieldInfo):
            annotation = Annotated[annotation, param.default]
        if annotation is str or annotation is inspect.Parameter.empty or annotation is Any:
            continue
        try:
            adapters[name] = TypeAdapter(annotation)
        except Exception:  # noqa: BLE001,S112 - a type pydantic cannot adapt is not converted here
            continue
    return adapters


class _Converting:
    """String arguments (prompts, template parameters) that the SDK converts to typed parameters."""

    __slots__ = ("adapters", "json_text", "what")

    def __init__(self, what: str, fn: Callable[..., Any], json_text: bool = False) -> None:
        self.what = what
        self.json_text = json_text
        self.adapters = _parameter_adapters(fn)

    def check(self, values: Mapping[str, Any]) -> None:
        for name, value in values.items():
            adapter = self.adapters.get(name)
            if adapter is None or not isinstance(value, str):
                continue
            if not _canonical_text(adapter, value, json_text=self.json_text):
                raise _invalid(
                    f"{self.what}: argument {name!r} is not in the canonical form of its type", "arguments_converted"
                )


def check_canonical_arguments(what: str, fn: Callable[..., Any], values: Mapping[str, Any]) -> None:
    """Refuse a string value of ``values`` that is not the canonical text of what ``fn``'s
    parameter of that name converts it to (a JSON text where its type reads one, as FastMCP
    converts prompt arguments and resource template parameters).

    Raises:
        InvalidRequest: a value is not in the canonical form of its parameter's type.
    """
    _CONVERTING_JSON.get(fn, _Converting, what, fn, True).check(values)


def check_uri(uri: str) -> None:
    """Refuse a resource URI that is not in canonical form (see the module docstring)."""
    problem = uri_problem(uri)
    if problem is not None:
        raise _invalid(problem, "uri_invalid")


class RequestValidator:
    """Validates one governed server's requests strictly; see the module docstring.

    Args:
        server: the lowlevel ``Server`` being governed.
        mcp_server: the ``MCPServer`` around it, when there is one.
    """

    def __init__(self, server: Server[Any], mcp_server: MCPServer | None) -> None:
        self._server = server
        self._mcp = mcp_server
        self.input_schema: Callable[[str], Mapping[str, Any] | None] | None = None
        """The server's ``get_tool_input_schema`` when governance took it from the server (see
        ``mcpgov._server``); otherwise the server's attribute is read at each call."""

    def tool_arguments(self, name: str, arguments: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """The arguments the tool's handler will receive, validated; ``None`` when ``name`` is unknown.

        Raises:
            InvalidRequest: the arguments do not match the tool's declared input.
        """
        wire: Mapping[str, Any] = arguments if arguments is not None else {}
        if self._mcp is not None:
            tool = compat.tool_of(self._mcp, name)
            if tool is None:
                return None
            return _tool_model(tool.fn_metadata, name)(wire)
        lookup = self.input_schema or getattr(self._server, "get_tool_input_schema", None)
        if lookup is None:
            return wire
        schema = lookup(name)
        if schema is None:
            return wire
        return _schema_validator(_freeze_key(schema), name, schema)(wire)

    def prompt_arguments(self, name: str, arguments: Mapping[str, Any] | None) -> None:
        """Check a ``prompts/get``: string values only, each in the canonical form of its parameter.

        Raises:
            InvalidRequest: an argument is not a string, or the SDK would convert it.
        """
        values: Mapping[str, Any] = arguments if arguments is not None else {}
        for key, value in values.items():
            if not isinstance(value, str):
                raise _invalid(f"prompt {name!r}: argument {key!r} must be a string", "arguments_invalid")
        if self._mcp is None:
            return
        prompt = compat.prompt_of(self._mcp, name)
        if prompt is None:
            return  # refused after the decision, so only a caller allowed to use it learns it is unknown
        _converting("prompt " + repr(name), prompt.fn).check(values)

    def resource_uri(self, uri: str) -> None:
        """Check a resource URI is canonical and, for a template, that its parameters are too.

        Raises:
            InvalidRequest: the URI or a template parameter is not in canonical form.
        """
        check_uri(uri)
        if self._mcp is None:
            return
        for template in compat.resource_templates_of(self._mcp):
            try:
                params = template.matches(uri)
            except Exception:  # noqa: BLE001 - the SDK refuses this URI itself (ResourceSecurityError)
                return
            if params is not None:
                flat = {k: v for k, v in params.items() if isinstance(v, str)}
                _converting(f"resource template {template.uri_template!r}", template.fn).check(flat)
                return


def _freeze_key(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, default=str)


@functools.lru_cache(maxsize=1024)
def _schema_validator_cached(key: str, name: str) -> _Schema:
    return _Schema(name, json.loads(key))


def _schema_validator(key: str, name: str, schema: Mapping[str, Any]) -> _Schema:
    return _schema_validator_cached(key, name)


_V = TypeVar("_V")


class _ByIdentity(Generic[_V]):
    """A bounded cache keyed by an object's identity (the object is kept beside its value, so
    its id cannot be reused while cached); emptied when it passes ``limit`` entries."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._entries: dict[int, tuple[Any, _V]] = {}

    def get(self, key: Any, build: Callable[..., _V], *args: Any) -> _V:
        """The value cached for ``key``, else ``build(*args)`` (then cached)."""
        cached = self._entries.get(id(key))
        if cached is not None and cached[0] is key:
            return cached[1]
        value = build(*args)
        if len(self._entries) > self._limit:
            self._entries.clear()
        self._entries[id(key)] = (key, value)
        return value


_TOOL_MODELS: _ByIdentity[_ToolModel] = _ByIdentity()


def _tool_model(meta: Any, name: str) -> _ToolModel:
    return _TOOL_MODELS.get(meta, _ToolModel, name, meta)


_CONVERTING: _ByIdentity[_Converting] = _ByIdentity()
_CONVERTING_JSON: _ByIdentity[_Converting] = _ByIdentity()


def _converting(what: str, fn: Callable[..., Any]) -> _Converting:
    return _CONVERTING.get(fn, _Converting, what, fn)


def _read_back(adapter: TypeAdapter[Any], received: Any, value: Any) -> Any:
    """``received`` in its JSON form (``value`` itself when that is its form), or ``_UNREADABLE``
    when that form does not read back as ``received`` (a secret dumps masked, a lossy serializer
    drops what the tool would get)."""
    try:
        dumped = adapter.dump_python(received, mode="json", by_alias=True)
        if same_json(dumped, value):
            return value
        return dumped if bool(adapter.validate_python(dumped) == received) else _UNREADABLE
    except Exception:  # noqa: BLE001 - no JSON form that reads back: cannot be decided on
        return _UNREADABLE


class _ToolConversion:
    """The arguments a FastMCP function tool receives: each as pydantic (lax, as FastMCP runs
    it) converts it, given back in its JSON form."""

    __slots__ = ("adapters", "what")

    def __init__(self, what: str, fn: Callable[..., Any]) -> None:
        self.what = what
        self.adapters = _parameter_adapters(fn)

    def decided(self, wire: Mapping[str, Any]) -> Mapping[str, Any]:
        decided: dict[str, Any] | None = None
        for name, value in wire.items():
            adapter = self.adapters.get(name)
            if adapter is None:
                continue
            try:
                received = adapter.validate_python(value)
            except ValidationError:
                raise _invalid(f"{self.what}: invalid argument {name!r}") from None
            except Exception:  # noqa: BLE001 - what the tool would receive cannot be known
                dumped = _UNREADABLE
            else:
                dumped = _read_back(adapter, received, value)
            if dumped is _UNREADABLE:
                raise _invalid(
                    f"{self.what}: argument {name!r} would be converted by the server", "arguments_converted"
                )
            if dumped is not value:
                if decided is None:
                    decided = dict(wire)
                decided[name] = dumped
        return wire if decided is None else decided


_TOOL_CONVERSIONS: _ByIdentity[_ToolConversion] = _ByIdentity()


def converted_tool_arguments(what: str, fn: Callable[..., Any], wire: Mapping[str, Any]) -> Mapping[str, Any]:
    """The arguments function tool ``fn`` receives for ``wire``, in their JSON form: each value
    as the server converts it (constraints that strip or lower-case text, validators, a model's
    defaults filled in, a UUID's canonical spelling); ``wire`` itself when nothing is converted.

    Raises:
        InvalidRequest: an argument is invalid, or converts to a value with no JSON form that
            reads back as it.
    """
    return _TOOL_CONVERSIONS.get(fn, _ToolConversion, what, fn).decided(wire)
