"""The error tree is complete: every exception mcpgov defines or exports is an McpGovError (or a
documented exception to that rule), and docs/errors.md lists each one as it really is."""

from __future__ import annotations

import importlib
import inspect
import re
from functools import cache

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpgov import IdentityError, McpGovError, to_mcp_error
from tests.house_support import ROOT, module_names

DOCS = ROOT / "docs" / "errors.md"

# Exceptions outside McpGovError, each with the reason it must stay outside.
DELIBERATE: dict[str, tuple[type[BaseException], str]] = {
    "BadInput": (
        click.ClickException,
        "the command line's usage error: click turns a ClickException into one line and exit code 2",
    ),
    "PolicyAssertionError": (
        AssertionError,
        "a failed policy assertion in a test: test runners report AssertionError as a failure",
    ),
}


@cache
def _all_exceptions() -> dict[type[BaseException], set[str]]:
    """Every exception class defined in or exported by a module of mcpgov, with where it was seen."""
    found: dict[type[BaseException], set[str]] = {}
    for name in module_names():
        module = importlib.import_module(name)
        exported = set(getattr(module, "__all__", ()))
        for attr, value in vars(module).items():
            if not (inspect.isclass(value) and issubclass(value, BaseException)):
                continue
            defined_here = getattr(value, "__module__", "").startswith("mcpgov")
            if attr in exported or (defined_here and not attr.startswith("_")):
                found.setdefault(value, set()).add(f"{name}.{attr}")
    return found


def _public_exceptions() -> list[type[BaseException]]:
    return sorted(_all_exceptions(), key=lambda c: c.__name__)


def test_the_walk_finds_the_known_errors() -> None:
    names = {c.__name__ for c in _all_exceptions()}
    assert {"McpGovError", "Denied", "SpiffeIdError", "KeySetError", "ConditionError", "CredentialRefused"} <= names
    assert {"BadInput", "PolicyAssertionError", "StateStoreError", "ApprovalMismatch", "PolicyError"} <= names
    assert not any(n.startswith("_") for n in names)


@pytest.mark.parametrize("cls", _public_exceptions(), ids=lambda c: c.__name__)
def test_every_exception_is_an_mcpgov_error_or_a_documented_exception(cls: type[BaseException]) -> None:
    if issubclass(cls, McpGovError):
        return
    assert cls.__name__ in DELIBERATE, (
        f"{cls.__module__}.{cls.__name__} (seen as {sorted(_all_exceptions()[cls])}) does not derive from "
        "McpGovError: add McpGovError (or the right subclass) to its bases, keeping the old base"
    )
    assert issubclass(cls, DELIBERATE[cls.__name__][0])


def test_no_exported_exception_comes_from_another_package() -> None:
    """Re-exporting a third-party exception would put an error outside the tree on the surface."""
    foreign = {c: where for c, where in _all_exceptions().items() if not c.__module__.startswith("mcpgov")}
    assert not foreign


@pytest.mark.parametrize(
    ("name", "old_base"),
    [("mcpgov.identity.SpiffeIdError", ValueError), ("mcpgov.identity._keys.KeySetError", ValueError)],
)
def test_errors_that_joined_the_tree_keep_their_old_base(name: str, old_base: type[Exception]) -> None:
    module, _, attr = name.rpartition(".")
    cls = getattr(importlib.import_module(module), attr)
    assert issubclass(cls, IdentityError)
    assert issubclass(cls, old_base)


def test_a_bad_spiffe_id_is_caught_by_old_and_new_handlers() -> None:
    from mcpgov.identity import SpiffeId

    for handler in (ValueError, IdentityError, McpGovError):
        with pytest.raises(handler) as caught:
            SpiffeId.parse("https://not-spiffe/x")
        assert "spiffe" in caught.value.args[0].lower()


def test_a_private_key_in_a_key_set_is_refused_with_an_identity_error() -> None:
    from joserfc.jwk import OKPKey

    from mcpgov.identity._keys import KeySetError, bind_jwks

    private = OKPKey.generate_key("Ed25519").as_dict(private=True)
    with pytest.raises(KeySetError) as caught:
        bind_jwks({"keys": [private]}, default_rsa_alg=None, uses=("sig",), static=True)
    assert isinstance(caught.value, IdentityError) and isinstance(caught.value, ValueError)
    assert "private" in str(caught.value)


