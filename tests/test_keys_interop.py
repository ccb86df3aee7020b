"""One key format everywhere: what `mcpgov keys generate` writes signs credentials and pins, what
`mcpgov keys jwks` prints verifies them; wrong kinds of key file are one clear error, exit 2."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from mcpgov import ConfigurationError
from mcpgov._keyfile import private_key, public_keys, read_key_file
from mcpgov.cli import main
from mcpgov.credentials import SigningKeySet
from mcpgov.pinning import PublisherKeys, load_signing_key, read_manifest

ROOT = Path(__file__).resolve().parent.parent
SERVER = "tests.pinning_server:server"


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def generated(tmp_path: Path, alg: str = "Ed25519") -> tuple[Path, Path]:
    key = tmp_path / f"{alg}.json"
    assert run("keys", "generate", "--alg", alg, "--out", str(key)).exit_code == 0
    public = tmp_path / f"{alg}.pub.json"
    printed = run("keys", "jwks", str(key))
    assert printed.exit_code == 0
    public.write_text(printed.output)
    return key, public


@pytest.mark.parametrize("alg", ["Ed25519", "ES256"])
def test_a_generated_key_signs_pins_its_jwks_verifies_and_it_signs_credentials(tmp_path: Path, alg: str) -> None:
    key, public = generated(tmp_path, alg)
    pin = tmp_path / "pin.json"
    done = run("pin", "snapshot", SERVER, "--app-dir", str(ROOT), "-o", str(pin), "--sign-key", str(key))
    assert done.exit_code == 0, done.output
    assert "signature" in json.loads(pin.read_text())
    manifest = read_manifest(pin, publisher=PublisherKeys.from_jwk(public_keys(public)))
    assert set(manifest.tools) == {"read_invoice", "refund"}
    checked = run(
        "pin", "check", SERVER, "--app-dir", str(ROOT), "--pin", str(pin), "--public-key", str(public),
        "--require-signature",
    )  # fmt: skip
    assert checked.exit_code == 0, checked.output
    assert f"signature of {pin} verified" in checked.stderr
    assert SigningKeySet.from_jwk(key).current[1] == alg  # the same file signs credentials


def test_a_signed_pin_checked_without_a_key_says_so_and_can_be_required(tmp_path: Path) -> None:
    key, _ = generated(tmp_path)
    pin = tmp_path / "pin.json"
    run("pin", "snapshot", SERVER, "--app-dir", str(ROOT), "-o", str(pin), "--sign-key", str(key))
    unverified = run("pin", "check", SERVER, "--app-dir", str(ROOT), "--pin", str(pin))
    assert unverified.exit_code == 0
    assert "NOT verified" in unverified.stderr
    required = run("pin", "check", SERVER, "--app-dir", str(ROOT), "--pin", str(pin), "--require-signature")
    assert required.exit_code == 2
    assert (
        required.stderr.count("\n") == 1 and "--require-signature needs the publisher's public key" in required.stderr
    )


def test_an_unsigned_pin_fails_when_a_signature_is_required(tmp_path: Path) -> None:
    _, public = generated(tmp_path)
    pin = tmp_path / "pin.json"
    run("pin", "snapshot", SERVER, "--app-dir", str(ROOT), "-o", str(pin))
    result = run(
        "pin", "check", SERVER, "--app-dir", str(ROOT), "--pin", str(pin), "--public-key", str(public),
        "--require-signature",
    )  # fmt: skip
    assert result.exit_code == 2 and "not signed" in result.stderr


def _pem(tmp_path: Path, private: bool) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / ("private.pem" if private else "public.pem")
    if private:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    else:
        path.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    return path


def test_pem_keys_are_accepted_where_jwks_are(tmp_path: Path) -> None:
    private = private_key(_pem(tmp_path, private=True))
    assert private["kty"] == "EC" and "d" in private
    load_signing_key(private)
    (public,) = public_keys(_pem(tmp_path, private=False))["keys"]
    assert public["kty"] == "EC" and "d" not in public


@pytest.mark.parametrize(
    ("content", "option", "message"),
    [
        ('{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}', "--sign-key", "must be asymmetric"),
        ("PUBLIC", "--sign-key", "holds a public key"),
        ("PRIVATE", "--public-key", "give its public half"),
        ('{"keys": []}', "--sign-key", "non-empty list"),
        ('{"hello": "world"}', "--sign-key", "not a JWK or a JWKS"),
        ("not a key at all", "--public-key", "neither JSON"),
        ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "--sign-key", "certificate"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "--sign-key", "no Ed25519, EC or RSA key"),
    ],
)
def test_a_wrong_kind_of_key_file_is_one_clear_line_and_exit_2(
    tmp_path: Path, content: str, option: str, message: str
) -> None:
    key, public = generated(tmp_path)
    path = tmp_path / "given.key"
    if content == "PUBLIC":
        shutil.copy(public, path)
    elif content == "PRIVATE":
        shutil.copy(key, path)
    else:
        path.write_text(content)
    pin = tmp_path / "pin.json"
    run("pin", "snapshot", SERVER, "--app-dir", str(ROOT), "-o", str(pin))
    if option == "--sign-key":
        result = run("pin", "snapshot", SERVER, "--app-dir", str(ROOT), "--sign-key", str(path))
    else:
        result = run("pin", "check", SERVER, "--app-dir", str(ROOT), "--pin", str(pin), "--public-key", str(path))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr and str(path) in result.stderr
    private_value = json.loads(key.read_text())["keys"][0]["d"]
    assert private_value not in result.stderr and private_value not in result.stdout


@pytest.mark.parametrize("missing", ["nofile.json", "."])
def test_an_unreadable_key_file_names_the_file(tmp_path: Path, missing: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        read_key_file(tmp_path / missing)
    assert str(tmp_path / missing) in caught.value.detail


def test_an_ed25519_pem_signs_a_pin(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "ed.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    out = tmp_path / "pin.json"
    result = run("pin", "snapshot", SERVER, "--app-dir", str(ROOT), "-o", str(out), "--sign-key", str(path))
    assert result.exit_code == 0, result.output


def test_the_keys_help_names_only_commands_that_exist() -> None:
    result = run("keys", "--help")
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == {"generate", "jwks"}
    texts = [result.output] + [run("keys", name, "--help").output for name in listed]
    texts.append((ROOT / "docs" / "pinning.md").read_text())
    mentioned = {m for text in texts for m in re.findall(r"mcpgov keys (\w+)", text)}
    assert mentioned and mentioned <= listed, mentioned - listed  # no help or doc names a missing command
