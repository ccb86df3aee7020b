"""Deprecated alias of :mod:`mcpgov.testing`, the test kit's one public home (removed in the next release).

Every name it exported still works and warns once (:class:`DeprecationWarning`) when first read.
"""

from mcpgov._public import lazy_names as _lazy_names

_MOVED = ("FrozenClock", "GovernedHarness", "Inventory", "PolicyAssertionError", "Verdict")
_MOVED_FUNCTIONS = ("assert_allowed", "assert_denied", "assert_hidden", "assert_requires_approval", "assert_visible")
_NOT_PUBLIC = (
    "CREDENTIAL_ISSUER",
    "DEFAULT_AUDIENCE",
    "DEFAULT_FROZEN_TIME",
    "DEFAULT_ISSUER",
    "Caller",
    "Visibility",
    "expect_effect",
    "expect_visibility",
    "generic_server",
)

# Kept for one release, each warning once when first read: name -> (where it is now, what replaces it).
_DEPRECATED: dict[str, tuple[str, str | None]] = {
    **{name: ("mcpgov.testing", f"mcpgov.testing.{name}") for name in (*_MOVED, *_MOVED_FUNCTIONS, "inventory_of")},
    **dict.fromkeys(_NOT_PUBLIC, ("mcpgov._harness", None)),
}

__getattr__ = _lazy_names(__name__, {}, _DEPRECATED)

__all__: list[str] = []  # nothing new is imported from here
