"""Key files, one format everywhere: what ``mcpgov keys generate`` writes is accepted wherever a key is needed.

A key file is one of:

* a JWKS (``{"keys": [...]}``), as ``mcpgov keys generate`` writes (private) and
  ``mcpgov keys jwks`` prints (public); the FIRST key signs, the others only verify;
* a single JWK (``{"kty": ...}``);
* a PEM private key (PKCS#8 or traditional) or public key (SubjectPublicKeyInfo).

Credential issuers (:meth:`mcpgov.credentials.SigningKeySet.from_jwk`), pin signing
(``mcpgov pin snapshot|approve --sign-key``) and publisher keys (``--public-key``) all read key
files through :func:`read_key_file`, :func:`private_key` and :func:`public_keys`. Every failure is
one :class:`~mcpgov.ConfigurationError` naming the file and what to do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcpgov._errors import ConfigurationError

__all__ = ["MAX_KEY_FILE_BYTES", "private_key", "public_keys", "read_key_file"]

MAX_KEY_FILE_BYTES = 1 << 20
"""A key file larger than this is refused unread (1 MiB)."""

_ASYMMETRIC = ("OKP", "EC", "RSA")
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


def _is_private(jwk: Mapping[str, Any]) -> bool:
    return any(member in jwk for member in _PRIVATE_MEMBERS)


def _from_pem(raw: bytes, source: str) -> dict[str, Any]:
    from joserfc.errors import JoseError  # noqa: PLC0415 - crypto loads only when a key is read
    from joserfc.jwk import ECKey, OKPKey, RSAKey  # noqa: PLC0415

    if b"CERTIFICATE" in raw.split(b"\n", 1)[0]:
        raise ConfigurationError(
            f"{source} is a certificate, not a key: give the key itself (JWK, JWKS or PEM private/public key)"
        )
    for kind in (OKPKey, ECKey, RSAKey):
        try:
            key = kind.import_key(raw)
        except (JoseError, ValueError, TypeError):
            continue
        data: dict[str, Any] = dict(key.as_dict(private=key.is_private))
        return data
    raise ConfigurationError(
        f"{source} holds no Ed25519, EC or RSA key in PEM form (an encrypted key is not supported)"
    )


def read_key_file(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The JWKs in a key file (JWKS, JWK or PEM), first key first.

    Args:
        path: the key file.

    Returns:
        The keys as JWK mappings (private members kept when present).

    Raises:
        ConfigurationError: the file cannot be read, or holds no JWK, JWKS or PEM key.
    """
    file = Path(path)
    source = f"key file {file}"
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_KEY_FILE_BYTES + 1)
    except IsADirectoryError:
        raise ConfigurationError(f"{source} is a directory") from None
    except FileNotFoundError:
        raise ConfigurationError(f"{source} does not exist") from None
    except OSError as exc:
        raise ConfigurationError(f"{source} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise ConfigurationError(f"{source} is larger than {MAX_KEY_FILE_BYTES} bytes: not a key file")
    if raw.lstrip().startswith(b"-----BEGIN"):
        return [_from_pem(raw.strip(), source)]
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ConfigurationError(f"{source} is neither JSON (a JWK or JWKS) nor a PEM key") from None
    if isinstance(data, Mapping) and "keys" in data and "kty" not in data:
        keys = data["keys"]
        if not isinstance(keys, list) or not keys:
            raise ConfigurationError(f"{source}: 'keys' must be a non-empty list of JWKs")
    elif isinstance(data, Mapping) and "kty" in data:
        keys = [data]
    else:
        raise ConfigurationError(
            f"{source} is JSON but not a JWK or a JWKS (write one with `mcpgov keys generate --out FILE`)"
        )
    for index, key in enumerate(keys):
        if not isinstance(key, Mapping) or not isinstance(key.get("kty"), str):
            raise ConfigurationError(f"{source}: keys[{index}] is not a JWK (no 'kty')")
    return [dict(key) for key in keys]


def private_key(path: str | os.PathLike[str], *, purpose: str = "signing") -> dict[str, Any]:
    """The signing key of a key file: its first key, which must be a private asymmetric key.

    Args:
        path: the key file (as ``mcpgov keys generate`` writes it, or a JWK or PEM private key).
        purpose: what the key is for, named in errors.

    Returns:
        The private JWK.

    Raises:
        ConfigurationError: the file is unreadable, its first key is public, symmetric, or of
            an unsupported type.
    """
    keys = read_key_file(path)
    first = keys[0]
    kty = first["kty"]
    if kty not in _ASYMMETRIC:
        raise ConfigurationError(
            f"key file {path} holds a {kty!r} key; a {purpose} key must be asymmetric "
            "(Ed25519 or EC: `mcpgov keys generate --out FILE`)"
        )
    if not _is_private(first):
        raise ConfigurationError(
            f"key file {path} holds a public key; a {purpose} key must be the private key "
            "(`mcpgov keys generate --out FILE` writes one)"
        )
    return first


def public_keys(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The public JWKS of a key file that holds public keys only (``mcpgov keys jwks`` output).

    Args:
        path: the key file.

    Returns:
        ``{"keys": [...]}``.

    Raises:
        ConfigurationError: the file is unreadable, holds a symmetric key, or holds a private
            key (give its public half: ``mcpgov keys jwks FILE``).
    """
    keys = read_key_file(path)
    for key in keys:
        if key["kty"] not in _ASYMMETRIC:
            raise ConfigurationError(f"key file {path} holds a {key['kty']!r} key; a public key must be asymmetric")
        if _is_private(key):
            raise ConfigurationError(
                f"key file {path} holds a private key where a public key is expected: "
                f"give its public half (`mcpgov keys jwks {path} > public.json`)"
            )
    return {"keys": keys}
