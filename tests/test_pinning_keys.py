"""Publisher keys: only asymmetric public keys verify, only private ones sign."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from mcpgov import ConfigurationError, PinningError
from mcpgov.pinning import PublisherKeys, load_signing_key
from mcpgov.pinning._keys import sign_payload


@pytest.mark.parametrize(
    "key",
    [
        OKPKey.generate_key("Ed25519"),
        ECKey.generate_key("P-256"),
        ECKey.generate_key("P-384"),
        RSAKey.generate_key(2048),
    ],
    ids=["Ed25519", "P-256", "P-384", "RSA"],
)
def test_each_supported_key_type_signs_and_verifies(key: Any) -> None:
    publisher = PublisherKeys.from_jwk(key.as_dict(private=False))
    signature = sign_payload(b"manifest", key)
    assert publisher.verify(signature, b"manifest") == publisher.kids[0]
    with pytest.raises(PinningError) as caught:
        publisher.verify(signature, b"another manifest")
    assert caught.value.reason == "pin.bad_signature"


def test_kid_defaults_to_the_thumbprint_and_key_sets_are_accepted() -> None:
    a, b = OKPKey.generate_key("Ed25519"), OKPKey.generate_key("Ed25519", {"kid": "b"})
    publisher = PublisherKeys.from_jwk({"keys": [a.as_dict(private=False), b.as_dict(private=False)]})
    assert publisher.kids == (a.thumbprint(), "b")
    assert publisher.verify(sign_payload(b"x", b), b"x") == "b"
    assert publisher.verify(sign_payload(b"x", a.as_dict(private=True)), b"x") == a.thumbprint()


@pytest.mark.parametrize(
    ("jwk", "message"),
    [
        (OctKey.generate_key(256).as_dict(private=True), "asymmetric"),
        (OKPKey.generate_key("Ed25519").as_dict(private=True), "public JWK"),
        ({"kty": "OKP", "crv": "Ed25519"}, "invalid JWK"),
        ("not a key", "JSON object"),
        ({"keys": "nope"}, "must be a list"),
        ({"keys": []}, "at least one key"),
        (OKPKey.generate_key("X25519").as_dict(private=False), "not supported"),
    ],
)
def test_bad_publisher_keys_are_configuration_errors(jwk: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PublisherKeys.from_jwk(jwk)


def test_duplicate_kids_are_refused() -> None:
    a = OKPKey.generate_key("Ed25519", {"kid": "same"}).as_dict(private=False)
    b = OKPKey.generate_key("Ed25519", {"kid": "same"}).as_dict(private=False)
    with pytest.raises(ConfigurationError, match="share the id"):
        PublisherKeys([a, b])


def test_signing_needs_a_private_asymmetric_key() -> None:
    public = OKPKey.generate_key("Ed25519").as_dict(private=False)
    with pytest.raises(ConfigurationError, match="private"):
        load_signing_key(public)
    with pytest.raises(ConfigurationError, match="private"):
        sign_payload(b"x", OKPKey.import_key(public))


def test_a_jws_of_another_type_does_not_pass_for_a_manifest_signature() -> None:
    from joserfc import jws

    key = OKPKey.generate_key("Ed25519", {"kid": "k"})
    publisher = PublisherKeys.from_jwk(key.as_dict(private=False))
    token = jws.serialize_compact({"alg": "Ed25519", "kid": "k", "typ": "JWT"}, b"x", key, algorithms=["Ed25519"])
    with pytest.raises(PinningError, match="type") as caught:
        publisher.verify(jws.detach_content(token), b"x")
    assert caught.value.reason == "pin.bad_signature"