_GUARD_POLICY = """
rules:
  - {id: everything, effect: allow, tools: ['*']}
  - id: guard
    effect: deny
    tools: [read_file]
    when:
      arguments:
        path: {path: {under: /secret}}
"""


@given(value=st.one_of(st.integers(), st.booleans(), st.floats(allow_nan=False), st.lists(st.text(), max_size=2)))
def test_an_unjudgeable_condition_is_still_an_engine_deny(value: object) -> None:
    """ConditionError joined the tree; the engine still turns it into a deny of its rule."""
    from types import MappingProxyType

    from mcpgov import GovContext, Principal
    from mcpgov.policy import Policy, PolicyEngine
    from mcpgov.policy._conditions import ConditionError

    assert issubclass(ConditionError, McpGovError)
    engine = PolicyEngine(Policy.from_yaml(_GUARD_POLICY, source="guard.yaml"))
    ctx = GovContext(
        side="server",
        method="tools/call",
        kind="tool",
        target="read_file",
        action="execute",
        arguments=MappingProxyType({"path": value}),
        principal=Principal("https://idp", "alice", tenant="acme"),
        tenant="acme",
    )
    decision = engine.decide(ctx)
    assert not decision.allowed
    assert (decision.rule, decision.reason_code) == ("guard", "condition_unevaluable")


# --- docs/errors.md -------------------------------------------------------------------------------


def _rows() -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in DOCS.read_text("utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 4:
            name = cells[0].strip("`")
            assert name not in rows, f"docs/errors.md lists {name} twice"
            rows[name] = [c.strip("`") for c in cells[1:]]
    return rows


def test_docs_list_every_error_once() -> None:
    rows = _rows()
    listed, actual = set(rows), {c.__name__ for c in _all_exceptions()}
    assert listed == actual, f"missing from docs: {sorted(actual - listed)}; not errors: {sorted(listed - actual)}"


@pytest.mark.parametrize("cls", _public_exceptions(), ids=lambda c: c.__name__)
def test_each_docs_row_says_where_the_error_lives_and_what_it_derives_from(cls: type[BaseException]) -> None:
    row = _rows()[cls.__name__]
    where, parent = row[0], row[1]
    assert getattr(importlib.import_module(where), cls.__name__) is cls, (
        f"{cls.__name__} is not importable from {where}"
    )
    assert parent.rsplit(".", 1)[-1] == cls.__bases__[0].__name__
    if issubclass(cls, McpGovError):
        code, rpc, message = row[2], int(row[3]), row[4]
        assert (code, rpc, message) == (cls.code, cls.rpc_code, cls.public_message)
    else:
        assert len(row) >= 3 and row[2], f"{cls.__name__} needs its reason in docs/errors.md"


def test_the_error_module_docstring_draws_the_whole_tree() -> None:
    doc = inspect.getdoc(importlib.import_module("mcpgov._errors")) or ""
    for cls in _public_exceptions():
        assert re.search(rf"\b{cls.__name__}\b", doc), f"{cls.__name__} is missing from the tree in mcpgov._errors"
    for dotted in re.findall(r":func:`([\w.]+)`", doc):
        module, _, attr = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), attr), f"the docstring names {dotted}, which does not exist"


# --- on the wire ----------------------------------------------------------------------------------


@given(cls=st.sampled_from([c for c in _public_exceptions() if issubclass(c, McpGovError)]), detail=st.text(min_size=1))
def test_every_error_in_the_tree_reaches_the_wire_as_its_code_and_fixed_message(
    cls: type[McpGovError], detail: str
) -> None:
    exc = cls.__new__(cls)
    McpGovError.__init__(exc, "secret-" + detail)
    wire = to_mcp_error(exc)
    assert (wire.error.code, wire.error.message) == (cls.rpc_code, cls.public_message)
    assert wire.error.data == {"code": cls.code}
    assert "secret-" not in repr(wire.error)
