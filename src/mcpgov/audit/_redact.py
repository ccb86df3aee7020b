"""Redaction: what is removed from audit events before any sink sees them.

Three things are removed:

* tokens: JWT/JWS/JWE compact serialisations and ``Bearer``/``Basic``/``DPoP`` header values,
  wherever they appear in an event's text fields or attributes;
* secrets: text matching the configured patterns (a few well-known key formats by default),
  and the values of attributes whose *names* look secret (``password``, ``api_key``...);
* named fields: argument or attribute names a policy obligation (``Decision.obligations["redact"]``),
  a tool declaration (``ctx.extensions[REDACT_FIELDS]``) or this configuration names.

Arguments are recorded as ``args_hash`` only, unless ``record_arguments`` opts in to recording
some of their (non-redacted) fields as well.
"""

from __future__ import annotations

import itertools
import math
import operator
import re
from collections.abc import Collection, Iterable, Mapping
from datetime import date, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from mcpgov._context import ExtensionKey
from mcpgov._errors import ConfigurationError

if TYPE_CHECKING:
    from mcpgov._audit import AuditEvent
    from mcpgov._context import GovContext

__all__ = ["DEFAULT_PATTERNS", "DEFAULT_SECRET_KEYS", "REDACTED", "REDACT_FIELDS", "Redactor", "json_safe"]

REDACTED = "[redacted]"
"""What replaces a redacted value."""

REDACT_FIELDS: ExtensionKey[Iterable[str]] = ExtensionKey("mcpgov.audit.redact")
"""``GovContext.extensions`` key: a collection of argument field names a tool declares sensitive.

Middleware that knows a tool's declaration (e.g. a decorator's metadata) sets it, and those fields
are never recorded, exactly like the names in a decision's ``redact`` obligation."""

# Built-in patterns, each with the lowercase literals one of which any match contains: a pattern
# only runs on text in which one of its literals occurs (one search for a set of literals is far
# cheaper than the patterns themselves over every event).
_SENSITIVE_WORD = (
    r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[\s_.-]?key|access[\s_.-]?key|private[\s_.-]?key"
    r"|credentials?|auth\w*|cookie|session[\s_.-]?key|signature)"
)
_SENSITIVE_LITERALS = (
    "pass",
    "pwd",
    "secret",
    "token",
    "api",
    "access",
    "private",
    "credential",
    "auth",
    "cookie",
    "session",
    "signature",
)
# A value after ``=`` or ``:``: a YAML block scalar (``|`` or ``>`` and its indented lines), a quoted string
# (JSON, escaped JSON, shell; an unclosed one runs to the end), or the run up to a delimiter, after an optional
# HTTP authentication scheme.
_QUOTED_VALUE = r"(?:\\+\"[^\"]*(?:\"|$)|\"(?:[^\"\\]|\\[\s\S])*(?:\"|$)|'(?:[^'\\]|\\[\s\S])*(?:'|$))"
_PLAIN_VALUE = r"(?:[^\s&,;\"'\\}\])]|\\(?![\"']))+"
# A value already redacted (so redacting text twice changes nothing).
_MARKER = r"[=:>]*\[redacted\](?:[\s&,;\"'\\}\])]|$)"
# YAML tags and anchors before a value (``password: !!str …``, ``token: &a !secret …``): not the value.
_YAML_PROPERTIES = r"(?:(?:!(?:<[^<>\s]*>|[!\w./:%-]*)|&[\w.-]+)[ \t]+)*"
_SENSITIVE_VALUE = (
    _YAML_PROPERTIES + r"(?:[|>][+-]?[0-9]?[+-]?[ \t]*(?:\r?\n[ \t]*(?=\r?\n))*(?:\r?\n[ \t]+[^\r\n]*)+"
    r"|(?:(?i:bearer|basic|digest|dpop|token|negotiate)\s+)?(?!"
    + _MARKER
    + r")(?:"
    + _QUOTED_VALUE
    + "|"
    + _PLAIN_VALUE
    + "))"
)
# A name naming a secret, taken whole: it starts a run of name characters (so no match starts inside one, and
# every run is read once), one of the words occurs in the run, and the run is matched atomically.
_NAME_CHARS = r"[A-Za-z0-9_.\\-]"


def _secret_run(chars: str, words: str, group: str) -> str:
    return rf"(?<!{chars})(?=(?i:{chars}*?{words}))(?=(?P<{group}>{chars}+))(?P={group})"


def _quoted_name(group: str) -> str:
    """A quoted name naming a secret (the quote before it is matched by the caller), taken whole."""
    return rf"(?=(?i:[A-Za-z0-9_.:\s-]*?{_SENSITIVE_WORD}))(?=(?P<{group}>[A-Za-z0-9_.:\s-]+))(?P={group})"


