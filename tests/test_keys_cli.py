"""``mcpgov keys generate|jwks``: private keys go only to a 0600 file; only public keys are printed."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mcpgov import Principal
from mcpgov.cli import main
from mcpgov.credentials import CredentialIssuer, CredentialVerifier, SigningKeySet, VerificationKeys


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("alg", "kty"), [("Ed25519", "OKP"), ("ES256", "EC")])
def test_generate_writes_a_private_key_file_with_mode_0600_and_prints_no_key(
    tmp_path: Path, alg: str, kty: str
) -> None:
    out = tmp_path / "issuer-key.json"
    result = CliRunner().invoke(main, ["keys", "generate", "--alg", alg, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert mode_of(out) == 0o600
    (key,) = json.loads(out.read_text())["keys"]
    assert key["kty"] == kty and "d" in key and key["alg"] == alg
    assert key["d"] not in result.output and '"d"' not in result.output
    assert result.output.strip() == f"wrote a {alg} signing key to {out} (kid {key['kid']}, mode 0600)"


def test_the_generated_key_signs_credentials_that_its_published_jwks_verifies(tmp_path: Path) -> None:
    out = tmp_path / "key.json"
    assert CliRunner().invoke(main, ["keys", "generate", "--out", str(out)]).exit_code == 0
    published = CliRunner().invoke(main, ["keys", "jwks", str(out)])
    assert published.exit_code == 0
    jwks = json.loads(published.output)
    assert all("d" not in k for k in jwks["keys"])
    issuer = CredentialIssuer("https://issuer.example", SigningKeySet.from_jwk(out))
    verifier = CredentialVerifier(
        issuer="https://issuer.example",
        audience="https://deploy.example",
        keys=VerificationKeys(jwks),
        revocations=issuer.revocations,
    )
    agent = Principal("https://idp.example", "agent", tenant="acme")

    async def mint_and_verify() -> str:
        credential = await issuer.mint(agent, audience="https://deploy.example", tools=["deploy"])
        return verifier.check_token(credential.token).subject

    assert anyio.run(mint_and_verify) == "agent"


def test_generate_refuses_to_overwrite_unless_forced_and_then_resets_the_mode(tmp_path: Path) -> None:
    out = tmp_path / "key.json"
    out.write_text("old")
    out.chmod(0o644)
    refused = CliRunner().invoke(main, ["keys", "generate", "--out", str(out)])
    assert refused.exit_code == 2
    assert refused.stderr.strip() == f"error: {out} exists: refusing to overwrite a key (use --force)"
    assert out.read_text() == "old"
    forced = CliRunner().invoke(main, ["keys", "generate", "--out", str(out), "--force"])
    assert forced.exit_code == 0
    assert mode_of(out) == 0o600 and "keys" in json.loads(out.read_text())


def test_generate_into_a_missing_directory_is_bad_input(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["keys", "generate", "--out", str(tmp_path / "no" / "key.json")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot write ")


def test_generate_refuses_unknown_algorithms(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["keys", "generate", "--alg", "HS256", "--out", str(tmp_path / "k")])
    assert result.exit_code == 2
    assert not (tmp_path / "k").exists()


def test_jwks_reads_a_pem_private_key(tmp_path: Path) -> None:
    pem = tmp_path / "key.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    result = CliRunner().invoke(main, ["keys", "jwks", str(pem)])
    assert result.exit_code == 0
    (public,) = json.loads(result.output)["keys"]
    assert public["kty"] == "EC" and public["alg"] == "ES256" and "d" not in public


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("not json", "cannot load signing keys"),
        ('{"keys": []}', "holds no keys"),
    ],
)
def test_jwks_bad_input_exits_2_in_one_line(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "key.json"
    if content is not None:
        path.write_text(content)
    result = CliRunner().invoke(main, ["keys", "jwks", str(path)])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and message in line


def test_jwks_of_a_public_key_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "key.json"
    CliRunner().invoke(main, ["keys", "generate", "--out", str(out)])
    public = tmp_path / "public.json"
    public.write_text(CliRunner().invoke(main, ["keys", "jwks", str(out)]).output)
    result = CliRunner().invoke(main, ["keys", "jwks", str(public)])
    assert result.exit_code == 2
    assert "private" in result.stderr
