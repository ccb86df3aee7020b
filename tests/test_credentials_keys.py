"""SigningKeySet and VerificationKeys: algorithms, loading, rotation with overlap, JWKS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mcpgov import ConfigurationError
from mcpgov.credentials import CredentialRefused, SigningKeySet, VerificationKeys

from .test_credentials_support import AUDIENCE, FrozenClock, make_issuer, principal

pytestmark = pytest.mark.anyio


def test_hmac_needs_explicit_opt_in() -> None:
    with pytest.raises(ConfigurationError):
        SigningKeySet.generate("HS256")
    keys = SigningKeySet.generate("HS256", allow_hmac=True)
    assert keys.algorithm == "HS256"
    with pytest.raises(ConfigurationError):
        keys.jwks()  # a shared secret has no public form


def test_unsupported_algorithms_are_refused() -> None:
    for algorithm in ("RS256", "none", "EdDSA", "ES512"):
        with pytest.raises(ConfigurationError):
            SigningKeySet.generate(algorithm)


def _pem(
    key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, password: bytes | None
) -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


@pytest.mark.parametrize("password", [None, "s3cret"])
async def test_keys_load_from_pem_files(tmp_path: Path, password: str | None) -> None:
    secret = password.encode() if password else None
    ed_path = tmp_path / "ed.pem"
    ed_path.write_bytes(_pem(ed25519.Ed25519PrivateKey.generate(), secret))
    ec_path = tmp_path / "ec.pem"
    ec_path.write_bytes(_pem(ec.generate_private_key(ec.SECP256R1()), secret))
    assert SigningKeySet.from_pem(ed_path, password=password).algorithm == "Ed25519"
    es = SigningKeySet.from_pem(ec_path, password=password)
    assert es.algorithm == "ES256"
    issuer = make_issuer(keys=es)
    cred = await issuer.mint(principal(), audience=AUDIENCE, tools=["status"])
    assert (await issuer.verifier(AUDIENCE).verify(cred.token, tool="status")).jti == cred.id


def test_bad_pem_files_are_configuration_errors(tmp_path: Path) -> None:
    rsa_path = tmp_path / "rsa.pem"
    rsa_path.write_bytes(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048), None))
    p384 = tmp_path / "p384.pem"
    p384.write_bytes(_pem(ec.generate_private_key(ec.SECP384R1()), None))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    for path in (rsa_path, p384, garbage, tmp_path / "missing.pem"):
        with pytest.raises(ConfigurationError):
            SigningKeySet.from_pem(path)


async def test_keys_load_from_jwk_and_jwks_files(tmp_path: Path) -> None:
    first, second = SigningKeySet.generate(), SigningKeySet.generate()
    one = tmp_path / "key.json"
    one.write_text(json.dumps(first.current[2].as_dict(private=True)))
    assert SigningKeySet.from_jwk(one).current[0] == first.current[0]
    both = tmp_path / "keys.json"
    both.write_text(json.dumps({"keys": [k.current[2].as_dict(private=True) for k in (first, second)]}))
    loaded = SigningKeySet.from_jwk(both)
    assert loaded.current[0] == first.current[0]
    assert loaded.find(second.current[0], "Ed25519") is not None  # still verifies
    public = tmp_path / "public.json"
    public.write_text(json.dumps(first.jwks()))
    with pytest.raises(ConfigurationError):
        SigningKeySet.from_jwk(public)  # a signing key set needs private keys


async def test_rotation_keeps_the_old_key_verifying_for_the_overlap() -> None:
    clock = FrozenClock()
    keys = SigningKeySet.generate(overlap=300, clock=clock)
    issuer = make_issuer(clock, keys=keys)
    verifier = issuer.verifier(AUDIENCE)
    old = await issuer.mint(principal(), audience=AUDIENCE, tools=["status"], ttl=300)
    old_kid = keys.current[0]
    new_kid = keys.rotate()
    assert new_kid != old_kid
    new = await issuer.mint(principal(), audience=AUDIENCE, tools=["status"], ttl=300)
    assert {k["kid"] for k in keys.jwks()["keys"]} == {old_kid, new_kid}
    clock.advance(299)
    await verifier.verify(old.token, tool="status")
    await verifier.verify(new.token, tool="status")
    clock.advance(2)
    assert keys.find(old_kid, "Ed25519") is None
    with pytest.raises(CredentialRefused) as caught:
        await verifier.verify(old.token, tool="status")
    assert caught.value.reason in {"unknown_key", "expired"}
    assert {k["kid"] for k in keys.jwks()["keys"]} == {new_kid}


def test_automatic_rotation_after_the_rotation_period() -> None:
    clock = FrozenClock()
    keys = SigningKeySet.generate(overlap=600, rotation_period=3600, clock=clock)
    first = keys.current[0]
    clock.advance(3599)
    assert keys.current[0] == first
    clock.advance(1)
    assert keys.current[0] != first
    assert keys.find(first, "Ed25519") is not None


def test_each_key_is_bound_to_one_algorithm() -> None:
    keys = SigningKeySet.generate("ES256")
    kid = keys.current[0]
    assert keys.find(kid, "ES256") is not None
    assert keys.find(kid, "ES384") is None
    assert keys.find(kid, "HS256") is None


def test_jwks_never_holds_private_material_and_verification_keys_refuse_it() -> None:
    keys = SigningKeySet.generate()
    jwks = keys.jwks()
    for key in jwks["keys"]:
        assert "d" not in key
        assert key["alg"] == "Ed25519"
    verification = VerificationKeys(jwks)
    assert verification.find(keys.current[0], "Ed25519") is not None
    private = {"keys": [keys.current[2].as_dict(private=True)]}
    with pytest.raises(ConfigurationError):
        VerificationKeys(private)
    with pytest.raises(ConfigurationError):
        VerificationKeys({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})
    with pytest.raises(ConfigurationError):
        VerificationKeys({"keys": []})


async def test_a_verifier_in_another_process_uses_the_published_jwks(tmp_path: Path) -> None:
    issuer = make_issuer()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(issuer.jwks()))
    from mcpgov.credentials import CredentialVerifier

    verifier = CredentialVerifier(
        issuer=issuer.issuer,
        audience=AUDIENCE,
        keys=VerificationKeys.from_file(path),
        revocations=issuer.revocations,
        clock=issuer._clock,
    )
    cred = await issuer.mint(principal(), audience=AUDIENCE, tools=["status"])
    assert (await verifier.verify(cred.token, tool="status")).jti == cred.id


def test_reprs_show_no_key_material() -> None:
    keys = SigningKeySet.generate()
    private = keys.current[2].as_dict(private=True)
    for text in (repr(keys), repr(keys.verification_keys()), repr(make_issuer(keys=keys))):
        assert str(private["d"]) not in text
