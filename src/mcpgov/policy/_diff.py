"""Entitlement drift: the access delta between two versions of a policy.

Rules are compared by meaning, not by position: reordering rules, renaming a rule whose content
is unchanged, reordering the entries of a list or rewriting an equivalent glob are no change.
Every other difference is a *widening* (someone may now reach something, or under fewer
conditions) or a *narrowing*:

* allow (and require_approval) rules grant access: a new one, or one whose principals,
  tenants, targets or actions grow, or whose conditions or obligations are removed or changed,
  widens;
* deny (and require_approval) rules restrict it: removing one, shrinking what it covers, adding
  conditions under which it applies, or relaxing its ``unless``, widens.

A changed condition or obligation whose direction cannot be told is counted as widening: a
diff that is unsure never reports "no widening".
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import click

from mcpgov._cliutil import BadInput
from mcpgov._errors import ConfigurationError
from mcpgov.policy._load import Policy, load_policy
from mcpgov.policy._model import Rule

__all__ = ["AccessChange", "Grant", "PolicyDiff", "diff", "diff_policies", "load_grants"]

_TARGETS = ("tools", "resources", "prompts", "methods")


def _clean(value: Any) -> Any:
    """JSON data with lists that are sets sorted and empty values dropped."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in sorted(value.items()) if v not in (None, [], {})}
    if isinstance(value, list):
        items = [_clean(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return value


def _rule_data(rule: Rule) -> dict[str, Any]:
    data = rule.model_dump(mode="json", by_alias=True, exclude_defaults=False)
    data.pop("id", None)
    data.pop("description", None)
    cleaned: dict[str, Any] = _clean(data)
    return cleaned


def _key(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True)


def _covered(pattern: str, by: Iterable[str]) -> bool:
    """Whether every name ``pattern`` matches is matched by one of ``by`` (conservatively)."""
    for other in by:
        if other in {pattern, "*"}:
            return True
        if not any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(pattern, other):
            return True
    return False


@dataclasses.dataclass(frozen=True)
class AccessChange:
    """One change of access.

    Attributes:
        direction: ``widen`` or ``narrow``.
        rule: the rule id (new id when renamed).
        effect: the rule's effect.
        who: the principals and tenants the rule is about.
        what: what changed (targets gained or lost, conditions removed or added...).
    """

    direction: str
    rule: str
    effect: str
    who: str
    what: str

    def __str__(self) -> str:
        sign = "+" if self.direction == "widen" else "-"
        return f"{sign} {self.direction}: {self.effect} rule {self.rule} ({self.who}): {self.what}"


@dataclasses.dataclass(frozen=True)
class PolicyDiff:
    """The access delta between two policies.

    Attributes:
        old: the old policy's source.
        new: the new policy's source.
        changes: every change, widenings first.
    """

    old: str
    new: str
    changes: tuple[AccessChange, ...]

    @property
    def widens(self) -> bool:
        """Whether any change widens access."""
        return any(c.direction == "widen" for c in self.changes)

    @property
    def widenings(self) -> tuple[AccessChange, ...]:
        """The changes that widen access."""
        return tuple(c for c in self.changes if c.direction == "widen")


def _who(data: dict[str, Any]) -> str:
    principals = data.get("principals")
    tenants = data.get("tenants")
    who = "any principal" if not principals else "principals " + json.dumps(principals, sort_keys=True)
    if data.get("anonymous"):
        who += " or anonymous callers"
    return who + (", any tenant" if not tenants else f", tenants {tenants}")


def _what(data: dict[str, Any]) -> str:
    parts = [f"{kind} {data[kind]}" for kind in _TARGETS if data.get(kind)]
    return "; ".join(parts)


def _compare_grant(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(widenings, narrowings) of an access-granting rule changed from ``old`` to ``new``."""
    wider: list[str] = []
    narrower: list[str] = []
    for kind in _TARGETS:
        before, after = old.get(kind) or [], new.get(kind) or []
        gained = [p for p in after if not _covered(p, before)]
        lost = [p for p in before if not _covered(p, after)]
        if gained:
            wider.append(f"gains {kind} {gained}")
        if lost:
            narrower.append(f"loses {kind} {lost}")
    for name, label in (("principals", "principals"), ("tenants", "tenants")):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if not after:
            wider.append(f"now applies to any of {label} (was {before})")
        elif not before:
            narrower.append(f"now limited to {label} {after}")
        else:
            added = [x for x in after if x not in before]
            removed = [x for x in before if x not in after]
            if added:
                wider.append(f"adds {label} {added}")
            if removed:
                narrower.append(f"removes {label} {removed}")
    if old.get("anonymous") != new.get("anonymous"):
        (wider if new.get("anonymous") else narrower).append(
            "now also matches anonymous callers" if new.get("anonymous") else "no longer matches anonymous callers"
        )
    added_actions = sorted(set(new.get("actions") or []) - set(old.get("actions") or []))
    removed_actions = sorted(set(old.get("actions") or []) - set(new.get("actions") or []))
    if added_actions:
        wider.append(f"adds actions {added_actions}")
    if removed_actions:
        narrower.append(f"removes actions {removed_actions}")
    for section, label in (("when", "condition"), ("obligations", "obligation")):
        more, less = _entry_changes(label, old.get(section), new.get(section), adding_widens=False)
        wider += more
        narrower += less
    return wider, narrower


def _entry_changes(
    label: str,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    *,
    adding_widens: bool,
    values: bool = True,
) -> tuple[list[str], list[str]]:
    """(widenings, narrowings) from the entries of one block (conditions, obligations,
    exceptions), by name: an added entry widens access when ``adding_widens``, a dropped one
    then narrows it (and the other way round); a changed one may widen it (``values``: say how)."""
    wider: list[str] = []
    narrower: list[str] = []
    before, after = old or {}, new or {}
    for name in sorted(before.keys() | after.keys()):
        if name not in after:
            (narrower if adding_widens else wider).append(f"drops {label} {name}={_json(before[name])}")
        elif name not in before:
            (wider if adding_widens else narrower).append(f"adds {label} {name}={_json(after[name])}")
        elif before[name] != after[name]:
            how = f" from {_json(before[name])} to {_json(after[name])}" if values else ""
            wider.append(f"changes {label} {name}{how}")
    return wider, narrower


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _compare_restriction(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(widenings, narrowings) of a restricting rule changed from ``old`` to ``new``: a restriction
    that covers less widens access."""
    covers_more, covers_less = _compare_grant(old, new)
    unsure = [c for c in covers_more if c.startswith("changes ")]
    wider = list(covers_less) + unsure
    narrower = [c for c in covers_more if not c.startswith("changes ")]
    more, less = _entry_changes(
        "exception unless", old.get("unless"), new.get("unless"), adding_widens=True, values=False
    )
    wider += more
    narrower += less
    # For a restriction, "drops condition" means it applies more widely (narrows access) and
    # "adds condition" means it applies less (widens); _compare_grant said the opposite.
    fixed_wider = [w.replace("adds condition", "now only applies with condition") for w in wider]
    fixed_narrower = [n.replace("drops condition", "now applies without condition") for n in narrower]
    return fixed_wider, fixed_narrower


def diff_policies(old: Policy, new: Policy) -> PolicyDiff:
    """The access delta from ``old`` to ``new`` (see the module docstring)."""
    old_rules = [(r.id, r.effect, _rule_data(r)) for r in old.document.rules]
    new_rules = [(r.id, r.effect, _rule_data(r)) for r in new.document.rules]
    # Identical content (whatever the id or position) is no change.
    unmatched_new = list(new_rules)
    unmatched_old: list[tuple[str, str, dict[str, Any]]] = []
    for rule in old_rules:
        twin = next((n for n in unmatched_new if _key(n[2]) == _key(rule[2])), None)
        if twin is not None:
            unmatched_new.remove(twin)
        else:
            unmatched_old.append(rule)
    changes: list[AccessChange] = []
    for rule_id, effect, data in unmatched_old:
        twin = next((n for n in unmatched_new if n[0] == rule_id and n[1] == effect), None)
        if twin is None:
            grants = effect in ("allow", "require_approval")
            direction = "narrow" if effect == "allow" else "widen"
            changes.append(AccessChange(direction, rule_id, effect, _who(data), f"removed ({_what(data)})"))
            if effect == "require_approval" and grants:
                changes.append(
                    AccessChange("narrow", rule_id, effect, _who(data), f"approval path removed ({_what(data)})")
                )
            continue
        unmatched_new.remove(twin)
        new_data = twin[2]
        if effect == "allow":
            wider, narrower = _compare_grant(data, new_data)
        elif effect == "deny":
            wider, narrower = _compare_restriction(data, new_data)
        else:  # require_approval grants (after approval) and restricts (until approval): both directions
            wider_g, narrower_g = _compare_grant(data, new_data)
            wider_r, narrower_r = _compare_restriction(data, new_data)
            wider, narrower = wider_g + wider_r, narrower_g + narrower_r
        who = _who(new_data)
        changes.extend(AccessChange("widen", rule_id, effect, who, what) for what in wider)
        changes.extend(AccessChange("narrow", rule_id, effect, who, what) for what in narrower)
        if not wider and not narrower:
            changes.append(AccessChange("widen", rule_id, effect, who, "changed in a way that is not classified"))
    for rule_id, effect, data in unmatched_new:
        direction = "widen" if effect in ("allow", "require_approval") else "narrow"
        changes.append(AccessChange(direction, rule_id, effect, _who(data), f"added ({_what(data)})"))
    changes.sort(key=lambda c: (c.direction != "widen", c.rule))
    return PolicyDiff(old.source, new.source, tuple(changes))


def _load(path: str | os.PathLike[str]) -> Policy:
    try:
        return load_policy(path)
    except ConfigurationError as exc:
        raise BadInput(exc.detail) from None
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None


@dataclasses.dataclass(frozen=True)
class Grant:
    """An access-granting rule of a policy (``allow`` or ``require_approval``)."""

    rule_id: str
    effect: Literal["allow", "require_approval"]
    who: str
    what: str

    def describe(self) -> str:
        """One line."""
        return f"{self.effect} rule {self.rule_id}: {self.what} for {self.who}"

    def as_dict(self) -> dict[str, str]:
        """JSON data."""
        return dataclasses.asdict(self)


def load_grants(path: str | os.PathLike[str]) -> list[Grant]:
    """The access-granting rules of the policy file at ``path``.

    Raises:
        BadInput: the file cannot be read or is not a valid policy.
    """
    policy = _load(path)
    out = []
    for rule in policy.document.rules:
        if rule.effect in {"allow", "require_approval"}:
            data = _rule_data(rule)
            out.append(Grant(rule.id, rule.effect, _who(data), _what(data)))
    return out


@click.command("diff")
@click.argument("old", metavar="OLD")
@click.argument("new", metavar="NEW")
@click.option("--allow-widening", is_flag=True, help="Exit 0 even when access widens (report only).")
@click.option("--json", "as_json", is_flag=True, help="Print the changes as JSON.")
def diff(old: str, new: str, allow_widening: bool, as_json: bool) -> None:
    """Print the access delta from policy OLD to NEW: who gains or loses which tools, resources,
    prompts, methods and conditions. Reordering rules is no change.

    Exit status: 0 no widening (or --allow-widening), 1 access widens, 2 bad input.
    """
    from mcpgov.audit._query import printable  # noqa: PLC0415 - avoids importing audit for other commands

    result = diff_policies(_load(old), _load(new))
    if as_json:
        click.echo(
            json.dumps(
                {"widens": result.widens, "changes": [dataclasses.asdict(c) for c in result.changes]},
                indent=2,
                sort_keys=True,
                ensure_ascii=True,
            )
        )
    elif not result.changes:
        click.echo("no access change")
    else:
        for change in result.changes:
            line = printable(str(change))
            click.echo(click.style(line, fg="red" if change.direction == "widen" else "green"))
        widen = len(result.widenings)
        click.echo(f"{widen} widening(s), {len(result.changes) - widen} narrowing(s)")
    if result.widens and not allow_widening:
        raise SystemExit(1)
