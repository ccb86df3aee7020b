"""Strict JSON for the header and payload of a token (identity token or credential).

A token's JSON is read exactly one way: a member named twice, ``NaN``/``Infinity``, invalid
UTF-8, or nesting deeper than a parser can follow is refused, never resolved (a parser that
keeps the first of two ``tenant`` members and one that keeps the last would each see another
token). Decoding is bounded by the token's size, which callers check first.
"""

from __future__ import annotations

import json
from typing import Any

from joserfc.util import urlsafe_b64decode

from mcpgov._errors import McpGovError

__all__ = ["TokenJSONError", "decode_object", "decode_segment"]


class TokenJSONError(McpGovError, ValueError):
    """A token's header or payload is not one unambiguous JSON object; the message says why.

    Never leaves the token readers: identity and credential verification turn it into their own
    ``malformed`` refusal. Also a ``ValueError``.
    """


def _reject_constant(name: str) -> Any:
    raise TokenJSONError(f"{name} is not JSON")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise TokenJSONError("a member name appears twice in one object")
    return out


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_members)


def decode_object(data: bytes) -> dict[str, Any]:
    """Decode ``data`` as one JSON object under the strict rules.

    Raises:
        TokenJSONError: invalid UTF-8 or JSON, a repeated member name, ``NaN``/``Infinity``,
            nesting too deep to decode, or a value other than an object.
    """
    try:
        value = _DECODER.decode(data.decode("utf-8"))
    except TokenJSONError:
        raise
    except UnicodeDecodeError:
        raise TokenJSONError("not UTF-8") from None
    except RecursionError:
        raise TokenJSONError("nested too deeply") from None
    except ValueError:
        raise TokenJSONError("not JSON") from None
    if not isinstance(value, dict):
        raise TokenJSONError("not a JSON object")
    return value


def decode_segment(segment: bytes) -> dict[str, Any]:
    """Decode a base64url segment of a compact JWS (its header) under the strict rules.

    Raises:
        TokenJSONError: as :func:`decode_object`, or the segment is not base64url.
    """
    try:
        data = urlsafe_b64decode(segment)
    except (ValueError, TypeError):
        raise TokenJSONError("not base64url") from None
    return decode_object(data)
