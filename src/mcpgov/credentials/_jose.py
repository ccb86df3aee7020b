"""Signing and decoding credentials with joserfc, with the header rules credentials need."""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import Key
from joserfc.jws import JWSRegistry

from mcpgov._errors import CredentialError
from mcpgov._tokenjson import TokenJSONError, decode_object, decode_segment
from mcpgov.credentials._claims import CREDENTIAL_TYP
from mcpgov.credentials._keys import KeyResolver

__all__ = ["DEFAULT_MAX_TOKEN_BYTES", "check_signature", "claimed_id", "parse_credential", "sign_credential"]

DEFAULT_MAX_TOKEN_BYTES = 8192
"""Tokens longer than this are refused before any decoding or cryptography."""

_ALLOWED_HEADERS = frozenset({"alg", "typ", "kid"})
_JTI = re.compile(r"[A-Za-z0-9_-]{1,64}")
_REGISTRIES: dict[str, JWSRegistry] = {}


def _registry(alg: str) -> JWSRegistry:
    registry = _REGISTRIES.get(alg)
    if registry is None:
        registry = _REGISTRIES[alg] = JWSRegistry(algorithms=[alg])
    return registry


def sign_credential(payload: dict[str, Any], kid: str, alg: str, key: Key) -> str:
    """Sign ``payload`` as a credential (``typ`` :data:`CREDENTIAL_TYP`)."""
    header = {"alg": alg, "typ": CREDENTIAL_TYP, "kid": kid}
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return jws.serialize_compact(header, data, key, registry=_registry(alg))


def claimed_id(payload: Any) -> str | None:
    """A credential id fit for audit from an unverified payload (None when it looks wrong)."""
    jti = payload.get("jti") if isinstance(payload, dict) else None
    return jti if isinstance(jti, str) and _JTI.fullmatch(jti) else None


def parse_credential(token: Any, *, max_bytes: int = DEFAULT_MAX_TOKEN_BYTES) -> tuple[Any, dict[str, Any]]:
    """Check a credential's size and shape and decode it, without trusting anything yet.

    Header and payload are strict JSON objects: a member named twice, ``NaN``/``Infinity`` or
    nesting too deep to decode is refused, never resolved one way or another.

    Returns:
        The joserfc compact object (for :func:`check_signature`) and the unverified claims.

    Raises:
        CredentialError: ``reason`` ``missing``, ``oversized`` or ``malformed``.
    """
    if not isinstance(token, str) or not token:
        raise CredentialError("no credential was presented", reason="missing")
    if len(token) > max_bytes:
        raise CredentialError(f"a credential of {len(token)} bytes exceeds {max_bytes}", reason="oversized")
    if token.count(".") != 2 or not token.isascii():
        raise CredentialError("a credential must be a compact JWS", reason="malformed")
    try:
        obj = jws.extract_compact(token.encode("ascii"))
    except (JoseError, ValueError, TypeError, RecursionError):
        raise CredentialError("the credential cannot be decoded", reason="malformed") from None
    try:
        decode_segment(obj.segments["header"])
    except TokenJSONError as exc:
        raise CredentialError(f"the credential's header is refused: {exc}", reason="malformed") from None
    try:
        payload = decode_object(obj.payload or b"")
    except TokenJSONError as exc:
        raise CredentialError(f"the credential's payload is refused: {exc}", reason="malformed") from None
    return obj, payload


def check_signature(obj: Any, keys: KeyResolver, algorithms: Collection[str]) -> Key:
    """Check the header rules and the signature of a parsed credential; returns the key that verified it.

    Only ``alg``, ``typ`` and ``kid`` are accepted in the header (no ``jwk``, ``jku``, ``x5u``,
    ``x5c``, ``crit`` or ``b64``: nothing is fetched or followed), ``typ`` must be
    :data:`CREDENTIAL_TYP`, and the key named by ``kid`` must be bound to ``alg``.

    Raises:
        CredentialError: ``reason`` ``bad_typ``, ``bad_header``, ``bad_alg``, ``unknown_key``
            or ``bad_signature``.
    """
    header = obj.headers()
    if header.get("typ") != CREDENTIAL_TYP:
        raise CredentialError(f"a credential must have typ {CREDENTIAL_TYP}", reason="bad_typ")
    if not set(header) <= _ALLOWED_HEADERS:
        raise CredentialError("the credential has header parameters that are not accepted", reason="bad_header")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise CredentialError("the credential's algorithm is not accepted", reason="bad_alg")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > 128:
        raise CredentialError("the credential names no usable key id", reason="unknown_key")
    key = keys.find(kid, alg)
    if key is None:
        raise CredentialError("the credential's key is unknown or retired", reason="unknown_key")
    try:
        valid = jws.validate_compact(obj, key, registry=_registry(alg))
    except (JoseError, ValueError, TypeError):
        valid = False
    if not valid:
        raise CredentialError("the credential's signature does not verify", reason="bad_signature")
    return key