# Names that are secret on their own, even as a whole name or between separators (``pw=``, ``&sig=``).
_SHORT_WORD = r"(?:pw|pin|otp|sig|session|sid)"
# Names written before their value without a separator (``password hunter2``, ``the api key is X``): fewer
# words than ``key=value`` names, since ``auth``, ``cookie`` and ``signature`` start ordinary prose.
_SPACED_WORD = (
    r"(?:pass(?:word|wd|phrase)|pwd|secret|token|api[_.-]?key|access[_.-]?key|private[_.-]?key|credentials?"
    r"|session[_.-]?key)"
)
# Words after such a name that are not its value (status and function words: ``the token expired``).
_NOT_A_VALUE = (
    r"(?i:(?:a|an|the|is|was|are|were|be|been|being|has|have|had|not|no|none|null|and|or|of|for|to|in|on|at|by"
    r"|with|without|from|as|if|it|its|that|this|which|when|while|must|may|can|cannot|could|should|will|would|does"
    r"|did|do|expired|expires|expiry|invalid|missing|required|rejected|revoked|refused|denied|failed|unknown|empty"
    r"|reset|changed|updated|rotated|verified|valid|accepted|given|provided|set|unset|too|field|value|mismatch"
    r"|error|exchange|endpoint|request|response|audience|issuer|type|format|length|policy|manager|store|file"
    r"|header|hash|id|signature|scope|scopes|binding|bound|claims?|lifetime|ttl|used|reused|replayed|only"
    r"|found|needed|present|absent|here|there|please|again|now|yet|reads|equals|becomes|unreachable|unavailable|malformed|stale|wrong|incorrect|weak|ok|blank"
    r"|unsupported|unsigned|untrusted|unverified|disabled|enabled|configured|pending|ready|active|inactive|available"
    r"|ignored|truncated|out|over|under|still|already|also|then|than|exceeded|exceeds|outside|before|after|unless)\b"
    # ... as a word of its own: one a dot, dash or slash joins to more (``TO.00000``, ``none-7f``) is a value.
    r"(?![.\-/]\w))"
)
# A line after a name that is not its value: a name with its own value (``port: 5432``, ``HOST=db``), a YAML
# mapping's key (``db:``) or a section header (``[db]``).
_NOT_A_NEXT_LINE_VALUE = r"[A-Za-z_][\w.-]*[ \t]*(?:[:=][ \t]*[^\s=]|:[ \t]*(?:\r?\n|$))|\["
_LINKING = r"(?:[ \t]+(?i:is|was|are|were|reads|equals|set[ \t]+to|becomes))?[ \t]*[:=]?"
_TOKEN_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # JWS (3 parts) and JWE (5 parts) compact serialisations: base64url JSON header "eyJ...".
    # The run holding it is matched whole and once (a token glued to other text is removed with it).
    (
        r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*?eyJ[A-Za-z0-9_-]{2})(?=(?P<_jwt>[A-Za-z0-9_-]+))(?P=_jwt)"
        r"(?:\.[A-Za-z0-9_=-]*){1,4}",
        ("eyj",),
    ),
    # Credential-bearing HTTP headers, to the end of the line (cookies hold several values).
    (
        r"(?P<_keep_header>(?i:\b(?:proxy-)?authorization|\bset-cookie|\bcookie"
        r"|(?<![a-z0-9-])x-(?=[a-z0-9-]*?(?:key|token|secret|auth))(?=(?P<_xh>[a-z0-9-]+))(?P=_xh))\s*:[ \t]*)"
        r"[^\r\n]+",
        ("authorization", "cookie", "x-"),
    ),
    # HTTP credentials in header form, however short the value.
    (
        r"(?i:\b(?:bearer|basic|dpop|digest|negotiate))\s+[A-Za-z0-9._~+/-]+=*",
        ("bearer", "basic", "dpop", "digest", "negotiate"),
    ),
    # User information in a URI (``scheme://user:password@host``, ``https://token@host``).
    (r"(?<=://)[^/\s@?#\"'<>]+(?=@)", ("://",)),
)
_SECRET_NAME_CHARS = re.compile(r"[A-Za-z0-9_.\s-]*")
_SECRET_NAME_WORD = re.compile("(?i:" + _SENSITIVE_WORD + ")")
"""A name the built-in ``key=value`` rule treats as naming a secret (so a mapping entry or a
name/value pair under it is redacted like the text ``name=value``)."""
_DEFAULT_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"\bgh[pousr]_[A-Za-z0-9]{20,}", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),  # GitHub tokens
    (r"\bxox[abprs]-[A-Za-z0-9-]{10,}", ("xox",)),  # Slack tokens
    (r"\bAKIA[0-9A-Z]{16}\b", ("akia",)),  # AWS access key ids
    (r"\bgithub_pat_[A-Za-z0-9_]{22,}", ("github_pat_",)),  # GitHub fine-grained tokens
    (r"\bglpat-[A-Za-z0-9_-]{20,}", ("glpat-",)),  # GitLab personal access tokens
    (r"\bnpm_[A-Za-z0-9]{36}\b", ("npm_",)),  # npm tokens
    (r"\bAIza[0-9A-Za-z_-]{35}", ("aiza",)),  # Google API keys
    (r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}", ("k_live_", "k_test_")),  # Stripe secret and restricted keys
    (r"\bsk-(?:proj|ant|svcacct|admin)-[A-Za-z0-9_-]{20,}", ("sk-proj-", "sk-ant-", "sk-svcacct-", "sk-admin-")),
    (r"-----BEGIN [A-Z ]*PRIVATE KEY-----[^-]*(?:-----END [A-Z ]*PRIVATE KEY-----)?", ("-----begin",)),
    # key=value, key: value, "key": "value" (JSON, escaped JSON), key='value', key => value, with any prefix or
    # suffix on a key naming a secret (access_token=, DB_PASSWORD=, aws_secret_access_key=, x-api-key:), and
    # escaped separators inside the key (pass\=word=).
    (
        r"(?P<_keep_key>" + _secret_run(_NAME_CHARS, _SENSITIVE_WORD, "_kn") + r"(?:\\?[\"'])?\s*\\?"
        r"(?:=>|->|(?<=-)>|:=|=|:(?!//))\s*)" + _SENSITIVE_VALUE,
        _SENSITIVE_LITERALS,
    ),
    # pw=, &sig=, session=, SID=: short names, as a whole name or after a separator.
    (
        r"(?P<_keep_short>(?<![A-Za-z0-9_.\\-])(?:[A-Za-z0-9]+[_.-])?(?i:" + _SHORT_WORD + r")(?![A-Za-z0-9_.\\-])"
        r"(?:\\?[\"'])?[ \t]*(?:=|:(?!//))[ \t]*)" + _SENSITIVE_VALUE,
        ("pw", "pin", "otp", "sig", "session", "sid"),
    ),
    # password hunter2, "the api key is: X", client_secret\tX, password\nX: a name naming a secret and a value after
    # blanks or on the next line (a configuration file, prose), unless the next word is a status or function word
    # (or, on the next line, a name with its own value or a section header).
    (
        r"(?P<_keep_spaced>(?:"
        + _secret_run(_NAME_CHARS, _SPACED_WORD, "_sn")
        + r"|(?<![A-Za-z0-9_.\\-])(?i:api|access|private|secret|signing|session|client)[ \t]+(?i:key|secret|token)s?"
        + r"(?![A-Za-z0-9_.\\-]))"
        + _LINKING
        + r"(?:[ \t]+|[ \t]*(?:\r?\n[ \t]*)+(?!"
        + _NOT_A_NEXT_LINE_VALUE
        + r")))(?![=:>-])(?!"
        + _NOT_A_VALUE
        + ")"
        + _SENSITIVE_VALUE,
        ("pass", "pwd", "secret", "token", "api", "access", "private", "credential", "session", "client"),
    ),
    # <add key="ApiKey" value="..."/>, <entry name="password" value="..."/>: a name/value pair of XML attributes.
    (
        r"(?P<_keep_attr>(?<![\w-])(?i:key|name)\s*=\s*[\"']"
        + _quoted_name("_an")
        + r"[\"']\s+(?i:value)\s*=\s*)"
        + _QUOTED_VALUE,
        _SENSITIVE_LITERALS,
    ),
    # ["X-Api-Key", "..."] and {"name": "DB_PASSWORD", "value": "..."} inside text (JSON, escaped JSON, Python
    # reprs): a name/value pair naming a secret, as in an attribute.
    (
        r"(?P<_keep_pair>\[(?:\s|\\[nrt])*\\*[\"']"
        + _quoted_name("_pn")
        + r"\\*[\"'](?:\s|\\[nrt])*,(?:\s|\\[nrt])*)"
        + _QUOTED_VALUE,
        _SENSITIVE_LITERALS,
    ),
    (
        r"(?P<_keep_named>\\*[\"'](?i:name|key|header|field|variable|param|parameter|label)\\*[\"']"
        r"(?:\s|\\[nrt])*:(?:\s|\\[nrt])*\\*[\"']"
        + _quoted_name("_nn")
        + r"\\*[\"'](?:\s|\\[nrt])*,(?:\s|\\[nrt])*\\*[\"'](?i:value|val|content|default)\\*[\"']"
        r"(?:\s|\\[nrt])*:(?:\s|\\[nrt])*)" + _SENSITIVE_VALUE,
        _SENSITIVE_LITERALS,
    ),
    # curl -u user:password, --user user:password: the password after the user name.
    (
        r"(?P<_keep_user>(?<![\w-])(?:-u[ \t]*|--user[ \t=]+)[\"']?[^\s:\"']+:(?!//))(?!"
        + _MARKER
        + ")"
        + _PLAIN_VALUE,
        ("-u", "--user"),
    ),
    # <password>value</password>, <ns:api-key type="string">value</ns:api-key>: an XML or HTML element naming a
    # secret (the element's text, up to the next tag).
    (
        r"(?P<_keep_tag><" + _secret_run(r"[A-Za-z0-9_.:-]", _SENSITIVE_WORD, "_tn") + r"(?:\s[^<>]*)?>)[^<]+",
        _SENSITIVE_LITERALS,
    ),
    # --password value, --api-key "value", --token=value: a long command-line option naming a secret, and its
    # value (also on the next line: an argument vector dumped one item per line).
    (
        r"(?P<_keep_flag>(?<![A-Za-z0-9_.-])--(?=[A-Za-z0-9])(?=(?i:[A-Za-z0-9_.-]*?" + _SENSITIVE_WORD + r"))"
        r"(?=(?P<_fn>[A-Za-z0-9_.-]+))(?P=_fn)(?:\s+|=))(?!-)" + _SENSITIVE_VALUE,
        _SENSITIVE_LITERALS,
    ),
    # -p value, -pvalue, -p 'value': the short option mysql, sshpass, zip and others take a password with
    # (not a number or port mapping, a path or another option: mkdir -p /srv, docker -p 8080:80).
    (
        r"(?P<_keep_opt>(?<![\w-])-[pP](?:[ \t]+)?)(?![\d:./~-]*(?:\s|$))(?![/~.$-])" + _SENSITIVE_VALUE,
        ("-p",),
    ),
)
# Runs that may be base64 (standard or URL-safe): decoded and scanned for the rules above.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX_RUN = re.compile(r"(?:0[xX])?(?P<hex>[0-9a-fA-F]+)")
# Runs of URL-encoded text (a query string or form body, encoded once more as a redirect target):
# decoded and scanned for the rules above.
_PERCENT_CHARS = r"[A-Za-z0-9._~!$'()*+,;=:@/?&%-]"
_PERCENT_RUN = re.compile(rf"(?<!{_PERCENT_CHARS}){_PERCENT_CHARS}*%[0-9A-Fa-f]{{2}}{_PERCENT_CHARS}*")
_PERCENT_DEPTH = 4  # how many layers of URL-encoding are taken off
_DECODE_DEPTH = 3  # how many layers of base64 or hex encoding are taken off

