"""Publisher keys and manifest signatures: a detached compact JWS (through joserfc)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey, import_key

from mcpgov._errors import ConfigurationError, PinningError

__all__ = ["SIGNATURE_TYPE", "PublisherKeys", "load_signing_key", "sign_payload"]

SIGNATURE_TYPE = "mcpgov-pins+jws"
"""The ``typ`` header of a manifest signature, so no other JWS made with the same key passes for one."""

_EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


def _algorithm(key: Key) -> str:
    """The one signature algorithm used with ``key`` (asymmetric keys only)."""
    if isinstance(key, OKPKey):
        if key.curve_name != "Ed25519":
            raise ConfigurationError(f"publisher keys of curve {key.curve_name} are not supported (use Ed25519)")
        return "Ed25519"
    if isinstance(key, ECKey):
        alg = _EC_ALGORITHMS.get(key.curve_name)
        if alg is None:
            raise ConfigurationError(f"publisher keys of curve {key.curve_name} are not supported")
        return alg
    if isinstance(key, RSAKey):
        return "PS256"
    raise ConfigurationError(f"a publisher key must be an asymmetric key (OKP, EC or RSA), got {key.key_type}")


def _kid(key: Key) -> str:
    return key.kid or key.thumbprint()


def _import(data: Any, *, private: bool) -> Key:
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"a JWK must be a JSON object, got {type(data).__name__}")
    kty = data.get("kty")
    if kty not in ("OKP", "EC", "RSA"):
        raise ConfigurationError(f"a publisher key must be an asymmetric JWK (OKP, EC or RSA), got kty={kty!r}")
    try:
        key = import_key(dict(data))
    except (JoseError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"invalid JWK: {type(exc).__name__}") from exc
    if private and not key.is_private:
        raise ConfigurationError("a signing key must be a private JWK")
    if not private and key.is_private:
        raise ConfigurationError("a publisher key must be a public JWK (it contains private parameters)")
    _algorithm(key)
    return key


class PublisherKeys:
    """The public keys a server's publisher signs its manifests with.

    Args:
        keys: public JWKs (mappings). Each key's id is its ``kid``, or its RFC 7638 thumbprint.

    Raises:
        ConfigurationError: a key is not an asymmetric public JWK, or there is none.
    """

    def __init__(self, keys: Iterable[Mapping[str, Any]]) -> None:
        imported = [_import(k, private=False) for k in keys]
        if not imported:
            raise ConfigurationError("a publisher key set needs at least one key")
        self._keys: dict[str, Key] = {}
        for key in imported:
            kid = _kid(key)
            if kid in self._keys:
                raise ConfigurationError(f"two publisher keys share the id {kid!r}")
            self._keys[kid] = key

    @classmethod
    def from_jwk(cls, data: Any) -> PublisherKeys:
        """From one public JWK, or a JWK set (``{"keys": [...]}``).

        Raises:
            ConfigurationError: ``data`` is not a JWK or JWK set of public asymmetric keys.
        """
        if isinstance(data, Mapping) and "keys" in data and "kty" not in data:
            keys = data["keys"]
            if not isinstance(keys, list):
                raise ConfigurationError("a JWK set's 'keys' must be a list")
            return cls(keys)
        return cls([data])

    @property
    def kids(self) -> tuple[str, ...]:
        """The ids of the keys."""
        return tuple(self._keys)

    def __repr__(self) -> str:
        return f"PublisherKeys(kids={list(self._keys)!r})"

    def verify(self, signature: str, payload: bytes) -> str:
        """Check that ``signature`` (a detached compact JWS) signs ``payload`` with one of these keys.

        Args:
            signature: the detached compact JWS (``header..signature``).
            payload: the signed bytes (the manifest's canonical JSON).

        Returns:
            The id of the key that signed.

        Raises:
            PinningError: reason ``pin.bad_signature`` (malformed, wrong type, or not valid for
                the payload) or ``pin.unknown_key`` (signed by a key not in this set).
        """
        if not isinstance(signature, str):
            raise PinningError("the manifest signature is not a string", reason="pin.bad_signature")
        parts = signature.split(".")
        if len(parts) != 3 or parts[1] != "" or not parts[0] or not parts[2]:
            # Only a detached JWS (header..signature) is a manifest signature: one that carries a
            # payload of its own would verify that payload, not the manifest beside it.
            raise PinningError(
                "the manifest signature is not a detached compact JWS (header..signature)",
                reason="pin.bad_signature",
            )
        try:
            header = jws.extract_compact(signature.encode("ascii"), payload).headers()
        except (JoseError, ValueError, UnicodeError) as exc:
            raise PinningError(
                f"the manifest signature is malformed ({type(exc).__name__})", reason="pin.bad_signature"
            ) from exc
        if header.get("typ") != SIGNATURE_TYPE:
            raise PinningError(
                f"the manifest signature has type {header.get('typ')!r}, not {SIGNATURE_TYPE!r}",
                reason="pin.bad_signature",
            )
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None or not isinstance(kid, str):
            raise PinningError(f"the manifest is signed by an unknown publisher key {kid!r}", reason="pin.unknown_key")
        try:
            verified = jws.deserialize_compact(signature, key, algorithms=[_algorithm(key)], payload=payload)
        except (JoseError, ValueError) as exc:
            raise PinningError(
                f"the manifest signature does not verify with publisher key {kid!r}", reason="pin.bad_signature"
            ) from exc
        if verified.payload != payload:
            raise PinningError(
                f"the manifest signature with publisher key {kid!r} signs other bytes than the manifest",
                reason="pin.bad_signature",
            )
        return kid


def load_signing_key(data: Any) -> Key:
    """Import a publisher's private signing key from a JWK, or a JWKS whose first key signs.

    A JWKS written by ``mcpgov keys generate`` is accepted as it is.

    Raises:
        ConfigurationError: not a private asymmetric JWK (or a JWKS starting with one).
    """
    if isinstance(data, Mapping) and "keys" in data and "kty" not in data:
        keys = data["keys"]
        if not isinstance(keys, list) or not keys:
            raise ConfigurationError("a JWK set's 'keys' must be a non-empty list")
        data = keys[0]
    return _import(data, private=True)


def sign_payload(payload: bytes, key: Key | Mapping[str, Any]) -> str:
    """A detached compact JWS over ``payload``, typed :data:`SIGNATURE_TYPE`, with ``key``'s id as ``kid``.

    Args:
        payload: the bytes to sign (a manifest's canonical JSON).
        key: the publisher's private key (a joserfc key or a private JWK mapping).

    Returns:
        ``header..signature`` (the payload travels separately, in the manifest itself).

    Raises:
        ConfigurationError: ``key`` is not a private asymmetric key.
    """
    signing_key = load_signing_key(key) if isinstance(key, Mapping) else key
    if not signing_key.is_private:
        raise ConfigurationError("a signing key must be a private key")
    alg = _algorithm(signing_key)
    header = {"alg": alg, "kid": _kid(signing_key), "typ": SIGNATURE_TYPE}
    token = jws.serialize_compact(header, payload, signing_key, algorithms=[alg])
    detached: str = jws.detach_content(token)
    return detached
