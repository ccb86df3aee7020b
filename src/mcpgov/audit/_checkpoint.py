"""Signed checkpoints of a hash-chained audit log: keys, signing and checking (JWS via joserfc).

A checkpoint is a line of the chain whose content is a compact JWS (``typ``
:data:`CHECKPOINT_TYP`) over the RFC 8785 canonical JSON of::

    {"events": 1000, "lines": [[1, 1000]], "prev": "sha256:...", "reason": "count", "seq": 1001,
     "time": "2026-...Z", "writer": "4f3c..."}

``prev`` and ``seq`` are those of the checkpoint line itself, so the signature commits to every
line before it. ``lines`` are the ranges of sequence numbers the writer wrote itself since its
previous checkpoint: a verifier accepts an event line only when a checkpoint claims it, so lines
appended by anyone else (without the key) are found even when a writer continued the chain after
them. (Checkpoints written before ``lines`` existed claim every line before them.)

``reason`` is ``count`` (every N events), ``interval`` (every T seconds),
``rotate`` (the last line of a file that another file continues) or ``close`` (the writer
closed the log). Keys are the files ``mcpgov keys generate`` writes (a private JWKS); verifiers
take the public half (``mcpgov keys jwks``), or the same file.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey, EllipticCurvePublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, OKPKey, import_key
from joserfc.jws import JWSRegistry

from mcpgov._arguments import canonical_json
from mcpgov._errors import ConfigurationError
from mcpgov.credentials._keys import SigningKeySet

__all__ = ["CHECKPOINT_REASONS", "CHECKPOINT_TYP", "CheckpointKeys", "CheckpointSigner"]

CHECKPOINT_TYP = "mcpgov-audit-checkpoint+jws"
"""The ``typ`` header of a checkpoint signature."""

CHECKPOINT_REASONS = frozenset({"count", "interval", "rotate", "close"})
"""Why a checkpoint was written."""

_ALGORITHMS = frozenset({"Ed25519", "ES256"})
_MAX_KEY_FILE = 1 << 20
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must not wait for its other end
_MAX_JWS = 16384
_PAYLOAD_KEYS = frozenset({"events", "prev", "reason", "seq", "time", "writer"})
_CLAIMING_KEYS = _PAYLOAD_KEYS | {"lines"}  # the lines the writer claims as its own (earlier writers did not)
# ... and the seq its file begins at (earlier writers did not name it): a cut at the start of
# the first file given to a partial verification is found by it.
_FILE_KEYS = _CLAIMING_KEYS | {"file_first"}


def _algorithm(key: Key) -> str:
    if isinstance(key, OKPKey) and key.curve_name == "Ed25519":
        return "Ed25519"
    if isinstance(key, ECKey) and key.curve_name == "P-256":
        return "ES256"
    raise ConfigurationError(f"checkpoint keys must be Ed25519 (or P-256), not {key.key_type}")


def _read_key_file(where: Path) -> bytes:
    """The bytes of a key file: a regular file of at most ``_MAX_KEY_FILE`` bytes (a FIFO or device
    is refused, never waited on or read without end, and a large file is not read whole)."""
    try:
        fd = os.open(where, os.O_RDONLY | _NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigurationError(f"cannot read key file {where}: {exc.strerror or type(exc).__name__}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = "is a directory" if stat.S_ISDIR(mode) else "is not a regular file"
            raise ConfigurationError(f"cannot read key file {where}: {what}")
        if _NONBLOCK:  # POSIX (Windows has neither FIFOs to wait on nor, before 3.12, set_blocking)
            os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while size <= _MAX_KEY_FILE:
            chunk = os.read(fd, _MAX_KEY_FILE + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigurationError(f"cannot read key file {where}: {exc.strerror or type(exc).__name__}") from None
    finally:
        os.close(fd)
    if size > _MAX_KEY_FILE:
        raise ConfigurationError(f"key file {where} is too large to be a key")
    return b"".join(chunks)


def _read_keys(where: Path, data: bytes) -> list[Key]:
    """Every key in a JWK or JWKS file's bytes (private or public)."""
    try:
        parsed = json.loads(data)
        entries = parsed["keys"] if isinstance(parsed, dict) and "keys" in parsed else [parsed]
        keys = [import_key(entry) for entry in entries] if isinstance(entries, list) else []
    except (ValueError, TypeError, KeyError, JoseError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigurationError(f"key file {where} holds no usable key ({type(exc).__name__})") from None
    if not keys:
        raise ConfigurationError(f"key file {where} holds no keys")
    return keys


def _pem_key(data: bytes) -> Key:
    loaded: Any = load_pem_private_key(data, password=None) if b"PRIVATE" in data else load_pem_public_key(data)
    key: Key
    if isinstance(loaded, (EllipticCurvePrivateKey, EllipticCurvePublicKey)):
        key = ECKey.import_key(loaded)
    else:
        key = OKPKey.import_key(loaded)
    return key


def _load(path: str | os.PathLike[str]) -> list[Key]:
    """Every key in a JWK, JWKS or PEM file (private or public)."""
    where = Path(path)
    data = _read_key_file(where)
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            return [_pem_key(data)]
        except (ValueError, TypeError, JoseError) as exc:
            raise ConfigurationError(f"key file {where} holds no usable PEM key ({type(exc).__name__})") from None
    return _read_keys(where, data)


class CheckpointSigner:
    """Signs checkpoints with a private key (Ed25519 or P-256).

    Args:
        key: a key file as ``mcpgov keys generate`` writes it (a private JWKS; its first key
            signs), a PEM private key file, a joserfc private key, or a
            :class:`~mcpgov.credentials.SigningKeySet` (its current key).

    Raises:
        ConfigurationError: the key cannot be read, is not private, or has another type.
    """

    def __init__(self, key: Any) -> None:
        if isinstance(key, SigningKeySet):
            kid, _, chosen = key.current
        else:
            chosen = key if isinstance(key, (OKPKey, ECKey)) else _load(key)[0]
            kid = chosen.kid or ""
        if not chosen.is_private:
            raise ConfigurationError("a checkpoint signing key must be a private key")
        self.algorithm = _algorithm(chosen)
        chosen.ensure_kid()
        self.kid: str = kid or chosen.kid or ""
        self._key = chosen
        self._registry = JWSRegistry(algorithms=[self.algorithm])

    def __repr__(self) -> str:
        return f"CheckpointSigner(alg={self.algorithm!r}, kid={self.kid!r})"

    def public_keys(self) -> CheckpointKeys:
        """The verification side of this signer."""
        public = import_key(self._key.as_dict(private=False))
        return CheckpointKeys([public])

    def sign(self, payload: Mapping[str, Any]) -> str:
        """The compact JWS of ``payload`` (its canonical JSON)."""
        header = {"alg": self.algorithm, "typ": CHECKPOINT_TYP, "kid": self.kid}
        return jws.serialize_compact(header, canonical_json(dict(payload)), self._key, registry=self._registry)


class CheckpointKeys:
    """Public keys that verify checkpoints.

    Args:
        keys: joserfc keys (private keys are reduced to their public half).

    Raises:
        ConfigurationError: no key, or a key of an unsupported type.
    """

    def __init__(self, keys: list[Key]) -> None:
        if not keys:
            raise ConfigurationError("no checkpoint verification key given")
        self._keys: dict[str, tuple[str, Key]] = {}
        for key in keys:
            algorithm = _algorithm(key)
            public = import_key(key.as_dict(private=False)) if key.is_private else key
            public.ensure_kid()
            kid = key.kid or public.kid or ""
            self._keys[kid] = (algorithm, public)

    def __repr__(self) -> str:
        return f"CheckpointKeys(kids={sorted(self._keys)!r})"

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> CheckpointKeys:
        """Load the keys of a JWK/JWKS file (public, or private as ``mcpgov keys generate`` writes
        it) or a PEM key file.

        Raises:
            ConfigurationError: the file cannot be read or holds no usable key.
        """
        return cls(_load(path))

    def check(self, token: str) -> dict[str, Any]:
        """The payload of a checkpoint whose signature verifies.

        Raises:
            ValueError: the signature, header or payload is not valid (the message says which).
        """
        if not isinstance(token, str) or len(token) > _MAX_JWS or token.count(".") != 2 or not token.isascii():
            raise ValueError("not a compact JWS")
        try:
            obj = jws.extract_compact(token.encode("ascii"))
            header = obj.headers()
        except (JoseError, ValueError, TypeError) as exc:
            raise ValueError(f"not a compact JWS ({type(exc).__name__})") from None
        if header.get("typ") != CHECKPOINT_TYP or set(header) != {"alg", "typ", "kid"}:
            raise ValueError("the signature header is not a checkpoint header")
        found = self._keys.get(str(header.get("kid")))
        if found is None:
            raise ValueError(f"signed with an unknown key (kid {str(header.get('kid'))[:64]!r})")
        algorithm, key = found
        if header.get("alg") != algorithm:
            raise ValueError("signed with an algorithm the key is not bound to")
        try:
            jws.deserialize_compact(token, key, algorithms=[algorithm])
        except (JoseError, ValueError, TypeError):
            raise ValueError("the signature does not verify") from None
        try:
            payload = json.loads(obj.payload or b"")
        except (ValueError, RecursionError):
            raise ValueError("the signed payload is not JSON") from None
        if not isinstance(payload, dict) or set(payload) not in (_PAYLOAD_KEYS, _CLAIMING_KEYS, _FILE_KEYS):
            raise ValueError("the signed payload is not a checkpoint")
        if payload["reason"] not in CHECKPOINT_REASONS:
            raise ValueError("the signed payload names an unknown reason")
        seq = payload["seq"]
        if type(seq) is not int or not isinstance(payload["prev"], str):
            raise ValueError("the signed payload names no position")
        lines = payload.get("lines")
        if lines is not None and not (
            isinstance(lines, list)
            and all(
                isinstance(r, list) and len(r) == 2 and all(type(n) is int for n in r) and 1 <= r[0] <= r[1] < seq
                for r in lines
            )
        ):
            raise ValueError("the signed payload claims lines in an unknown form")
        first = payload.get("file_first", 1)
        if type(first) is not int or not 1 <= first <= seq:
            raise ValueError("the signed payload names its file's start in an unknown form")
        return payload