DEFAULT_PATTERNS: tuple[str, ...] = tuple(p for p, _ in _DEFAULT_RULES)
"""Secret formats redacted by default, on top of tokens (pass ``default_patterns=False`` to drop them).

Vendor key formats that resemble ordinary identifiers (``sk-...`` looks like ``task-...`` to a cheap
pre-check) are left to ``patterns=`` so the common case stays fast."""

DEFAULT_SECRET_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "api_key",
    "access_key",
    "private_key",
    "authorization",
    "cookie",
    "credential",
    "session_key",
    "signature",
)
"""Name fragments: an attribute or argument whose name contains one of them is redacted (names ending
in ``_id``, ``_hash`` or ``_count`` are identifiers, not secrets, and are kept)."""

# An argument after ``-p`` that is not its password: another option, a path, a number or port mapping.
_NOT_A_SECRET_ARGUMENT = re.compile(r"[/~.$-][\s\S]*|[\d:./~-]*")
_KEPT_GROUPS = (
    "_keep_header",
    "_keep_key",
    "_keep_short",
    "_keep_spaced",
    "_keep_attr",
    "_keep_pair",
    "_keep_named",
    "_keep_user",
    "_keep_tag",
    "_keep_flag",
    "_keep_opt",
)
_NAME_HINTS = (
    "pass",
    "pwd",
    "pw",
    "pin",
    "otp",
    "auth",
    "sig",
    "key",
    "session",
    "sid",
    "secret",
    "token",
    "credential",
    "cookie",
    "api",
    "access",
    "private",
)


