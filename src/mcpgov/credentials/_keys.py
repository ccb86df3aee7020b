"""Signing keys for credentials: a rotating key set, loading from PEM or JWK files, and JWKS export.

Every key is bound to exactly one algorithm. Ed25519 and ES256 are the defaults; HS256 (a
shared secret) exists for tests only and must be asked for with ``allow_hmac=True``, since a
verifier holding an HMAC key can also mint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, OctKey, OKPKey, import_key

from mcpgov._errors import ConfigurationError
from mcpgov._types import Clock
from mcpgov._validate import positive_seconds

__all__ = ["ASYMMETRIC_ALGORITHMS", "KeyResolver", "SigningKeySet", "VerificationKeys"]

ASYMMETRIC_ALGORITHMS = frozenset({"Ed25519", "ES256"})
"""Algorithms a production key set may use."""

_HMAC_ALGORITHMS = frozenset({"HS256"})
_LOAD_ERRORS = (OSError, ValueError, TypeError, KeyError, JoseError, UnsupportedAlgorithm)
_MIN_HMAC_BYTES = 32


class KeyResolver(Protocol):
    """Where a verifier finds the key for a credential's ``kid`` and ``alg``."""

    @property
    def algorithms(self) -> frozenset[str]:
        """The algorithms keys here are bound to."""
        ...

    def find(self, kid: str, alg: str) -> Key | None:
        """The verification key with this id bound to this algorithm, or None."""
        ...


def _algorithm_of(key: Key) -> str:
    """The one algorithm a key's type allows."""
    if isinstance(key, OKPKey) and key.curve_name == "Ed25519":
        return "Ed25519"
    if isinstance(key, ECKey) and key.curve_name == "P-256":
        return "ES256"
    if isinstance(key, OctKey):
        return "HS256"
    raise ConfigurationError(f"unsupported key type {key.key_type} for credentials (use Ed25519 or P-256)")


def _bind(key: Key, algorithm: str | None, *, allow_hmac: bool) -> tuple[Key, str]:
    natural = _algorithm_of(key)
    declared = key.alg
    if algorithm is not None and algorithm != natural:
        raise ConfigurationError(f"a {key.key_type} key cannot sign {algorithm}")
    if declared is not None and declared != natural:
        raise ConfigurationError(f"key declares alg {declared!r} but is a key for {natural}")
    if natural in _HMAC_ALGORITHMS:
        if not allow_hmac:
            raise ConfigurationError("HMAC credential keys are for tests only: pass allow_hmac=True to use one")
        if len(key.as_dict(private=True).get("k", "")) * 3 // 4 < _MIN_HMAC_BYTES:
            raise ConfigurationError(f"an HMAC key needs at least {_MIN_HMAC_BYTES} bytes")
    key.ensure_kid()
    return key, natural


def _generate(algorithm: str) -> Key:
    params: Any = {"alg": algorithm, "use": "sig"}
    key: Key
    if algorithm == "Ed25519":
        key = OKPKey.generate_key("Ed25519", params, auto_kid=True)
    elif algorithm == "ES256":
        key = ECKey.generate_key("P-256", params, auto_kid=True)
    elif algorithm == "HS256":
        key = OctKey.generate_key(256, params, auto_kid=True)
    else:
        raise ConfigurationError(f"unsupported credential algorithm {algorithm!r}; use {sorted(ASYMMETRIC_ALGORITHMS)}")
    return key


@dataclass(slots=True)
class _Entry:
    kid: str
    alg: str
    key: Key
    created_at: float
    retired_at: float | None = None


