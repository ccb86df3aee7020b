"""SPIFFE IDs, SPIFFE ID patterns, and the JWT-SVID rules.

A SPIFFE ID is ``spiffe://<trust-domain>/<path>`` (SPIFFE ID standard): a lowercase trust domain of
letters, digits, ``.``, ``-`` and ``_``; a path of non-empty segments of letters, digits, ``.``,
``-`` and ``_`` (never ``.`` or ``..``); no port, user info, query or fragment; at most 2048 bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from mcpgov._errors import ConfigurationError, IdentityError

__all__ = ["JWT_SVID_ALGORITHMS", "SpiffeId", "SpiffeIdError", "SpiffeIdPattern"]

JWT_SVID_ALGORITHMS: frozenset[str] = frozenset(
    {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}
)
"""The algorithms the JWT-SVID standard allows (RSA, ECDSA and RSA-PSS; never HMAC or ``none``)."""

MAX_SPIFFE_ID_BYTES = 2048
_SCHEME = "spiffe://"
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]+")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")


class SpiffeIdError(IdentityError, ValueError):
    """A string is not a valid SPIFFE ID (or a pattern is not a valid SPIFFE ID pattern).

    An :class:`~mcpgov.IdentityError`; also a ``ValueError``, as it was before it joined the tree.
    """


def _check_trust_domain(trust_domain: str) -> None:
    if not trust_domain or _TRUST_DOMAIN.fullmatch(trust_domain) is None:
        raise SpiffeIdError("the trust domain must be non-empty lowercase letters, digits, '.', '-' or '_'")


def _check_segment(segment: str) -> None:
    if not segment:
        raise SpiffeIdError("a SPIFFE ID path has no empty segments (and no trailing '/')")
    if segment in (".", ".."):
        raise SpiffeIdError("a SPIFFE ID path has no '.' or '..' segments")
    if _SEGMENT.fullmatch(segment) is None:
        raise SpiffeIdError("a SPIFFE ID path segment is letters, digits, '.', '-' or '_'")


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """A parsed, valid SPIFFE ID.

    Attributes:
        trust_domain: the trust domain name (``example.org``).
        path: the path, ``""`` or starting with ``/`` (``/ns/prod/sa/agent``).
    """

    trust_domain: str
    path: str

    @classmethod
    def parse(cls, value: str) -> SpiffeId:
        """Parse ``value`` strictly.

        Args:
            value: the SPIFFE ID text.

        Returns:
            The parsed ID.

        Raises:
            SpiffeIdError: ``value`` is not a valid SPIFFE ID.
        """
        if not isinstance(value, str):
            raise SpiffeIdError("a SPIFFE ID is a string")
        if len(value.encode("utf-8", "surrogatepass")) > MAX_SPIFFE_ID_BYTES:
            raise SpiffeIdError(f"a SPIFFE ID is at most {MAX_SPIFFE_ID_BYTES} bytes")
        if not value.startswith(_SCHEME):
            raise SpiffeIdError("a SPIFFE ID starts with 'spiffe://' (lowercase)")
        rest = value[len(_SCHEME) :]
        trust_domain, slash, path = rest.partition("/")
        _check_trust_domain(trust_domain)
        if slash:
            for segment in path.split("/"):
                _check_segment(segment)
            return cls(trust_domain, "/" + path)
        return cls(trust_domain, "")

    @property
    def segments(self) -> tuple[str, ...]:
        """The path segments."""
        return tuple(self.path[1:].split("/")) if self.path else ()

    def __str__(self) -> str:
        return f"{_SCHEME}{self.trust_domain}{self.path}"

    @property
    def trust_domain_id(self) -> str:
        """The trust domain as a SPIFFE ID (``spiffe://example.org``)."""
        return f"{_SCHEME}{self.trust_domain}"


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SpiffeIdPattern:
    """A pattern over SPIFFE IDs, for configuration and policy.

    ``spiffe://example.org/tenant/{tenant}/agent/*`` matches IDs of trust domain ``example.org``
    segment by segment: a literal segment matches itself, ``*`` matches any one segment,
    ``{name}`` matches any one segment and captures it, and a final ``**`` matches one or more
    further segments. Nothing else is special; the trust domain is always literal.

    Args:
        pattern: the pattern text.

    Raises:
        ConfigurationError: the pattern is malformed.
    """

    __slots__ = ("_parts", "pattern", "trust_domain")

    def __init__(self, pattern: str) -> None:
        if not isinstance(pattern, str) or not pattern.startswith(_SCHEME):
            raise ConfigurationError("a SPIFFE ID pattern starts with 'spiffe://'")
        trust_domain, slash, path = pattern[len(_SCHEME) :].partition("/")
        try:
            _check_trust_domain(trust_domain)
        except SpiffeIdError as exc:
            raise ConfigurationError(f"SPIFFE ID pattern {pattern!r}: {exc}") from None
        parts: list[tuple[str, str]] = []  # (kind, value): lit / any / cap / rest
        names: set[str] = set()
        segments = path.split("/") if slash else []
        for i, segment in enumerate(segments):
            if segment == "**":
                if i != len(segments) - 1:
                    raise ConfigurationError(f"SPIFFE ID pattern {pattern!r}: '**' only as the last segment")
                parts.append(("rest", ""))
            elif segment == "*":
                parts.append(("any", ""))
            elif (m := _PLACEHOLDER.fullmatch(segment)) is not None:
                name = m.group(1)
                if name in names:
                    raise ConfigurationError(f"SPIFFE ID pattern {pattern!r}: {{{name}}} appears twice")
                names.add(name)
                parts.append(("cap", name))
            else:
                try:
                    _check_segment(segment)
                except SpiffeIdError as exc:
                    raise ConfigurationError(f"SPIFFE ID pattern {pattern!r}: {exc}") from None
                parts.append(("lit", segment))
        self.pattern = pattern
        self.trust_domain = trust_domain
        self._parts = tuple(parts)

    def __repr__(self) -> str:
        return f"SpiffeIdPattern({self.pattern!r})"

    @property
    def names(self) -> tuple[str, ...]:
        """The names this pattern captures."""
        return tuple(v for k, v in self._parts if k == "cap")

    def match(self, spiffe_id: SpiffeId | str) -> Mapping[str, str] | None:
        """Match ``spiffe_id``.

        Args:
            spiffe_id: a parsed ID, or text (an invalid ID never matches).

        Returns:
            The captured segments (possibly empty) when it matches, else ``None``.
        """
        if isinstance(spiffe_id, str):
            try:
                spiffe_id = SpiffeId.parse(spiffe_id)
            except SpiffeIdError:
                return None
        if spiffe_id.trust_domain != self.trust_domain:
            return None
        segments = spiffe_id.segments
        captured: dict[str, str] = {}
        for i, (kind, value) in enumerate(self._parts):
            if kind == "rest":
                return MappingProxyType(captured) if len(segments) > i else None
            if i >= len(segments):
                return None
            if kind == "lit" and segments[i] != value:
                return None
            if kind == "cap":
                captured[value] = segments[i]
        return MappingProxyType(captured) if len(segments) == len(self._parts) else None

    def matches(self, spiffe_id: SpiffeId | str) -> bool:
        """Whether ``spiffe_id`` matches this pattern."""
        return self.match(spiffe_id) is not None