def _name_hints(*names: Iterable[str]) -> re.Pattern[str]:
    """A pattern finding, in lowercase text, a fragment one of the names (or a built-in secret name) holds."""
    hints = {*_NAME_HINTS, *itertools.chain.from_iterable(names)}
    hints |= {h.replace("_", "-") for h in hints} | {h.replace("_", "") for h in hints}
    return re.compile("|".join(re.escape(h) for h in sorted(hints, key=len, reverse=True) if h))


_KEPT_SUFFIXES = ("_id", "_ids", "_hash", "_count", "_type", "_method")
# Short secret names that are words only on their own or between separators (``pass``, ``db_pwd``).
_SHORT_SECRET_NAME = re.compile(r"(?:^|[_.])(?:pass|pwd|pw|pin|otp|auth|sig|key|apikey|session|sid)(?:$|[_.])")

# Event fields that hold free text or caller-supplied values, and so are scanned for tokens and
# secrets. The others (id, type, time, hashes, trace ids, enums) are produced by mcpgov itself.
_TEXT_FIELDS: tuple[str, ...] = (
    "schema_version",
    "side",
    "effect",
    "outcome",
    "error_code",
    "method",
    "kind",
    "target",
    "principal",
    "tenant",
    "session_id",
    "task_id",
    "task_owner",
    "purpose",
    "rule",
    "reason",
    "detail",
    "credential_id",
    "engine",
    "policy_version",
    "approver",
    "auth_method",
)
_TUPLE_FIELDS: tuple[str, ...] = ("actors", "hidden")
_text_values = operator.itemgetter(*_TEXT_FIELDS)

# The fields that name the entry of a name/value object ({"name": "DB_PASSWORD", "value": ...}).
_NAMING_FIELDS = frozenset({"name", "key", "header", "field", "variable", "param", "parameter", "label"})
_REMEMBER_MAX = 4096
_REMEMBER_MAX_LEN = 256
_JSON_INT_MAX = 2**53 - 1
_MAX_DEPTH = 32


def _normal_name(name: str) -> str:
    return _read_name(name).lower().replace("-", "_")


_INNER_SEPARATOR = re.compile(r"(?<=[a-z])[_.](?=[a-z])")
_PLAIN_NAME = re.compile(r"[A-Za-z2689_. -]*")
_ESCAPED_SIGN = re.compile(r"\\+[^\w\s]")


def _read_name(name: str) -> str:
    """``name`` as a reader reads it: encoded characters decoded, compatibility forms in ASCII,
    invisible characters dropped, an escaped character inside a word dropped, digits and symbols
    inside a word read as the letters they stand for (fullwidth letters, ``p@ssword``, ``api_k3y``)."""
    if _PLAIN_NAME.fullmatch(name):
        return name
    if "\\" in name:  # an escaped sign anywhere in a name separates nothing (``api_\\=key``)
        name = _ESCAPED_SIGN.sub("", name)
    return _VIEW_UNIT.sub(_name_unit, name)


def _name_unit(match: re.Match[str]) -> str:
    unit = match.group(0)
    return unit if match.lastgroup == "split" and unit in "_.-" else _view_unit(match)