class SigningKeySet:
    """The issuer's signing keys: one current key, and retired keys kept for verification.

    After :meth:`rotate`, new credentials are signed with the new key while the old one still
    verifies for ``overlap`` seconds (make it at least the longest credential lifetime, so
    nothing minted before a rotation is refused early). With ``rotation_period`` the set
    rotates itself when the current key gets that old.

    Args:
        key: the first signing key (a joserfc private key).
        algorithm: the algorithm to bind keys to; inferred from the key when omitted.
        overlap: seconds a retired key still verifies.
        rotation_period: rotate automatically after this many seconds (None: only by hand).
        allow_hmac: permit an HS256 key (tests only).
        clock: seconds since the epoch.

    Raises:
        ConfigurationError: a public-only key, an unsupported or mismatched algorithm, a
            short HMAC key, or HMAC without ``allow_hmac``.
    """

    def __init__(
        self,
        key: Key,
        *,
        algorithm: str | None = None,
        overlap: float = 3600.0,
        rotation_period: float | None = None,
        allow_hmac: bool = False,
        clock: Clock = time.time,
    ) -> None:
        self._clock = clock
        self._allow_hmac = allow_hmac
        self.overlap = positive_seconds("overlap", overlap)
        self.rotation_period = (
            positive_seconds("rotation_period", rotation_period) if rotation_period is not None else None
        )
        key, alg = self._checked(key, algorithm)
        self.algorithm = alg
        self._entries: dict[str, _Entry] = {key.kid or "": _Entry(key.kid or "", alg, key, clock())}
        self._current = self._entries[key.kid or ""]

    def _checked(self, key: Key, algorithm: str | None) -> tuple[Key, str]:
        if not isinstance(key, (OKPKey, ECKey, OctKey)):
            raise ConfigurationError(f"a signing key must be a joserfc key, got {type(key).__name__}")
        if not key.is_private:
            raise ConfigurationError("a signing key set needs private keys")
        return _bind(key, algorithm, allow_hmac=self._allow_hmac)

    def __repr__(self) -> str:
        return f"SigningKeySet(algorithm={self.algorithm!r}, current={self._current.kid!r}, keys={len(self._entries)})"

    @classmethod
    def generate(cls, algorithm: str = "Ed25519", **options: Any) -> SigningKeySet:
        """A key set with a freshly generated key.

        Args:
            algorithm: ``Ed25519`` (default) or ``ES256``; ``HS256`` with ``allow_hmac=True``.
            **options: the constructor's keyword arguments.
        """
        if algorithm in _HMAC_ALGORITHMS and not options.get("allow_hmac"):
            raise ConfigurationError("HMAC credential keys are for tests only: pass allow_hmac=True to use one")
        return cls(_generate(algorithm), algorithm=algorithm, **options)

    @classmethod
    def from_pem(
        cls, path: str | Path, *, algorithm: str | None = None, password: str | None = None, **options: Any
    ) -> SigningKeySet:
        """Load a PEM private key (Ed25519 or P-256).

        Raises:
            ConfigurationError: the file cannot be read or holds no supported private key.
        """
        try:
            key = _load_pem(Path(path).read_bytes(), password)
        except ConfigurationError:
            raise
        except _LOAD_ERRORS as exc:
            raise ConfigurationError(f"cannot load a signing key from {path}: {type(exc).__name__}") from None
        return cls(key, algorithm=algorithm, **options)

    @classmethod
    def from_jwk(cls, path: str | Path, **options: Any) -> SigningKeySet:
        """Load a private JWK, or a JWKS whose first key signs and whose others still verify.

        Raises:
            ConfigurationError: the file cannot be read or holds no usable private key.
        """
        try:
            data = json.loads(Path(path).read_text("utf-8"))
            dicts = data["keys"] if isinstance(data, dict) and "keys" in data else [data]
            keys = [import_key(d) for d in dicts]
        except _LOAD_ERRORS as exc:
            raise ConfigurationError(f"cannot load signing keys from {path}: {type(exc).__name__}") from None
        if not keys:
            raise ConfigurationError(f"{path} holds no keys")
        first, *others = keys
        keyset = cls(first, **options)
        for extra in others:
            checked, alg = keyset._checked(extra, None)
            keyset._entries[checked.kid or ""] = _Entry(
                checked.kid or "", alg, checked, keyset._clock(), keyset._clock()
            )
        return keyset

    @property
    def algorithms(self) -> frozenset[str]:
        """The algorithms of the keys held."""
        return frozenset(e.alg for e in self._entries.values())

    @property
    def current(self) -> tuple[str, str, Key]:
        """``(kid, alg, key)`` of the key that signs now (rotating first when it is due)."""
        entry = self._current
        period = self.rotation_period
        if period is not None and self._clock() - entry.created_at >= period:
            self.rotate()
            entry = self._current
        return entry.kid, entry.alg, entry.key

    def rotate(self, key: Key | None = None) -> str:
        """Make ``key`` (or a newly generated key of the same algorithm) the signing key.

        The previous key keeps verifying for :attr:`overlap` seconds.

        Returns:
            The new key's id.
        """
        new, alg = self._checked(key if key is not None else _generate(self.algorithm), None)
        now = self._clock()
        self._current.retired_at = now
        self._prune(now)
        entry = _Entry(new.kid or "", alg, new, now)
        self._entries[entry.kid] = entry
        self._current = entry
        return entry.kid

    def _prune(self, now: float) -> None:
        for kid in [
            k for k, e in self._entries.items() if e.retired_at is not None and now >= e.retired_at + self.overlap
        ]:
            del self._entries[kid]

    def find(self, kid: str, alg: str) -> Key | None:
        """The key with id ``kid`` if it is bound to ``alg`` and still verifies."""
        entry = self._entries.get(kid)
        if entry is None or entry.alg != alg:
            return None
        if entry.retired_at is not None and self._clock() >= entry.retired_at + self.overlap:
            return None
        return entry.key

    def jwks(self) -> dict[str, Any]:
        """The public keys that still verify, as a JWKS (never private material).

        Raises:
            ConfigurationError: the set holds HMAC keys, which cannot be published.
        """
        now = self._clock()
        self._prune(now)
        if any(e.alg in _HMAC_ALGORITHMS for e in self._entries.values()):
            raise ConfigurationError("an HMAC key set has no public form; share it only within a test")
        return {"keys": [e.key.as_dict(private=False, alg=e.alg, use="sig", kid=e.kid) for e in self._entries.values()]}

    def verification_keys(self) -> VerificationKeys:
        """A public-only copy for verifiers (see :class:`VerificationKeys`)."""
        return VerificationKeys(self.jwks())


