"""``mcpgov keys``: generate a credential signing key, print its public JWKS.

Exit codes: 0 success, 2 bad input (an existing output file, an unreadable or invalid key file).
A private key is only ever written to the file named by ``--out`` (mode 0600), never printed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from mcpgov._cliutil import BadInput, choice_option

__all__ = ["keys"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def keys() -> None:
    """Signing keys (Ed25519 or ES256): generate, print the public JWKS.

    One key file format everywhere: the file `generate` writes signs credentials
    (`SigningKeySet.from_jwk`) and pin files (`mcpgov pin snapshot --sign-key`); the public JWKS
    `jwks` prints verifies them (`--public-key`, a registry's `publisher_key`).
    """


def _write_private(path: Path, text: str, *, force: bool) -> None:
    """Create ``path`` with mode 0600 from the start (the key is never world-readable, even briefly)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (0 if force else os.O_EXCL)
    flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise BadInput(f"{path} exists: refusing to overwrite a key (use --force)") from None
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        os.fchmod(fd, 0o600)  # O_TRUNC of an existing file keeps its mode: set it
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None


@keys.command()
@choice_option("--alg", choices=("Ed25519", "ES256"), help="The signing algorithm.")
@click.option("--out", "out", required=True, metavar="FILE", help="Where to write the private key (a JWKS, mode 0600).")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def generate(alg: str, out: str, force: bool) -> None:
    """Generate a credential signing key and write it, private, to --out.

    The file is a JWKS holding the private key (load it with `SigningKeySet.from_jwk`);
    publish its public half with `mcpgov keys jwks FILE`. Prints the key id, never the key.
    """
    from mcpgov.credentials import SigningKeySet  # noqa: PLC0415 - commands load what they use

    keyset = SigningKeySet.generate(alg)
    kid, algorithm, key = keyset.current
    private = key.as_dict(private=True, alg=algorithm, use="sig", kid=kid)
    _write_private(Path(out), json.dumps({"keys": [private]}, indent=2) + "\n", force=force)
    click.echo(f"wrote a {algorithm} signing key to {out} (kid {kid}, mode 0600)")


@keys.command()
@click.argument("key_file", metavar="FILE")
def jwks(key_file: str) -> None:
    """Print the public JWKS of the signing key(s) in FILE (a JWK/JWKS or a PEM private key).

    Only public key material is printed.
    """
    from mcpgov._errors import ConfigurationError  # noqa: PLC0415 - commands load what they use
    from mcpgov.credentials import SigningKeySet  # noqa: PLC0415

    path = Path(key_file)
    if not path.is_file():
        raise BadInput(f"cannot read {key_file}: {'is a directory' if path.is_dir() else 'no such file'}") from None
    try:
        head = path.read_bytes()[:64].lstrip()
        keyset = SigningKeySet.from_pem(path) if head.startswith(b"-----BEGIN") else SigningKeySet.from_jwk(path)
        published = keyset.jwks()
    except ConfigurationError as exc:
        raise BadInput(exc.detail) from None
    except OSError as exc:
        raise BadInput(f"cannot read {key_file}: {exc.strerror or type(exc).__name__}") from None
    click.echo(json.dumps(published, indent=2, sort_keys=True))