def json_safe(value: Any, *, depth: int = 0) -> Any:
    """``value`` as plain JSON data that canonical JSON (RFC 8785) accepts.

    Mappings become dicts with string keys, sequences and sets become lists, integers outside
    the exact range of a JSON number and non-finite floats become strings, datetimes ISO 8601
    strings, and anything else a marker naming its type (``"<unserialisable: Foo>"``): an event
    is never lost because one of its values cannot be written.
    """
    if value is None or isinstance(value, (bool, str)):
        if isinstance(value, str) and not _is_utf8(value):
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, int):
        return value if -_JSON_INT_MAX <= value <= _JSON_INT_MAX else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= _MAX_DEPTH:
        return "<unserialisable: too deep>"
    if isinstance(value, Mapping):
        return {json_safe(str(k)): json_safe(v, depth=depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v, depth=depth + 1) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return json_safe(value.value, depth=depth + 1)
    return f"<unserialisable: {type(value).__name__}>"


def _b64_text(run: str) -> str | None:
    """The text a base64 (standard or URL-safe, padding optional) run decodes to, if it is text."""
    import base64  # noqa: PLC0415 - only needed for base64-looking runs
    import binascii  # noqa: PLC0415

    body = run.rstrip("=")
    padded = body + "=" * (-len(body) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return text if text.isprintable() or "\n" in text else None


def _hex_text(run: str) -> str | None:
    """The text a hex run decodes to, if it is text."""
    if len(run) % 2:
        return None
    try:
        text = bytes.fromhex(run).decode("utf-8")
    except ValueError:
        return None
    return text if text.isprintable() or "\n" in text else None


def _unpercent(run: str) -> str:
    """``run`` with up to :data:`_PERCENT_DEPTH` layers of URL-encoding taken off."""
    from urllib.parse import unquote  # noqa: PLC0415 - only needed for URL-encoded runs

    for _ in range(_PERCENT_DEPTH):
        decoded = unquote(run, errors="replace")
        if decoded == run:
            break
        run = decoded
    return run


# A loose view of text: what a reader reads in it, for the rules above to run on (a match is redacted in the
# text itself; URL-encoded text is decoded whole, see ``_PERCENT_RUN``). Separators written as HTML character
# references or backslash escapes are decoded (``password&#61;``, ``password\\u003d``); other scripts'
# compatibility forms read as ASCII and invisible characters are dropped (fullwidth ``password=``,
# ``pass\u200bword``); inside a word, a separator or an escaped character is dropped (``pas\\=sword``,
# ``to-ken``) and digits and symbols read as the letters they stand for (``passw0rd``, ``p@$$word``, ``s3cr3t``).
_LEET = str.maketrans("013457@$", "oieastas")
_VIEW_UNIT = re.compile(
    r"(?P<ref>&#(?:[0-9]{1,7}|[xX][0-9a-fA-F]{1,6});?|&[A-Za-z][A-Za-z0-9]{1,31};)"
    r"|(?P<esc>(?<!\\)\\+(?:u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}))"
    r"|(?<=[A-Za-z])(?P<split>[_.-]|\\[^\sA-Za-z0-9])(?=[A-Za-z])"
    r"|(?P<leet>(?<=[A-Za-z])[013457@$]+|(?<![013457@$])[013457@$]+(?=[A-Za-z]))"
    r"|(?P<wide>[^\x00-\x7f]+)"
)
# A name a reader reads as naming a secret, written loosely (the view is only built for text holding one,
# or an encoded or non-ASCII character).
_LOOSE_LETTERS = {"a": "[a4@]", "e": "[e3]", "i": "[i1]", "o": "[o0]", "s": "[s5$]", "t": "[t7]"}
_LOOSE_NAME = re.compile(
    "(?=[pPsStTaAcC4@5$7])(?i:"
    + "|".join(
        r"(?:[_.-]|\\[^\sA-Za-z0-9])?".join(_LOOSE_LETTERS.get(c, c) for c in word)
        for word in ("pass", "pwd", "secret", "token", "apikey", "auth", "credential", "cookie", "session", "private")
    )
    + ")"
)
_LOOSE_HINT = re.compile(r"[^\x00-\x7f]|&#|&[A-Za-z]+;|\\[ux][0-9a-fA-F]")


def _view_unit(match: re.Match[str]) -> str:
    kind, unit = match.lastgroup, match.group(0)
    if kind == "ref":
        import html  # noqa: PLC0415 - only needed for text holding character references

        decoded = html.unescape(unit)
        return unit if decoded == unit else _wide(decoded)
    if kind == "esc":
        return _wide(chr(int(unit.lstrip("\\")[1:], 16)))
    if kind == "split":
        return ""
    if kind == "leet":
        return unit.translate(_LEET)
    return _wide(unit)


def _wide(text: str) -> str:
    """``text`` in its compatibility form, without invisible (format) characters."""
    if text.isascii():
        return text
    import unicodedata  # noqa: PLC0415 - only needed for non-ASCII text

    normal = unicodedata.normalize("NFKC", text)
    return "".join(c for c in normal if unicodedata.category(c) != "Cf")


def _loose_view(text: str) -> tuple[str, list[tuple[int, int, int, int]]] | None:
    """The loose view of ``text`` and the pieces that differ from it (view start, view end, text start,
    text end), or ``None`` when a reader reads nothing more in it than the rules already do."""
    if not _LOOSE_HINT.search(text) and not any(not m.group(0).isalpha() for m in _LOOSE_NAME.finditer(text)):
        return None
    pieces: list[str] = []
    changed: list[tuple[int, int, int, int]] = []
    at = length = 0
    for match in _VIEW_UNIT.finditer(text):
        start, end = match.span()
        read = _view_unit(match)
        if read == match.group(0):
            continue
        pieces.append(text[at:start])
        length += start - at
        pieces.append(read)
        changed.append((length, length + len(read), start, end))
        length += len(read)
        at = end
    if not changed:
        return None
    pieces.append(text[at:])
    return "".join(pieces), changed


def _text_span(changed: list[tuple[int, int, int, int]], start: int, end: int) -> tuple[int, int]:
    """Where the view's characters ``start`` to ``end`` are in the text (a piece read otherwise is
    taken whole)."""
    return _char_span(changed, start)[0], _char_span(changed, end - 1)[1]


def _char_span(changed: list[tuple[int, int, int, int]], position: int) -> tuple[int, int]:
    """The text the view's character at ``position`` was read from."""
    import bisect  # noqa: PLC0415 - only needed for text read loosely

    index = bisect.bisect_right(changed, (position, math.inf, 0, 0)) - 1
    if index < 0:
        return position, position + 1
    _, view_end, text_start, text_end = changed[index]
    if position < view_end:
        return text_start, text_end
    at = text_end + position - view_end
    return at, at + 1


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_KEPT_ON_FAILURE = frozenset({"schema_version", "side", "effect", "outcome", "error_code"})


def unredactable_changes(event: AuditEvent) -> dict[str, Any]:
    """The field values that replace an event's when redacting it failed: every text field and
    attribute a caller could have chosen becomes ``[redacted]`` (the event's kind, effect, ids,
    time and hashes stay, so the trail still records that it happened)."""
    data = event.__dict__
    changes: dict[str, Any] = {
        name: REDACTED for name in _TEXT_FIELDS if name not in _KEPT_ON_FAILURE and data[name] is not None
    }
    if isinstance(data["request_id"], str):
        changes["request_id"] = REDACTED
    for name in _TUPLE_FIELDS:
        if data[name]:
            changes[name] = tuple(REDACTED for _ in data[name])
    changes["attributes"] = {"redaction": "failed"}
    return changes


class Redactor:
    """Removes tokens, secrets and named fields from audit events (the auditor runs it before any sink).

    Example::

        Redactor(patterns=[r"acct-\\d{8}"], fields=["ssn"], record_arguments={"deploy": ["version"]})

    Args:
        patterns: extra regular expressions; every match in an event's text is replaced by
            ``[redacted]``.
        default_patterns: also apply :data:`DEFAULT_PATTERNS` (well-known secret formats).
            Tokens (JWTs, ``Bearer`` values) are always redacted.
        fields: argument and attribute names that are always redacted, at any depth.
        secret_keys: name fragments that mark an attribute or argument as secret (default
            :data:`DEFAULT_SECRET_KEYS`).
        record_arguments: which argument fields decision events record (as
            ``attributes["arguments"]``) besides ``args_hash``: ``False`` (default, none),
            ``True`` (all fields not redacted), a collection of field names, or a mapping of
            tool/prompt/resource name to field names.

    Raises:
        ConfigurationError: a pattern is not a valid regular expression, or an option has the
            wrong type.
    """

    def __init__(
        self,
        *,
        patterns: Iterable[str | re.Pattern[str]] = (),
        default_patterns: bool = True,
        fields: Iterable[str] = (),
        secret_keys: Iterable[str] | None = None,
        record_arguments: bool | Collection[str] | Mapping[str, Collection[str]] = False,
    ) -> None:
        rules = list(_TOKEN_RULES)
        self._secret_name = False
        if default_patterns:
            rules.extend(_DEFAULT_RULES)
            self._secret_name = True
        sources: list[str] = [p for p, _ in rules]
        custom: list[str] = []
        for given in patterns:
            source = given.pattern if isinstance(given, re.Pattern) else given
            if not isinstance(source, str) or not source:
                raise ConfigurationError("redaction patterns must be non-empty regular expressions")
            try:
                compiled = re.compile(source)
            except re.error as exc:
                raise ConfigurationError(f"invalid redaction pattern {source!r}: {exc}") from None
            if compiled.match(""):
                raise ConfigurationError(f"redaction pattern {source!r} matches the empty string")
            custom.append(source)
        sources.extend(custom)
        self._pattern = re.compile("|".join(f"(?:{p})" for p in sources))
        self._custom: re.Pattern[str] | None = re.compile("|".join(f"(?:{p})" for p in custom)) if custom else None
        self._rules: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = tuple((ks, re.compile(p)) for p, ks in rules)
        self._keywords = re.compile("|".join(re.escape(k) for _, ks in rules for k in ks))
        # Values already found clean (principals, tenants, tool names, rules recur in every event),
        # and ``None`` (an absent field), so one subset test clears an event's usual text fields.
        self._known_clean: set[str | None] = {None}
        if isinstance(fields, str):
            raise ConfigurationError("fields must be a collection of names, not one string")
        self.fields: frozenset[str] = frozenset(_normal_name(f) for f in fields)
        keys = DEFAULT_SECRET_KEYS if secret_keys is None else tuple(secret_keys)
        if isinstance(secret_keys, str):
            raise ConfigurationError("secret_keys must be a collection of name fragments, not one string")
        self.secret_keys: tuple[str, ...] = tuple(_normal_name(k) for k in keys)
        # A fragment one of which any name this redactor treats as secret holds (so text that is JSON is
        # only parsed when it may name a secret).
        self._name_hint = _name_hints(self.secret_keys, self.fields)
        self._record_all = False
        self._record_fields: frozenset[str] | None = None
        self._record_per_target: dict[str, frozenset[str]] = {}
        if record_arguments is True:
            self._record_all = True
        elif record_arguments is False:
            pass
        elif isinstance(record_arguments, str):
            raise ConfigurationError("record_arguments takes a collection of field names, not one string")
        elif isinstance(record_arguments, Mapping):
            for target, names in record_arguments.items():
                if isinstance(names, str) or not isinstance(target, str):
                    raise ConfigurationError("record_arguments maps a target name to a collection of field names")
                self._record_per_target[target] = frozenset(names)
        elif isinstance(record_arguments, Collection):
            self._record_fields = frozenset(record_arguments)
        else:
            raise ConfigurationError("record_arguments must be a bool, field names, or a mapping of target to names")
        self._records = self._record_all or self._record_fields is not None or bool(self._record_per_target)

    def __repr__(self) -> str:
        return f"Redactor(patterns={self._pattern.pattern.count('(?:')}, fields={sorted(self.fields)})"

    # --- text and values ----------------------------------------------------------------------

    def text(self, value: str) -> str:
        """``value`` with every token and secret match replaced by ``[redacted]`` (also inside
        base64 runs: a run whose decoded text holds a secret is replaced whole; text that is a JSON
        object or array is redacted as the data it holds)."""
        structured = self._json_text(value)
        if structured is not None:
            value = structured
        if not self.detect(value):
            return value
        cleaned = self._pattern.sub(self._replacement, value)
        loose = _loose_view(cleaned)
        if loose is not None:
            cleaned = self._loose_replacement(cleaned, *loose)
        if _BASE64_RUN.search(cleaned):
            cleaned = _BASE64_RUN.sub(self._base64_replacement, cleaned)
        if "%" in cleaned:
            cleaned = _PERCENT_RUN.sub(self._percent_replacement, cleaned)
        return cleaned

    def _percent_replacement(self, match: re.Match[str]) -> str:
        """A URL-encoded run whose decoded text holds a secret: the decoded text redacted, encoded
        again (or ``[redacted]`` whole if redacting it left anything this redactor finds)."""
        from urllib.parse import quote  # noqa: PLC0415 - only needed for URL-encoded runs

        run = match.group(0)
        decoded = _unpercent(run)
        if decoded == run or not self.detect(decoded):
            return run
        cleaned = self.text(decoded)
        return REDACTED if self.detect(cleaned.replace(REDACTED, "")) else quote(cleaned, safe="/:?&=@[]")

    def _loose_replacement(self, text: str, view: str, changed: list[tuple[int, int, int, int]]) -> str:
        """``text`` with what the rules find in its loose ``view`` redacted (the name kept, as read in
        the text; a piece of text read otherwise is redacted whole)."""
        spans: list[tuple[int, int]] = []
        for match in self._pattern.finditer(view):
            groups = match.groupdict()
            kept = next((name for name in _KEPT_GROUPS if groups.get(name)), None)
            start = match.end(kept) if kept is not None else match.start()
            if start >= match.end():
                continue
            begin, end = _text_span(changed, start, match.end())
            if spans and begin < spans[-1][1]:
                begin = spans[-1][0]
                spans.pop()
            spans.append((begin, end))
        if not spans:
            return text
        pieces: list[str] = []
        at = 0
        for begin, end in spans:
            pieces += (text[at:begin], REDACTED)
            at = end
        pieces.append(text[at:])
        return "".join(pieces)

    def _replacement(self, match: re.Match[str]) -> str:
        groups = match.groupdict()
        kept = next((groups[name] for name in _KEPT_GROUPS if groups.get(name)), "")
        if "eyJ" in kept:
            # The name kept before a redacted value can itself hold a token ("PASSeyJ...=x").
            return REDACTED
        return kept + REDACTED

    def _base64_replacement(self, match: re.Match[str]) -> str:
        run = match.group(0)
        return REDACTED if self._decoded_secret(run) else run

    def _decoded_secret(self, run: str, depth: int = 0) -> bool:
        """Whether a base64 or hex run (``0x`` prefix optional) decodes to text holding a token or secret
        (also encoded again, up to :data:`_DECODE_DEPTH` layers)."""
        hexadecimal = _HEX_RUN.fullmatch(run)
        decoded = _hex_text(hexadecimal.group("hex")) if hexadecimal else _b64_text(run)
        if decoded is None:
            return False
        if self._detect_plain(decoded):
            return True
        return depth + 1 < _DECODE_DEPTH and any(
            self._decoded_secret(m.group(0), depth + 1) for m in _BASE64_RUN.finditer(decoded)
        )

    def _json_text(self, value: str) -> str | None:
        """``value``, a JSON object or array, with the data it holds redacted (``None`` when it is
        not one, or holds nothing to redact): a name/value pair naming a secret is found in it as in
        an attribute (``["password", "..."]``, ``{"name": "API_KEY", "value": "..."}``)."""
        start = value[:1] if value[:1] in "[{" else value.lstrip()[:1]
        if start not in ("[", "{") or value.rstrip()[-1:] not in ("]", "}"):
            return None
        if not self._name_hint.search(value.lower()):
            return None
        import json  # noqa: PLC0415 - only needed for text that is JSON

        try:
            data = json_safe(json.loads(value))
        except (ValueError, RecursionError):
            return None
        cleaned = self._value(data, frozenset())
        return None if cleaned == data else json.dumps(cleaned, ensure_ascii=False)

    def _is_clean(self, value: Any) -> bool:
        """Whether a text field needs no redaction; short clean values are remembered (bounded)."""
        if not isinstance(value, str):
            return True
        if self.detect(value):
            return False
        if len(value) <= _REMEMBER_MAX_LEN:
            known = self._known_clean
            if len(known) >= _REMEMBER_MAX:
                known.clear()
                known.add(None)
            known.add(value)
        return True

    def detect(self, value: str) -> bool:
        """Whether ``value`` holds a token or secret this redactor removes (also base64-encoded)."""
        if self._detect_plain(value):
            return True
        if value[:1] in "[{ \t\r\n" and self._json_text(value) is not None:
            return True
        if "%" in value and any(self._percent_secret(m.group(0)) for m in _PERCENT_RUN.finditer(value)):
            return True
        if len(value) < 16:
            return False
        # Hex runs (hashes, ids, hex dumps) are decoded as hex: hashes and ids decode to no text.
        return any(self._decoded_secret(m.group(0)) for m in _BASE64_RUN.finditer(value))

    def _percent_secret(self, run: str) -> bool:
        """Whether a URL-encoded run decodes to text holding a token or secret."""
        decoded = _unpercent(run)
        return decoded != run and self.detect(decoded)

    def _detect_plain(self, value: str) -> bool:
        if self._detect_rules(value):
            return True
        loose = _loose_view(value)
        return loose is not None and self._detect_rules(loose[0])

    def _detect_rules(self, value: str) -> bool:
        custom = self._custom
        if custom is not None and custom.search(value):
            return True
        lower = value.lower()
        if not self._keywords.search(lower):
            return False
        for keywords, pattern in self._rules:
            for keyword in keywords:
                if keyword in lower:
                    if pattern.search(value):
                        return True
                    break
        return False

    def is_secret_name(self, name: str) -> bool:
        """Whether an attribute or argument called ``name`` holds a secret by its name alone."""
        normal = _normal_name(name)
        if normal in self.fields:
            return True
        if normal.endswith(_KEPT_SUFFIXES):
            return False
        if any(fragment in normal for fragment in self.secret_keys) or _SHORT_SECRET_NAME.search(normal):
            return True
        # A separator inside a word (``p_assword``, ``to.ken``) does not make it another word.
        joined = _INNER_SEPARATOR.sub("", normal)
        if joined != normal and any(fragment in joined for fragment in self.secret_keys if len(fragment) > 4):
            return True
        # As in text: ``githubpwd=...`` is redacted, so is a ``githubpwd`` entry.
        read = _read_name(name)
        return (
            self._secret_name
            and _SECRET_NAME_CHARS.fullmatch(read) is not None
            and _SECRET_NAME_WORD.search(read) is not None
        )

    def value(self, value: Any, names: Collection[str] = frozenset()) -> Any:
        """``value`` made JSON-safe, with secrets and the fields called ``names`` redacted, at any depth."""
        return self._value(json_safe(value), frozenset(_normal_name(n) for n in names))

    def _names_secret(self, value: Any, names: frozenset[str]) -> bool:
        """Whether ``value`` is text naming a secret (a field name in a name/value structure)."""
        return isinstance(value, str) and (_normal_name(value) in names or self.is_secret_name(value))

    def _value(self, value: Any, names: frozenset[str]) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            result: dict[str, Any] = {}
            known = self._known_clean
            # A name/value object ({"name": "DB_PASSWORD", "value": ...}: environment variables,
            # headers, tags) naming a secret: every entry but its name is the secret's.
            naming = next(
                (k for k, v in value.items() if _normal_name(k) in _NAMING_FIELDS and self._names_secret(v, names)),
                None,
            )
            for k, v in value.items():
                secret = (naming is not None and k != naming) or _normal_name(k) in names or self.is_secret_name(k)
                cleaned = REDACTED if secret else self._value(v, names)
                # A key is text like any other: a secret in it is redacted too, and keys that read the
                # same once redacted are told apart, so no entry is dropped.
                key = k if k in known or self._is_clean(k) else self.text(k)
                if key in result:
                    key = next(f"{key} ({n})" for n in itertools.count(2) if f"{key} ({n})" not in result)
                result[key] = cleaned
            return result
        if isinstance(value, list):
            if len(value) == 2 and self._names_secret(value[0], names):  # a [name, value] pair
                return [value[0], REDACTED]
            items = [self._value(v, names) for v in value]
            # An argument vector: the item after an option naming a secret (--password, -p) is its value.
            for index, item in enumerate(value[:-1]):
                if isinstance(item, str) and item.startswith("-") and self._option_takes_secret(item, names):
                    following = value[index + 1]
                    if not isinstance(following, str) or not _NOT_A_SECRET_ARGUMENT.fullmatch(following):
                        items[index + 1] = REDACTED
            return items
        return value

    def _option_takes_secret(self, option: str, names: frozenset[str]) -> bool:
        """Whether a command-line option (``--password``, ``-p``) is followed by a secret."""
        if option in ("-p", "-P"):
            return True
        name = option.lstrip("-")
        return option.startswith("--") and bool(name) and "=" not in name and self._names_secret(name, names)

    # --- events and arguments -----------------------------------------------------------------

    def event_changes(self, event: AuditEvent) -> dict[str, Any] | None:
        """The field values to replace in ``event`` (``None`` when nothing needs redacting).

        Text fields are scanned for tokens and secrets; attributes are made JSON-safe and
        redacted by name and content.
        """
        data = event.__dict__
        known = self._known_clean
        changes: dict[str, Any] = {}
        if not known.issuperset(_text_values(data)):  # some text not seen clean before: each is checked
            for name in _TEXT_FIELDS:
                value = data[name]
                if value not in known and not self._is_clean(value):
                    changes[name] = self.text(value)
        rid = data["request_id"]
        if isinstance(rid, str) and rid not in known and not self._is_clean(rid):
            changes["request_id"] = self.text(rid)
        for name in _TUPLE_FIELDS:
            values = data[name]
            if values and not all(v in known or self._is_clean(v) for v in values):
                changes[name] = tuple(self.text(v) if isinstance(v, str) else v for v in values)
        attributes = data["attributes"]
        if attributes:
            cleaned = self._value(json_safe(attributes), self.fields)
            if cleaned != attributes:
                changes["attributes"] = cleaned
        return changes or None

    def redacted_names(self, ctx: GovContext) -> frozenset[str]:
        """The argument names that must not be recorded for ``ctx``: configured, declared by the tool
        (``ctx.extensions[REDACT_FIELDS]``) and named by the decision's ``redact`` obligation."""
        names = set(self.fields)
        declared = ctx.extension(REDACT_FIELDS)
        if declared:
            names.update(_normal_name(n) for n in ([declared] if isinstance(declared, str) else declared))
        decision = ctx.decision
        if decision is not None:
            obliged = decision.obligations.get("redact")
            if obliged:
                names.update(_normal_name(n) for n in ([obliged] if isinstance(obliged, str) else obliged))
        return frozenset(names)

    def arguments(self, ctx: GovContext) -> dict[str, Any] | None:
        """The argument fields to record for ``ctx`` besides its hash, or ``None`` (the default: none).

        Only fields the configuration allows are kept; fields named by configuration, the tool's
        declaration or the decision's ``redact`` obligation, and fields whose names look secret,
        become ``[redacted]``; tokens and secrets inside the kept values are redacted too.
        """
        if not self._records:  # the default: no argument is recorded
            return None
        arguments = ctx.arguments
        if not arguments:
            return None
        if self._record_all:
            allowed: Collection[str] | None = None
        elif ctx.target is not None and ctx.target in self._record_per_target:
            allowed = self._record_per_target[ctx.target]
        elif self._record_fields is not None:
            allowed = self._record_fields
        else:
            return None
        names = self.redacted_names(ctx)
        kept = {k: v for k, v in arguments.items() if allowed is None or k in allowed}
        if not kept:
            return None
        result: dict[str, Any] = self._value(json_safe(kept), names)
        return result