def _load_pem(data: bytes, password: str | None) -> Key:
    raw = load_pem_private_key(data, password.encode() if password is not None else None)
    if isinstance(raw, Ed25519PrivateKey):
        return OKPKey(raw, raw, {"use": "sig"})
    if isinstance(raw, EllipticCurvePrivateKey):
        return ECKey(raw, raw, {"use": "sig"})
    raise ConfigurationError("the PEM file holds neither an Ed25519 nor an EC private key")


class VerificationKeys:
    """Public verification keys from a JWKS (for verifiers in other processes).

    Args:
        jwks: a JWKS mapping (``{"keys": [...]}``), e.g. from :meth:`SigningKeySet.jwks`.

    Raises:
        ConfigurationError: the set is empty, holds private or symmetric key material, a key
            of an unsupported type, a key not for signatures (``use``/``key_ops``), or one key
            id twice.
    """

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(entries, list) or not entries:
            raise ConfigurationError("a JWKS needs a non-empty 'keys' list")
        self._keys: dict[str, tuple[str, Key]] = {}
        for data in entries:
            if not isinstance(data, Mapping) or data.get("kty") == "oct" or "d" in data or "k" in data:
                raise ConfigurationError("a verification key set must not contain private or symmetric keys")
            key_ops = data.get("key_ops")
            if ("use" in data and data["use"] != "sig") or (
                key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops)
            ):
                raise ConfigurationError(
                    "a verification key must be for signatures (use 'sig', key_ops including 'verify')"
                )
            try:
                key = import_key(dict(data))
            except _LOAD_ERRORS as exc:
                raise ConfigurationError(f"cannot import a verification key: {type(exc).__name__}") from None
            key, alg = _bind(key, None, allow_hmac=False)
            kid = key.kid or ""
            if kid in self._keys:
                raise ConfigurationError(f"key id {kid!r} appears twice in the verification key set")
            self._keys[kid] = (alg, key)

    def __repr__(self) -> str:
        return f"VerificationKeys(kids={sorted(self._keys)!r})"

    @classmethod
    def from_file(cls, path: str | Path) -> VerificationKeys:
        """Load a JWKS file."""
        try:
            data = json.loads(Path(path).read_text("utf-8"))
        except _LOAD_ERRORS as exc:
            raise ConfigurationError(f"cannot read a JWKS from {path}: {type(exc).__name__}") from None
        return cls(data)

    @property
    def algorithms(self) -> frozenset[str]:
        """The algorithms of the keys held."""
        return frozenset(alg for alg, _ in self._keys.values())

    def find(self, kid: str, alg: str) -> Key | None:
        """The key with id ``kid`` if it is bound to ``alg``."""
        found = self._keys.get(kid)
        if found is None or found[0] != alg:
            return None
        return found[1]
